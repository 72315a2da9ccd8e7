//! Webhooks (Standard Webhooks): a team's endpoints hear about its keys,
//! apps, members and security as they change.
//!
//! Rules: messages are written by the change's own transaction (`outbox`),
//! delivered by a [`Dispatcher`] on every instance — each endpoint by one
//! instance at a time, in order, retried for 24 hours (`delivery`) — signed
//! with the endpoint's secret (`signing`), and only to public addresses
//! unless the operator allows private ones (`guard`, `sender`). Endpoints are
//! managed by owners and admins ([`WebhookService`], `endpoints`).

mod delivery;
mod endpoints;
pub mod guard;
mod outbox;
pub mod sender;
pub mod signing;

pub use delivery::{Dispatcher, FAILING_REASON, LAST_TRY_AFTER, RETRY_DELAYS, next_attempt};
pub use endpoints::{EndpointInput, MAX_DESCRIPTION, MAX_PER_TEAM, Manager};
pub use outbox::{ALL_EVENTS, Announced, enqueue, render, subscribed};

use crate::domain::{EndpointId, PlainSecret};
use crate::service::clock::Clock;
use crate::service::crypto::Keys;
use crate::service::{Error, FieldErrors, Result, policy};
use crate::store::Db;
use crate::store::models::{WebhookDelivery, WebhookEndpoint};

/// How many deliveries an endpoint's page lists.
pub const DELIVERIES_SHOWN: i64 = 50;

/// Endpoints and their deliveries, over what the application shares.
pub struct WebhookService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub clock: &'a Clock,
    /// `webhook_allow_private`: http:// and private addresses allowed.
    pub allow_private: bool,
}

/// An endpoint and its latest deliveries (with their event types).
pub struct EndpointDetail {
    pub endpoint: WebhookEndpoint,
    pub deliveries: Vec<(WebhookDelivery, String)>,
}

impl WebhookService<'_> {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether the manager may see and change the team's endpoints.
    pub fn may_manage(&self, m: &Manager) -> Result<()> {
        policy::may_manage_webhooks(m.role)
    }

    pub async fn list(&self, m: &Manager) -> Result<Vec<WebhookEndpoint>> {
        self.may_manage(m)?;
        let team = m.team_id.clone();
        self.db.run(move |c| Ok(WebhookEndpoint::for_team(c, team.as_str())?)).await
    }

    pub async fn show(&self, m: &Manager, id: EndpointId) -> Result<EndpointDetail> {
        self.may_manage(m)?;
        let team = m.team_id.clone();
        self.db
            .run(move |c| {
                let endpoint = endpoints::endpoint(c, &team, &id)?;
                let deliveries = WebhookDelivery::recent(c, &endpoint.id, DELIVERIES_SHOWN)?;
                Ok(EndpointDetail { endpoint, deliveries })
            })
            .await
    }

    /// Validates the input (the URL's name resolved too).
    async fn valid(&self, input: &EndpointInput) -> Result<endpoints::Valid> {
        let valid = endpoints::validate(input, self.allow_private).map_err(Error::Invalid)?;
        let url = url::Url::parse(&valid.url).map_err(|_| Error::Invalid(FieldErrors::single("url", "Not a URL.")))?;
        guard::check_resolved(&url, self.allow_private)
            .await
            .map_err(|m| Error::Invalid(FieldErrors::single("url", m)))?;
        Ok(valid)
    }

    /// A new endpoint and its secret (shown once).
    pub async fn create(&self, m: &Manager, input: EndpointInput) -> Result<(WebhookEndpoint, PlainSecret)> {
        self.may_manage(m)?;
        let valid = self.valid(&input).await?;
        let (keys, m, at) = (self.keys.clone(), m.clone(), self.clock.now());
        self.db.run(move |c| endpoints::create(c, &keys, &m, valid, at)).await
    }

    pub async fn update(&self, m: &Manager, id: EndpointId, input: EndpointInput) -> Result<WebhookEndpoint> {
        self.may_manage(m)?;
        let valid = self.valid(&input).await?;
        let m = m.clone();
        self.db.run(move |c| endpoints::update(c, &m, &id, valid)).await
    }

    /// A new secret (shown once); the old one signs too for `grace` seconds.
    pub async fn rotate(&self, m: &Manager, id: EndpointId, grace: i64) -> Result<(WebhookEndpoint, PlainSecret)> {
        self.may_manage(m)?;
        if !(0..=7 * 86_400).contains(&grace) {
            return Err(Error::Invalid(FieldErrors::single("grace", "Choose a grace period between 0 and 7 days.")));
        }
        let (keys, m, at) = (self.keys.clone(), m.clone(), self.clock.now());
        self.db.run(move |c| endpoints::rotate(c, &keys, &m, (&id, grace), at)).await
    }

    pub async fn delete(&self, m: &Manager, id: EndpointId) -> Result<WebhookEndpoint> {
        self.may_manage(m)?;
        let m = m.clone();
        self.db.run(move |c| endpoints::delete(c, &m, &id)).await
    }

    pub async fn set_enabled(&self, m: &Manager, id: EndpointId, on: bool) -> Result<WebhookEndpoint> {
        self.may_manage(m)?;
        let (m, at) = (m.clone(), self.clock.now());
        self.db.run(move |c| endpoints::set_enabled(c, &m, &id, on, at)).await
    }

    /// Queues a delivery's message again; returns its event type.
    pub async fn resend(&self, m: &Manager, id: EndpointId, delivery_id: i64) -> Result<String> {
        self.may_manage(m)?;
        let (m, at) = (m.clone(), self.clock.now());
        let message = self.db.run(move |c| endpoints::resend(c, &m, &id, delivery_id, at)).await?;
        Ok(message.event_type)
    }
}
