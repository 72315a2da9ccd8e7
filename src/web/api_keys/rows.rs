//! The rows the key pages show.
//!
//! Rules: a row's status is the key's own (`ApiKey::status`) at the time
//! given; its buttons show only where `policy::manage_key` allows them, and
//! only for a key that is not over (revoked or expired): a disabled key may be
//! enabled, edited or revoked, but not rolled.
//! A key expiring soon says when in words, beside its badge; a key that
//! holds scopes it did not use lately (`usage::report::Privilege`) is
//! flagged with their names, and only while it works.

use std::collections::HashMap;

use crate::domain::KeyStatus;
use crate::service::accounts::Role;
use crate::service::keys::{self, codec, scopes};
use crate::service::policy;
use crate::service::usage::report::Privilege;
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
    /// Paused since then (refused until enabled again).
    pub disabled_at: Option<When>,
    /// The key this one replaces, and the one that replaced it: (id, display prefix).
    pub replaces: Option<(String, String)>,
    pub replaced_by: Option<(String, String)>,
    /// "Expires in 3 days", for a key expiring soon.
    pub expiry_note: Option<String>,
    /// Granted scopes not used in the last `unused_days` days (empty while unknown).
    pub unused: Vec<String>,
    pub unused_days: i64,
    /// The old key of a roll still in use near the end of its grace: when it ends.
    pub rotation_busy: Option<When>,
}

impl KeyRow {
    /// Rolling is offered for a working key that may be managed and was not rolled already.
    pub fn can_roll(&self) -> bool {
        self.can_manage && self.replaced_by.is_none() && self.status.is_usable()
    }

    /// Disabling is offered for a working key that may be managed.
    pub fn can_disable(&self) -> bool {
        self.can_manage && self.status.is_usable()
    }

    /// Enabling is offered for a disabled key that may be managed.
    pub fn can_enable(&self) -> bool {
        self.can_manage && self.is_disabled()
    }

    pub fn is_disabled(&self) -> bool {
        self.status == KeyStatus::Disabled
    }

    pub fn disable_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/disable", self.id)
    }

    pub fn enable_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/enable", self.id)
    }

    /// Disabling from the key's own page comes back to it.
    pub fn disable_here_href(&self) -> String {
        format!("{}?from=detail", self.disable_href())
    }

    /// Enabling from the key's own page comes back to it.
    pub fn enable_here_href(&self) -> String {
        format!("{}?from=detail", self.enable_href())
    }

    pub fn disable_id(&self) -> String {
        format!("disable-{}", self.id)
    }

    pub fn enable_id(&self) -> String {
        format!("enable-{}", self.id)
    }

    /// The key's page.
    pub fn href(&self) -> String {
        format!("/settings/developer/api-keys/{}", self.id)
    }

    pub fn roll_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/roll", self.id)
    }

    /// "Roll with only the used scopes" (its confirmation).
    pub fn roll_used_href(&self) -> String {
        format!("/settings/developer/api-keys/{}/roll-used", self.id)
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
    /// Flags the scopes the key did not use lately, from what its use says
    /// (`None`: not judged); a key that no longer works, or was rolled away
    /// (its successor is what counts), is not flagged. Call after [`link`](Self::link).
    pub fn judged(mut self, privilege: Option<&Privilege>) -> Self {
        if let Some(Privilege::Known { days, unused, .. }) = privilege
            && self.status.is_usable()
            && self.replaced_by.is_none()
        {
            self.unused = unused.clone();
            self.unused_days = *days;
        }
        self
    }

    /// The unused scopes, comma-separated (a title).
    pub fn unused_list(&self) -> String {
        self.unused.join(", ")
    }

    /// Marks the old key of a roll busy near the end of its grace (`ends`).
    pub fn busy(self, ends: Option<When>) -> Self {
        Self { rotation_busy: ends, ..self }
    }

    /// Whether the key stops working within a week (for templates).
    pub fn is_expiring_soon(&self) -> bool {
        self.status == KeyStatus::ExpiringSoon
    }
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
        disabled_at: When::maybe(key.disabled_at, at).filter(|_| status == KeyStatus::Disabled),
        replaces: None,
        replaced_by: None,
        expiry_note: expiry_note(status, key.expires_at, at),
        unused: Vec::new(),
        unused_days: 0,
        rotation_busy: None,
        can_manage: !status.is_final()
            && policy::manage_key(
                &policy::Caller { user_id: Some(me), role, ceiling: None },
                key.created_by.as_deref(),
            )
            .is_ok(),
    }
}

/// "Expires in 3 days" for a key expiring soon; nothing otherwise.
fn expiry_note(status: KeyStatus, expires_at: Option<i64>, at: i64) -> Option<String> {
    let expires_at = expires_at.filter(|_| status == KeyStatus::ExpiringSoon)?;
    Some(format!("Expires {}", format::ago(expires_at, at)))
}
