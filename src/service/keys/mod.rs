//! API keys: create, list, roll, revoke, edit. [`KeyService`] is the facade the
//! web layer calls; the functions here are its synchronous internals (and
//! what support and the operator's commands share).
//!
//! Rules: the secret exists only in the [`PlainSecret`] returned by
//! `create`/`roll` (never stored, logged or audited); a key never carries a
//! scope its creator's role does not allow; a roll copies the old key's
//! scopes, or — asked for [`RollScopes::OnlyUsed`] — only those it used
//! lately, judged inside the roll's transaction; viewers change nothing;
//! developers manage only their own keys; every change is audited in the same
//! transaction; the time is the one the caller passes (the facade's clock).

mod check;
pub mod codec;
mod edit;
pub mod rotation;
pub mod scopes;
mod service;
pub mod usage;

use std::collections::HashMap;

use ipnet::IpNet;
use serde_json::json;

pub use edit::KeyEdit;
pub use scopes::scopes_of;
pub use service::{
    Created, Cursor, Detail, Draft, Emails, KeyCaller, KeyService, ListQuery, Listing, Overview, Rolled,
};
pub use usage::KeyUsage;

use crate::domain::{AuditAction, KeyKind, KeyStatus, PlainSecret, SecretHash};

use crate::service::accounts::Role;
use crate::service::audit::{self, Actor, Event};
use crate::service::crypto::{self, Keys};
use crate::service::policy;
use crate::service::usage as usage_log;
use crate::service::usage::report::{OBSERVE_DAYS, Privilege};
use crate::service::{Error, FieldErrors, Result};
use crate::store::models::{ApiKey, AuditEvent, ScopeUseRow, StatusFilter, Team};
use crate::store::{DbConn, now};

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_ALLOWED_IPS: usize = 50;
pub const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;
/// The object type of a key's audit events.
const AUDIT_OBJECT: &str = "api_key";

/// When a new key stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    InDays(i64),
    At(i64),
}

/// What a person or client asked for, before validation.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub expiry: Expiry,
    pub allowed_ips: Vec<String>,
}

/// Who is creating or changing keys, and within which limits.
#[derive(Debug, Clone)]
pub struct Creator<'a> {
    pub actor: &'a Actor,
    pub team_id: &'a str,
    pub role: Role,
    /// A key-authenticated client may not mint scopes beyond its own.
    pub ceiling: Option<&'a [String]>,
    /// Nor, when it is restricted to addresses, keys usable from elsewhere.
    pub ip_ceiling: Option<&'a [IpNet]>,
    /// Nor, when it expires, keys that outlive it.
    pub not_after: Option<i64>,
}

/// Settings the operator chose.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub prefix: &'a str,
    pub catalog: &'a [String],
}

fn random_id() -> Result<String> {
    crypto::new_id("key").map_err(|e| Error::internal(e, "drawing random bytes"))
}

/// A new secret, its keyed hash and the part of it people see.
struct Issued {
    secret: PlainSecret,
    hash: SecretHash,
    key_prefix: String,
}

fn issue(hasher: &Keys, prefix: &str) -> Result<Issued> {
    let secret = PlainSecret::new(codec::generate(prefix).map_err(|e| Error::internal(e, "drawing random bytes"))?);
    let hash = SecretHash::from_stored(hasher.token_hash(secret.expose()));
    let key_prefix = secret.expose()[prefix.len() + 1..][..codec::DISPLAY_LEN].to_owned();
    Ok(Issued { secret, hash, key_prefix })
}

/// What a new key is, apart from its id, secret and history.
struct KeyFields {
    kind: KeyKind,
    team_id: Option<String>,
    created_by: Option<String>,
    name: String,
    description: String,
    /// Space-separated.
    scopes: String,
    /// Comma-separated.
    allowed_ips: String,
    expires_at: Option<i64>,
}

