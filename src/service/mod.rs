//! The rules of the product, in plain Rust: no actix types here. Every function
//! takes a `&mut DbConn` (run on the blocking pool by the caller) or no database.

pub mod accounts;
pub mod attempts;
pub mod audit;
pub mod audit_gate;
pub mod changes;
pub mod clock;
pub mod cluster;
pub mod credentials;
pub mod crypto;
pub mod email;
pub mod forwarded;
pub mod hashing;
pub mod health;
pub mod keys;
pub mod login;
pub mod lru;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod password;
pub mod policy;
pub mod principal;
pub mod ratelimit;
pub mod redirect_uri;
pub mod reminders;
pub mod rotation;
pub mod safe_redirect;
pub mod security;
pub mod support;
pub mod totp;
pub mod usage;
pub mod validate;
pub mod verify;
pub mod webhooks;

use std::collections::BTreeMap;

use crate::store::StoreError;

/// Field name → message, for forms and the `validation_failed` envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// `Ok(())` when no field failed, else the errors.
    pub fn into_result(self) -> Result<(), Error> {
        if self.is_empty() { Ok(()) } else { Err(Error::Invalid(self)) }
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("invalid input")]
    Invalid(FieldErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// Every password hashing thread stayed taken for the whole queue wait:
    /// nothing was done, try again in `retry_after` seconds.
    #[error("too many passwords are being checked")]
    Busy { retry_after: i64 },
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

impl Error {
    /// An unexpected failure, with what was being done.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static, doing: &'static str) -> Self {
        Self::Internal(anyhow::Error::new(cause).context(doing))
    }
}

/// Whether a failure comes from the database being out of reach (anywhere in
/// its cause chain): answered with 503 and a `Retry-After`, never a 500.
pub fn database_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<StoreError>().is_some_and(StoreError::is_unavailable)
            || matches!(cause.downcast_ref::<Error>(), Some(Error::Store(s)) if s.is_unavailable())
    })
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
