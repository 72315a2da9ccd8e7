//! Input rules shared by every form and endpoint.

use super::FieldErrors;

pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 128;

/// Lower-cased, trimmed email, or the reason it is not one.
///
/// A conservative addr-spec (RFC 5322 dot-atom, ASCII only): the local part of
/// letters, digits and ``.!#$%&'*+/=?^_`{|}~-``, with no leading, trailing or
/// double dot; the domain of letter-digit-hyphen labels with at least one dot.
/// Quoted local parts, comments and address literals are refused.
pub fn email(raw: &str) -> Result<String, &'static str> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("Enter an email address.");
    }
    let Some((local, domain)) = email.split_once('@') else { return Err("Enter a valid email address.") };
    if email.len() > 254 || !local_part_ok(local) || !domain_ok(domain) {
        return Err("Enter a valid email address.");
    }
    Ok(email)
}

fn local_part_ok(local: &str) -> bool {
    const SPECIALS: &str = ".!#$%&'*+/=?^_`{|}~-";
    (1..=64).contains(&local.len())
        && local.chars().all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
}

fn domain_ok(domain: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    domain.len() <= 253 && domain.contains('.') && domain.split('.').all(label_ok)
}

/// Unicode format characters (general category Cf): bidirectional overrides
/// and isolates, zero-width characters, the byte-order mark, tags. They change
/// how a name is displayed without being seen, so names refuse them.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Characters a text must not carry: control characters (NUL included),
/// format characters, and the line and paragraph separators U+2028/U+2029.
fn is_hidden(c: char) -> bool {
    c.is_control() || is_format_char(c) || is_blank_filler(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Characters that display as nothing or as a blank without being space:
/// Hangul fillers, the combining grapheme joiner, the Braille blank, the
/// other default-ignorable code points, private use code points and
/// noncharacters.
fn is_blank_filler(c: char) -> bool {
    let n = c as u32;
    matches!(c, '\u{34F}' | '\u{115F}' | '\u{1160}' | '\u{2800}' | '\u{3164}' | '\u{FFA0}')
        // The rest of Unicode's Default_Ignorable_Code_Point set.
        || matches!(c, '\u{17B4}'..='\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{2065}' | '\u{FFF0}'..='\u{FFF8}')
        || (0xE0000..=0xE0FFF).contains(&n)
        || (0xE000..=0xF8FF).contains(&n)
        || n >= 0xF0000
        || (0xFDD0..=0xFDEF).contains(&n)
        || n & 0xFFFE == 0xFFFE
}

/// Combining marks: a name must not start with one (it would attach to
/// whatever is printed before it).
fn is_combining(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Variation selectors: harmless in text (emoji use them), but a name made
/// of them looks like another name.
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// A name (of a key, an app, a team…): trimmed, 1 to `max` characters, with
/// no control characters (NUL included), no format characters and no line or
/// paragraph separators.
pub fn name(raw: &str, max: usize) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Enter a name.".into());
    }
    if name.chars().count() > max {
        return Err(format!("Use at most {max} characters."));
    }
    if name.chars().any(|c| is_hidden(c) || is_variation_selector(c)) || name.chars().next().is_some_and(is_combining) {
        return Err("Remove the control and invisible formatting characters.".into());
    }
    Ok(name.to_owned())
}

/// Free text (a description, a reason): trimmed, at most `max` characters;
/// line breaks are kept, every other control or format character (NUL,
/// bidirectional overrides, zero-width characters…) is refused.
pub fn text(raw: &str, max: usize) -> Result<String, String> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(format!("Use at most {max} characters."));
    }
    if text.chars().any(|c| c != '\n' && c != '\r' && is_hidden(c)) {
        return Err("Remove the control and invisible formatting characters.".into());
    }
    Ok(text.to_owned())
}