/// A key made at `at` with a fresh secret: never used, revoked or rolled.
fn new_key(issued: &Issued, at: i64, f: KeyFields) -> Result<ApiKey> {
    Ok(ApiKey {
        id: random_id()?,
        kind: f.kind,
        team_id: f.team_id,
        created_by: f.created_by,
        name: f.name,
        description: f.description,
        key_hash: issued.hash.as_str().to_owned(),
        key_prefix: issued.key_prefix.clone(),
        scopes: f.scopes,
        allowed_ips: f.allowed_ips,
        created_at: at,
        expires_at: f.expires_at,
        revoked_at: None,
        revoked_by: None,
        revoked_reason: None,
        last_used_at: None,
        rolled_from: None,
        replaced_by: None,
        disabled_at: None,
        grace_extended_at: None,
    })
}

/// Where the key stands at `at` (see [`ApiKey::status`]).
pub fn status(key: &ApiKey, at: i64) -> KeyStatus {
    key.status(at)
}

/// The address ranges a key may be used from (none: anywhere). A stored range
/// that does not parse (only a damaged row holds one) fails closed: it stands
/// for the unspecified addresses, which no client has, so it never widens the
/// key to every address.
pub fn allowed_ips_of(key: &ApiKey) -> Vec<IpNet> {
    let mut out = Vec::new();
    for raw in key.allowed_ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match raw.parse() {
            Ok(net) => out.push(net),
            Err(_) => {
                tracing::error!(key = %key.id, "a stored allowed address range does not parse; it matches no client");
                out.extend(["0.0.0.0/32", "::/128"].iter().filter_map(|n| n.parse::<IpNet>().ok()));
            }
        }
    }
    out
}

/// Parses a CIDR or a bare address (as a /32 or /128).
pub fn parse_cidr(raw: &str) -> Option<IpNet> {
    let raw = raw.trim();
    raw.parse::<IpNet>().ok().map(|n| n.trunc()).or_else(|| raw.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn may_create(creator: &Creator<'_>) -> Result<()> {
    policy::create_key(creator.role)
}

/// Creates a key at `at`; returns it with its secret (shown once, never stored).
pub fn create(
    conn: &mut DbConn,
    hasher: &Keys,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    req: &KeyRequest,
    at: i64,
) -> Result<(ApiKey, PlainSecret)> {
    may_create(creator)?;
    crate::store::transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        may_create(creator)?;
        let v = check::validate(conn, creator, settings, req, at)?;
        let issued = issue(hasher, settings.prefix)?;
        let fields = KeyFields {
            kind: KeyKind::Team,
            team_id: Some(creator.team_id.to_owned()),
            created_by: creator.actor.user_id.clone(),
            name: v.name,
            description: v.description,
            scopes: v.scopes.join(" "),
            allowed_ips: v.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            expires_at: v.expires_at,
        };
        let key = new_key(&issued, at, fields)?;
        key.insert(conn)?;
        let details = json!({
            "name": key.name, "scopes": scopes::scopes_of(&key.scopes), "expires_at": key.expires_at,
            "allowed_ips": key.allowed_ips,
        });
        audit::record(conn, creator.actor, key_event(AuditAction::ApiKeyCreated, &key).details(details))?;
        Ok((key, issued.secret))
    })
}

fn key_event<'a>(action: AuditAction, key: &'a ApiKey) -> Event<'a> {
    let event = Event::new(action).object(AUDIT_OBJECT, &key.id);
    match key.team_id.as_deref() {
        Some(t) => event.team(t),
        None => event,
    }
}

/// [`get`], the row locked until the transaction ends (PostgreSQL; SQLite's
/// writers never overlap).
fn get_for_update(conn: &mut DbConn, team_id: &str, id: &str) -> Result<ApiKey> {
    ApiKey::find_for_update(conn, id)?.filter(|k| k.team_id.as_deref() == Some(team_id)).ok_or(Error::NotFound)
}

/// A key of the team, or not found (keys of other teams do not exist here).
pub fn get(conn: &mut DbConn, team_id: &str, id: &str) -> Result<ApiKey> {
    ApiKey::find(conn, id)?.filter(|k| k.team_id.as_deref() == Some(team_id)).ok_or(Error::NotFound)
}

