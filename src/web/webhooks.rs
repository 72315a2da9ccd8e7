//! Settings → Developer → Webhooks: a team's endpoints, their secrets and
//! their deliveries.
//!
//! Rules: each handler calls one method of [`WebhookService`], which asks the
//! policy (owners and admins; another team's endpoint is not found); the
//! signing secret is shown once, in the answer that made it (`no-store`),
//! with `id="secret"`; a form sent twice (a reload of that answer) lands on
//! what the first one made instead of making another (`web::resubmit`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::answer::{again, flashed, refusable};
use super::auth::{CurrentUser, id_param};
use super::format::When;
use super::htmx::{HxRequest, push_url};
use super::page::{Layout, Nav, render};
use super::{AppState, State};
use crate::domain::{DeliveryStatus, EndpointId, PlainSecret, WebhookEvent};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::webhooks::{ALL_EVENTS, EndpointDetail, EndpointInput, Manager, WebhookService};
use crate::store::models::{WebhookDelivery, WebhookEndpoint};

mod actions;

pub use actions::{
    confirm_delete, confirm_disable, confirm_rotate, delete, disable, enable, resend, rotate, to_endpoint,
};

pub const LIST: &str = "/settings/developer/webhooks";

impl AppState {
    pub fn webhook_service(&self) -> WebhookService<'_> {
        WebhookService {
            db: &self.db,
            keys: &self.keys,
            clock: &self.clock,
            allow_private: self.config.webhook_allow_private,
        }
    }
}

/// The signed-in member as a manager of their team's endpoints (403 without a team).
pub(super) fn manager(user: &CurrentUser) -> Result<Manager, AppError> {
    let (team, role) = user.team()?;
    Ok(Manager { actor: user.actor.clone(), team_id: team.id.as_str().into(), role })
}

pub(super) fn endpoint_url(id: &str) -> String {
    format!("{LIST}/{id}")
}

pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events_label: String,
    pub enabled: bool,
    pub disabled_reason: String,
    pub created: When,
    /// Until when the previous secret still signs.
    pub previous_until: Option<When>,
}

fn view(e: &WebhookEndpoint, now: i64) -> EndpointView {
    let events_label = match e.events.as_str() {
        ALL_EVENTS => "All events".to_owned(),
        events => events.split_whitespace().collect::<Vec<_>>().join(", "),
    };
    EndpointView {
        id: e.id.clone(),
        url: e.url.clone(),
        description: e.description.clone(),
        events_label,
        enabled: e.disabled_at.is_none(),
        disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
        created: When::at(e.created_at, now),
        previous_until: e.old_secret_until.filter(|u| *u > now && e.old_secret_enc.is_some()).map(|u| When::at(u, now)),
    }
}

pub struct DeliveryView {
    pub id: i64,
    pub event: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub attempts: i64,
    pub response: String,
    pub last_attempt: Option<When>,
    pub next_attempt: Option<When>,
    pub error: String,
}

fn delivery_view((d, event): &(WebhookDelivery, String), now: i64) -> DeliveryView {
    let (status, status_class) = match d.status {
        DeliveryStatus::Pending => ("Pending", "status-expiring_soon"),
        DeliveryStatus::Delivered => ("Delivered", "status-active"),
        DeliveryStatus::Failed => ("Failed", "status-revoked"),
    };
    DeliveryView {
        id: d.id,
        event: event.clone(),
        status,
        status_class,
        attempts: d.attempts,
        response: d.last_status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
        last_attempt: When::maybe(d.last_attempt_at, now),
        next_attempt: When::maybe(d.next_attempt_at.filter(|_| d.status == DeliveryStatus::Pending), now),
        error: d.last_error.clone().unwrap_or_default(),
    }
}

/// The event checkboxes: (type, description, ticked).
fn catalog(input: &EndpointInput) -> Vec<(&'static str, &'static str, bool)> {
    WebhookEvent::ALL.iter().map(|e| (e.as_str(), e.describe(), input.events.iter().any(|t| t == e.as_str()))).collect()
}

fn input_of(e: &WebhookEndpoint) -> EndpointInput {
    let all = e.events == ALL_EVENTS;
    let events = if all { Vec::new() } else { e.events.split_whitespace().map(str::to_owned).collect() };
    EndpointInput { url: e.url.clone(), description: e.description.clone(), events, all }
}

fn parse(pairs: &[(String, String)]) -> EndpointInput {
    let mut input = EndpointInput::default();
    for (k, v) in pairs {
        match k.as_str() {
            "url" => input.url = v.clone(),
            "description" => input.description = v.clone(),
            "events" => input.events.push(v.clone()),
            "all_events" => input.all = !v.is_empty(),
            _ => {}
        }
    }
    input
}

