//! `/login` and `/logout`.
//!
//! Rules: one neutral message for every failure; an unknown email costs the
//! same argon2 work as a known one; failures are throttled per account and per
//! client address (429 with the retry time), the attempt reserved before the
//! password is checked so concurrent guesses cannot race past the limit; the
//! session id is renewed and the CSRF token rotated at login; every outcome is
//! audited (failures for unknown accounts at most once a minute, then a count).

use crate::domain::AuditAction;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::auth::{CurrentUser, client_ip, request_actor, safe_next, take_flash};
use super::page::{redirect, render};
use super::session_store::keys;
use super::{State, csrf, format};
use crate::error::AppError;
use crate::service::attempts::{address_key, reserve_all};
use crate::service::audit::{self, Actor, Event};
use crate::service::audit_gate::{Admission, PendingEvent};
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
/// What `login.failed` records when the email field held something else.
const NOT_AN_EMAIL: &str = "(not an email)";

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
    let ip_key = address_key(client_ip(&req, &state));
    let at = now();
    let throttles = [(&state.login_by_account, email_key.as_str()), (&state.login_by_ip, ip_key.as_str())];
    let attempts = match reserve_all(&throttles, at) {
        Ok(attempts) => attempts,
        Err(retry) => {
            let message = format!("Too many failed attempts. Try again in {}.", format::duration(retry));
            let page = LoginPage::new(&session, email, next, Some(message))?;
            let mut res = render(StatusCode::TOO_MANY_REQUESTS, &page)?;
            res.headers_mut().insert(RETRY_AFTER, retry.into());
            return Ok(res);
        }
    };
    let checked = check_password(&state, &email_key, password).await;
    let (user, ok) = checked.inspect_err(|_| {
        for ((throttle, _), attempt) in throttles.iter().zip(&attempts) {
            throttle.release(attempt);
        }
    })?;

    let known = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        // The reserved attempts stay: they were failures.
        // Only a plausible email is kept: people type passwords into the email field.
        let attempted = validate::email(&email_key).unwrap_or_else(|_| NOT_AN_EMAIL.to_owned());
        let unknown =
            PendingEvent::new(AuditAction::LoginFailed, Actor { label: "unknown accounts".into(), ..Actor::default() });
        if known || state.audit_gate.admit("login.failed:unknown", &unknown, at) == Admission::Record {
            let actor = Actor { label: attempted.clone(), ..actor };
            record(&state, actor, AuditAction::LoginFailed, None, json!({"email": attempted})).await?;
        }
        return render(StatusCode::UNAUTHORIZED, &LoginPage::new(&session, email, next, Some(NEUTRAL.into()))?);
    };

    for ((throttle, _), attempt) in throttles.iter().zip(&attempts) {
        throttle.release(attempt);
    }
    state.login_by_account.clear(&email_key);
    if user.has_totp() {
        // Half signed in: only /login/totp accepts this state, for 5 minutes.
        session.renew();
        let insert = |k: &str, v: serde_json::Value| {
            session.insert(k, v).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))
        };
        insert(keys::PENDING_USER_ID, json!(user.id))?;
        insert(keys::PENDING_AT, json!(at))?;
        insert(keys::PENDING_NEXT, json!(next))?;
        csrf::rotate(&session)?;
        return Ok(redirect("/login/totp"));
    }
    complete(&state, &session, actor, &user.id, &user.email, "password").await?;
    Ok(super::page::redirect_full(&req, &next))
}

/// The account behind `email_key` and whether `password` is its password (an
/// unknown account costs the same argon2 work).
async fn check_password(
    state: &State,
    email_key: &str,
    password: String,
) -> Result<(Option<crate::store::models::User>, bool), AppError> {
    let user = match validate::email(email_key) {
        Ok(lookup) => state.db.run(move |conn| accounts::user_by_email(conn, &lookup)).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = password::check_off_executor(stored, password).await?;
    Ok((user, ok))
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
    let sid = crate::service::crypto::random_base62(16).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let insert =
        |k: &str, v: serde_json::Value| session.insert(k, v).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")));
    insert(keys::USER_ID, json!(user_id))?;
    insert(keys::AUTH_AT, json!(now()))?;
    insert(keys::USER_AGENT, json!(actor.user_agent))?;
    insert(keys::IP, json!(actor.ip))?;
    insert(keys::SID, json!(sid))?;
    mark_issued(session)?;
    csrf::rotate(session)?;
    let actor = Actor { user_id: Some(user_id.to_owned()), label: email.to_owned(), ..actor };
    record(state, actor, AuditAction::LoginSucceeded, Some(user_id.to_owned()), json!({"method": method})).await
}

/// Lets the session store persist this signed-in state: only the request that
/// signs a user in (or renews a live session) may create a signed-in row.
pub fn mark_issued(session: &Session) -> Result<(), AppError> {
    session.insert(keys::ISSUED, true).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))
}

/// Audits a login event under the user's team (if they have one).
pub async fn record(
    state: &State,
    actor: Actor,
    action: AuditAction,
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
                let mut event = Event::new(AuditAction::Logout).object("user", &uid);
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
