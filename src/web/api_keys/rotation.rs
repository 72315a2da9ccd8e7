//! A roll in its grace period, from either key's page: the rotation card,
//! "Finish now" (`…/{id}/finish`) and the one-time extension (`…/{id}/extend`).
//!
//! Rules: each action asks first (`GET` answers its confirmation and changes
//! nothing; a key in no grace sends back to its page), then `POST` acts:
//! Post/Redirect/Get to the key's page on success, the page again with the
//! field error (422) when the service refuses; keys the caller may not act
//! on, and other teams' keys, are not found. Each handler calls one
//! [`KeyService`](crate::service::keys::KeyService) method.

use actix_web::{HttpResponse, web};

use super::{BASE, Notice, caller, detail_page, key_id};
use crate::domain::KeyId;
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::codec;
use crate::service::keys::rotation::Rotation;
use crate::web::State;
use crate::web::answer::{again, flashed, refusable};
use crate::web::auth::CurrentUser;
use crate::web::confirm;
use crate::web::format;
use crate::web::htmx::HxRequest;
use crate::web::page::{Nav, redirect};
use crate::web::rotation::{self as card, Asking, ExtendForm, QuietForm, RotationCard};

/// The card for the page of key `viewed`, at `now`.
pub fn rotation_card(r: &Rotation, prefix: &str, viewed: &str, now: i64) -> RotationCard {
    let label =
        |what: &str, k: &crate::store::models::ApiKey| format!("{what} {}…", codec::display(prefix, &k.key_prefix));
    let href = format!("{BASE}/{viewed}");
    let extend = r.extend_until.map(|until| (format!("{href}/extend"), until));
    RotationCard::new(
        ("old key", "new key"),
        (label("Old key", &r.old), label("New key", &r.new)),
        &r.watch,
        (r.may_act, format!("{href}/finish")),
        extend,
        now,
    )
}

/// The key page again, with the service's refusal next to its field (422).
async fn refused(
    state: &State,
    (user, hx): (&CurrentUser, HxRequest),
    id: &KeyId,
    errors: FieldErrors,
    quiet: Option<i64>,
) -> Result<HttpResponse, AppError> {
    let mut view = detail_page(state, user, id, Notice::None).await?;
    // The "rolled" notice belongs to a reload of `…/roll`, not to a refusal.
    view.notice = Notice::None;
    view.errors = errors;
    if let Some(c) = view.rotation.as_mut() {
        c.select_quiet(quiet);
    }
    again(&view, hx, &format!("{BASE}/{}", id.as_str()))
}

/// `GET …/{id}/finish?quiet=`: what ending the grace now does.
pub async fn finish_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    query: web::Query<QuietForm>,
) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let back = format!("{BASE}/{}", id.as_str());
    let Some(r) = service.rotation_to_confirm(&caller(&user)?, &id).await? else { return Ok(redirect(&back)) };
    let old = codec::display(&state.config.api_key_prefix, &r.old.key_prefix);
    let asking = Asking {
        title: format!("End the grace of {old}… now?"),
        says: [
            format!("The old key {old}… stops working at once: requests using it get 401. The new key is unaffected."),
            "This happens only if the old key has not been used for the time you choose; otherwise nothing changes."
                .into(),
        ],
        label: "The old key has not been used for",
    };
    let c = card::finish_confirm(asking, format!("{back}/finish"), back, query.quiet());
    confirm::ask(&user, hx, Nav::ApiKeys, &c)
}

/// `POST …/{id}/finish`: ends the grace now, if the old key was quiet.
pub async fn finish(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<QuietForm>,
) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let quiet = form.quiet();
    // Recent uses (this instance's buffer, and what every instance handed to
    // Redis) reach the database before the quiet period is judged.
    state.write_usage_now().await;
    match refusable(state.key_service().finish_grace(&caller(&user)?, &id, quiet).await)? {
        Ok(old) => {
            let old = codec::display(&state.config.api_key_prefix, &old.key_prefix);
            let said = format!("The grace is over: the old key {old}… no longer works.");
            Ok(flashed(&user.session, &said, &format!("{BASE}/{}", id.as_str())))
        }
        Err(errors) => refused(&state, (&user, hx), &id, errors, quiet).await,
    }
}

/// `GET …/{id}/extend`: what extending the grace does, and how far it may go.
pub async fn extend_confirm(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let back = format!("{BASE}/{}", id.as_str());
    let Some(r) = service.rotation_to_confirm(&caller(&user)?, &id).await? else { return Ok(redirect(&back)) };
    let Some(limit) = r.extend_until else { return Ok(redirect(&back)) };
    let old = codec::display(&state.config.api_key_prefix, &r.old.key_prefix);
    let asking = Asking {
        title: format!("Extend the grace of {old}…?"),
        says: [
            format!("The old key {old}… keeps working longer, beside the new key."),
            format!(
                "A roll's grace can be extended once, and never past {} (7 days from now at most, within the team's maximum key lifetime).",
                format::datetime(limit)
            ),
        ],
        label: "Keep the old key working for another",
    };
    confirm::ask(&user, hx, Nav::ApiKeys, &card::extend_confirm(asking, format!("{back}/extend"), back))
}

/// `POST …/{id}/extend`: extends the grace once.
pub async fn extend(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    form: web::Form<ExtendForm>,
) -> Result<HttpResponse, AppError> {
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    match refusable(service.extend_grace(&caller(&user)?, &id, form.extend()).await)? {
        Ok(old) => {
            let until = old.expires_at.map(format::datetime).unwrap_or_default();
            let prefix = codec::display(&state.config.api_key_prefix, &old.key_prefix);
            let said = format!("Extended: the old key {prefix}… keeps working until {until}.");
            Ok(flashed(&user.session, &said, &format!("{BASE}/{}", id.as_str())))
        }
        Err(errors) => refused(&state, (&user, hx), &id, errors, None).await,
    }
}
