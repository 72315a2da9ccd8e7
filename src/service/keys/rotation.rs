//! A roll in its grace period, watched: the old key and the new one side by
//! side, ending the grace early once the old key is quiet, extending it once
//! when the old key is still busy near its end, and warning about busy rolls.
//!
//! Rules (the shared ones are `service::rotation`'s):
//! - A roll is in grace while its old key (`replaced_by` set) is unrevoked and
//!   its `expires_at` is in the future; it is reached from either key's page.
//! - Who may finish or extend: who may roll — owners and admins any key,
//!   developers the keys they created, viewers none — for the key addressed
//!   and for the old key; anyone else, and every other team, is told the key
//!   does not exist.
//! - Finishing expires the old key now (`api_key.grace_finished`); extending
//!   moves its expiry once per roll, never past now + 7 days nor its
//!   `created_at` + the team's maximum key lifetime (`api_key.grace_extended`
//!   with `until`). Both make the verifier forget the old key (the facade).
//! - A busy roll is warned about once (reminder `rotation_busy` on the old
//!   key's id), with `api_key.rotation_busy` recorded by Latchkey itself.

use std::collections::HashMap;

use serde_json::json;

use super::service::KeyService;
use super::{Creator, KeyCaller, current, get, key_event, may_manage};
use crate::domain::{AuditAction, KeyId};
use crate::service::audit;
use crate::service::rotation::{self, Subject, Watch};
use crate::service::{Error, FieldErrors, Result};
use crate::store::models::{ApiKey, Reminder, Team};
use crate::store::{DbConn, transaction};

const DAY: i64 = 86_400;

/// A roll in its grace period, as its keys' pages show it.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old: ApiKey,
    pub new: ApiKey,
    pub watch: Watch,
    /// The latest end an extension could give the grace now (`None`: it was
    /// extended already, or there is no room left).
    pub extend_until: Option<i64>,
    /// Whether the caller may finish or extend it.
    pub may_act: bool,
}

/// Whether `old` is the old key of a roll still in its grace at `at`.
fn in_grace(old: &ApiKey, at: i64) -> bool {
    old.replaced_by.is_some() && old.revoked_at.is_none() && old.expires_at.is_some_and(|e| e > at)
}

/// A key of the team by id, if it exists.
fn linked(conn: &mut DbConn, team_id: &str, id: Option<&str>) -> Result<Option<ApiKey>> {
    let Some(id) = id else { return Ok(None) };
    Ok(ApiKey::find(conn, id)?.filter(|k| k.team_id.as_deref() == Some(team_id)))
}

/// The roll `key` belongs to while in grace, as (old, new): its own roll
/// first, else the roll that made it.
fn pair(conn: &mut DbConn, key: &ApiKey, at: i64) -> Result<Option<(ApiKey, ApiKey)>> {
    let team = key.team_id.as_deref().unwrap_or_default();
    if in_grace(key, at)
        && let Some(new) = linked(conn, team, key.replaced_by.as_deref())?
    {
        return Ok(Some((key.clone(), new)));
    }
    Ok(linked(conn, team, key.rolled_from.as_deref())?
        .filter(|old| in_grace(old, at) && old.replaced_by.as_deref() == Some(key.id.as_str()))
        .map(|old| (old, key.clone())))
}

/// The latest end the old key's grace may be extended to at `at`.
fn extension_limit(conn: &mut DbConn, old: &ApiKey, at: i64) -> Result<i64> {
    let team = old.team_id.as_deref().unwrap_or_default();
    let max_days = Team::find(conn, team)?.and_then(|t| t.max_key_lifetime_days);
    let lifetime = max_days.map_or(i64::MAX, |d| old.created_at.saturating_add(d.saturating_mul(DAY)));
    Ok(at.saturating_add(rotation::MAX_EXTENSION_SECS).min(lifetime))
}

fn extend_until(conn: &mut DbConn, old: &ApiKey, at: i64) -> Result<Option<i64>> {
    if old.grace_extended_at.is_some() {
        return Ok(None);
    }
    let ends = old.expires_at.unwrap_or(at);
    Ok(Some(extension_limit(conn, old, at)?).filter(|limit| *limit > ends))
}

fn watch_of(conn: &mut DbConn, old: &ApiKey, new: &ApiKey, at: i64) -> Result<Watch> {
    let subjects =
        (Subject { id: &old.id, last_used: old.last_used_at }, Subject { id: &new.id, last_used: new.last_used_at });
    rotation::watch(conn, subjects, (new.created_at, old.expires_at.unwrap_or(at)), at)
}

