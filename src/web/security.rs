//! `/settings/security`: two-factor enrolment and recovery codes, password
//! change, sessions, and (for owners) the team's two-factor policy.
//!
//! Rules: the TOTP secret is shown only while enrolment is unconfirmed and
//! recovery codes only in the response that made them (`no-store`); starting
//! enrolment needs the password; turning 2FA off needs the password and a
//! current code. Every password re-check here is throttled per user like
//! sign-in: the attempt is reserved before the check, a wrong password (or
//! code) keeps it, anything else gives it back.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use base64::Engine;
use serde::Deserialize;

use super::auth::{CurrentUser, flash};
use super::page::{Layout, Nav, redirect, render};
use super::session_store::keys;
use super::{State, format};
use crate::error::AppError;
use crate::service::accounts::Role;
use crate::service::attempts::Attempt;
use crate::service::{Error, FieldErrors, password, security, totp, validate};
use crate::store::now;

pub struct SessionLine {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub signed_in: String,
    pub last_seen: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "pages/security.html")]
struct SecurityPage {
    layout: Layout,
    required: bool,
    totp_on: bool,
    enabled_at: String,
    pending: Option<(String, String)>,
    recovery_codes: Option<Vec<String>>,
    recovery_download: String,
    remaining: i64,
    sessions: Vec<SessionLine>,
    apps: Vec<(String, String, Vec<String>, String)>,
    team_apps: Vec<(String, String, Vec<String>, String)>,
    is_owner: bool,
    team_requires: bool,
    errors: FieldErrors,
    /// After a required enrolment: where the person was going.
    continue_to: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ShowQuery {
    required: Option<String>,
    next: Option<String>,
}

fn current_sid(user: &CurrentUser) -> String {
    user.session.get::<String>(keys::SID).ok().flatten().unwrap_or_default()
}

async fn page(state: &State, user: &CurrentUser) -> Result<SecurityPage, AppError> {
    let (uid, sid) = (user.ctx.user.id.clone(), current_sid(user));
    let team = user.ctx.team.as_ref().map(|(t, r)| (t.id.clone(), *r));
    let (remaining, sessions, apps, team_apps) = state
        .db
        .run(move |conn| {
            let team_apps = match team {
                Some((t, r)) => crate::service::oauth::team_authorized_apps(conn, &t, r)?,
                None => Vec::new(),
            };
            Ok::<_, Error>((
                totp::remaining_codes(conn, &uid)?,
                security::sessions(conn, &uid, &sid)?,
                crate::service::oauth::authorized_apps(conn, &uid)?,
                team_apps,
            ))
        })
        .await?;
    let u = &user.ctx.user;
    let pending = match totp::pending(&state.keys, u).filter(|_| !u.has_totp()) {
        Some(key) => Some((key.clone(), totp::qr_data_url(&totp::otpauth_uri(&u.email, &key))?)),
        None => None,
    };
    let at = now();
    Ok(SecurityPage {
        layout: Layout::new(user, Nav::Security)?,
        required: false,
        totp_on: u.has_totp(),
        enabled_at: u.totp_enabled_at.map(format::datetime).unwrap_or_default(),
        pending,
        recovery_codes: None,
        recovery_download: String::new(),
        remaining,
        sessions: sessions
            .into_iter()
            .map(|s| SessionLine {
                id: s.id,
                device: s.user_agent,
                ip: s.ip,
                signed_in: format::datetime(s.created_at),
                last_seen: format::relative(s.last_seen_at, at),
                current: s.current,
            })
            .collect(),
        apps: apps
            .into_iter()
            .map(|(consent, client)| {
                (
                    client.id,
                    client.name,
                    crate::service::oauth::scopes_of(&consent.scopes),
                    format::datetime(consent.created_at),
                )
            })
            .collect(),
        team_apps: team_apps
            .into_iter()
            .map(|(email, consent, client)| {
                (
                    email,
                    client.name,
                    crate::service::oauth::scopes_of(&consent.scopes),
                    format::datetime(consent.created_at),
                )
            })
            .collect(),
        is_owner: user.ctx.team.as_ref().is_some_and(|(_, r)| *r == Role::Owner),
        team_requires: user.ctx.team.as_ref().is_some_and(|(t, _)| t.require_totp),
        errors: FieldErrors::default(),
        continue_to: None,
    })
}

pub async fn show(state: State, user: CurrentUser, query: web::Query<ShowQuery>) -> Result<HttpResponse, AppError> {
    let mut view = page(&state, &user).await?;
    view.required = query.required.is_some() && !view.totp_on;
    if view.required
        && let Some(next) = query.next.as_deref()
    {
        // Kept for after enrolment: the confirm page offers to continue there.
        let next = super::auth::safe_next(Some(next));
        user.session.insert(keys::ENROLMENT_NEXT, next).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    }
    render(StatusCode::OK, &view)
}

/// Reloads the user after a change, then renders the page.
async fn fresh_page(state: &State, user: &mut CurrentUser) -> Result<SecurityPage, AppError> {
    let uid = user.ctx.user.id.clone();
    if let Some(ctx) = state.db.run(move |conn| crate::service::accounts::context(conn, &uid)).await? {
        user.ctx = ctx;
    }
    page(state, user).await
}

async fn with_errors(state: &State, user: &mut CurrentUser, errors: FieldErrors) -> Result<HttpResponse, AppError> {
    let mut view = fresh_page(state, user).await?;
    view.errors = errors;
    render(StatusCode::UNPROCESSABLE_ENTITY, &view)
}

fn show_codes(view: &mut SecurityPage, codes: Vec<String>) {
    let text = format!("Latchkey recovery codes for {}\n\n{}\n", view.layout.email, codes.join("\n"));
    view.recovery_download =
        format!("data:text/plain;base64,{}", base64::engine::general_purpose::STANDARD.encode(text));
    view.recovery_codes = Some(codes);
}

pub async fn totp_start(
    state: State,
    mut user: CurrentUser,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    // A stolen session must not bind the account to the thief's device.
    if let Some(refusal) = require_password(&state, &mut user, &form.password, "start_password").await? {
        return Ok(refusal);
    }
    let (keys, uid) = (state.keys.clone(), user.ctx.user.id.clone());
    match state.db.run(move |conn| totp::start(conn, &keys, &uid)).await {
        Ok(_) => render(StatusCode::OK, &fresh_page(&state, &mut user).await?),
        Err(Error::Invalid(f)) => with_errors(&state, &mut user, f).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: String,
    password: String,
}

pub async fn totp_confirm(
    state: State,
    mut user: CurrentUser,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let (keys, actor, uid, code) =
        (state.keys.clone(), user.actor.clone(), user.ctx.user.id.clone(), form.code.clone());
    match state.db.run(move |conn| totp::confirm(conn, &keys, &actor, &uid, &code)).await {
        Ok(codes) => {
            let mut view = fresh_page(&state, &mut user).await?;
            show_codes(&mut view, codes);
            view.continue_to = user.session.remove_as::<String>(keys::ENROLMENT_NEXT).and_then(Result::ok);
            render(StatusCode::OK, &view)
        }
        Err(Error::Invalid(f)) => with_errors(&state, &mut user, f).await,
        Err(e) => Err(e.into()),
    }
}

/// A password re-check: right (with its reserved attempt, to give back or
/// keep), wrong, or refused by the throttle (seconds to wait).
enum Recheck {
    Right(Attempt),
    Wrong,
    Throttled(i64),
}

async fn recheck_password(state: &State, user: &CurrentUser, given: &str) -> Result<Recheck, AppError> {
    let attempt = match state.login_by_account.reserve(&format!("password:{}", user.ctx.user.id), now()) {
        Ok(attempt) => attempt,
        Err(retry) => return Ok(Recheck::Throttled(retry)),
    };
    let (phc, given) = (user.ctx.user.password_hash.clone(), given.to_owned());
    match password::check_off_executor(Some(phc), given).await {
        Ok(true) => Ok(Recheck::Right(attempt)),
        Ok(false) => Ok(Recheck::Wrong),
        Err(e) => {
            state.login_by_account.release(&attempt);
            Err(e.into())
        }
    }
}

/// A password re-check that needs nothing after it: `None` when the password
/// is right (its attempt given back), else the page that refuses it.
async fn require_password(
    state: &State,
    user: &mut CurrentUser,
    given: &str,
    field: &str,
) -> Result<Option<HttpResponse>, AppError> {
    match recheck_password(state, user, given).await? {
        Recheck::Right(attempt) => {
            state.login_by_account.release(&attempt);
            Ok(None)
        }
        other => Ok(Some(refused(state, user, field, other, "Your password is not right.").await?)),
    }
}

/// The page with one field error and `status` (422, or 429 with Retry-After).
async fn refused(
    state: &State,
    user: &mut CurrentUser,
    field: &str,
    recheck: Recheck,
    wrong: &str,
) -> Result<HttpResponse, AppError> {
    let mut view = fresh_page(state, user).await?;
    let (status, message, retry) = match recheck {
        Recheck::Throttled(retry) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong passwords. Try again in {}.", format::duration(retry)),
            Some(retry),
        ),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, wrong.to_owned(), None),
    };
    view.errors = FieldErrors::single(field, message);
    let mut res = render(status, &view)?;
    if let Some(retry) = retry {
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, retry.into());
    }
    Ok(res)
}

