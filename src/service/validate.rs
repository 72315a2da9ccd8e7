//! Input rules shared by every form and endpoint.

use super::FieldErrors;

pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 128;

/// Lower-cased, trimmed email, or the reason it is not one.
pub fn email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("Enter an email address.");
    }
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("Enter a valid email address.");
    }
    let Some((local, domain)) = email.split_once('@') else { return Err("Enter a valid email address.") };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return Err("Enter a valid email address.");
    }
    Ok(email)
}

/// Checks a new password against the rules; `email` is the account's.
pub fn new_password(password: &str, email: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN {
        return Err("Use at least 12 characters.");
    }
    if chars > PASSWORD_MAX {
        return Err("Use at most 128 characters.");
    }
    if !email.is_empty() && password.trim().to_lowercase() == email.trim().to_lowercase() {
        return Err("Your password must not be your email address.");
    }
    Ok(())
}

/// A trimmed team name of 2–64 characters.
pub fn team_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars < 2 {
        return Err("Use at least 2 characters.");
    }
    if chars > 64 {
        return Err("Use at most 64 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("Remove the control characters.");
    }
    Ok(name.to_owned())
}

/// Validates the trio every account creation needs, collecting every error.
pub fn account(email_raw: &str, password: &str) -> Result<String, FieldErrors> {
    let mut errors = FieldErrors::default();
    let email = match email(email_raw) {
        Ok(e) => e,
        Err(m) => {
            errors.add("email", m);
            String::new()
        }
    };
    if let Err(m) = new_password(password, &email) {
        errors.add("password", m);
    }
    if errors.is_empty() { Ok(email) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@x.com", "ann@x", "a b@x.com", "ann@x..com", "a@b@c.com", "ann@.com"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(new_password("short", "a@b.co").is_err());
        assert!(new_password("ann@example.com", "ann@example.com").is_err());
        assert!(new_password("a perfectly fine pass", "ann@example.com").is_ok());
        assert!(new_password(&"x".repeat(129), "").is_err());
    }

    #[test]
    fn team_names() {
        assert_eq!(team_name(" Acme ").unwrap(), "Acme");
        assert!(team_name("A").is_err());
        assert!(team_name(&"x".repeat(65)).is_err());
    }
}
