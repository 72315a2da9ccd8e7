//! Changing a key in place: its name, description, allowed addresses, expiry
//! and scopes, and pausing it (disable, enable).
//!
//! Rules: the policy is that of roll and revoke (owners and admins any key of
//! the team, developers the keys they answer for, viewers none); a key the
//! caller may not change is not found, except to a viewer, who is told that
//! viewers change nothing. The caller's role is read again in the transaction
//! and the key is locked while it changes. Scopes only narrow — a wider key is
//! a new key — and every refusal is a field error with nothing changed, never
//! a silent narrowing. Whatever loosens a key (a later expiry or none, wider
//! addresses, enabling it) is allowed only while the caller could grant every
//! scope the key keeps. A new expiry is in the future, within the team's
//! maximum lifetime and the caller's own (a key never outlives the key that
//! changed it); new addresses stay within the caller's. A revoked or expired
//! key never changes; a key in a roll's grace keeps the end the rotation gave
//! it. One `api_key.updated` event names the fields that changed with their
//! old and new values; pausing is its own `api_key.disabled` or
//! `api_key.enabled`; a change to nothing records nothing. A new expiry
//! forgets the key's reminders, so that they come again for the new date.

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::{Creator, MAX_DESCRIPTION, MAX_NAME, Settings, allowed_ips_of, caller, check, current, key_event, scopes};
use crate::domain::{AuditAction, Role};
use crate::service::audit::{self, Actor};
use crate::service::{Error, FieldErrors, Result, policy, validate};
use crate::store::DbConn;
use crate::store::models::{ApiKey, Reminder, Team};

/// What to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Addresses or CIDR ranges; empty: any address.
    pub allowed_ips: Option<Vec<String>>,
    /// `Some(None)`: never expires.
    pub expires_at: Option<Option<i64>>,
    /// A subset of the key's scopes.
    pub scopes: Option<Vec<String>>,
    /// `true` pauses the key (refused like a revoked one), `false` resumes it.
    pub disabled: Option<bool>,
}

impl KeyEdit {
    /// Nothing asked for.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Only a pause or a resume.
    pub fn pausing(disabled: bool) -> Self {
        Self { disabled: Some(disabled), ..Self::default() }
    }
}

/// Changes a key of the caller's team at `at`; returns it as it is now.
pub fn edit(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    id: &str,
    req: &KeyEdit,
    at: i64,
) -> Result<ApiKey> {
    crate::store::transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        let key = ApiKey::find_for_update(conn, id)?
            .filter(|k| k.team_id.as_deref() == Some(creator.team_id))
            .ok_or(Error::NotFound)?;
        may_edit(creator, &key)?;
        if req.is_empty() {
            return Ok(key);
        }
        let after = planned(conn, creator, settings, &key, req, at)?;
        let changed = changed_fields(&key, &after);
        let paused = (after.disabled_at.is_some() != key.disabled_at.is_some()).then_some(after.disabled_at.is_some());
        if changed.is_empty() && paused.is_none() {
            return Ok(key);
        }
        if ApiKey::save_settings(conn, &after)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("key", "This key was revoked meanwhile.")));
        }
        record(conn, creator.actor, &key, &after, &changed, paused)?;
        if after.expires_at != key.expires_at {
            rearm_reminders(conn, &key.id, key.expires_at, after.expires_at)?;
        }
        Ok(after)
    })
}

/// A reminder may come again only when the expiry moved later by more than
/// its threshold (a week's reminder after a week's more life), or went away:
/// nudging an expiry, however often, sends nothing more.
fn rearm_reminders(conn: &mut DbConn, key_id: &str, before: Option<i64>, after: Option<i64>) -> Result<()> {
    for threshold in crate::service::reminders::Threshold::ALL {
        let rearm = match (before, after) {
            (Some(old), Some(new)) => new > old + threshold.before(),
            (Some(_), None) | (None, _) => true,
        };
        if rearm {
            Reminder::forget_kind(conn, key_id, threshold.kind())?;
        }
    }
    Ok(())
}

/// Viewers change nothing (and are told so); to anyone else, a key they may
/// not change is not found.
fn may_edit(creator: &Creator<'_>, key: &ApiKey) -> Result<()> {
    match policy::manage_key(&caller(creator), key.created_by.as_deref()) {
        Ok(()) => Ok(()),
        Err(e) if creator.role == Role::Viewer => Err(e),
        Err(_) => Err(Error::NotFound),
    }
}

