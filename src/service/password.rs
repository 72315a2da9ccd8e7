//! Password hashing with argon2id at OWASP's parameters (19 MiB, t=2, p=1).
//!
//! Rules: hashing and checking are CPU-heavy and blocking: services call the
//! async [`hash_off_executor`] and [`check_off_executor`], which run them on
//! the blocking pool. An unknown account is checked against a dummy hash so
//! that the time taken does not reveal whether the email exists. A stored hash
//! that cannot be read is an internal error, never a wrong password.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::password_hash::Error as HashError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use super::{Error, Result};

/// A PHC string for a new password.
pub fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Whether `password` matches `phc`; a stored hash that cannot be read (or
/// checked) is an error.
pub fn verify(phc: &str, password: &str) -> Result<bool> {
    match Argon2::default().verify_password(password.as_bytes(), phc) {
        Ok(()) => Ok(true),
        Err(HashError::PasswordInvalid) => Ok(false),
        Err(e) => Err(Error::Internal(anyhow::anyhow!("checking a password against its stored hash: {e}"))),
    }
}

/// Spends the same work as [`verify`] for an account that does not exist.
pub fn verify_dummy(password: &str) -> Result<()> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    // An empty hash (hashing failed) is reported below, not verified.
    let phc = DUMMY.get_or_init(|| hash("latchkey-dummy-password").unwrap_or_default());
    if phc.is_empty() {
        return Err(Error::Internal(anyhow::anyhow!("the dummy password hash could not be made")));
    }
    verify(phc, password).map(|_| ())
}

/// [`hash`] on the blocking pool.
pub async fn hash_off_executor(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash(&password)).await.context("hashing a password")?
}

/// [`verify`] on the blocking pool; `None` (no such account) checks the dummy
/// hash and is never right.
pub async fn check_off_executor(phc: Option<String>, password: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&phc, &password),
        None => verify_dummy(&password).map(|()| false),
    })
    .await
    .context("checking a password")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse battery staple").unwrap());
        assert!(!verify(&phc, "wrong").unwrap());
    }

    #[test]
    fn a_stored_hash_that_cannot_be_read_is_an_error_not_a_wrong_password() {
        assert!(verify("not a hash", "x").is_err());
    }
}
