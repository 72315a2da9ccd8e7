//! `/login` and `/logout`.
//!
//! Rules: one neutral message for every failure (the rules of signing in are
//! `service::login`'s); the session id is renewed and the CSRF token rotated
//! at login; a password accepted for an account with 2FA half signs in, which
//! only `/login/totp` accepts.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{CurrentUser, client_ip, request_actor, safe_next};
use super::page::{redirect, redirect_full, render};
use super::session::{PendingLogin, SignIn, TypedSession};
use super::{State, csrf, format};
use crate::error::{AppError, BUSY};
use crate::service::audit::Actor;
use crate::service::login::{Granted, PasswordOutcome};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    csrf: String,
    asset_v: &'static str,
    email: String,
    next: String,
    error: Option<String>,
    info: Option<String>,
}

impl LoginPage {
    fn new(session: &TypedSession, email: String, next: String, error: Option<String>) -> Result<Self, AppError> {
        Ok(Self {
            csrf: csrf::token(session)?,
            asset_v: super::assets::version(),
            email,
            next,
            error,
            info: session.take_flash()?,
        })
    }
}

const NEUTRAL: &str = "Incorrect email or password.";

/// The session key of the email the sign-in page fills in once (after setup
/// or accepting an invite: the person just chose a password for it).
const PREFILL: &str = "login_email";

/// Fills in `email` on the next sign-in page this browser opens.
pub fn prefill_email(session: &TypedSession, email: &str) -> Result<(), AppError> {
    session.insert(PREFILL, email)
}

pub async fn form(
    session: TypedSession,
    user: Result<CurrentUser, AppError>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref());
    // The same check as every page: a signed-in user goes on; one whose team
    // requires 2FA goes to enrolment (never back and forth with `next`).
    match user {
        Ok(_) => return Ok(redirect(&next)),
        Err(AppError::TotpEnrolmentRequired) => return Ok(redirect(&super::auth::enrolment_path(Some(&next)))),
        Err(AppError::LoginRequired) => {}
        Err(e) => return Err(e),
    }
    let email = session.take::<String>(PREFILL)?.unwrap_or_default();
    render(StatusCode::OK, &LoginPage::new(&session, email, next, None)?)
}

pub async fn submit(
    state: State,
    session: TypedSession,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let LoginForm { email, password, next } = form.into_inner();
    let next = safe_next(next.as_deref());
    let actor = request_actor(&req, &state);
    let outcome = state.login_service().password(&actor, client_ip(&req, &state), &email, password).await?;
    let refused = |status, message| render(status, &LoginPage::new(&session, email, next.clone(), Some(message))?);
    match outcome {
        PasswordOutcome::Granted(granted) => {
            let to = redirect_full(&req, &next);
            let res = super::device::signed_in(&state, &req, &actor, &granted.user_id, to).await?;
            sign_in(&session, &actor, &granted)?;
            Ok(res)
        }
        PasswordOutcome::SecondFactor { user_id, at } => {
            session.begin_pending_login(&PendingLogin { user_id, at, next })?;
            csrf::rotate(&session)?;
            Ok(redirect("/login/totp"))
        }
        PasswordOutcome::Refused => refused(StatusCode::UNAUTHORIZED, NEUTRAL.into()),
        PasswordOutcome::Throttled { retry_after } => {
            let message = format!("Too many failed attempts. Try again in {}.", format::duration(retry_after));
            with_retry_after(refused(StatusCode::TOO_MANY_REQUESTS, message)?, retry_after)
        }
        PasswordOutcome::Busy { retry_after } => {
            with_retry_after(refused(StatusCode::SERVICE_UNAVAILABLE, BUSY.into())?, retry_after)
        }
    }
}

/// Grants the session: new id, user, times, fresh CSRF token.
pub fn sign_in(session: &TypedSession, actor: &Actor, granted: &Granted) -> Result<(), AppError> {
    let user_agent = actor.user_agent.clone();
    session.sign_in(&SignIn { user_id: granted.user_id.clone(), at: granted.at, user_agent, ip: actor.ip.clone() })?;
    csrf::rotate(session)?;
    Ok(())
}

/// A 429 (or 503) page tells when to come back.
pub fn with_retry_after(mut res: HttpResponse, retry_after: i64) -> Result<HttpResponse, AppError> {
    res.headers_mut().insert(RETRY_AFTER, retry_after.into());
    Ok(res)
}

/// `GET /logout` (a reload after signing out, a typed address): signing out
/// takes a POST with the CSRF token; this only goes to the start page.
pub async fn logout_reload() -> HttpResponse {
    super::page::redirect("/")
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LogoutForm {
    /// Where to go after signing in again (a same-site path), e.g. the OAuth
    /// request whose consent screen said "Not you?".
    next: Option<String>,
}

pub async fn logout(
    state: State,
    user: Option<CurrentUser>,
    session: TypedSession,
    form: Option<web::Form<LogoutForm>>,
) -> Result<HttpResponse, AppError> {
    if let Some(user) = user {
        state.login_service().logout(&user.actor, &user.ctx).await?;
    }
    session.purge();
    // A sign-out without a form body (a script with the CSRF header) is fine.
    match safe_next(form.as_ref().and_then(|f| f.next.as_deref())) {
        next if next == "/" => Ok(redirect("/login")),
        next => Ok(redirect(&format!("/login?next={}", super::auth::url_encode(&next)))),
    }
}
