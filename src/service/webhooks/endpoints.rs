//! Managing a team's endpoints (Settings → Developer → Webhooks).
//!
//! Rules: owners and admins only (`policy::may_manage_webhooks`), asked again
//! with the role read inside each write's transaction; another team's
//! endpoint is not found; the URL passes the guard (`guard`), the
//! description is plain text, the events are known types (or all); a team
//! has at most [`MAX_PER_TEAM`] endpoints; a secret is made here and shown
//! once, at creation and at each rotation (grace 0 to 7 days, both secrets
//! signing meanwhile); every change is audited in its transaction, with the
//! URL but never a secret.

use serde_json::json;

use super::guard;
use super::outbox::ALL_EVENTS;
use super::signing::{self, Slot};
use crate::domain::{AuditAction, EndpointId, PlainSecret, Role, TeamId, WebhookEvent};
use crate::service::audit::{self, Actor, Event, ObjectKind};
use crate::service::crypto::{self, Keys};
use crate::service::{Error, FieldErrors, Result, policy, validate};
use crate::store::DbConn;
use crate::store::models::{EndpointSettings, WebhookDelivery, WebhookEndpoint, WebhookMessage};

/// Endpoints a team may have.
pub const MAX_PER_TEAM: usize = 20;
/// The longest description.
pub const MAX_DESCRIPTION: usize = 500;

/// A signed-in owner or admin acting on their team's endpoints (owned, for
/// the blocking pool).
#[derive(Debug, Clone)]
pub struct Manager {
    pub actor: Actor,
    pub team_id: TeamId,
    pub role: Role,
}

/// What the form submits.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    /// "All events" was ticked.
    pub all: bool,
}

/// A valid input, as stored.
pub struct Valid {
    pub url: String,
    pub description: String,
    pub events: String,
}

/// The checks that need no lookup; the URL's name is resolved apart
/// ([`guard::check_resolved`]).
pub fn validate(input: &EndpointInput, allow_private: bool) -> std::result::Result<Valid, FieldErrors> {
    let mut errors = FieldErrors::default();
    let url = guard::check_url(&input.url, allow_private).map_err(|m| errors.add("url", m)).ok();
    let description = validate::text(&input.description, MAX_DESCRIPTION).map_err(|m| errors.add("description", m));
    let mut events: Vec<&str> = Vec::new();
    for e in input.events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match WebhookEvent::parse(e) {
            Some(known) if !events.contains(&known.as_str()) => events.push(known.as_str()),
            Some(_) => {}
            None => errors.add("events", "Choose events from the list."),
        }
    }
    if !input.all && events.is_empty() {
        errors.add("events", "Choose at least one event, or all events.");
    }
    match (url, description, errors.is_empty()) {
        (Some(url), Ok(description), true) => Ok(Valid {
            url: url.as_str().to_owned(),
            description,
            events: if input.all { ALL_EVENTS.to_owned() } else { events.join(" ") },
        }),
        _ => Err(errors),
    }
}

/// The role the manager holds now, read inside the transaction.
fn allowed(conn: &mut DbConn, m: &Manager) -> Result<()> {
    let role = crate::service::accounts::locked_role(conn, m.team_id.as_str(), m.actor.user_id.as_deref())?;
    policy::may_manage_webhooks(role.unwrap_or(Role::Viewer))
}

/// An endpoint of the manager's team.
pub fn endpoint(conn: &mut DbConn, team_id: &TeamId, id: &EndpointId) -> Result<WebhookEndpoint> {
    WebhookEndpoint::find(conn, id.as_str())?.filter(|e| e.team_id == team_id.as_str()).ok_or(Error::NotFound)
}

fn event<'a>(action: AuditAction, e: &'a WebhookEndpoint) -> Event<'a> {
    Event::new(action).team(&e.team_id).object(ObjectKind::Webhook, &e.id)
}

pub fn create(
    conn: &mut DbConn,
    keys: &Keys,
    m: &Manager,
    v: Valid,
    at: i64,
) -> Result<(WebhookEndpoint, PlainSecret)> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        if WebhookEndpoint::for_team(conn, m.team_id.as_str())?.len() >= MAX_PER_TEAM {
            let message = format!("A team can have at most {MAX_PER_TEAM} endpoints: delete one first.");
            return Err(Error::Invalid(FieldErrors::single("url", message)));
        }
        let id = crypto::new_id("we").map_err(|e| Error::internal(e, "drawing an endpoint id"))?;
        let secret = signing::generate()?;
        let endpoint = WebhookEndpoint {
            secret_enc: signing::seal(keys, secret.expose(), &id, Slot::Current)?,
            id,
            team_id: m.team_id.as_str().to_owned(),
            url: v.url,
            description: v.description,
            events: v.events,
            old_secret_enc: None,
            old_secret_until: None,
            created_by: m.actor.user_id.clone(),
            created_at: at,
            disabled_at: None,
            disabled_reason: None,
            lease_until: None,
            lease_by: None,
        };
        endpoint.insert(conn)?;
        let details = json!({"url": endpoint.url, "events": endpoint.events});
        audit::record(conn, &m.actor, event(AuditAction::WebhookCreated, &endpoint).details(details))?;
        Ok((endpoint, secret))
    })
}

