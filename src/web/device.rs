//! The device cookie: a long-lived, HttpOnly random value that tells a
//! browser apart from others, so that a sign-in from a new one can be
//! announced (the rules are `service::email::devices`). It grants nothing:
//! the session cookie signs in; this one only names the browser.

use actix_web::cookie::{Cookie, SameSite, time::Duration};
use actix_web::{HttpRequest, HttpResponse};

use super::State;
use crate::domain::UserId;
use crate::error::AppError;
use crate::service::audit::Actor;

pub const COOKIE: &str = "latchkey_device";
/// How long a browser keeps it (browsers cap cookies at 400 days).
const MAX_AGE_DAYS: i64 = 400;

/// After a completed sign-in of `user_id`: records the device, and sets its
/// cookie (again, renewing its lifetime) on `response`.
pub async fn signed_in(
    state: &State,
    req: &HttpRequest,
    actor: &Actor,
    user_id: &UserId,
    mut response: HttpResponse,
) -> Result<HttpResponse, AppError> {
    let presented = req.cookie(COOKIE).map(|c| c.value().to_owned());
    let device = state.login_service().device(actor, user_id, presented.as_deref()).await?;
    let cookie = Cookie::build(COOKIE, device.expose().to_owned())
        .path("/")
        .http_only(true)
        .secure(state.config.is_https())
        .same_site(SameSite::Lax)
        .max_age(Duration::days(MAX_AGE_DAYS))
        .finish();
    response.add_cookie(&cookie).map_err(|e| AppError::internal(e, "setting the device cookie"))?;
    Ok(response)
}
