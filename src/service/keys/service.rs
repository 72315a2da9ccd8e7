//! [`KeyService`]: one async method per use case of a team's API keys — list,
//! detail, create, roll, revoke, edit, and the team's key policy — for the pages and
//! the JSON API alike.
//!
//! Rules: a method authorizes through `service::policy` (in the internals it
//! calls), runs its transaction on the blocking pool, records its audit event
//! in that transaction, and then makes this instance's verifier forget what
//! the change made stale; the time is the facade's clock; a new secret leaves
//! only as a [`PlainSecret`]; no HTTP type appears here.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;

use super::{Creator, KeyEdit, KeyRequest, KeyUsage, RollScopes, Settings};
use crate::domain::{KeyId, PlainSecret, Role, TeamId};
use crate::service::audit::Actor;
use crate::service::clock::Clock;
use crate::service::crypto::Keys;
use crate::service::usage::report::{Privilege, Report};
use crate::service::verify::Verifier;
use crate::service::{FieldErrors, Result, accounts};
use crate::store::Db;
use crate::store::models::{ApiKey, AuditEvent, StatusFilter};

/// The team's API keys, as one use case per method.
pub struct KeyService<'a> {
    pub(super) db: &'a Db,
    hasher: &'a Keys,
    pub(super) verifier: &'a Verifier,
    pub(super) settings: Settings<'a>,
    clock: &'a Clock,
}

/// Who acts on a team's keys, as the policy sees them, owned so that it can
/// travel to the blocking pool; [`KeyCaller::creator`] lends it to the internals.
#[derive(Debug, Clone)]
pub struct KeyCaller {
    pub actor: Actor,
    pub team_id: TeamId,
    /// The role the request started with (re-read, never raised, when writing).
    pub role: Role,
    /// A credential-authenticated caller may not mint scopes beyond its own,
    pub ceiling: Option<Vec<String>>,
    /// nor keys usable from other addresses,
    pub ip_ceiling: Option<Vec<IpNet>>,
    /// nor keys that outlive it.
    pub not_after: Option<i64>,
}

impl KeyCaller {
    /// A signed-in member using the pages: their role, no ceilings.
    pub fn member(actor: Actor, team_id: TeamId, role: Role) -> Self {
        Self { actor, team_id, role, ceiling: None, ip_ceiling: None, not_after: None }
    }

    pub fn creator(&self) -> Creator<'_> {
        Creator {
            actor: &self.actor,
            team_id: self.team_id.as_str(),
            role: self.role,
            ceiling: self.ceiling.as_deref(),
            ip_ceiling: self.ip_ceiling.as_deref(),
            not_after: self.not_after,
        }
    }
}

/// Where a page of keys starts: after the key made at `created_at` with `id`
/// (the last one of the previous page). Written `created_at.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: KeyId,
}

impl Cursor {
    /// `None` for anything that is not `created_at.id` with a well-formed id.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let id_ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        id_ok.then_some(())?;
        Some(Self { created_at: at.parse().ok()?, id: KeyId::from(id) })
    }

    fn of(key: &ApiKey) -> Self {
        Self { created_at: key.created_at, id: KeyId::from(key.id.as_str()) }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

/// Which page of the team's keys to show.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: StatusFilter,
    pub after: Option<Cursor>,
    pub limit: i64,
    /// Only keys whose name contains this, or whose display prefix starts with it.
    pub search: Option<String>,
}

/// A page of keys, newest first, and where the next one starts.
#[derive(Debug)]
pub struct Listing {
    pub keys: Vec<ApiKey>,
    pub next: Option<Cursor>,
    /// What each key's use says of its scopes, by key id (one query per page).
    pub privileges: HashMap<String, Privilege>,
}

/// Member id → email, to name who created each key.
pub type Emails = HashMap<String, String>;

/// Key id → key, for the keys that listed keys replace or were replaced by.
type Linked = HashMap<String, ApiKey>;

