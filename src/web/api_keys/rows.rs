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
use crate::web::format::{self, When};

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub status: KeyStatus,
    pub note: Option<String>,
    pub can_manage: bool,
    pub description: String,
    pub created: When,
    pub last_used_at: Option<When>,
    pub expires_at: Option<When>,
    /// The key this one replaces, and the one that replaced it: (id, display prefix).
    pub replaces: Option<(String, String)>,
    pub replaced_by: Option<(String, String)>,
    /// The old key of a roll still in use near the end of its grace: when it ends.
    pub rotation_busy: Option<When>,
}

impl KeyRow {
    /// Rolling is offered for a key that may be managed and was not rolled already.
    pub fn can_roll(&self) -> bool {
        self.can_manage && self.replaced_by.is_none()
    }

    /// The key's page.
    pub fn href(&self) -> String {
        format!("/settings/developer/api-keys/{}", self.id)
    }

    pub fn roll_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/roll", self.id)
    }

    pub fn revoke_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/revoke", self.id)
    }

    /// Revoking from the key's own page comes back to it.
    pub fn revoke_here_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/revoke?from=detail", self.id)
    }

    pub fn roll_id(&self) -> String {
        format!("roll-{}", self.id)
    }

    pub fn revoke_id(&self) -> String {
        format!("revoke-{}", self.id)
    }

    /// "1 scope", "5 scopes".
    pub fn scope_count(&self) -> String {
        match self.scopes.len() {
            1 => "1 scope".into(),
            n => format!("{n} scopes"),
        }
    }

    /// Every scope, comma-separated (a title).
    pub fn scope_list(&self) -> String {
        self.scopes.join(", ")
    }

    /// Names the lineage from a lookup of linked keys (id → key).
    pub fn link(mut self, key: &ApiKey, prefix: &str, linked: &HashMap<String, ApiKey>) -> Self {
        let find = |id: &Option<String>| {
            id.as_ref().map(|id| {
                let shown =
                    linked.get(id).map_or_else(|| "another key".into(), |k| codec::display(prefix, &k.key_prefix));
                (id.clone(), shown)
            })
        };
        self.replaces = find(&key.rolled_from);
        self.replaced_by = find(&key.replaced_by);
        self
    }
}

impl KeyRow {
    /// Marks the old key of a roll busy near the end of its grace (`ends`).
    pub fn busy(self, ends: Option<When>) -> Self {
        Self { rotation_busy: ends, ..self }
    }

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
    let note = key.revoked_reason.as_ref().and_then(|_| crate::service::support::revocation_note(key));
    KeyRow {
        id: key.id.clone(),
        name: key.name.clone(),
        prefix: codec::display(prefix, &key.key_prefix),
        scopes: scopes::scopes_of(&key.scopes),
        created_by: match key.created_by.as_ref() {
            Some(id) => emails.get(id).cloned().unwrap_or_else(|| "a former member".into()),
            None => "—".into(),
        },
        status,
        note,
        description: key.description.clone(),
        created: When::at(key.created_at, at),
        last_used_at: When::maybe(key.last_used_at, at),
        expires_at: When::maybe(key.expires_at, at),
        replaces: None,
        replaced_by: None,
        rotation_busy: None,
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