/// The key as the edit would leave it, or every field the edit fails on.
fn planned(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    key: &ApiKey,
    req: &KeyEdit,
    at: i64,
) -> Result<ApiKey> {
    if key.status(at).is_final() {
        return Err(Error::Invalid(FieldErrors::single("key", "A revoked or expired key cannot be changed.")));
    }
    let mut errors = FieldErrors::default();
    let mut after = key.clone();
    texts(conn, creator, key, req, at, &mut after, &mut errors)?;
    if let Some(requested) = &req.scopes {
        match policy::narrow_scopes(&scopes::scopes_of(&key.scopes), settings.catalog, requested) {
            Ok(s) if same_set(&s, &scopes::scopes_of(&key.scopes)) => {}
            Ok(s) => after.scopes = s.join(" "),
            Err(m) => errors.add("scopes", m),
        }
    }
    if let Some(raw) = &req.allowed_ips {
        match new_ranges(creator, key, raw) {
            Ok(Some(r)) => after.allowed_ips = r.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            Ok(None) => {}
            Err(m) => errors.add("allowed_ips", m),
        }
    }
    if let Some(wanted) = req.expires_at.filter(|w| *w != key.expires_at) {
        match new_expiry(conn, creator, key, wanted, at)? {
            Ok(e) => after.expires_at = e,
            Err(m) => errors.add("expires_at", m),
        }
    }
    after.disabled_at = match req.disabled {
        Some(true) => key.disabled_at.or(Some(at)),
        Some(false) => None,
        None => key.disabled_at,
    };
    loosening(creator, settings, key, &after, &mut errors);
    errors.into_result()?;
    Ok(after)
}

/// The name and description: valid, without control characters; the name
/// not taken by another working key of the team.
fn texts(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    key: &ApiKey,
    req: &KeyEdit,
    at: i64,
    after: &mut ApiKey,
    errors: &mut FieldErrors,
) -> Result<()> {
    if let Some(raw) = &req.name {
        match validate::name(raw, MAX_NAME) {
            Ok(name) if name == key.name => {}
            Ok(name) if ApiKey::active_name_taken(conn, creator.team_id, &name, at)? => {
                errors.add("name", "An active key of your team already has this name.");
            }
            Ok(name) => after.name = name,
            Err(m) => errors.add("name", m),
        }
    }
    if let Some(raw) = &req.description {
        match validate::text(raw, MAX_DESCRIPTION) {
            Ok(d) => after.description = d,
            Err(m) => errors.add("description", m),
        }
    }
    Ok(())
}

/// The new address ranges (`None`: the same as now), valid and within the
/// caller's own.
fn new_ranges(creator: &Creator<'_>, key: &ApiKey, raw: &[String]) -> Result<Option<Vec<IpNet>>, String> {
    let ranges = check::ranges(raw)?;
    if same_set(&ranges, &allowed_ips_of(key)) {
        return Ok(None);
    }
    check::within_address_ceiling(creator, &ranges).map_err(|_| {
        let list = creator.ip_ceiling.unwrap_or_default().iter().map(ToString::to_string).collect::<Vec<_>>();
        format!("The key you used works only from {}: this key must be limited to those ranges too.", list.join(", "))
    })?;
    Ok(Some(ranges))
}

