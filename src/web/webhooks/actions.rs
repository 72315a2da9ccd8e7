//! An endpoint's actions: rotate its secret, disable, enable, delete, and
//! resend a delivery.
//!
//! Rules: rotating, disabling and deleting ask first (a `GET` on the action's
//! URL answers the confirmation, under the same policy as the action); the
//! new secret is shown once in the rotation's answer; a rotation form sent
//! twice does not rotate twice (`web::resubmit`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::super::answer::{bad_request, flashed};
use super::super::auth::{CurrentUser, id_param};
use super::super::confirm::{self, Confirm, Field};
use super::super::htmx::HxRequest;
use super::super::page::{Nav, redirect, render};
use super::super::{State, resubmit};
use super::{EndpointPage, LIST, endpoint_url, manager};
use crate::domain::EndpointId;
use crate::error::AppError;

fn endpoint_id(raw: String) -> Result<EndpointId, AppError> {
    Ok(EndpointId::from(id_param(raw)?))
}

/// `GET` on an action that only accepts `POST` without asking: the endpoint's page.
pub async fn to_endpoint(path: web::Path<(String,)>) -> Result<HttpResponse, AppError> {
    Ok(redirect(&endpoint_url(&id_param(path.into_inner().0)?)))
}

/// Asks before acting on the endpoint in `path`: the confirmation
/// `confirm-{action}`, titled "{asks} {url}?", posting to the endpoint's
/// `…/{action}`, "Cancel" back to its page; `words` adds what it says.
async fn ask(
    (state, user, hx): (&State, &CurrentUser, HxRequest),
    path: web::Path<String>,
    (action, asks): (&str, &str),
    words: impl FnOnce(Confirm) -> Result<Confirm, AppError>,
) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    let d = state.webhook_service().show(&manager(user)?, id).await?;
    let back = endpoint_url(&d.endpoint.id);
    let c =
        Confirm::new(format!("confirm-{action}"), format!("{asks} {}?", d.endpoint.url), format!("{back}/{action}"));
    confirm::ask(user, hx, Nav::Webhooks, &words(c.cancel_to(back))?)
}

pub async fn confirm_rotate(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    ask((&state, &user, hx), path, ("rotate", "Rotate the signing secret of"), |c| {
        Ok(c.says("A new secret is made and shown once, on the next page: give it to your receiver.")
            .says(
                "Meanwhile each delivery is signed with both secrets, so your receiver can switch without missing one.",
            )
            .field(confirm::grace_field("The old secret keeps signing for"))
            .field(Field::Hidden { name: "submission".into(), value: resubmit::token()? })
            .button("Rotate secret")
            .not_dangerous())
    })
    .await
}

/// A rotation: the old secret's grace, and the form's token.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct RotateForm {
    grace: i64,
    submission: String,
}

pub async fn rotate(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RotateForm>,
) -> Result<HttpResponse, AppError> {
    let (m, id) = (manager(&user)?, endpoint_id(path.into_inner())?);
    let submission = resubmit::accepted(&form.submission);
    if resubmit::made(&user.session, "webhook_rotation", submission)?.is_some_and(|made| made == id.as_str()) {
        let said = "The new secret was shown once, when it was made. Rotate again if you lost it.";
        return Ok(flashed(&user.session, said, &endpoint_url(id.as_str())));
    }
    let service = state.webhook_service();
    let (endpoint, secret) = service.rotate(&m, id.clone(), form.grace).await.map_err(bad_request)?;
    resubmit::remember(&user.session, "webhook_rotation", submission, &endpoint.id)?;
    let detail = service.show(&m, id).await?;
    let page = EndpointPage { secret: Some(secret), ..EndpointPage::new(&user, detail, service.now())? };
    render(StatusCode::OK, &page)
}

pub async fn confirm_disable(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    ask((&state, &user, hx), path, ("disable", "Disable"), |c| {
        Ok(c.says(
            "Nothing is sent to it until you enable it again, and events that happen meanwhile are not queued for it.",
        )
        .button("Disable endpoint"))
    })
    .await
}

/// Sends to the endpoint in `path` (`enabled`) or stops sending, then says so on its page.
async fn switch(
    state: &State,
    user: &CurrentUser,
    path: web::Path<String>,
    enabled: bool,
    said: &str,
) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    state.webhook_service().set_enabled(&manager(user)?, id.clone(), enabled).await?;
    Ok(flashed(&user.session, said, &endpoint_url(id.as_str())))
}

pub async fn disable(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    switch(&state, &user, path, false, "Endpoint disabled.").await
}

pub async fn enable(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    switch(&state, &user, path, true, "Endpoint enabled: new events are sent to it again.").await
}

pub async fn confirm_delete(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    ask((&state, &user, hx), path, ("delete", "Delete"), |c| {
        Ok(c.says("Its queued deliveries and their history are deleted with it. This cannot be undone.")
            .button("Delete endpoint"))
    })
    .await
}

pub async fn delete(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    state.webhook_service().delete(&manager(&user)?, id).await?;
    Ok(flashed(&user.session, "Endpoint deleted.", LIST))
}

/// Queues a delivery's message again; htmx gets the refreshed list.
pub async fn resend(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, AppError> {
    let (raw, delivery) = path.into_inner();
    let (m, id) = (manager(&user)?, endpoint_id(raw)?);
    let service = state.webhook_service();
    let event = service.resend(&m, id.clone(), delivery).await?;
    let message = format!("{event} queued again.");
    if hx.wants_fragment() {
        let detail = service.show(&m, id).await?;
        return confirm::fragment_with_toast(&EndpointPage::new(&user, detail, service.now())?.deliveries(), &message);
    }
    Ok(flashed(&user.session, &message, &endpoint_url(id.as_str())))
}