/// A page of keys for the team's key list, with the members who made them.
#[derive(Debug)]
pub struct Overview {
    pub listing: Listing,
    pub emails: Emails,
    /// How many keys the team has in all (any status, no search).
    pub total: i64,
    /// The keys a listed key replaces or was replaced by: id → key.
    pub linked: HashMap<String, ApiKey>,
    /// Listed old keys of rolls busy near the end of their grace: id → when it ends.
    pub busy: HashMap<String, i64>,
}

/// One key with its lineage, its requests per day and its history.
#[derive(Debug)]
pub struct Detail {
    pub key: ApiKey,
    pub rolled_from: Option<ApiKey>,
    pub replaced_by: Option<ApiKey>,
    /// The last 30 days by outcome, who called, the scopes exercised.
    pub usage: Report,
    pub events: Vec<AuditEvent>,
    pub emails: Emails,
    /// What its use says of its scopes.
    pub privilege: Privilege,
}

/// A new key and its secret, to be shown once.
#[derive(Debug)]
pub struct Created {
    pub key: ApiKey,
    pub secret: PlainSecret,
}

/// The key a roll made, its secret (shown once) and the old key as it is now.
#[derive(Debug)]
pub struct Rolled {
    pub key: ApiKey,
    pub secret: PlainSecret,
    pub old: ApiKey,
}

/// A request as read from a form or a body; a field that could not be read
/// is refused after the authorization, as if the service had found it.
pub type Draft = std::result::Result<KeyRequest, FieldErrors>;

/// The settings, owned, for the blocking pool.
struct OwnedSettings {
    prefix: String,
    catalog: Vec<String>,
}

impl OwnedSettings {
    fn lend(&self) -> Settings<'_> {
        Settings { prefix: &self.prefix, catalog: &self.catalog }
    }
}

impl<'a> KeyService<'a> {
    pub fn new(db: &'a Db, hasher: &'a Keys, verifier: &'a Verifier, settings: Settings<'a>, clock: &'a Clock) -> Self {
        Self { db, hasher, verifier, settings, clock }
    }