#[derive(Template)]
#[template(path = "pages/webhooks.html")]
struct ListPage {
    layout: Layout,
    endpoints: Vec<EndpointView>,
    form: EndpointInput,
    catalog: Vec<(&'static str, &'static str, bool)>,
    errors: FieldErrors,
    submission: String,
}

#[derive(Template)]
#[template(path = "pages/webhook.html")]
pub(super) struct EndpointPage {
    layout: Layout,
    e: EndpointView,
    form: EndpointInput,
    catalog: Vec<(&'static str, &'static str, bool)>,
    errors: FieldErrors,
    secret: Option<PlainSecret>,
    deliveries: Vec<DeliveryView>,
}

#[derive(Template)]
#[template(path = "partials/webhook_deliveries_partial.html")]
pub(super) struct DeliveriesPartial {
    e: EndpointView,
    deliveries: Vec<DeliveryView>,
    csrf: String,
}

impl EndpointPage {
    pub(super) fn new(user: &CurrentUser, d: EndpointDetail, now: i64) -> Result<Self, AppError> {
        let form = input_of(&d.endpoint);
        Ok(Self {
            layout: Layout::new(user, Nav::Webhooks)?,
            catalog: catalog(&form),
            form,
            e: view(&d.endpoint, now),
            errors: FieldErrors::default(),
            secret: None,
            deliveries: d.deliveries.iter().map(|x| delivery_view(x, now)).collect(),
        })
    }

    pub(super) fn deliveries(self) -> DeliveriesPartial {
        DeliveriesPartial { csrf: self.layout.csrf.clone(), e: self.e, deliveries: self.deliveries }
    }
}

async fn list_page(state: &State, user: &CurrentUser, form: EndpointInput) -> Result<ListPage, AppError> {
    let endpoints = state.webhook_service().list(&manager(user)?).await?;
    let now = state.clock.now();
    Ok(ListPage {
        layout: Layout::new(user, Nav::Webhooks)?,
        endpoints: endpoints.iter().map(|e| view(e, now)).collect(),
        catalog: catalog(&form),
        form,
        errors: FieldErrors::default(),
        submission: super::resubmit::token()?,
    })
}

pub async fn index(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    render(StatusCode::OK, &list_page(&state, &user, EndpointInput::default()).await?)
}

pub async fn create(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let pairs = body.into_inner();
    let submission = super::resubmit::accepted_in(&pairs);
    let (m, input) = (manager(&user)?, parse(&pairs));
    if let Some(id) = super::resubmit::made(&user.session, "webhook", submission)? {
        let said = "The signing secret was shown once, when the endpoint was added. Rotate it if you lost it.";
        return Ok(flashed(&user.session, said, &endpoint_url(&id)));
    }
    let service = state.webhook_service();
    match refusable(service.create(&m, input.clone()).await)? {
        Ok((endpoint, secret)) => {
            super::resubmit::remember(&user.session, "webhook", submission, &endpoint.id)?;
            let detail = service.show(&m, EndpointId::from(endpoint.id.as_str())).await?;
            let page = EndpointPage { secret: Some(secret), ..EndpointPage::new(&user, detail, service.now())? };
            Ok(push_url(render(StatusCode::OK, &page)?, hx, &endpoint_url(&endpoint.id)))
        }
        Err(errors) => again(&ListPage { errors, ..list_page(&state, &user, input).await? }, hx, LIST),
    }
}

pub async fn show(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = EndpointId::from(id_param(path.into_inner())?);
    let service = state.webhook_service();
    let detail = service.show(&manager(&user)?, id).await?;
    render(StatusCode::OK, &EndpointPage::new(&user, detail, service.now())?)
}

/// The deliveries alone (htmx refreshes them).
pub async fn deliveries(state: State, user: CurrentUser, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = EndpointId::from(id_param(path.into_inner())?);
    let service = state.webhook_service();
    let detail = service.show(&manager(&user)?, id).await?;
    render(StatusCode::OK, &EndpointPage::new(&user, detail, service.now())?.deliveries())
}

pub async fn update(
    state: State,
    user: CurrentUser,
    hx: HxRequest,
    path: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = EndpointId::from(id_param(path.into_inner())?);
    let (m, input) = (manager(&user)?, parse(&body.into_inner()));
    let service = state.webhook_service();
    match refusable(service.update(&m, id.clone(), input.clone()).await)? {
        Ok(_) => Ok(flashed(&user.session, "Endpoint saved.", &endpoint_url(id.as_str()))),
        Err(errors) => {
            let detail = service.show(&m, id.clone()).await?;
            let page = EndpointPage { errors, ..EndpointPage::new(&user, detail, service.now())? };
            let page = EndpointPage { catalog: catalog(&input), form: input, ..page };
            again(&page, hx, &endpoint_url(id.as_str()))
        }
    }
}