fn caller<'a>(creator: &'a Creator<'a>) -> policy::Caller<'a> {
    policy::Caller { user_id: creator.actor.user_id.as_deref(), role: creator.role, ceiling: creator.ceiling }
}

/// The creator with their role read again inside the write transaction and
/// held until it ends (a removal or demotion racing with this write waits for
/// it, or wins and is seen); never more than the role the request started with.
fn current<'a>(conn: &mut DbConn, creator: &Creator<'a>) -> Result<Creator<'a>> {
    let Some(user) = creator.actor.user_id.as_deref() else { return Ok(creator.clone()) };
    let role = crate::service::accounts::locked_role(conn, creator.team_id, Some(user))?;
    let role = role.ok_or(Error::Forbidden("You are no longer a member of this team."))?;
    Ok(Creator { role: role.min(creator.role), ..creator.clone() })
}

fn may_manage(creator: &Creator<'_>, key: &ApiKey) -> Result<()> {
    policy::manage_key(&caller(creator), key.created_by.as_deref())
}

/// Revokes a key of the creator's team at `at`; returns it as it is now.
pub fn revoke(conn: &mut DbConn, creator: &Creator<'_>, id: &str, at: i64) -> Result<ApiKey> {
    crate::store::transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        let key = get(conn, creator.team_id, id)?;
        may_manage(creator, &key)?;
        if ApiKey::revoke(conn, &key.id, &creator.actor.label, None, at)? == 1 {
            audit::record(
                conn,
                creator.actor,
                key_event(AuditAction::ApiKeyRevoked, &key).details(json!({"name": key.name})),
            )?;
        }
        get(conn, creator.team_id, id)
    })
}

/// Which scopes the key a roll makes carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollScopes {
    /// The old key's.
    Same,
    /// Only those the old key used lately (least privilege, judged by
    /// `usage::report::privilege` from what the database holds then): refused
    /// while that is unknown, when nothing would be dropped, or when it used
    /// nothing.
    OnlyUsed,
}

/// A new key with the same settings, made at `at`; the old one expires
/// after `grace_secs`.
pub fn roll(
    conn: &mut DbConn,
    hasher: &Keys,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    id: &str,
    grace_secs: i64,
    at: i64,
) -> Result<(ApiKey, PlainSecret)> {
    roll_as(conn, hasher, creator, settings, (id, RollScopes::Same), grace_secs, at)
}

/// [`roll`], with the new key's scopes chosen by `which`: a narrowed copy
/// holds to the same ceilings (refused, never narrowed further) and is
/// audited with `scopes` and `narrowed_from`.
pub fn roll_as(
    conn: &mut DbConn,
    hasher: &Keys,
    creator: &Creator<'_>,
    settings: Settings<'_>,
    (id, which): (&str, RollScopes),
    grace_secs: i64,
    at: i64,
) -> Result<(ApiKey, PlainSecret)> {
    if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
        return Err(Error::Invalid(FieldErrors::single(
            "grace_seconds",
            "Choose a grace period between 0 and 7 days.",
        )));
    }
    crate::store::transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        // Locked: an edit (a pause, a narrowing) racing this roll is either
        // seen here or waits for it; the copy is never of the key as it was.
        let old = get_for_update(conn, creator.team_id, id)?;
        let scopes = match which {
            RollScopes::Same => scopes::scopes_of(&old.scopes),
            RollScopes::OnlyUsed => {
                check::may_roll_at_all(creator, &old, at)?;
                used_scopes(conn, &old, at)?
            }
        };
        let expires_at = check::may_roll(conn, creator, settings, &old, &scopes, at)?;
        let issued = issue(hasher, settings.prefix)?;
        let copy = KeyFields {
            kind: old.kind,
            team_id: old.team_id.clone(),
            created_by: creator.actor.user_id.clone().or(old.created_by.clone()),
            name: old.name.clone(),
            description: old.description.clone(),
            scopes: scopes.join(" "),
            allowed_ips: old.allowed_ips.clone(),
            expires_at,
        };
        let new = ApiKey { rolled_from: Some(old.id.clone()), ..new_key(&issued, at, copy)? };
        new.insert(conn)?;
        let old_expires = old.expires_at.map_or(at + grace_secs, |e| e.min(at + grace_secs));
        if ApiKey::mark_rolled(conn, &old.id, &new.id, old_expires)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("key", "This key was rolled or revoked meanwhile.")));
        }
        let mut details = json!({"new_key_id": new.id, "grace_seconds": grace_secs, "old_expires_at": old_expires});
        if which == RollScopes::OnlyUsed {
            details["scopes"] = json!(scopes);
            details["narrowed_from"] = json!(scopes::scopes_of(&old.scopes));
        }
        audit::record(conn, creator.actor, key_event(AuditAction::ApiKeyRolled, &old).details(details))?;
        Ok((new, issued.secret))
    })
}

