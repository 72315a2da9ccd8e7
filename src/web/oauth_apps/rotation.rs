//! An app's previous client secret in its grace period: the rotation card of
//! the app's page, "Finish now" (`…/{id}/finish-rotation`) and the one-time
//! extension (`…/{id}/extend-rotation`).
//!
//! Rules: each action asks first (`GET` answers its confirmation and changes
//! nothing; an app with no secret in grace sends back to its page), then
//! `POST` acts: Post/Redirect/Get to the app's page on success, the page
//! again with the field error (422) when the service refuses; apps the
//! member may not manage, and other teams' apps, are not found. Each handler
//! calls one [`AppService`](crate::service::oauth::AppService) method.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{AppPage, member};
use crate::domain::ClientId;
use crate::error::AppError;
use crate::service::oauth::SecretRotation;
use crate::service::{self as services};
use crate::web::State;
use crate::web::auth::{CurrentUser, flash, id_param};
use crate::web::confirm::{self, Confirm};
use crate::web::format;
use crate::web::htmx::{HxRequest, push_url};
use crate::web::page::{Layout, Nav, redirect, render};
use crate::web::rotation::{self as card, RotationCard};

const BASE: &str = "/settings/developer/oauth-apps";

/// The card for app `id`'s page, at `now`.
pub fn rotation_card(r: &SecretRotation, id: &str, now: i64) -> RotationCard {
    let href = format!("{BASE}/{id}");
    let extend = r.extend_until.map(|until| (format!("{href}/extend-rotation"), until));
    RotationCard::new(
        ("previous secret", "current secret"),
        ("Previous secret".into(), "Current secret".into()),
        &r.watch,
        (r.may_act, format!("{href}/finish-rotation")),
        extend,
        now,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QuietForm {
    quiet: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ExtendForm {
    extend: String,
}

fn app_id(raw: String) -> Result<ClientId, AppError> {
    Ok(ClientId::from(id_param(raw)?))
}

/// The app's page again, with the service's refusal next to its field (422).
async fn refused(
    state: &State,
    (user, hx): (&CurrentUser, HxRequest),
    id: ClientId,
    errors: services::FieldErrors,
    quiet: Option<i64>,
) -> Result<HttpResponse, AppError> {
    let m = member(user)?;
    let shown = state.oauth_app_service().show(&m, id).await?;
    let mut page = AppPage { can_edit: shown.can_manage, ..AppPage::of(state, user, m.role, &shown.app).await? };
    page.errors = errors;
    if let Some(c) = page.rotation.as_mut() {
        c.select_quiet(quiet);
    }
    let here = format!("{BASE}/{}", shown.app.id);
    Ok(push_url(render(StatusCode::UNPROCESSABLE_ENTITY, &page)?, hx, &here))
}

/// `GET …/{id}/finish-rotation?quiet=`: what ending the previous secret now does.
pub async fn finish_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    query: web::Query<QuietForm>,
) -> Result<HttpResponse, AppError> {
    let id = app_id(path.into_inner())?;
    let (app, rotation) = state.oauth_app_service().secret_rotation_to_confirm(&member(&user)?, id).await?;
    let back = format!("{BASE}/{}", app.id);
    if rotation.is_none() {
        return Ok(redirect(&back));
    }
    let c = Confirm::new(
        "confirm-finish-rotation",
        format!("End the previous secret of {} now?", app.name),
        format!("{back}/finish-rotation"),
    )
    .says("The previous client secret stops working at once: token requests with it get invalid_client. The current secret is unaffected.")
    .says("This happens only if the previous secret has not been used for the time you choose; otherwise nothing changes.")
    .field(card::quiet_field(card::seconds(&query.quiet), "The previous secret has not been used for"))
    .button("End grace now")
    .cancel_to(back);
    confirm::respond(hx, Layout::new(&user, Nav::OauthApps)?, &c)
}

/// `POST …/{id}/finish-rotation`: forgets the previous secret, if it was quiet.
pub async fn finish(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<QuietForm>,
) -> Result<HttpResponse, AppError> {
    let id = app_id(path.into_inner())?;
    let quiet = card::seconds(&form.quiet);
    // Recent uses (this instance's buffer, and what every instance handed to
    // Redis) reach the database before the quiet period is judged.
    state.write_usage_now().await;
    match state.oauth_app_service().finish_secret_grace(&member(&user)?, id.clone(), quiet).await {
        Ok(app) => {
            flash(&user.session, "The grace is over: the previous client secret no longer works.");
            Ok(redirect(&format!("{BASE}/{}", app.id)))
        }
        Err(services::Error::Invalid(errors)) => refused(&state, (&user, hx), id, errors, quiet).await,
        Err(e) => Err(e.into()),
    }
}

/// `GET …/{id}/extend-rotation`: what extending the previous secret's grace does.
pub async fn extend_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = app_id(path.into_inner())?;
    let (app, rotation) = state.oauth_app_service().secret_rotation_to_confirm(&member(&user)?, id).await?;
    let back = format!("{BASE}/{}", app.id);
    let Some(limit) = rotation.and_then(|r| r.extend_until) else { return Ok(redirect(&back)) };
    let c = Confirm::new(
        "confirm-extend-rotation",
        format!("Extend the previous secret of {}?", app.name),
        format!("{back}/extend-rotation"),
    )
    .says("The previous client secret keeps working longer, beside the current one.")
    .says(format!(
        "A rotation's grace can be extended once, and never past {} (7 days from now).",
        format::datetime(limit)
    ))
    .field(card::extend_field("Keep the previous secret working for another"))
    .button("Extend grace")
    .not_dangerous()
    .cancel_to(back);
    confirm::respond(hx, Layout::new(&user, Nav::OauthApps)?, &c)
}

/// `POST …/{id}/extend-rotation`: extends the previous secret's grace once.
pub async fn extend(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<ExtendForm>,
) -> Result<HttpResponse, AppError> {
    let id = app_id(path.into_inner())?;
    let by = card::seconds(&form.extend);
    match state.oauth_app_service().extend_secret_grace(&member(&user)?, id.clone(), by).await {
        Ok(app) => {
            let until = app.old_secret_expires_at.map(format::datetime).unwrap_or_default();
            flash(&user.session, &format!("Extended: the previous client secret keeps working until {until}."));
            Ok(redirect(&format!("{BASE}/{}", app.id)))
        }
        Err(services::Error::Invalid(errors)) => refused(&state, (&user, hx), id, errors, None).await,
        Err(e) => Err(e.into()),
    }
}
