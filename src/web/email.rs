//! Email preferences: the one-click unsubscribe link of a reminder
//! (`/email/unsubscribe?token=…`, RFC 8058) and the security page's form.
//!
//! Rules: `GET` of the link only asks (mail scanners follow links) and never
//! changes anything; `POST` of the link unsubscribes without a session or a
//! CSRF token — the token is the authority, and it can only turn one kind
//! off for one user (`service::email::unsubscribe`); its body is ignored
//! (`List-Unsubscribe=One-Click` or a browser's form). A token that is not
//! ours answers 404 and changes nothing. The security page's form turns a
//! kind on or off for the signed-in user (session and CSRF, as every form).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::CurrentUser;
use super::page::{redirect, render};
use super::{AppState, State};
use crate::error::AppError;
use crate::service::Error;
use crate::service::email::EmailService;
use crate::service::email::unsubscribe::Unsubscription;

impl AppState {
    /// Email preferences and unsubscribe links.
    pub fn email_service(&self) -> EmailService<'_> {
        EmailService { db: &self.db, keys: &self.keys, clock: &self.clock }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenQuery {
    token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PreferenceForm {
    kind: String,
    on: Option<String>,
}

pub enum UnsubscribeState {
    Ask { email: String, label: &'static str, token: String },
    Done { email: String, label: &'static str },
    Invalid,
}

#[derive(Template)]
#[template(path = "pages/unsubscribe.html")]
struct UnsubscribePage {
    csrf: String,
    asset_v: &'static str,
    state: UnsubscribeState,
}

fn page(status: StatusCode, state: UnsubscribeState) -> Result<HttpResponse, AppError> {
    render(status, &UnsubscribePage { csrf: String::new(), asset_v: super::assets::version(), state })
}

fn label(u: &Unsubscription) -> &'static str {
    crate::service::email::unsubscribe::label(u.kind)
}

/// The answer to a token that is not ours: 404, nothing changed.
fn invalid(e: Error) -> Result<HttpResponse, AppError> {
    match e {
        Error::NotFound => page(StatusCode::NOT_FOUND, UnsubscribeState::Invalid),
        other => Err(other.into()),
    }
}

/// `GET /email/unsubscribe?token=…`: asks; changes nothing.
pub async fn ask(state: State, query: web::Query<TokenQuery>) -> Result<HttpResponse, AppError> {
    let token = query.into_inner().token;
    match state.email_service().inspect(&token).await {
        Ok(u) => page(StatusCode::OK, UnsubscribeState::Ask { label: label(&u), email: u.email, token }),
        Err(e) => invalid(e),
    }
}

/// `POST /email/unsubscribe?token=…`: one click (from a mail client or the page).
pub async fn unsubscribe(state: State, query: web::Query<TokenQuery>) -> Result<HttpResponse, AppError> {
    match state.email_service().unsubscribe(&query.token).await {
        Ok(u) => page(StatusCode::OK, UnsubscribeState::Done { label: label(&u), email: u.email }),
        Err(e) => invalid(e),
    }
}

/// `POST /settings/security/email`: turns a kind on or off.
pub async fn preference(
    state: State,
    user: CurrentUser,
    form: web::Form<PreferenceForm>,
) -> Result<HttpResponse, AppError> {
    let PreferenceForm { kind, on } = form.into_inner();
    let message = match state.email_service().set(&user.ctx.user.id, &kind, on.is_some()).await {
        Ok(()) if on.is_some() => "You will get these reminders again.".to_owned(),
        Ok(()) => "You will no longer get these reminders.".to_owned(),
        Err(Error::Invalid(errors)) => errors.0.into_values().next().unwrap_or_default(),
        Err(e) => return Err(e.into()),
    };
    user.session.flash(&message)?;
    Ok(redirect("/settings/security#email-card"))
}