/// The scopes `key` used lately, for a key that holds more than it uses;
/// any other answer is a refusal of the field `only_used_scopes`.
fn used_scopes(conn: &mut DbConn, key: &ApiKey, at: i64) -> Result<Vec<String>> {
    let granted = scopes::scopes_of(&key.scopes);
    let refuse = |m: String| Error::Invalid(FieldErrors::single("only_used_scopes", m));
    match privilege(conn, key, at)? {
        Privilege::Unknown => Err(refuse(format!(
            "We suggest scopes after {OBSERVE_DAYS} days of use: this key has not been watched that long yet."
        ))),
        Privilege::Known { unused, days, .. } if unused.is_empty() => Err(refuse(format!(
            "This key used every scope it holds in the last {days} days: nothing would be dropped."
        ))),
        Privilege::Known { used, days, .. } if used.is_empty() => Err(refuse(format!(
            "This key used none of its scopes in the last {days} days: revoke it rather than roll it."
        ))),
        Privilege::Known { used, .. } => match used.iter().find(|s| !scopes::satisfies(&granted, s)) {
            Some(s) => Err(refuse(format!("{s} is not a scope of this key."))),
            None => Ok(used),
        },
    }
}

/// Least privilege of `key` at `at`, from the scopes it exercised.
pub fn privilege(conn: &mut DbConn, key: &ApiKey, at: i64) -> Result<Privilege> {
    let exercised = ScopeUseRow::of_key(conn, &key.id)?;
    Ok(usage_log::report::privilege(&scopes::scopes_of(&key.scopes), &exercised, at))
}

/// Least privilege of each of `keys` at `at` (one query), by key id.
pub fn privileges(conn: &mut DbConn, keys: &[ApiKey], at: i64) -> Result<HashMap<String, Privilege>> {
    Ok(usage_log::report::privileges(conn, keys, at)?)
}

/// A page of the team's keys, with statuses as they are at `at`.
pub fn list(
    conn: &mut DbConn,
    team_id: &str,
    filter: StatusFilter,
    after: Option<(i64, String)>,
    limit: i64,
    at: i64,
) -> Result<Vec<ApiKey>> {
    search(conn, team_id, filter, after, limit, at, None)
}

/// A page of the team's keys whose name or display prefix matches `term` (any key with `None`).
pub fn search(
    conn: &mut DbConn,
    team_id: &str,
    filter: StatusFilter,
    after: Option<(i64, String)>,
    limit: i64,
    at: i64,
    term: Option<&str>,
) -> Result<Vec<ApiKey>> {
    Ok(ApiKey::list_for_team(conn, team_id, filter, after, limit, at, term)?)
}

