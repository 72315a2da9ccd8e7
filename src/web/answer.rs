//! The answers a form's handler gives once the service has spoken: done
//! (a flash, then Post/Redirect/Get), refused next to its fields (the page
//! again, 422, with the page's address in the bar), or refused with no field
//! to show it next to (400 with the first message).
//!
//! Rules: these shape the answer only; what is allowed and what is valid is
//! the service's (the policy's) decision, made before any of them is called.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use askama::Template;

use super::auth::flash;
use super::htmx::{HxRequest, push_url};
use super::page::{redirect, render};
use super::session::TypedSession;
use crate::error::AppError;
use crate::service::{Error, FieldErrors};

/// Done: `said` as the next page's flash, and a redirect to `to`.
pub fn flashed(session: &TypedSession, said: &str, to: &str) -> HttpResponse {
    flash(session, said);
    redirect(to)
}

/// A service's answer to a form, split: `Ok(Err(errors))` is a refusal to
/// show next to the form's fields; any other error is the request's.
pub fn refusable<T>(result: Result<T, Error>) -> Result<Result<T, FieldErrors>, AppError> {
    match result {
        Ok(done) => Ok(Ok(done)),
        Err(Error::Invalid(errors)) => Ok(Err(errors)),
        Err(e) => Err(e.into()),
    }
}

/// A form's page again with its errors (422); with htmx, the address bar
/// shows `url` (the page), not the POST-only URL.
pub fn again<T: Template>(page: &T, hx: HxRequest, url: &str) -> Result<HttpResponse, AppError> {
    Ok(push_url(render(StatusCode::UNPROCESSABLE_ENTITY, page)?, hx, url))
}

/// A refusal of a form that has no field to show it next to: the first message.
pub fn bad_request(e: Error) -> AppError {
    match e {
        Error::Invalid(errors) => AppError::BadRequest(errors.0.values().next().cloned().unwrap_or_default()),
        other => other.into(),
    }
}
