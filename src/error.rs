//! One error type for every handler. It renders as an HTML page, an htmx toast
//! or the JSON envelope of DESIGN.md, chosen by `web::middleware::render_errors`
//! from what the request asked for. Users see a neutral message; the log gets
//! the cause.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::service::{self, FieldErrors};
use crate::store::StoreError;

/// What a person is told when every password hashing thread is taken.
pub const BUSY: &str = "Too many sign-ins are being checked right now; try again in a moment.";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// The path exists, but not with this method; `allow` lists its methods.
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("login required")]
    LoginRequired,
    #[error("two-factor enrolment required by the team")]
    TotpEnrolmentRequired,
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("missing or invalid CSRF token")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("too many requests")]
    TooManyRequests { retry_after: i64 },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("insecure connection")]
    InsecureConnection,
    /// The password hashing threads are all taken (see `service::hashing`).
    #[error("password checks saturated")]
    Busy { retry_after: i64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The `code` of the JSON error envelope, one per kind of refusal; each
/// always comes with the same HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request could not be read (malformed JSON, wrong content type).
    BadRequest,
    /// 401: the credential is missing, malformed, unknown, expired or revoked (one answer for all).
    Unauthorized,
    /// 403: the credential lacks the scope, or the address is not allowed.
    Forbidden,
    /// 403: `require_https` is on and the request did not arrive over TLS.
    InsecureConnection,
    /// 404: no such object (objects of another team included).
    NotFound,
    /// 405: the path does not take this method; `Allow` lists those it takes.
    MethodNotAllowed,
    /// 413: the body is over the endpoint's limit.
    PayloadTooLarge,
    /// 422: some fields are not valid; `fields` names each.
    ValidationFailed,
    /// 429: the plan's rate limit; `retry_after` seconds, also in `Retry-After`.
    RateLimitExceeded,
    /// 500: a fault on the server's side (no detail).
    Internal,
    /// 503: the database is briefly unreachable or the server is saturated; `Retry-After`.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status that always carries this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::InsecureConnection => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl AppError {
    /// The code of the JSON envelope.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::LoginRequired | Self::Unauthorized => ErrorCode::Unauthorized,
            Self::Forbidden(_) | Self::Csrf | Self::TotpEnrolmentRequired => ErrorCode::Forbidden,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Validation(_) => ErrorCode::ValidationFailed,
            Self::TooManyRequests { .. } => ErrorCode::RateLimitExceeded,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::InsecureConnection => ErrorCode::InsecureConnection,
            Self::Busy { .. } => ErrorCode::Unavailable,
            Self::Internal(_) if self.is_unavailable() => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What a person or client is told; never the internal cause.
    pub fn public_message(&self) -> String {
        match self {
            Self::NotFound => "The page or object you asked for does not exist.".into(),
            Self::MethodNotAllowed { allow } => format!("This address does not take that method; it takes {allow}."),
            Self::LoginRequired => "Sign in to continue.".into(),
            Self::TotpEnrolmentRequired => "Your team requires two-factor authentication: set it up first.".into(),
            Self::Unauthorized => "A valid credential is required.".into(),
            Self::Forbidden(m) => m.clone(),
            Self::Csrf => {
                "Your form was missing its security token or it had expired. Reload the page and try again.".into()
            }
            Self::BadRequest(m) => m.clone(),
            Self::Validation(_) => "Some fields are not valid.".into(),
            Self::TooManyRequests { retry_after } => {
                format!("Too many attempts. Try again in {}.", crate::web::format::duration(*retry_after))
            }
            Self::PayloadTooLarge => "The request body is too large.".into(),
            Self::InsecureConnection => "This API must be called over HTTPS.".into(),
            Self::Busy { .. } => BUSY.into(),
            Self::Internal(_) if self.is_unavailable() => {
                "The service is briefly unavailable. Please try again in a few seconds.".into()
            }
            Self::Internal(_) => "Something went wrong on our side. Please try again.".into(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        // Replaced by the error-rendering middleware; this is the fallback body.
        HttpResponse::build(self.status_code()).content_type("text/plain; charset=utf-8").body(self.public_message())
    }
}

impl AppError {
    /// An unexpected failure, with what was being done.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static, doing: &'static str) -> Self {
        Self::Internal(anyhow::Error::new(cause).context(doing))
    }

    /// Whether the failure is the database being out of reach (no connection
    /// could be had, or it closed under the query): DESIGN.md answers that
    /// with `503 unavailable` and a `Retry-After`, never a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Internal(e) if service::database_unreachable(e))
    }

    /// The whole cause chain, for the one log line of a failed request.
    pub fn chain(&self) -> String {
        match self {
            Self::Internal(e) => format!("{e:#}"),
            other => other.to_string(),
        }
    }
}

impl From<service::Error> for AppError {
    fn from(e: service::Error) -> Self {
        match e {
            service::Error::NotFound => Self::NotFound,
            service::Error::Forbidden(m) => Self::Forbidden(m.to_owned()),
            service::Error::Invalid(fields) => Self::Validation(fields),
            service::Error::Store(e) => Self::Internal(e.into()),
            service::Error::Internal(e) => Self::Internal(e),
            service::Error::Busy { retry_after } => Self::Busy { retry_after },
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("rendering a template"))
    }
}
