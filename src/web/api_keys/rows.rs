//! The rows and charts the key pages (and support's key page) show.
//!
//! Rules: a row's status is the key's own (`ApiKey::status`) at the time
//! given; its buttons show only where `policy::manage_key` allows them.

use std::collections::HashMap;

use crate::domain::KeyStatus;
use crate::service::accounts::Role;
use crate::service::keys::{self, codec, scopes};
use crate::service::policy;
use crate::store::models::ApiKey;
use crate::web::format;

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub last_used: String,
    pub expires: String,
    pub status: KeyStatus,
    pub note: Option<String>,
    pub can_manage: bool,
}

impl KeyRow {
    /// Whether the key stops working within a week (for templates).
    pub fn is_expiring_soon(&self) -> bool {
        self.status == KeyStatus::ExpiringSoon
    }
}

pub struct UsageBar {
    pub x: i64,
    pub y: i64,
    pub height: i64,
    pub label: String,
}

pub fn row(key: &ApiKey, prefix: &str, emails: &HashMap<String, String>, me: &str, role: Role, at: i64) -> KeyRow {
    let status = keys::status(key, at);
    let note = match (&key.replaced_by, &key.rolled_from, &key.revoked_reason) {
        (_, _, Some(_)) => crate::service::support::revocation_note(key),
        (Some(_), _, _) if status != KeyStatus::Expired => {
            Some(format!("Rolled; keeps working until {}", key.expires_at.map(format::datetime).unwrap_or_default()))
        }
        (Some(_), _, _) => Some("Rolled; replaced by a newer key".into()),
        (None, Some(_), _) => Some("Replaces a rolled key".into()),
        _ => None,
    };
    KeyRow {
        id: key.id.clone(),
        name: key.name.clone(),
        prefix: codec::display(prefix, &key.key_prefix),
        scopes: scopes::scopes_of(&key.scopes),
        created_by: match key.created_by.as_ref() {
            Some(id) => emails.get(id).cloned().unwrap_or_else(|| "a former member".into()),
            None => "—".into(),
        },
        created_at: format::date(key.created_at),
        last_used: key.last_used_at.map_or_else(|| "Never".into(), |t| format::relative(t, at)),
        expires: key.expires_at.map_or_else(|| "Never".into(), format::datetime),
        status,
        note,
        can_manage: status.is_usable()
            && policy::manage_key(
                &policy::Caller { user_id: Some(me), role, ceiling: None },
                key.created_by.as_deref(),
            )
            .is_ok(),
    }
}

pub fn bars(usage: &[(i64, i64)]) -> (Vec<UsageBar>, i64, i64) {
    let peak = usage.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let total = usage.iter().map(|(_, c)| *c).sum();
    let bars = usage
        .iter()
        .enumerate()
        .map(|(i, (day, count))| {
            let height = if peak == 0 { 0 } else { (count * 100 + peak - 1) / peak };
            UsageBar {
                x: i as i64 * 20,
                y: 110 - height,
                height,
                label: format!("{}: {count} requests", format::date(day * 86_400)),
            }
        })
        .collect();
    (bars, total, peak)
}