/// Renames a key of the creator's team (same policy as roll and revoke);
/// returns it as it is now. The secret is unchanged, so is every cache of it.
pub fn rename(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    id: &str,
    name: &str,
    description: &str,
    at: i64,
) -> Result<ApiKey> {
    crate::store::transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        let key = get(conn, creator.team_id, id)?;
        may_manage(creator, &key)?;
        let mut errors = FieldErrors::default();
        let name =
            crate::service::validate::name(name, MAX_NAME).map_err(|m| errors.add("name", m)).unwrap_or_default();
        let description = crate::service::validate::text(description, MAX_DESCRIPTION)
            .map_err(|m| errors.add("description", m))
            .unwrap_or_default();
        if key.revoked_at.is_some() {
            errors.add("name", "A revoked key keeps its name.");
        }
        if !name.is_empty() && name != key.name && ApiKey::active_name_taken(conn, creator.team_id, &name, at)? {
            errors.add("name", "An active key of your team already has this name.");
        }
        errors.into_result()?;
        if name == key.name && description == key.description {
            return Ok(key);
        }
        if ApiKey::rename(conn, &key.id, &name, &description)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("name", "This key was revoked meanwhile.")));
        }
        let details = json!({
            "old_name": key.name, "new_name": name,
            "old_description": key.description, "new_description": description,
        });
        audit::record(conn, creator.actor, key_event(AuditAction::ApiKeyRenamed, &key).details(details))?;
        get(conn, creator.team_id, id)
    })
}

/// A key of the creator's team that the creator may roll, revoke or rename;
/// any other key is not found (what a confirmation page asks before acting).
pub fn manageable(conn: &mut DbConn, creator: &Creator<'_>, id: &str) -> Result<ApiKey> {
    let key = get(conn, creator.team_id, id)?;
    may_manage(creator, &key).map_err(|_| Error::NotFound)?;
    Ok(key)
}

/// How many keys the team has, whatever their status.
pub fn count(conn: &mut DbConn, team_id: &str) -> Result<i64> {
    Ok(ApiKey::count_for_team(conn, team_id)?)
}

pub fn history(conn: &mut DbConn, key_id: &str) -> Result<Vec<AuditEvent>> {
    Ok(AuditEvent::for_object(conn, AUDIT_OBJECT, key_id, 100)?)
}

pub fn set_max_lifetime(conn: &mut DbConn, actor: &Actor, team_id: &str, role: Role, days: Option<i64>) -> Result<()> {
    if !policy::manages_members(role) {
        return Err(Error::Forbidden("Only owners and admins can set the key policy."));
    }
    if days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(Error::Invalid(FieldErrors::single("max_lifetime_days", "Choose between 1 and 3650 days.")));
    }
    crate::store::transaction(conn, |conn| {
        Team::set_max_key_lifetime(conn, team_id, days)?;
        let event =
            Event::new(AuditAction::TeamKeyPolicyChanged).team(team_id).details(json!({"max_key_lifetime_days": days}));
        audit::record(conn, actor, event)
    })
}

/// Operator command: a service key (no team) with platform scopes.
pub fn create_service_key(
    conn: &mut DbConn,
    hasher: &Keys,
    prefix: &str,
    name: &str,
    scopes: &[String],
) -> Result<(ApiKey, PlainSecret)> {
    if let Some(bad) = scopes.iter().find(|s| !scopes::PLATFORM.contains(&s.as_str())) {
        return Err(Error::Invalid(FieldErrors::single(
            "scopes",
            format!("{bad} is not a platform scope (introspect, leaks:report)."),
        )));
    }
    let name =
        &crate::service::validate::name(name, MAX_NAME).map_err(|m| Error::Invalid(FieldErrors::single("name", m)))?;
    if scopes.is_empty() {
        return Err(Error::Invalid(FieldErrors::single("name", "A service key needs a name and at least one scope.")));
    }
    crate::store::transaction(conn, |conn| {
        let issued = issue(hasher, prefix)?;
        let fields = KeyFields {
            kind: KeyKind::Service,
            team_id: None,
            created_by: None,
            name: name.trim().to_owned(),
            description: String::new(),
            scopes: scopes.join(" "),
            allowed_ips: String::new(),
            expires_at: None,
        };
        let key = new_key(&issued, now(), fields)?;
        key.insert(conn)?;
        audit::record(
            conn,
            &Actor::operator(),
            key_event(AuditAction::ServiceKeyCreated, &key).details(json!({"scopes": scopes})),
        )?;
        Ok((key, issued.secret))
    })
}
