//! `/settings/security`: two-factor enrolment and recovery codes, password
//! change, sessions, authorized apps, and (for owners) the team's two-factor
//! policy. The rules (password re-checks and their throttle, audit) are
//! `SecurityService`'s.
//!
//! Rules: the TOTP secret is shown only while enrolment is unconfirmed and
//! recovery codes only in the response that made them (`no-store`); a reload
//! of that response's URL lands on this page with a notice, never a 404.
//! Every form is Post/Redirect/Get: success answers 303 with a flash; a
//! refusal re-renders the page and (for htmx) puts `/settings/security` back
//! in the address bar. Signing sessions out and revoking an app ask first
//! (a `GET` on the action's URL answers its confirmation).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use base64::Engine;
use serde::Deserialize;

use super::auth::{CurrentUser, id_param, safe_next};
use super::confirm::{self, Confirm};
use super::format::When;
use super::htmx::{HxRequest, push_url};
use super::login::with_retry_after;
use super::page::{Layout, Nav, redirect, render};
use super::{AppState, State, format};
use crate::domain::{ClientId, PlainSecret, Role, SessionId};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::oauth::scopes_of;
use crate::service::security::{Refusal, SecurityOverview, SecurityService};

impl AppState {
    /// The security page's use cases.
    pub fn security_service(&self) -> SecurityService<'_> {
        SecurityService {
            db: &self.db,
            keys: &self.keys,
            by_account: &self.login_by_account,
            verifier: &self.verifier,
            hashing: &self.hashing,
            clock: &self.clock,
            notifier: &self.notifier,
        }
    }
}

const PAGE: &str = "/settings/security";

pub struct SessionLine {
    pub id: SessionId,
    /// "Chrome on macOS".
    pub device: String,
    pub ip: String,
    pub signed_in: When,
    pub last_seen: When,
    pub current: bool,
}

/// An app someone authorized: its client id, name, scopes, when, and (on the
/// team's list) who.
pub struct AppLine {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub approved: When,
    pub member: String,
}

