//! `/login` and `/logout`.
//!
//! Rules: one neutral message for every failure; an unknown email costs the
//! same argon2 work as a known one; failures are throttled per account and per
//! client address (429 with the retry time); the session id is renewed and the
//! CSRF token rotated at login; every outcome is audited.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::auth::{CurrentUser, request_actor, safe_next, take_flash};
use super::page::{redirect, render};
use super::session_store::keys;
use super::{State, csrf, format};
use crate::error::AppError;
use crate::service::audit::{self, Actor, Event};
use crate::service::{accounts, password, validate};
use crate::store::now;

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
    fn new(session: &Session, email: String, next: String, error: Option<String>) -> Result<Self, AppError> {
        Ok(Self {
            csrf: csrf::token(session)?,
            asset_v: super::assets::version(),
            email,
            next,
            error,
            info: take_flash(session),
        })
    }
}

const NEUTRAL: &str = "Incorrect email or password.";

pub async fn form(
    session: Session,
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
    render(StatusCode::OK, &LoginPage::new(&session, String::new(), next, None)?)
}

pub async fn submit(
    state: State,
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let LoginForm { email, password, next } = form.into_inner();
    let next = safe_next(next.as_deref());
    let email_key = email.trim().to_lowercase();
    let actor = request_actor(&req, &state);
    let ip_key = actor.ip.clone().unwrap_or_default();
    let at = now();
    if let Err(retry) = state.login_by_account.check(&email_key, at).and(state.login_by_ip.check(&ip_key, at)) {
        let message = format!("Too many failed attempts. Try again in {}.", format::duration(retry));
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, &LoginPage::new(&session, email, next, Some(message))?)?;
        res.headers_mut().insert(RETRY_AFTER, retry.into());
        return Ok(res);
    }
    let user = match validate::email(&email_key) {
        Ok(lookup) => state.db.run(move |conn| accounts::user_by_email(conn, &lookup)).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = web::block(move || match stored {
        Some(phc) => password::verify(&phc, &password),
        None => {
            password::verify_dummy(&password);
            false
        }
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;

    let Some(user) = user.filter(|_| ok) else {
        state.login_by_account.record_failure(&email_key, at);
        state.login_by_ip.record_failure(&ip_key, at);
        let attempted: String = email_key.chars().filter(|c| !c.is_control()).take(254).collect();
        record(&state, Actor { label: attempted.clone(), ..actor }, "login.failed", None, json!({"email": attempted}))
            .await?;
        return render(StatusCode::UNAUTHORIZED, &LoginPage::new(&session, email, next, Some(NEUTRAL.into()))?);
    };

    state.login_by_account.clear(&email_key);
    if user.has_totp() {
        // Half signed in: only /login/totp accepts this state, for 5 minutes.
        session.renew();
        let insert =
            |k: &str, v: serde_json::Value| session.insert(k, v).map_err(|e| AppError::Internal(e.to_string()));
        insert(keys::PENDING_USER_ID, json!(user.id))?;
        insert(keys::PENDING_AT, json!(at))?;
        insert(keys::PENDING_NEXT, json!(next))?;
        csrf::rotate(&session)?;
        return Ok(redirect("/login/totp"));
    }
    complete(&state, &session, actor, &user.id, &user.email, "password").await?;
    Ok(super::page::redirect_full(&req, &next))
}

/// Grants the session: new id, user, times, fresh CSRF token; audited.
pub async fn complete(
    state: &State,
    session: &Session,
    actor: Actor,
    user_id: &str,
    email: &str,
    method: &str,
) -> Result<(), AppError> {
    session.renew();
    for k in [keys::PENDING_USER_ID, keys::PENDING_AT, keys::PENDING_NEXT] {
        session.remove(k);
    }
    let sid = crate::service::crypto::random_base62(16).map_err(|e| AppError::Internal(e.to_string()))?;
    let insert = |k: &str, v: serde_json::Value| session.insert(k, v).map_err(|e| AppError::Internal(e.to_string()));
    insert(keys::USER_ID, json!(user_id))?;
    insert(keys::AUTH_AT, json!(now()))?;
    insert(keys::USER_AGENT, json!(actor.user_agent))?;
    insert(keys::IP, json!(actor.ip))?;
    insert(keys::SID, json!(sid))?;
    mark_issued(session)?;
    csrf::rotate(session)?;
    let actor = Actor { user_id: Some(user_id.to_owned()), label: email.to_owned(), ..actor };
    record(state, actor, "login.succeeded", Some(user_id.to_owned()), json!({"method": method})).await
}

/// Lets the session store persist this signed-in state: only the request that
/// signs a user in (or renews a live session) may create a signed-in row.
pub fn mark_issued(session: &Session) -> Result<(), AppError> {
    session.insert(keys::ISSUED, true).map_err(|e| AppError::Internal(e.to_string()))
}

/// Audits a login event under the user's team (if they have one).
pub async fn record(
    state: &State,
    actor: Actor,
    action: &'static str,
    user_id: Option<String>,
    details: serde_json::Value,
) -> Result<(), AppError> {
    let lookup_email = actor.label.clone();
    state
        .db
        .run(move |conn| {
            let user = match user_id {
                Some(id) => accounts::context(conn, &id)?,
                None => match accounts::user_by_email(conn, &lookup_email)? {
                    Some(u) => accounts::context(conn, &u.id)?,
                    None => None,
                },
            };
            let team_id = user.as_ref().and_then(|c| c.team.as_ref().map(|(t, _)| t.id.clone()));
            let target = user.as_ref().map(|c| c.user.id.clone());
            let mut event = Event::new(action).details(details);
            if let Some(t) = team_id.as_deref() {
                event = event.team(t);
            }
            if let Some(id) = target.as_deref() {
                event = event.object("user", id);
            }
            audit::record(conn, &actor, event)
        })
        .await?;
    Ok(())
}

pub async fn logout(state: State, user: Option<CurrentUser>, session: Session) -> Result<HttpResponse, AppError> {
    if let Some(user) = user {
        let team = user.ctx.team.as_ref().map(|(t, _)| t.id.clone());
        let actor = user.actor.clone();
        let uid = user.ctx.user.id.clone();
        state
            .db
            .run(move |conn| {
                let mut event = Event::new("logout").object("user", &uid);
                if let Some(t) = team.as_deref() {
                    event = event.team(t);
                }
                audit::record(conn, &actor, event)
            })
            .await?;
    }
    session.purge();
    Ok(redirect("/login"))
}
