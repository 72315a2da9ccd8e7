//! An endpoint's actions: rotate its secret, disable, enable, delete, and
//! resend a delivery.
//!
//! Rules: rotating, disabling and deleting ask first (a `GET` on the action's
//! URL answers the confirmation, under the same policy as the action); the
//! new secret is shown once in the rotation's answer; a rotation form sent
//! twice does not rotate twice (`web::resubmit`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::super::auth::{CurrentUser, flash, id_param};
use super::super::confirm::{self, Confirm, Field};
use super::super::htmx::HxRequest;
use super::super::page::{Layout, Nav, redirect, render};
use super::super::{State, resubmit};
use super::{EndpointPage, LIST, endpoint_url, manager};
use crate::domain::EndpointId;
use crate::error::AppError;
use crate::service::Error;

fn endpoint_id(raw: String) -> Result<EndpointId, AppError> {
    Ok(EndpointId::from(id_param(raw)?))
}

/// `GET` on an action that only accepts `POST` without asking: the endpoint's page.
pub async fn to_endpoint(path: web::Path<(String,)>) -> Result<HttpResponse, AppError> {
    Ok(redirect(&endpoint_url(&id_param(path.into_inner().0)?)))
}

fn confirmation(user: &CurrentUser, hx: HxRequest, c: Confirm) -> Result<HttpResponse, AppError> {
    confirm::respond(hx, Layout::new(user, Nav::Webhooks)?, &c)
}

pub async fn confirm_rotate(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    let d = state.webhook_service().show(&manager(&user)?, id).await?;
    let back = endpoint_url(&d.endpoint.id);
    let c = Confirm::new(
        "confirm-rotate",
        format!("Rotate the signing secret of {}?", d.endpoint.url),
        format!("{back}/rotate"),
    )
    .says("A new secret is made and shown once, on the next page: give it to your receiver.")
    .says("Meanwhile each delivery is signed with both secrets, so your receiver can switch without missing one.")
    .field(confirm::grace_field("The old secret keeps signing for"))
    .field(Field::Hidden { name: "submission".into(), value: resubmit::token()? })
    .button("Rotate secret")
    .cancel_to(back)
    .not_dangerous();
    confirmation(&user, hx, c)
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
        flash(&user.session, "The new secret was shown once, when it was made. Rotate again if you lost it.");
        return Ok(redirect(&endpoint_url(id.as_str())));
    }
    let service = state.webhook_service();
    let (endpoint, secret) = service.rotate(&m, id.clone(), form.grace).await.map_err(|e| match e {
        Error::Invalid(f) => AppError::BadRequest(f.0.values().next().cloned().unwrap_or_default()),
        other => other.into(),
    })?;
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
    let id = endpoint_id(path.into_inner())?;
    let d = state.webhook_service().show(&manager(&user)?, id).await?;
    let back = endpoint_url(&d.endpoint.id);
    let c = Confirm::new("confirm-disable", format!("Disable {}?", d.endpoint.url), format!("{back}/disable"))
        .says(
            "Nothing is sent to it until you enable it again, and events that happen meanwhile are not queued for it.",
        )
        .button("Disable endpoint")
        .cancel_to(back);
    confirmation(&user, hx, c)
}

pub async fn disable(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    state.webhook_service().set_enabled(&manager(&user)?, id.clone(), false).await?;
    flash(&user.session, "Endpoint disabled.");
    Ok(redirect(&endpoint_url(id.as_str())))
}

pub async fn enable(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    state.webhook_service().set_enabled(&manager(&user)?, id.clone(), true).await?;
    flash(&user.session, "Endpoint enabled: new events are sent to it again.");
    Ok(redirect(&endpoint_url(id.as_str())))
}

pub async fn confirm_delete(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    let d = state.webhook_service().show(&manager(&user)?, id).await?;
    let back = endpoint_url(&d.endpoint.id);
    let c = Confirm::new("confirm-delete", format!("Delete {}?", d.endpoint.url), format!("{back}/delete"))
        .says("Its queued deliveries and their history are deleted with it. This cannot be undone.")
        .button("Delete endpoint")
        .cancel_to(back);
    confirmation(&user, hx, c)
}

pub async fn delete(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = endpoint_id(path.into_inner())?;
    state.webhook_service().delete(&manager(&user)?, id).await?;
    flash(&user.session, "Endpoint deleted.");
    Ok(redirect(LIST))
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
    flash(&user.session, &message);
    Ok(redirect(&endpoint_url(id.as_str())))
}
