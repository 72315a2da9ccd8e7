//! `/login/totp`: the second step for users with 2FA. The half-signed-in state
//! grants nothing but this page, and only while `service::login` holds it
//! fresh; the code's rules (throttle, audit) are the service's.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{request_actor, safe_next};
use super::login::{sign_in, with_retry_after};
use super::page::{redirect, redirect_full, render};
use super::session::{PendingLogin, TypedSession};
use super::{State, csrf, format};
use crate::error::AppError;
use crate::service::login::SecondFactorOutcome;
use crate::service::totp::Factor;

#[derive(Template)]
#[template(path = "pages/login_totp.html")]
struct TotpPage {
    csrf: String,
    asset_v: &'static str,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: String,
}

/// The sign-in waiting for its second factor, if it is still fresh.
fn pending(state: &State, session: &TypedSession) -> Result<Option<PendingLogin>, AppError> {
    Ok(session.pending_login()?.filter(|p| state.login_service().pending_is_fresh(p.at)))
}

fn expired(session: &TypedSession) -> HttpResponse {
    session.purge();
    redirect("/login")
}

fn page(session: &TypedSession, status: StatusCode, error: Option<String>) -> Result<HttpResponse, AppError> {
    render(status, &TotpPage { csrf: csrf::token(session)?, asset_v: super::assets::version(), error })
}

pub async fn form(state: State, session: TypedSession) -> Result<HttpResponse, AppError> {
    if pending(&state, &session)?.is_none() {
        return Ok(expired(&session));
    }
    page(&session, StatusCode::OK, None)
}

pub async fn submit(
    state: State,
    session: TypedSession,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let Some(pending) = pending(&state, &session)? else { return Ok(expired(&session)) };
    let actor = request_actor(&req, &state);
    let code = form.into_inner().code;
    match state.login_service().second_factor(&actor, &pending.user_id, code).await? {
        SecondFactorOutcome::Granted { granted, factor } => {
            let to = redirect_full(&req, &safe_next(Some(&pending.next)));
            let res = super::device::signed_in(&state, &req, &actor, &granted.user_id, to).await?;
            sign_in(&session, &actor, &granted)?;
            if factor == Factor::RecoveryCode {
                session.flash("You signed in with a recovery code; it cannot be used again.")?;
            }
            Ok(res)
        }
        SecondFactorOutcome::Expired => Ok(expired(&session)),
        SecondFactorOutcome::Invalid(message) => page(&session, StatusCode::UNPROCESSABLE_ENTITY, message),
        SecondFactorOutcome::Wrong(message) => page(&session, StatusCode::UNAUTHORIZED, Some(message.to_owned())),
        SecondFactorOutcome::Throttled { retry_after } => {
            let message = format!("Too many wrong codes. Try again in {}.", format::duration(retry_after));
            with_retry_after(page(&session, StatusCode::TOO_MANY_REQUESTS, Some(message))?, retry_after)
        }
    }
}