pub fn update(conn: &mut DbConn, m: &Manager, id: &EndpointId, v: Valid) -> Result<WebhookEndpoint> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        let e = endpoint(conn, &m.team_id, id)?;
        let s = EndpointSettings { url: &v.url, description: &v.description, events: &v.events };
        WebhookEndpoint::update_settings(conn, &e.id, &s)?;
        let details = json!({"url": v.url, "events": v.events, "previous_url": e.url});
        audit::record(conn, &m.actor, event(AuditAction::WebhookUpdated, &e).details(details))?;
        endpoint(conn, &m.team_id, id)
    })
}

/// A new secret; the current one keeps signing for `grace` seconds.
pub fn rotate(
    conn: &mut DbConn,
    keys: &Keys,
    m: &Manager,
    (id, grace): (&EndpointId, i64),
    at: i64,
) -> Result<(WebhookEndpoint, PlainSecret)> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        let e = endpoint(conn, &m.team_id, id)?;
        let secret = signing::generate()?;
        let sealed = signing::seal(keys, secret.expose(), &e.id, Slot::Current)?;
        let old = match grace {
            0 => None,
            _ => {
                let current = signing::open(keys, &e.secret_enc, &e.id, Slot::Current)?;
                Some(signing::seal(keys, current.expose(), &e.id, Slot::Previous)?)
            }
        };
        WebhookEndpoint::set_secrets(conn, &e.id, &sealed, (old.as_deref(), old.as_ref().map(|_| at + grace)))?;
        let details = json!({"url": e.url, "grace_seconds": grace});
        audit::record(conn, &m.actor, event(AuditAction::WebhookSecretRotated, &e).details(details))?;
        Ok((endpoint(conn, &m.team_id, id)?, secret))
    })
}

pub fn delete(conn: &mut DbConn, m: &Manager, id: &EndpointId) -> Result<WebhookEndpoint> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        let e = endpoint(conn, &m.team_id, id)?;
        WebhookEndpoint::delete(conn, &e.id)?;
        audit::record(conn, &m.actor, event(AuditAction::WebhookDeleted, &e).details(json!({"url": e.url})))?;
        Ok(e)
    })
}

/// Enables or disables the endpoint (nothing when it already is so).
pub fn set_enabled(conn: &mut DbConn, m: &Manager, id: &EndpointId, on: bool, at: i64) -> Result<WebhookEndpoint> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        let e = endpoint(conn, &m.team_id, id)?;
        let (changed, action) = match on {
            true => (WebhookEndpoint::enable(conn, &e.id)?, AuditAction::WebhookEnabled),
            false => {
                (WebhookEndpoint::disable(conn, &e.id, "Disabled by a member.", at)?, AuditAction::WebhookDisabled)
            }
        };
        if changed == 1 {
            audit::record(conn, &m.actor, event(action, &e).details(json!({"url": e.url})))?;
        }
        endpoint(conn, &m.team_id, id)
    })
}

/// Queues the message of one of the endpoint's deliveries again, due now
/// (after the endpoint's earlier deliveries).
pub fn resend(conn: &mut DbConn, m: &Manager, id: &EndpointId, delivery_id: i64, at: i64) -> Result<WebhookMessage> {
    crate::store::transaction(conn, |conn| {
        allowed(conn, m)?;
        // Locked first: two resends at once must not both see "not waiting".
        let e = WebhookEndpoint::find_for_update(conn, id.as_str())?
            .filter(|e| e.team_id == m.team_id.as_str())
            .ok_or(Error::NotFound)?;
        let d = WebhookDelivery::find(conn, delivery_id)?.filter(|d| d.endpoint_id == e.id).ok_or(Error::NotFound)?;
        let message = WebhookMessage::find(conn, &d.message_id)?.ok_or(Error::NotFound)?;
        // A message waits at most once per endpoint: resending it again
        // while it waits queues nothing more (no flood of one's receiver).
        if !WebhookDelivery::is_pending(conn, &e.id, &message.id)? {
            WebhookDelivery::queue(conn, std::slice::from_ref(&e.id), &message.id, at)?;
        }
        Ok(message)
    })
}