pub async fn totp_disable(
    state: State,
    mut user: CurrentUser,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let attempt = match recheck_password(&state, &user, &form.password).await? {
        Recheck::Right(attempt) => attempt,
        other => return refused(&state, &mut user, "disable_password", other, "Your password is not right.").await,
    };
    let (keys, actor, uid, code) =
        (state.keys.clone(), user.actor.clone(), user.ctx.user.id.clone(), form.code.clone());
    match state.db.run(move |conn| totp::disable(conn, &keys, &actor, &uid, &code)).await {
        Ok(()) => {
            state.login_by_account.release(&attempt);
            flash(&user.session, "Two-factor authentication is off.");
            Ok(redirect("/settings/security"))
        }
        Err(Error::Invalid(f)) => {
            state.login_by_account.release(&attempt);
            let message = f.get("code").unwrap_or("Enter a code.").to_owned();
            with_errors(&state, &mut user, FieldErrors::single("disable_code", message)).await
        }
        // A wrong code keeps the attempt.
        Err(Error::Forbidden(m)) => with_errors(&state, &mut user, FieldErrors::single("disable_code", m)).await,
        Err(e) => {
            state.login_by_account.release(&attempt);
            Err(e.into())
        }
    }
}

pub async fn recovery_regenerate(
    state: State,
    mut user: CurrentUser,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    if let Some(refusal) = require_password(&state, &mut user, &form.password, "regenerate_password").await? {
        return Ok(refusal);
    }
    let (keys, actor, uid) = (state.keys.clone(), user.actor.clone(), user.ctx.user.id.clone());
    let codes = state.db.run(move |conn| totp::regenerate(conn, &keys, &actor, &uid)).await?;
    let mut view = fresh_page(&state, &mut user).await?;
    show_codes(&mut view, codes);
    render(StatusCode::OK, &view)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

pub async fn change_password(
    state: State,
    mut user: CurrentUser,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    if let Some(refusal) = require_password(&state, &mut user, &form.current_password, "current_password").await? {
        return Ok(refusal);
    }
    if let Err(m) = validate::new_password(&form.new_password, &user.ctx.user.email) {
        return with_errors(&state, &mut user, FieldErrors::single("new_password", m)).await;
    }
    let new = form.into_inner().new_password;
    let hash =
        web::block(move || password::hash(&new)).await.map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))??;
    let (actor, uid, sid) = (user.actor.clone(), user.ctx.user.id.clone(), current_sid(&user));
    let live = state.db.run(move |conn| security::change_password(conn, &actor, &uid, &hash, &sid)).await?;
    if !live {
        // This session ended while the request ran: it stays ended.
        user.session.purge();
        return Ok(redirect("/login"));
    }
    // Every session ended, this one included: keep this browser signed in under a new id.
    user.session.renew();
    super::login::mark_issued(&user.session)?;
    flash(&user.session, "Password changed. Your other sessions have been signed out.");
    Ok(redirect("/settings/security"))
}