/// A one-line search or filter field: trimmed, at most `max` characters, no
/// control or format characters.
pub fn search(raw: &str, max: usize) -> Result<String, String> {
    let q = raw.trim();
    if q.chars().count() > max || q.chars().any(is_hidden) {
        return Err(format!("Use at most {max} characters, without control or formatting characters."));
    }
    Ok(q.to_owned())
}

/// Where something was found (a leak report's `url`): empty, or an absolute
/// http(s) URL of at most `max` characters, stored as the parser writes it.
pub fn source_url(raw: &str, max: usize) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let refused = "Use an http:// or https:// URL of at most 2000 characters.";
    if raw.chars().count() > max || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refused);
    }
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u.as_str().to_owned()),
        _ => Err(refused),
    }
}

/// An optional https URL (a logo, a homepage): empty, or an absolute https URL
/// without user name or password, stored as the parser writes it.
pub fn https_url(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let refused = "Use an https:// URL (at most 500 characters).";
    if raw.len() > 500 || !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains('\\') {
        return Err(refused);
    }
    match url::Url::parse(raw) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() && u.username().is_empty() && u.password().is_none() => {
            Ok(u.as_str().to_owned())
        }
        _ => Err(refused),
    }
}

/// Whether an OAuth `client_id` is well-formed (checked before any lookup).
pub fn client_id(raw: &str) -> bool {
    (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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

/// A trimmed team name of 2–64 characters (a [`name`]).
pub fn team_name(raw: &str) -> Result<String, String> {
    let name = name(raw, 64)?;
    if name.chars().count() < 2 {
        return Err("Use at least 2 characters.".into());
    }
    Ok(name)
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
        assert_eq!(email("o'brien+tag@mail.example.co").unwrap(), "o'brien+tag@mail.example.co");
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.com",
            "ann@x",
            "a b@x.com",
            "ann@x..com",
            "a@b@c.com",
            "ann@.com",
            "\"><svg onload=alert(1)>@x.test",
            "<script>@x.test",
            "ann@x.test>",
            "\"ann\"@x.test",
            ".ann@x.test",
            "ann.@x.test",
            "a..nn@x.test",
            "ann@-x.test",
            "ann@x-.test",
            "ann@[127.0.0.1]",
            "ann@x_y.test",
            "ann\0@x.test",
            "ann\r\n@x.test",
            "ann@x.test\u{202e}",
            "anné@x.test",
            "ann(comment)@x.test",
            "ann,bob@x.test",
            "ann;bob@x.test",
        ] {
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
        for bad in ["Ac\0me", "Ac\u{202e}me", "Ac\u{200b}me", "\u{feff}Acme", "Ac\u{2066}me", "Ac\r\nme"] {
            assert!(team_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_texts_urls_and_client_ids() {
        assert_eq!(name(" CI deploy ", 100).unwrap(), "CI deploy");
        assert_eq!(name("Café 🚀", 100).unwrap(), "Café 🚀");
        for bad in ["", "  ", "a\0b", "a\tb", "a\u{85}b", "evil\u{202e}txt.exe", "a\u{2069}", "a\u{e0041}"] {
            assert!(name(bad, 100).is_err(), "{bad:?}");
        }
        assert!(name(&"x".repeat(101), 100).is_err());
        assert_eq!(text("line one\nline two", 500).unwrap(), "line one\nline two");
        assert!(text("a\0b", 500).is_err() && text("a\u{1b}[31m", 500).is_err());
        assert_eq!(https_url("").unwrap(), "");
        assert_eq!(https_url("https://a.example").unwrap(), "https://a.example/");
        for bad in
            ["http://a.example/", "javascript:alert(1)", "https://u@a.example/", "https://a.example/\0", "https://a b/"]
        {
            assert!(https_url(bad).is_err(), "{bad:?}");
        }
        assert!(client_id("lkc_abcDEF123"));
        assert!(!client_id("lkc_\0") && !client_id("") && !client_id("lkc_\u{202e}") && !client_id(&"a".repeat(65)));
        assert!(search("acme", 200).is_ok() && search("ac\0me", 200).is_err());
    }
}