/// A new expiry (`None`: never): not for a key in a roll's grace; in the
/// future, within the team's maximum lifetime counted from the key's
/// creation (an edit never renews a key's allowance: that is a roll), and
/// within the caller's own.
fn new_expiry(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    key: &ApiKey,
    wanted: Option<i64>,
    at: i64,
) -> Result<Result<Option<i64>, String>> {
    if key.replaced_by.is_some() {
        return Ok(Err("This key was rolled: it stops when the grace of the roll ends.".into()));
    }
    let max_days = Team::find(conn, creator.team_id)?.and_then(|t| t.max_key_lifetime_days);
    let asked = wanted.map_or(super::Expiry::Never, super::Expiry::At);
    let expires_at = match check::expiry(asked, max_days, at) {
        Ok(e) => e,
        Err(m) => return Ok(Err(m)),
    };
    // Counted from creation; a key made before the team set its maximum may
    // still be shortened (never lengthened) past it.
    let shortened = match (key.expires_at, expires_at) {
        (Some(old), Some(t)) => t <= old,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if let (Some(max), Some(t)) = (max_days, expires_at)
        && t > key.created_at + max * 86_400
        && !shortened
    {
        return Ok(Err(format!(
            "Your team allows keys to live at most {max} days from their creation: roll this key for a fresh one."
        )));
    }
    Ok(check::within_lifetime_ceiling(creator, expires_at).map(|()| expires_at).map_err(|_| {
        let limit = creator.not_after.unwrap_or_default();
        format!("The key you used expires at {limit} (Unix time): this key may not outlive it.")
    }))
}

/// Refuses what loosens a key — a later expiry or none, an address it could
/// not be used from before, enabling it — unless the caller could grant
/// every scope it keeps.
fn loosening(creator: &Creator<'_>, settings: Settings<'_>, key: &ApiKey, after: &ApiKey, errors: &mut FieldErrors) {
    if policy::may_loosen(&caller(creator), settings.catalog, &scopes::scopes_of(&after.scopes)) {
        return;
    }
    let why = "This key holds a scope you could not grant now: you may narrow it, \
               but not lengthen its life, widen where it works or enable it.";
    let later = match (key.expires_at, after.expires_at) {
        (Some(_), None) => true,
        (Some(old), Some(new)) => new > old,
        (None, _) => false,
    };
    if later {
        errors.add("expires_at", why);
    }
    let (old, new) = (allowed_ips_of(key), allowed_ips_of(after));
    let wider = (!old.is_empty() && new.is_empty()) || new.iter().any(|n| !old.iter().any(|o| o.contains(n)));
    if !old.is_empty() && wider {
        errors.add("allowed_ips", why);
    }
    if key.disabled_at.is_some() && after.disabled_at.is_none() {
        errors.add("disabled", why);
    }
}

fn same_set<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// The fields an edit changed (pausing apart), by their API names.
fn changed_fields(key: &ApiKey, after: &ApiKey) -> Vec<&'static str> {
    [
        ("name", key.name != after.name),
        ("description", key.description != after.description),
        ("scopes", key.scopes != after.scopes),
        ("allowed_ips", key.allowed_ips != after.allowed_ips),
        ("expires_at", key.expires_at != after.expires_at),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

/// A field's value as the audit keeps it.
fn audited(key: &ApiKey, field: &str) -> Value {
    match field {
        "name" => json!(key.name),
        "description" => json!(key.description),
        "scopes" => json!(scopes::scopes_of(&key.scopes)),
        "allowed_ips" => json!(allowed_ips_of(key).iter().map(ToString::to_string).collect::<Vec<_>>()),
        _ => json!(key.expires_at.map_or_else(|| "never".to_owned(), rfc3339)),
    }
}

/// Unix seconds as RFC 3339, UTC.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The events of an edit: what changed, with old and new values (the expiry
/// as `old_expiry`/`new_expiry`), and whether the key was paused or resumed.
fn record(
    conn: &mut DbConn,
    actor: &Actor,
    key: &ApiKey,
    after: &ApiKey,
    changed: &[&str],
    paused: Option<bool>,
) -> Result<()> {
    if !changed.is_empty() {
        let mut details = Map::new();
        details.insert("changed".into(), json!(changed));
        for field in changed {
            let label = if *field == "expires_at" { "expiry" } else { field };
            details.insert(format!("old_{label}"), audited(key, field));
            details.insert(format!("new_{label}"), audited(after, field));
        }
        let event = key_event(AuditAction::ApiKeyUpdated, key).details(Value::Object(details));
        audit::record(conn, actor, event)?;
    }
    if let Some(disabled) = paused {
        let action = if disabled { AuditAction::ApiKeyDisabled } else { AuditAction::ApiKeyEnabled };
        audit::record(conn, actor, key_event(action, key).details(json!({"name": after.name})))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            kind: crate::domain::KeyKind::Team,
            team_id: Some("team_1".into()),
            created_by: Some("u".into()),
            name: "k".into(),
            description: String::new(),
            key_hash: String::new(),
            key_prefix: String::new(),
            scopes: "templates:read templates:write".into(),
            allowed_ips: "10.0.0.0/8".into(),
            created_at: 0,
            expires_at: Some(1000),
            revoked_at: None,
            revoked_by: None,
            revoked_reason: None,
            last_used_at: None,
            rolled_from: None,
            replaced_by: None,
            disabled_at: Some(5),
            grace_extended_at: None,
        }
    }

    #[test]
    fn loosening_is_refused_field_by_field_above_the_callers_ceiling() {
        let actor = Actor::operator();
        let ceiling = vec!["api_keys:write".to_owned()];
        let catalog: Vec<String> = ["templates:read", "templates:write", "api_keys:write"].map(String::from).to_vec();
        let creator = Creator {
            actor: &actor,
            team_id: "team_1",
            role: Role::Owner,
            ceiling: Some(&ceiling),
            ip_ceiling: None,
            not_after: None,
        };
        let settings = Settings { prefix: "lk", catalog: &catalog };
        let before = key();
        let looser =
            ApiKey { expires_at: None, allowed_ips: "10.0.0.0/8,192.0.2.1/32".into(), disabled_at: None, ..key() };
        let mut errors = FieldErrors::default();
        loosening(&creator, settings, &before, &looser, &mut errors);
        for field in ["expires_at", "allowed_ips", "disabled"] {
            assert!(errors.get(field).is_some_and(|m| m.contains("could not grant")), "{field}");
        }
        // Tighter in every way: fine.
        let tighter = ApiKey { expires_at: Some(500), allowed_ips: "10.1.0.0/16".into(), ..key() };
        let mut errors = FieldErrors::default();
        loosening(&creator, settings, &before, &tighter, &mut errors);
        assert!(errors.is_empty());
    }

    #[test]
    fn the_audit_names_each_changed_field_with_old_and_new_values() {
        let before = key();
        let after = ApiKey { name: "n".into(), expires_at: None, scopes: "templates:read".into(), ..key() };
        assert_eq!(changed_fields(&before, &after), ["name", "scopes", "expires_at"]);
        assert_eq!(audited(&after, "expires_at"), json!("never"));
        assert_eq!(audited(&before, "expires_at"), json!("1970-01-01T00:16:40Z"));
        assert_eq!(audited(&after, "scopes"), json!(["templates:read"]));
        assert!(KeyEdit::default().is_empty() && !KeyEdit::pausing(true).is_empty());
    }
}
