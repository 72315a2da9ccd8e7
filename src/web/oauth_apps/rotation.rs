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

use actix_web::{HttpResponse, web};

use super::{AppPage, member};
use crate::domain::ClientId;
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::oauth::SecretRotation;
use crate::web::State;
use crate::web::answer::{again, flashed, refusable};
use crate::web::auth::{CurrentUser, id_param};
use crate::web::confirm;
use crate::web::format;
use crate::web::htmx::HxRequest;
use crate::web::page::{Nav, redirect};
use crate::web::rotation::{self as card, Asking, ExtendForm, QuietForm, RotationCard};

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

fn app_id(raw: String) -> Result<ClientId, AppError> {
    Ok(ClientId::from(id_param(raw)?))
}

/// The app's page again, with the service's refusal next to its field (422).
async fn refused(
    state: &State,
    (user, hx): (&CurrentUser, HxRequest),
    id: ClientId,
    errors: FieldErrors,
    quiet: Option<i64>,
) -> Result<HttpResponse, AppError> {
    let m = member(user)?;
    let shown = state.oauth_app_service().show(&m, id).await?;
    let mut page = AppPage { can_edit: shown.can_manage, ..AppPage::of(state, user, m.role, &shown.app).await? };
    page.errors = errors;
    if let Some(c) = page.rotation.as_mut() {
        c.select_quiet(quiet);
    }
    again(&page, hx, &format!("{BASE}/{}", shown.app.id))
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
    let asking = Asking {
        title: format!("End the previous secret of {} now?", app.name),
        says: [
            "The previous client secret stops working at once: token requests with it get invalid_client. The current secret is unaffected.".into(),
            "This happens only if the previous secret has not been used for the time you choose; otherwise nothing changes.".into(),
        ],
        label: "The previous secret has not been used for",
    };
    let c = card::finish_confirm(asking, format!("{back}/finish-rotation"), back, query.quiet());
    confirm::ask(&user, hx, Nav::OauthApps, &c)
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
    let quiet = form.quiet();
    // Recent uses (this instance's buffer, and what every instance handed to
    // Redis) reach the database before the quiet period is judged.
    state.write_usage_now().await;
    match refusable(state.oauth_app_service().finish_secret_grace(&member(&user)?, id.clone(), quiet).await)? {
        Ok(app) => {
            let said = "The grace is over: the previous client secret no longer works.";
            Ok(flashed(&user.session, said, &format!("{BASE}/{}", app.id)))
        }
        Err(errors) => refused(&state, (&user, hx), id, errors, quiet).await,
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
    let asking = Asking {
        title: format!("Extend the previous secret of {}?", app.name),
        says: [
            "The previous client secret keeps working longer, beside the current one.".into(),
            format!(
                "A rotation's grace can be extended once, and never past {} (7 days from now).",
                format::datetime(limit)
            ),
        ],
        label: "Keep the previous secret working for another",
    };
    let c = card::extend_confirm(asking, format!("{back}/extend-rotation"), back);
    confirm::ask(&user, hx, Nav::OauthApps, &c)
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
    match refusable(state.oauth_app_service().extend_secret_grace(&member(&user)?, id.clone(), form.extend()).await)? {
        Ok(app) => {
            let until = app.old_secret_expires_at.map(format::datetime).unwrap_or_default();
            let said = format!("Extended: the previous client secret keeps working until {until}.");
            Ok(flashed(&user.session, &said, &format!("{BASE}/{}", app.id)))
        }
        Err(errors) => refused(&state, (&user, hx), id, errors, None).await,
    }
}
