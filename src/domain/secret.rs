//! Secrets in the clear and their keyed hashes, as two types.
//!
//! Rules: a [`PlainSecret`] exists only between its creation and the response
//! that shows it once; it has no `Display`, no `Serialize` and a redacted
//! `Debug`, so it cannot reach a log line, a JSON body or a row by mistake.
//! Only a [`SecretHash`] is stored or compared.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A credential in the clear: an API key, a client secret, a token.
pub struct PlainSecret(SecretString);

impl PlainSecret {
    pub fn new(secret: String) -> Self {
        Self(SecretString::from(secret))
    }

    /// The secret itself, for the one response that shows it or the hash.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainSecret(<redacted>)")
    }
}

impl Clone for PlainSecret {
    fn clone(&self) -> Self {
        Self::new(self.expose().to_owned())
    }
}

/// The keyed hash of a [`PlainSecret`]: what the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretHash(String);

impl SecretHash {
    /// Wraps a hash read from storage or computed by `crypto::Keys`.
    pub fn from_stored(hash: String) -> Self {
        Self(hash)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_secret_never_prints() {
        let s = PlainSecret::new("lk_live_supersecret".into());
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "lk_live_supersecret");
    }
}
