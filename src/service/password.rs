//! Password hashing with argon2id at OWASP's parameters (19 MiB, t=2, p=1).
//!
//! Rules: these functions are CPU-heavy and blocking; callers run them on the
//! blocking pool. An unknown account is checked against a dummy hash so that
//! the time taken does not reveal whether the email exists.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use super::{Error, Result};

/// A PHC string for a new password.
pub fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Whether `password` matches `phc`; a malformed stored hash never matches.
pub fn verify(phc: &str, password: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// Spends the same work as [`verify`] for an account that does not exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("latchkey-dummy-password").unwrap_or_default());
    let _ = verify(phc, password);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse battery staple"));
        assert!(!verify(&phc, "wrong"));
        assert!(!verify("not a hash", "x"));
    }
}