pub async fn revoke_session(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::NotFound);
    }
    let (actor, uid) = (user.actor.clone(), user.ctx.user.id.clone());
    state.db.run(move |conn| security::revoke_session(conn, &actor, &uid, &id)).await?;
    flash(&user.session, "Session signed out.");
    Ok(redirect("/settings/security"))
}

pub async fn revoke_others(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (actor, uid, sid) = (user.actor.clone(), user.ctx.user.id.clone(), current_sid(&user));
    let ended = state.db.run(move |conn| security::revoke_other_sessions(conn, &actor, &uid, &sid)).await?;
    flash(&user.session, &format!("Signed out {ended} other session{}.", if ended == 1 { "" } else { "s" }));
    Ok(redirect("/settings/security"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PolicyForm {
    require_totp: Option<String>,
}

pub async fn team_policy(
    state: State,
    user: CurrentUser,
    form: web::Form<PolicyForm>,
) -> Result<HttpResponse, AppError> {
    let (team, role) = user.team()?;
    let on = form.require_totp.is_some();
    let (actor, team_id) = (user.actor.clone(), team.id.clone());
    state.db.run(move |conn| security::set_team_policy(conn, &actor, (&team_id, role), on)).await?;
    let message = if on {
        "Two-factor authentication is now required for everyone in your team."
    } else {
        "Two-factor authentication is now optional."
    };
    flash(&user.session, message);
    Ok(redirect("/settings/security"))
}

pub async fn revoke_app(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let client_id = super::auth::id_param(path.into_inner())?;
    let (actor, uid) = (user.actor.clone(), user.ctx.user.id.clone());
    let team = user.ctx.team.as_ref().map(|(t, _)| t.id.clone());
    state
        .db
        .run(move |conn| crate::service::oauth::revoke_consent(conn, &actor, &uid, team.as_deref(), &client_id))
        .await?;
    state.verifier.invalidate_all();
    flash(&user.session, "Access revoked; the app's tokens no longer work.");
    Ok(redirect("/settings/security"))
}