/// The roll in grace that key `id` of the creator's team belongs to, if any.
pub fn rotation(conn: &mut DbConn, creator: &Creator<'_>, id: &str, at: i64) -> Result<Option<Rotation>> {
    let key = get(conn, creator.team_id, id)?;
    let Some((old, new)) = pair(conn, &key, at)? else { return Ok(None) };
    let may_act = may_manage(creator, &key).is_ok() && may_manage(creator, &old).is_ok();
    let watch = watch_of(conn, &old, &new, at)?;
    let extend_until = extend_until(conn, &old, at)?;
    Ok(Some(Rotation { old, new, watch, extend_until, may_act }))
}

/// The roll in grace that key `id` belongs to, for a caller who may act on
/// it: any other key, or caller, is not found; `field` names the refusal of
/// a key in no grace.
fn acting_pair(conn: &mut DbConn, creator: &Creator<'_>, id: &str, at: i64, field: &str) -> Result<(ApiKey, ApiKey)> {
    let key = get(conn, creator.team_id, id)?;
    may_manage(creator, &key).map_err(|_| Error::NotFound)?;
    let Some((old, new)) = pair(conn, &key, at)? else {
        return Err(Error::Invalid(FieldErrors::single(field, "This key is not in the grace period of a roll.")));
    };
    may_manage(creator, &old).map_err(|_| Error::NotFound)?;
    Ok((old, new))
}

/// Ends the grace of the roll key `id` belongs to at `at`, if its old key
/// has not been presented for `quiet` seconds; returns the old key as it is now.
/// `buffered`: the last presentation of each credential still in this
/// instance's usage buffer (not yet in the database).
pub fn finish(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    (id, quiet): (&str, Option<i64>),
    buffered: &HashMap<String, i64>,
    at: i64,
) -> Result<ApiKey> {
    transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        let (old, new) = acting_pair(conn, creator, id, at, "quiet")?;
        let quiet = rotation::quiet_choice(quiet)?;
        let last = rotation::last_presented(conn, Subject { id: &old.id, last_used: old.last_used_at }, at)?;
        let last = last.max(buffered.get(&old.id).copied());
        rotation::refuse_unless_quiet(last, quiet, at, "key")?;
        if ApiKey::end_grace(conn, &old.id, at)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("quiet", "The grace of this roll ended meanwhile.")));
        }
        let details = json!({"new_key_id": new.id, "quiet_seconds": quiet, "last_presented": last});
        audit::record(conn, creator.actor, key_event(AuditAction::ApiKeyGraceFinished, &old).details(details))?;
        get(conn, creator.team_id, &old.id)
    })
}

/// Extends the grace of the roll key `id` belongs to by `by` seconds (once
/// per roll, bounded); returns the old key as it is now.
/// Lengthening a key's life is loosening it: the caller must be able to
/// grant every scope the old key holds (`catalog`: the product's scopes),
/// as for an edit.
pub fn extend(
    conn: &mut DbConn,
    creator: &Creator<'_>,
    (id, by): (&str, Option<i64>),
    catalog: &[String],
    at: i64,
) -> Result<ApiKey> {
    transaction(conn, |conn| {
        let creator = &current(conn, creator)?;
        let (old, _) = acting_pair(conn, creator, id, at, "extend")?;
        let by = rotation::extend_choice(by)?;
        let caller = super::caller(creator);
        if !crate::service::policy::may_loosen(&caller, catalog, &super::scopes::scopes_of(&old.scopes)) {
            return Err(Error::Invalid(FieldErrors::single(
                "extend",
                "The old key holds a scope you could not grant now: its grace cannot be extended by you.",
            )));
        }
        if old.grace_extended_at.is_some() {
            return Err(Error::Invalid(FieldErrors::single(
                "extend",
                "The grace of this roll was extended already: it can be extended once.",
            )));
        }
        let ends = old.expires_at.unwrap_or(at);
        let until = rotation::extended_end(ends, by, extension_limit(conn, &old, at)?)?;
        if ApiKey::extend_grace(conn, &old.id, ends, until, at)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("extend", "The grace of this roll changed meanwhile.")));
        }
        let details = json!({"until": until, "previous_until": ends, "by_seconds": by});
        audit::record(conn, creator.actor, key_event(AuditAction::ApiKeyGraceExtended, &old).details(details))?;
        get(conn, creator.team_id, &old.id)
    })
}

