//! The outbox: an audited change becomes a webhook message, in the change's
//! own transaction.
//!
//! Rules: `audit::record_at` calls [`enqueue`] for every team event whose
//! action announces a webhook event (`WebhookEvent::of_action`): one indexed
//! query reads the team's enabled endpoints; when some want the event, one
//! message and one delivery per such endpoint are inserted. Nothing here runs
//! on the verification path. The payload is Standard Webhooks'
//! `{"type", "timestamp", "data"}`; `data` holds the team, the object, the
//! actor's label, what the object is called (a key's name and display
//! prefix, an app's name, a person's email) and the audit details — which
//! never hold a secret.

use serde_json::{Value, json};

use crate::domain::{AuditAction, WebhookEvent};
use crate::service::keys::codec;
use crate::service::{Error, Result, crypto};
use crate::store::DbConn;
use crate::store::models::{ApiKey, OauthClient, User, WebhookDelivery, WebhookEndpoint, WebhookMessage};

/// An audited change that announces a webhook event.
pub struct Announced<'a> {
    pub team_id: &'a str,
    pub event_type: WebhookEvent,
    pub action: AuditAction,
    /// The audit event's object: (kind, id).
    pub object: Option<(String, String)>,
    /// The actor's label as the audit log records it.
    pub actor: &'a str,
}

/// The value of `events` that subscribes to every type.
pub const ALL_EVENTS: &str = "*";

/// Whether an endpoint's `events` column subscribes to `event`.
pub fn subscribed(events: &str, event: WebhookEvent) -> bool {
    events.split_whitespace().any(|e| e == ALL_EVENTS || e == event.as_str())
}

/// Queues the message for every enabled endpoint of the team that wants it.
pub fn enqueue(conn: &mut DbConn, a: &Announced<'_>, details: Value, at: i64) -> Result<()> {
    let wanted: Vec<String> = WebhookEndpoint::enabled_for_team(conn, a.team_id)?
        .into_iter()
        .filter(|(_, events)| subscribed(events, a.event_type))
        .map(|(id, _)| id)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let payload = payload(conn, a, details, at)?;
    let id = crypto::new_id("msg").map_err(|e| Error::internal(e, "drawing a webhook message id"))?;
    crate::store::transaction(conn, |conn| {
        let message = WebhookMessage {
            id: id.clone(),
            team_id: a.team_id.to_owned(),
            event_type: a.event_type.as_str().to_owned(),
            payload: payload.to_string(),
            created_at: at,
        };
        message.insert(conn)?;
        WebhookDelivery::queue(conn, &wanted, &id, at)?;
        Ok::<_, Error>(())
    })
}

/// `{"type", "timestamp", "data"}` of an announced change.
fn payload(conn: &mut DbConn, a: &Announced<'_>, details: Value, at: i64) -> Result<Value> {
    let timestamp = time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let mut data = json!({
        "team_id": a.team_id,
        "action": a.action.as_str(),
        "actor": a.actor,
        "object": a.object.as_ref().map(|(kind, id)| json!({"type": kind, "id": id})),
    });
    if let Some((kind, id)) = &a.object {
        name_object(conn, &mut data, kind, id, &details)?;
    }
    data["details"] = details;
    if matches!(a.action, AuditAction::ApiKeyRevoked | AuditAction::ApiKeyRevokedBySupport) {
        let by = if a.action == AuditAction::ApiKeyRevokedBySupport { "support" } else { "team" };
        data["by"] = json!(by);
    }
    Ok(json!({"type": a.event_type.as_str(), "timestamp": timestamp, "data": data}))
}

/// Adds what the object is called: `key`, `app` or `user`.
fn name_object(conn: &mut DbConn, data: &mut Value, kind: &str, id: &str, details: &Value) -> Result<()> {
    let recorded = |field: &str| details.get(field).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "api_key" => {
            if let Some(k) = ApiKey::find(conn, id)? {
                // The display prefix is completed with the configured key
                // prefix when the body is rendered ([`render`]).
                data["key"] = json!({"id": k.id, "name": k.name, "prefix": k.key_prefix});
            }
        }
        "oauth_app" => {
            let name = OauthClient::find(conn, id)?.map(|c| c.name).or_else(|| recorded("name"));
            data["app"] = json!({"id": id, "name": name});
        }
        "user" => {
            let email = User::find(conn, id)?.map(|u| u.email);
            data["user"] = json!({"id": id, "email": email});
        }
        _ => {}
    }
    Ok(())
}

/// The body sent for a stored payload: the same bytes on every attempt; a
/// key's display prefix reads as everywhere else (`lk_a1b2c3d4`).
pub fn render(payload: &str, api_key_prefix: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(payload) else { return payload.to_owned() };
    if let Some(prefix) = v.pointer_mut("/data/key/prefix")
        && let Some(body) = prefix.as_str()
    {
        *prefix = json!(codec::display(api_key_prefix, body));
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_subscribe_to_types_or_to_everything() {
        assert!(subscribed("*", WebhookEvent::MemberInvited));
        assert!(subscribed("api_key.created api_key.revoked", WebhookEvent::ApiKeyRevoked));
        assert!(!subscribed("api_key.created", WebhookEvent::ApiKeyRevoked));
        assert!(!subscribed("", WebhookEvent::ApiKeyRevoked));
    }

    #[test]
    fn the_body_names_a_key_by_its_display_prefix() {
        let stored = r#"{"type":"api_key.created","data":{"key":{"id":"key_1","name":"k","prefix":"a1b2c3d4"}}}"#;
        let body = render(stored, "lk");
        assert!(body.contains(r#""prefix":"lk_a1b2c3d4""#), "{body}");
        assert_eq!(body, render(stored, "lk"), "the same bytes on every attempt");
        assert_eq!(render("not json", "lk"), "not json");
    }
}
