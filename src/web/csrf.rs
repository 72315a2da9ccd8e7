//! CSRF protection for every state-changing request: a per-session token that
//! must come back in the `csrf_token` form field or the `X-CSRF-Token` header.
//! A missing or wrong token gets 403 before any handler runs, so nothing changes.
//!
//! Exempt: the OAuth back-channel endpoints (client-authenticated, no cookies),
//! `/api/` (credential-authenticated; session use there demands the header
//! in the API's own extractor), the read-only endpoints for programs
//! (`/auth/verify`, the OAuth metadata), and the one-click unsubscribe of an
//! email (RFC 8058: a mail client posts it without cookies; its signed token
//! is the authority, and all it can do is turn one user's reminders off).

use actix_session::SessionExt;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::Bytes;

use super::session::TypedSession;
use crate::error::AppError;
use crate::service::crypto;

pub const HEADER: &str = "X-CSRF-Token";
pub const FIELD: &str = "csrf_token";
const EXEMPT_PREFIXES: &[&str] = &[
    "/api/",
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    // Read-only, for programs: no handler there changes anything (another
    // method ends at routing's 405).
    "/auth/verify",
    "/.well-known/oauth-authorization-server",
    "/email/unsubscribe",
];

/// The session's token, created on first use.
pub fn token(session: &TypedSession) -> Result<String, AppError> {
    match session.csrf_token()? {
        Some(t) => Ok(t),
        None => rotate(session),
    }
}

/// A fresh token (at login, so a token seen before login is worthless after).
pub fn rotate(session: &TypedSession) -> Result<String, AppError> {
    let t = crypto::random_base62(32).map_err(|e| AppError::internal(e, "drawing random bytes"))?;
    session.set_csrf_token(&t)?;
    Ok(t)
}

pub async fn verify(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Every route names its method, and none takes one but these four
    // for a change: another method (TRACE, a made-up one) ends at routing's
    // 404 or 405 without reaching a handler, so it is let through to hear it.
    let changing = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let safe = !changing;
    let exempt = EXEMPT_PREFIXES.iter().any(|p| req.path().starts_with(p));
    let session_api = req.path().starts_with("/api/") && !has_credential(&req);
    if safe || (exempt && !session_api) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    // The whole body first: the handler then checks that the session still
    // lives, so a request held open on a slow body cannot act for a session
    // ended meanwhile.
    let body = match req.extract::<Bytes>().await {
        Ok(body) => body,
        Err(e) => return Ok(req.error_response(e)),
    };
    req.set_payload(body.clone().into());
    if exempt {
        // Session use of the API checks its own CSRF header.
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    match check(&req, &body) {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        Err(e) => Ok(req.error_response(e)),
    }
}

/// A state-changing form or request: UTF-8 (a form), and carrying the
/// session's token in the header or the form field.
fn check(req: &ServiceRequest, body: &Bytes) -> Result<(), AppError> {
    if is_form(req) && !form_is_utf8(body) {
        // Refused rather than stored with replacement characters.
        return Err(AppError::BadRequest("The form is not valid UTF-8.".into()));
    }
    let expected = TypedSession::new(req.get_session()).csrf_token()?;
    let header = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let presented = header.or_else(|| form_field(req, body));
    match (expected, presented) {
        (Some(e), Some(p)) if crypto::ct_eq(&e, &p) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}

/// Whether the request presents an API credential (not a session).
fn has_credential(req: &ServiceRequest) -> bool {
    req.headers().contains_key("X-API-Key") || req.headers().contains_key(actix_web::http::header::AUTHORIZATION)
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// Whether every name and value of a urlencoded body decodes to UTF-8 (the
/// form parser would otherwise replace bad sequences silently).
fn form_is_utf8(body: &[u8]) -> bool {
    body.split(|b| *b == b'&').all(|pair| percent_encoding::percent_decode(pair).decode_utf8().is_ok())
}

/// The token in a urlencoded body.
fn form_field(req: &ServiceRequest, body: &Bytes) -> Option<String> {
    if !is_form(req) {
        return None;
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == FIELD).map(|(_, v)| v))
}