    /// The time the statuses this service reports are read at.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    fn owned_settings(&self) -> OwnedSettings {
        OwnedSettings { prefix: self.settings.prefix.to_owned(), catalog: self.settings.catalog.to_vec() }
    }

    /// A page of the team's keys.
    pub async fn list(&self, team_id: &TeamId, query: ListQuery) -> Result<Listing> {
        let (team_id, at) = (team_id.clone(), self.now());
        self.db
            .run(move |conn| {
                let after = query.after.map(|c| (c.created_at, c.id.into_inner()));
                let term = query.search.as_deref();
                let mut keys = super::search(conn, team_id.as_str(), query.filter, after, query.limit + 1, at, term)?;
                let limit = usize::try_from(query.limit).unwrap_or(0);
                let next = if keys.len() > limit {
                    keys.truncate(limit);
                    keys.last().map(Cursor::of)
                } else {
                    None
                };
                let privileges = super::privileges(conn, &keys, at)?;
                Ok(Listing { keys, next, privileges })
            })
            .await
    }

    /// A page of the team's keys with the members who made them (the key list page).
    pub async fn overview(&self, team_id: &TeamId, query: ListQuery) -> Result<Overview> {
        let listing = self.list(team_id, query).await?;
        let team = team_id.clone();
        let wanted: Vec<String> = listing
            .keys
            .iter()
            .flat_map(|k| k.rolled_from.iter().chain(k.replaced_by.iter()).cloned())
            .filter(|id| !listing.keys.iter().any(|k| &k.id == id))
            .collect();
        let (listed, at) = (listing.keys.clone(), self.now());
        let (total, mut linked, busy) = self
            .db
            .run(move |conn| -> Result<(i64, Linked, HashMap<String, i64>)> {
                let mut linked = HashMap::new();
                for id in wanted {
                    if let Ok(k) = super::get(conn, team.as_str(), &id) {
                        linked.insert(id, k);
                    }
                }
                let busy = super::rotation::busy_among(conn, &listed, at)?;
                Ok((super::count(conn, team.as_str())?, linked, busy))
            })
            .await?;
        for k in &listing.keys {
            linked.insert(k.id.clone(), k.clone());
        }
        Ok(Overview { listing, emails: self.emails(team_id).await?, total, linked, busy })
    }

    /// A key the caller may roll, revoke or rename; any other is not found.
    pub async fn manageable(&self, caller: &KeyCaller, id: &KeyId) -> Result<ApiKey> {
        let (caller, id) = (caller.clone(), id.clone());
        self.db.run(move |conn| super::manageable(conn, &caller.creator(), id.as_str())).await
    }

    /// A key the caller may roll, with what its use says of its scopes (what
    /// "roll with only the used scopes" asks first); any other is not found.
    pub async fn manageable_judged(&self, caller: &KeyCaller, id: &KeyId) -> Result<(ApiKey, Privilege)> {
        let (caller, id, at) = (caller.clone(), id.clone(), self.now());
        self.db
            .run(move |conn| {
                let key = super::manageable(conn, &caller.creator(), id.as_str())?;
                let privilege = super::privilege(conn, &key, at)?;
                Ok((key, privilege))
            })
            .await
    }

    /// Renames a key (name and description); the secret, and so every cache of it, is unchanged.
    pub async fn rename(&self, caller: &KeyCaller, id: &KeyId, name: String, description: String) -> Result<ApiKey> {
        let (caller, id, at) = (caller.clone(), id.clone(), self.now());
        self.db.run(move |conn| super::rename(conn, &caller.creator(), id.as_str(), &name, &description, at)).await
    }

    /// Changes a key in place — name, description, addresses, expiry, fewer
    /// scopes, paused or not (rules in `keys::edit`); then this instance's
    /// verifier forgets it (the others hear of it through the change feed).
    pub async fn edit(&self, caller: &KeyCaller, id: &KeyId, edit: KeyEdit) -> Result<ApiKey> {
        let (caller, settings, key_id, at) = (caller.clone(), self.owned_settings(), id.clone(), self.now());
        let key = self
            .db
            .run(move |conn| super::edit::edit(conn, &caller.creator(), settings.lend(), key_id.as_str(), &edit, at))
            .await?;
        self.verifier.invalidate(id.as_str());
        Ok(key)
    }

    /// The team's members' emails by id.
    pub async fn emails(&self, team_id: &TeamId) -> Result<Emails> {
        let team_id = team_id.clone();
        let members = self.db.run(move |conn| accounts::members(conn, team_id.as_str())).await?;
        Ok(members.into_iter().map(|(_, u)| (u.id, u.email)).collect())
    }

    /// One key of the team (keys of other teams do not exist here).
    pub async fn get(&self, team_id: &TeamId, id: &KeyId) -> Result<ApiKey> {
        let (team_id, id) = (team_id.clone(), id.clone());
        self.db.run(move |conn| super::get(conn, team_id.as_str(), id.as_str())).await
    }

    /// One key of the team with what its use says of its scopes.
    pub async fn get_judged(&self, team_id: &TeamId, id: &KeyId) -> Result<(ApiKey, Privilege)> {
        let (team_id, id, at) = (team_id.clone(), id.clone(), self.now());
        self.db
            .run(move |conn| {
                let key = super::get(conn, team_id.as_str(), id.as_str())?;
                let privilege = super::privilege(conn, &key, at)?;
                Ok((key, privilege))
            })
            .await
    }

    /// One key of the team with its lineage, usage and history.
    pub async fn detail(&self, team_id: &TeamId, id: &KeyId) -> Result<Detail> {
        let (team, id, at) = (team_id.clone(), id.clone(), self.now());
        let mut detail: Detail = self
            .db
            .run(move |conn| -> Result<Detail> {
                let team = team.as_str();
                let key = super::get(conn, team, id.as_str())?;
                let events = super::history(conn, &key.id)?;
                let usage = super::usage::recent(conn, &key, at)?;
                let rolled_from = key.rolled_from.as_deref().map(|i| super::get(conn, team, i)).transpose()?;
                let replaced_by = key.replaced_by.as_deref().map(|i| super::get(conn, team, i)).transpose()?;
                let privilege = super::privilege(conn, &key, at)?;
                Ok(Detail { key, rolled_from, replaced_by, usage, events, emails: Emails::new(), privilege })
            })
            .await?;
        detail.emails = self.emails(team_id).await?;
        Ok(detail)
    }

    /// A key of the team with its usage from day `from` to day `to` (Unix
    /// days; left out: the 30 days up to today), by outcome, with who called
    /// and the scopes it exercised.
    pub async fn usage_report(
        &self,
        team_id: &TeamId,
        id: &KeyId,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> Result<KeyUsage> {
        let (team, id, at) = (team_id.clone(), id.clone(), self.now());
        self.db.run(move |conn| super::usage::of_key(conn, team.as_str(), id.as_str(), from_day, to_day, at)).await
    }

    /// Creates a key; the verifier forgets the secrets it knew as unknown.
    pub async fn create(&self, caller: &KeyCaller, draft: Draft) -> Result<Created> {
        let (caller, hasher, settings, at) = (caller.clone(), self.hasher.clone(), self.owned_settings(), self.now());
        let (key, secret) = self
            .db
            .run(move |conn| {
                let creator = caller.creator();
                super::may_create(&creator)?;
                let req = draft.map_err(crate::service::Error::Invalid)?;
                super::create(conn, &hasher, &creator, settings.lend(), &req, at)
            })
            .await?;
        self.verifier.invalidate_unknown();
        Ok(Created { key, secret })
    }

    /// Rolls a key: a copy with a new secret; the old one keeps working for
    /// `grace_secs`. The verifier forgets the old key whatever the outcome.
    pub async fn roll(&self, caller: &KeyCaller, id: &KeyId, grace_secs: i64) -> Result<Rolled> {
        self.roll_as(caller, id, grace_secs, RollScopes::Same).await
    }

    /// Rolls a key into one that carries only the scopes it used lately
    /// (least privilege, judged from the database inside the roll's
    /// transaction); refused (field `only_used_scopes`) while unknown or when
    /// nothing would be dropped. Otherwise as [`roll`](Self::roll).
    pub async fn roll_with_used_scopes(&self, caller: &KeyCaller, id: &KeyId, grace_secs: i64) -> Result<Rolled> {
        self.roll_as(caller, id, grace_secs, RollScopes::OnlyUsed).await
    }

    async fn roll_as(&self, caller: &KeyCaller, id: &KeyId, grace_secs: i64, which: RollScopes) -> Result<Rolled> {
        let (caller, hasher, settings, at) = (caller.clone(), self.hasher.clone(), self.owned_settings(), self.now());
        let old_id = id.clone();
        let rolled = self
            .db
            .run(move |conn| {
                let creator = caller.creator();
                let target = (old_id.as_str(), which);
                let (key, secret) = super::roll_as(conn, &hasher, &creator, settings.lend(), target, grace_secs, at)?;
                let old = super::get(conn, creator.team_id, old_id.as_str())?;
                Ok(Rolled { key, secret, old })
            })
            .await;
        self.verifier.invalidate(id.as_str());
        if rolled.is_ok() {
            self.verifier.invalidate_unknown();
        }
        rolled
    }

    /// Revokes a key at once; returns it as it is now.
    pub async fn revoke(&self, caller: &KeyCaller, id: &KeyId) -> Result<ApiKey> {
        let (caller, key_id, at) = (caller.clone(), id.clone(), self.now());
        let key = self.db.run(move |conn| super::revoke(conn, &caller.creator(), key_id.as_str(), at)).await?;
        self.verifier.invalidate(id.as_str());
        Ok(key)
    }

    /// Sets the team's maximum key lifetime (`None`: no limit).
    pub async fn set_policy(&self, caller: &KeyCaller, max_lifetime_days: Option<i64>) -> Result<()> {
        let caller = caller.clone();
        self.db
            .run(move |conn| {
                let team = caller.team_id.as_str();
                super::set_max_lifetime(conn, &caller.actor, team, caller.role, max_lifetime_days)
            })
            .await
    }
}