/// Whether the roll whose old key is `old` is busy near its deadline at `at`.
fn busy(conn: &mut DbConn, old: &ApiKey, at: i64) -> Result<bool> {
    let (Some(ends), Some(new_id)) = (old.expires_at, old.replaced_by.as_deref()) else { return Ok(false) };
    let Some(new) = ApiKey::find(conn, new_id)? else { return Ok(false) };
    if !in_grace(old, at) || !rotation::near_deadline(new.created_at, ends, at) {
        return Ok(false);
    }
    let last = rotation::last_presented(conn, Subject { id: &old.id, last_used: old.last_used_at }, at)?;
    Ok(rotation::busy(new.created_at, ends, last, at))
}

/// Of `keys`, the old keys of rolls busy near their deadline: id → end of grace.
pub fn busy_among(conn: &mut DbConn, keys: &[ApiKey], at: i64) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for old in keys.iter().filter(|k| k.expires_at.is_some_and(|e| e <= at + DAY) && in_grace(k, at)) {
        if busy(conn, old, at)? {
            out.insert(old.id.clone(), old.expires_at.unwrap_or(at));
        }
    }
    Ok(out)
}

/// Warns, once per roll, about every roll busy near its deadline at `at`:
/// returns how many were warned now.
pub fn warn_busy(conn: &mut DbConn, at: i64) -> Result<usize> {
    let mut warned = 0;
    for old in ApiKey::grace_ending_between(conn, at, at + DAY)? {
        if !busy(conn, &old, at)? {
            continue;
        }
        let claimed = transaction(conn, |conn| {
            if !Reminder::claim(conn, &old.id, rotation::BUSY_REMINDER, at)? {
                return Ok(false);
            }
            let details = json!({"until": old.expires_at, "new_key_id": old.replaced_by});
            let event = key_event(AuditAction::ApiKeyRotationBusy, &old).details(details);
            audit::record(conn, &rotation::system_actor(), event)?;
            Ok::<_, Error>(true)
        })?;
        if claimed {
            let team = old.team_id.as_deref().unwrap_or_default();
            rotation::notify_busy(conn, team, old.created_by.as_deref(), &format!("the old key {}", old.id))?;
            warned += 1;
        }
    }
    Ok(warned)
}

impl KeyService<'_> {
    /// The roll in grace that key `id` belongs to, if any (any member may look).
    pub async fn rotation(&self, caller: &KeyCaller, id: &KeyId) -> Result<Option<Rotation>> {
        let (caller, id, at) = (caller.clone(), id.clone(), self.now());
        self.db.run(move |conn| rotation(conn, &caller.creator(), id.as_str(), at)).await
    }

    /// What a confirmation asks about: the roll in grace of a key the caller
    /// may act on (`None`: in no grace); any other key is not found.
    pub async fn rotation_to_confirm(&self, caller: &KeyCaller, id: &KeyId) -> Result<Option<Rotation>> {
        let (caller, id, at) = (caller.clone(), id.clone(), self.now());
        self.db
            .run(move |conn| {
                let creator = caller.creator();
                super::manageable(conn, &creator, id.as_str())?;
                match rotation(conn, &creator, id.as_str(), at)? {
                    Some(r) if !r.may_act => Err(Error::NotFound),
                    other => Ok(other),
                }
            })
            .await
    }

    /// Ends the grace of a roll now, if its old key was quiet for `quiet`
    /// seconds; the verifier forgets the old key, which is refused at once.
    pub async fn finish_grace(&self, caller: &KeyCaller, id: &KeyId, quiet: Option<i64>) -> Result<ApiKey> {
        let (caller, key_id, at) = (caller.clone(), id.clone(), self.now());
        // Uses this instance served and has not written yet count too.
        let buffered = self.verifier.buffered_presentations(at);
        let old =
            self.db.run(move |conn| finish(conn, &caller.creator(), (key_id.as_str(), quiet), &buffered, at)).await?;
        self.verifier.invalidate(&old.id);
        Ok(old)
    }

    /// Extends the grace of a roll once by `by` seconds (bounded); the
    /// verifier forgets the old key's cached expiry.
    pub async fn extend_grace(&self, caller: &KeyCaller, id: &KeyId, by: Option<i64>) -> Result<ApiKey> {
        let (caller, key_id, at) = (caller.clone(), id.clone(), self.now());
        let catalog = self.settings.catalog.to_vec();
        let old = self.db.run(move |conn| extend(conn, &caller.creator(), (key_id.as_str(), by), &catalog, at)).await?;
        self.verifier.invalidate(&old.id);
        Ok(old)
    }

    /// Warns once about each roll busy near its deadline at `at` (for the
    /// periodic task); returns how many were warned now.
    pub async fn warn_busy_rotations(&self, at: i64) -> Result<usize> {
        self.db.run(move |conn| warn_busy(conn, at)).await
    }
}
