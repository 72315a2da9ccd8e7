//! What the token and revocation endpoints answer when they refuse (RFC 6749
//! §5.2, RFC 8628 `slow_down`).
//!
//! Rules: a refusal names an [`OAuthErrorCode`] and a description the client
//! may read; a failure of ours is `server_error` with a neutral description and
//! keeps its cause for the log, never for the client.

use crate::domain::OAuthErrorCode;
use crate::service::Error;

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    pub description: String,
    /// Why a `server_error` (or `temporarily_unavailable`: the database out of
    /// reach) happened, for the log.
    cause: Option<anyhow::Error>,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { error, description: description.into(), cause: None }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client() -> Self {
        Self::new(OAuthErrorCode::InvalidClient, "Client authentication failed.")
    }

    /// The cause of a `server_error`, for the log line of the request.
    pub fn cause(&self) -> Option<&anyhow::Error> {
        self.cause.as_ref()
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        let cause = match e {
            Error::Internal(cause) => cause,
            other => anyhow::Error::new(other),
        };
        let refusal = if crate::service::database_unreachable(&cause) {
            Self::new(OAuthErrorCode::TemporarilyUnavailable, "The service is briefly unavailable; try again shortly.")
        } else {
            Self::new(OAuthErrorCode::ServerError, "Something went wrong.")
        };
        Self { cause: Some(cause), ..refusal }
    }
}

impl From<diesel::result::Error> for OAuthError {
    fn from(e: diesel::result::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

/// Why the token or revocation endpoint issued nothing.
#[derive(Debug)]
pub enum TokenError {
    Refused(OAuthError),
    /// Too many failures, or too many tokens: wait `retry_after` seconds.
    SlowDown {
        retry_after: i64,
        description: &'static str,
    },
}

impl From<OAuthError> for TokenError {
    fn from(e: OAuthError) -> Self {
        Self::Refused(e)
    }
}