#[derive(Template)]
#[template(path = "pages/security.html")]
struct SecurityPage {
    layout: Layout,
    required: bool,
    totp_on: bool,
    enabled_at: Option<When>,
    pending: Option<(String, String)>,
    recovery_codes: Option<Vec<PlainSecret>>,
    recovery_download: String,
    remaining: i64,
    sessions: Vec<SessionLine>,
    apps: Vec<AppLine>,
    team_apps: Vec<AppLine>,
    is_owner: bool,
    team_requires: bool,
    errors: FieldErrors,
    /// After a required enrolment: where the person was going.
    continue_to: Option<String>,
    /// The recovery-code form's token (`web::resubmit`).
    submission: String,
    /// The email the user may turn off (`web::email`).
    emails: Vec<crate::service::email::EmailPreference>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ShowQuery {
    required: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: String,
    password: String,
    /// The form's token (`web::resubmit`), on the new-recovery-codes form.
    submission: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PolicyForm {
    require_totp: Option<String>,
}

/// The page as the user is now (reloaded: a change may just have been made).
async fn page(state: &State, user: &mut CurrentUser) -> Result<SecurityPage, AppError> {
    let current = user.session.row_id()?;
    let overview = state.security_service().overview(&user.ctx, current.as_ref()).await?;
    let SecurityOverview { ctx, remaining_codes, sessions, apps, team_apps, pending, emails } = overview;
    user.ctx = ctx;
    let (u, at) = (&user.ctx.user, state.clock.now());
    let session_line = |s: crate::service::security::SessionView| SessionLine {
        id: s.id,
        device: format::device(&s.user_agent),
        ip: s.ip,
        signed_in: When::at(s.created_at, at),
        last_seen: When::at(s.last_seen_at, at),
        current: s.current,
    };
    Ok(SecurityPage {
        emails,
        submission: super::resubmit::token()?,
        layout: Layout::new(user, Nav::Security)?,
        required: false,
        totp_on: u.has_totp(),
        enabled_at: When::maybe(u.totp_enabled_at, at),
        pending,
        recovery_codes: None,
        recovery_download: String::new(),
        remaining: remaining_codes,
        sessions: sessions.into_iter().map(session_line).collect(),
        apps: apps
            .into_iter()
            .map(|(consent, client)| AppLine {
                id: client.id,
                name: client.name,
                scopes: scopes_of(&consent.scopes),
                approved: When::at(consent.created_at, at),
                member: String::new(),
            })
            .collect(),
        team_apps: team_apps
            .into_iter()
            .map(|(email, consent, client)| AppLine {
                id: client.id,
                name: client.name,
                scopes: scopes_of(&consent.scopes),
                approved: When::at(consent.created_at, at),
                member: email,
            })
            .collect(),
        is_owner: user.ctx.team.as_ref().is_some_and(|(_, r)| *r == Role::Owner),
        team_requires: user.ctx.team.as_ref().is_some_and(|(t, _)| t.require_totp),
        errors: FieldErrors::default(),
        continue_to: None,
    })
}

/// The page with the refusal's field error: 422, or 429 with Retry-After;
/// the address bar shows the page again.
async fn refused(
    state: &State,
    user: &mut CurrentUser,
    hx: HxRequest,
    refusal: Refusal,
) -> Result<HttpResponse, AppError> {
    let mut view = page(state, user).await?;
    let res = match refusal {
        Refusal::Invalid(errors) => {
            view.errors = errors;
            render(StatusCode::UNPROCESSABLE_ENTITY, &view)?
        }
        Refusal::Throttled { field, retry_after } => {
            let message = format!("Too many wrong passwords. Try again in {}.", format::duration(retry_after));
            view.errors = FieldErrors::single(field, message);
            with_retry_after(render(StatusCode::TOO_MANY_REQUESTS, &view)?, retry_after)?
        }
    };
    Ok(push_url(res, hx, PAGE))
}

/// The page showing recovery codes just made (once), with a download.
async fn with_codes(state: &State, user: &mut CurrentUser, codes: Vec<PlainSecret>) -> Result<SecurityPage, AppError> {
    let mut view = page(state, user).await?;
    let listed: Vec<&str> = codes.iter().map(PlainSecret::expose).collect();
    let text = format!("Latchkey recovery codes for {}\n\n{}\n", view.layout.email, listed.join("\n"));
    view.recovery_download =
        format!("data:text/plain;base64,{}", base64::engine::general_purpose::STANDARD.encode(text));
    view.recovery_codes = Some(codes);
    Ok(view)
}

fn back(user: &CurrentUser, message: &str) -> Result<HttpResponse, AppError> {
    user.session.flash(message)?;
    Ok(redirect(PAGE))
}

/// `GET` of a form's POST-only URL (a reload after submitting): the page.
pub async fn to_page() -> HttpResponse {
    redirect(PAGE)
}

/// `GET` of a URL whose answer showed recovery codes: they were shown once.
pub async fn codes_shown_once(user: CurrentUser) -> Result<HttpResponse, AppError> {
    back(
        &user,
        "Recovery codes are shown only once, when they are made. If you did not save them, generate new ones below.",
    )
}

pub async fn show(state: State, mut user: CurrentUser, query: web::Query<ShowQuery>) -> Result<HttpResponse, AppError> {
    let mut view = page(&state, &mut user).await?;
    view.required = query.required.is_some() && !view.totp_on;
    if view.required
        && let Some(next) = query.next.as_deref()
    {
        // Kept for after enrolment: the confirm page offers to continue there.
        user.session.set_enrolment_next(&safe_next(Some(next)))?;
    }
    render(StatusCode::OK, &view)
}

pub async fn totp_start(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    match state.security_service().start_totp(&user.ctx.user, &form.password).await? {
        Ok(()) => {
            user.session.flash("Scan the code with your authenticator app, then enter a code from it to finish.")?;
            // A member the team holds to enrolment stays on the page that says so.
            let held = user.ctx.team.as_ref().is_some_and(|(t, _)| t.require_totp);
            Ok(redirect(if held {
                "/settings/security?required=1#two-factor"
            } else {
                "/settings/security#two-factor"
            }))
        }
        Err(refusal) => refused(&state, &mut user, hx, refusal).await,
    }
}

pub async fn totp_confirm(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    match state.security_service().confirm_totp(&user.actor, &user.user_id(), &form.code).await? {
        Ok(codes) => {
            let mut view = with_codes(&state, &mut user, codes).await?;
            view.continue_to = user.session.take_enrolment_next()?;
            render(StatusCode::OK, &view)
        }
        Err(refusal) => refused(&state, &mut user, hx, refusal).await,
    }
}

pub async fn totp_disable(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let service = state.security_service();
    match service.disable_totp(&user.actor, &user.ctx.user, &form.password, &form.code).await? {
        Ok(()) => back(&user, "Two-factor authentication is off."),
        Err(refusal) => refused(&state, &mut user, hx, refusal).await,
    }
}

pub async fn recovery_regenerate(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let submission = super::resubmit::accepted(&form.submission);
    if super::resubmit::made(&user.session, "recovery_codes", submission)?.is_some() {
        // Sent again (a reload of the page that showed them): the codes just
        // shown stay the good ones.
        return codes_shown_once(user).await;
    }
    match state.security_service().regenerate_codes(&user.actor, &user.ctx.user, &form.password).await? {
        Ok(codes) => {
            super::resubmit::remember(&user.session, "recovery_codes", submission, &user.ctx.user.id)?;
            render(StatusCode::OK, &with_codes(&state, &mut user, codes).await?)
        }
        Err(refusal) => refused(&state, &mut user, hx, refusal).await,
    }
}

pub async fn change_password(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let (service, current) = (state.security_service(), user.session.row_id()?);
    let (given, new) = (&form.current_password, &form.new_password);
    match service.change_password(&user.actor, &user.ctx.user, given, new, current.as_ref()).await? {
        Ok(true) => {
            // Every session ended, this one included: keep this browser signed in under a new id.
            user.session.renew_signed_in()?;
            back(&user, "Password changed. Your other sessions have been signed out.")
        }
        Ok(false) => {
            // This session ended while the request ran: it stays ended.
            user.session.purge();
            Ok(redirect("/login"))
        }
        Err(refusal) => refused(&state, &mut user, hx, refusal).await,
    }
}

/// A stored session's id from a URL path (64 hex digits); anything else is not found.
fn session_param(raw: String) -> Result<SessionId, AppError> {
    let ok = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit());
    if ok { Ok(SessionId::from(raw)) } else { Err(AppError::NotFound) }
}

pub async fn revoke_session(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = session_param(path.into_inner())?;
    state.security_service().revoke_session(&user.actor, &user.user_id(), &id).await?;
    back(&user, "Session signed out.")
}

pub async fn revoke_others(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let current = user.session.row_id()?;
    let ended = state.security_service().revoke_other_sessions(&user.actor, &user.user_id(), current.as_ref()).await?;
    back(&user, &format!("Signed out {ended} other session{}.", if ended == 1 { "" } else { "s" }))
}

pub async fn team_policy(
    state: State,
    user: CurrentUser,
    form: web::Form<PolicyForm>,
) -> Result<HttpResponse, AppError> {
    let (member, on) = (user.member()?, form.require_totp.is_some());
    state.security_service().set_team_policy(&user.actor, &member, on).await?;
    back(
        &user,
        if on {
            "Two-factor authentication is now required for everyone in your team."
        } else {
            "Two-factor authentication is now optional."
        },
    )
}

pub async fn revoke_app(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let client = ClientId::from(id_param(path.into_inner())?);
    state.security_service().revoke_app(&user.actor, &user.ctx, &client).await?;
    back(&user, "Access revoked; the app's tokens no longer work.")
}

/// "Chrome on macOS (203.0.113.9)".
fn session_name(s: &SessionLine) -> String {
    format!("{} ({})", s.device, s.ip)
}

/// `GET …/sessions/revoke-others`: what signing the other sessions out ends.
pub async fn confirm_revoke_others(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
) -> Result<HttpResponse, AppError> {
    let view = page(&state, &mut user).await?;
    let others: Vec<String> = view.sessions.iter().filter(|s| !s.current).map(session_name).collect();
    let mut c = Confirm::new(
        "confirm-revoke-others",
        "Sign out all other sessions?",
        "/settings/security/sessions/revoke-others",
    )
    .button("Sign out other sessions")
    .cancel_to(PAGE);
    c = match others.len() {
        0 => c.says("You have no other session right now; nothing changes."),
        1 => c.says(format!("1 other session ends at once: {}.", others.join(""))),
        n => c.says(format!("{n} other sessions end at once: {}.", others.join(", "))),
    };
    c = c.says("Whoever uses them must sign in again. This browser stays signed in.");
    confirm::respond(hx, view.layout, &c)
}

/// `GET …/sessions/{id}/revoke`: which session ends (404 for one that is not
/// the user's, or is this one).
pub async fn confirm_revoke_session(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = session_param(path.into_inner())?;
    let view = page(&state, &mut user).await?;
    let s = view.sessions.iter().find(|s| s.id == id && !s.current).ok_or(AppError::NotFound)?;
    let c = Confirm::new(
        "confirm-revoke-session",
        format!("Sign out {}?", s.device),
        format!("/settings/security/sessions/{id}/revoke"),
    )
    .says(format!("The session on {} is signed out at once; whoever uses it must sign in again.", session_name(s)))
    .button("Sign out")
    .cancel_to(PAGE);
    confirm::respond(hx, view.layout, &c)
}

/// `GET …/apps/{client_id}/revoke`: what revoking an app's access ends (404
/// for an app the user has not authorized).
pub async fn confirm_revoke_app(
    state: State,
    mut user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let client = id_param(path.into_inner())?;
    let view = page(&state, &mut user).await?;
    let app = view.apps.iter().find(|a| a.id == client).ok_or(AppError::NotFound)?;
    let c = Confirm::new(
        "confirm-revoke-app",
        format!("Revoke access for {}?", app.name),
        format!("/settings/security/apps/{client}/revoke"),
    )
    .says(format!("{} can no longer act for you: its tokens stop working at once.", app.name))
    .says("If you use it again, it will ask for your approval again.")
    .button("Revoke access")
    .cancel_to(PAGE);
    confirm::respond(hx, view.layout, &c)
}
