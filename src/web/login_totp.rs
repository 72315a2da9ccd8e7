//! `/login/totp`: the second step for users with 2FA. The half-signed-in state
//! lives 5 minutes and grants nothing but this page; failures are throttled per
//! account like passwords, the attempt reserved before the code is checked.

use crate::domain::AuditAction;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::auth::{flash, request_actor, safe_next};
use super::login::{complete, record};
use super::page::{redirect, render};
use super::session_store::keys;
use super::{State, csrf, format};
use crate::error::AppError;
use crate::service::audit::Actor;
use crate::service::totp::{self, Factor};
use crate::service::{Error, accounts};
use crate::store::now;

pub const PENDING_TTL_SECS: i64 = 5 * 60;

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

/// The user waiting for their second factor, if the state is fresh.
fn pending(session: &Session) -> Option<String> {
    let at = session.get::<i64>(keys::PENDING_AT).ok().flatten()?;
    if now() - at > PENDING_TTL_SECS {
        return None;
    }
    session.get::<String>(keys::PENDING_USER_ID).ok().flatten()
}

fn expired(session: &Session) -> HttpResponse {
    session.purge();
    redirect("/login")
}

fn page(session: &Session, status: StatusCode, error: Option<String>) -> Result<HttpResponse, AppError> {
    render(status, &TotpPage { csrf: csrf::token(session)?, asset_v: super::assets::version(), error })
}

pub async fn form(session: Session) -> Result<HttpResponse, AppError> {
    if pending(&session).is_none() {
        return Ok(expired(&session));
    }
    page(&session, StatusCode::OK, None)
}

pub async fn submit(
    state: State,
    session: Session,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let Some(user_id) = pending(&session) else { return Ok(expired(&session)) };
    let at = now();
    let throttle_key = format!("totp:{user_id}");
    let attempt = match state.login_by_account.reserve(&throttle_key, at) {
        Ok(attempt) => attempt,
        Err(retry) => {
            let message = format!("Too many wrong codes. Try again in {}.", format::duration(retry));
            let mut res = page(&session, StatusCode::TOO_MANY_REQUESTS, Some(message))?;
            res.headers_mut().insert(RETRY_AFTER, retry.into());
            return Ok(res);
        }
    };
    let lookup = user_id.clone();
    let found = state.db.run(move |conn| accounts::context(conn, &lookup)).await;
    let Some(ctx) = found.inspect_err(|_| state.login_by_account.release(&attempt))? else {
        state.login_by_account.release(&attempt);
        return Ok(expired(&session));
    };
    let actor = Actor { user_id: Some(user_id.clone()), label: ctx.user.email.clone(), ..request_actor(&req, &state) };
    let (keys, a, uid, code) = (state.keys.clone(), actor.clone(), user_id.clone(), form.into_inner().code);
    match state.db.run(move |conn| totp::verify(conn, &keys, &a, &uid, &code)).await {
        Ok(factor) => {
            state.login_by_account.clear(&throttle_key);
            let next = safe_next(session.get::<String>(keys::PENDING_NEXT).ok().flatten().as_deref());
            let method = if factor == Factor::Totp { "password+totp" } else { "password+recovery_code" };
            complete(&state, &session, actor, &user_id, &ctx.user.email, method).await?;
            if factor == Factor::RecoveryCode {
                flash(&session, "You signed in with a recovery code; it cannot be used again.");
            }
            Ok(super::page::redirect_full(&req, &next))
        }
        Err(Error::Invalid(fields)) => {
            state.login_by_account.release(&attempt);
            page(&session, StatusCode::UNPROCESSABLE_ENTITY, fields.get("code").map(str::to_owned))
        }
        Err(Error::Forbidden(message)) => {
            // The reserved attempt stays: a wrong code.
            record(&state, actor, AuditAction::LoginTotpFailed, Some(user_id), json!({})).await?;
            page(&session, StatusCode::UNAUTHORIZED, Some(message.to_owned()))
        }
        Err(e) => {
            state.login_by_account.release(&attempt);
            Err(e.into())
        }
    }
}
