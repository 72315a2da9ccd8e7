//! Expiry reminders: people hear that a key is about to stop working, once a
//! week before and once a day before; and every signed-in page names the keys
//! that expire soon (the banner).
//!
//! Rules: only a key that still works is reminded of — a team's key, not
//! revoked, not paused, not rolled away (its replacement exists) and not
//! expired. A key that expires within [`WEEK`] is reminded once
//! (`expiring_7d`), within [`DAY`] once more (`expiring_1d`); one first seen
//! within a day gets only the one-day reminder. Each reminder is claimed by an
//! INSERT that only one instance wins (`Reminder::claim`), re-checked against
//! the key as it is then, and recorded as the audit event `api_key.expiring`
//! (actor: Latchkey, details `{"days": n}`) in the same transaction; the
//! notice goes out after the commit (`service::notify`), to the key's creator
//! and the team's owners and admins, except those who turned these
//! reminders off (`service::email`). The banner names to each member the keys
//! the same policy tells them about (`policy::reminded_of_every_key`): every
//! key of the team for owners and admins, the keys they created for anyone
//! else; it is one indexed query of the member's own team.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::domain::{AuditAction, Role, TeamId};
use crate::service::audit::{self, Actor, Event};
use crate::service::clock::Clock;
use crate::service::keys::codec;
use crate::service::notify::{KeyRef, Notice, NoticeKind, Notifier, Recipient};
use crate::service::{Error, Result, policy};
use crate::store::models::{ApiKey, Membership, Reminder, User};
use crate::store::{Db, DbConn, StoreError};

/// How long before its expiry a key is first reminded of.
pub const WEEK: i64 = 7 * DAY;
/// How long before its expiry a key is reminded of again.
pub const DAY: i64 = 86_400;
/// How many keys the banner names; the others are counted.
pub const BANNER_NAMED: usize = 3;
/// How many keys the banner reads at most (it then says "at least").
const BANNER_READ: i64 = 100;

/// The two reminders a key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    Week,
    Day,
}

impl Threshold {
    pub const ALL: [Self; 2] = [Self::Week, Self::Day];

    /// How long before the expiry it is sent.
    pub fn before(self) -> i64 {
        match self {
            Self::Week => WEEK,
            Self::Day => DAY,
        }
    }

    /// The reminder's kind, as `reminders.kind` stores it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Week => "expiring_7d",
            Self::Day => "expiring_1d",
        }
    }

    /// The reminder due for a key expiring at `expires_at`, seen at `at`.
    pub fn due(expires_at: i64, at: i64) -> Option<Self> {
        match expires_at - at {
            left if left <= 0 => None,
            left if left <= DAY => Some(Self::Day),
            left if left <= WEEK => Some(Self::Week),
            _ => None,
        }
    }
}

/// Whole days left until `expires_at`, rounded up ("expires in 1 day" for 12 hours).
pub fn days_left(expires_at: i64, at: i64) -> i64 {
    ((expires_at - at + DAY - 1) / DAY).max(1)
}

/// A key the banner names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringKey {
    pub id: String,
    pub name: String,
    pub expires_at: i64,
}

/// What the banner says: the keys expiring soonest, and how many more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    pub named: Vec<ExpiringKey>,
    pub more: usize,
    /// There may be more than `more` (the banner read no further).
    pub at_least: bool,
}

/// Reminders and the banner, on this instance's database and clock.
pub struct ReminderService<'a> {
    pub db: &'a Db,
    pub clock: &'a Clock,
    pub notifier: &'a Notifier,
    /// The operator's API key prefix (`lk`), to name keys by display prefix.
    pub key_prefix: &'a str,
}

impl ReminderService<'_> {
    /// Sends the reminders due now; returns how many this instance claimed.
    pub async fn remind_expiring(&self) -> Result<usize> {
        remind_expiring(self.db, self.clock, self.notifier, self.key_prefix).await
    }

    /// The keys expiring soon that `user` (with `role` in `team`) is told about.
    pub async fn banner(&self, team: &TeamId, user_id: &str, role: Role) -> Result<Option<Banner>> {
        let at = self.clock.now();
        let creator = (!policy::reminded_of_every_key(role)).then(|| user_id.to_owned());
        let team = team.clone();
        let rows = self
            .db
            .run(move |conn| {
                ApiKey::team_expiring_between(conn, team.as_str(), creator.as_deref(), (at, at + WEEK), BANNER_READ)
                    .map_err(StoreError::from)
            })
            .await?;
        Ok(banner_of(rows))
    }
}

fn banner_of(rows: Vec<(String, String, Option<i64>)>) -> Option<Banner> {
    if rows.is_empty() {
        return None;
    }
    let at_least = i64::try_from(rows.len()).is_ok_and(|n| n >= BANNER_READ);
    let more = rows.len().saturating_sub(BANNER_NAMED);
    let named = rows
        .into_iter()
        .take(BANNER_NAMED)
        .filter_map(|(id, name, exp)| exp.map(|expires_at| ExpiringKey { id, name, expires_at }))
        .collect();
    Some(Banner { named, more, at_least })
}

/// Sends the reminders due at the clock's now, on any number of instances
/// at once: each is claimed, audited and sent exactly once. Returns how many
/// this call claimed.
pub async fn remind_expiring(db: &Db, clock: &Clock, notifier: &Notifier, key_prefix: &str) -> Result<usize> {
    let (at, prefix) = (clock.now(), key_prefix.to_owned());
    let notices = db.run(move |conn| claim_due(conn, at, &prefix)).await?;
    for notice in &notices {
        notifier.send(notice);
    }
    Ok(notices.len())
}

/// Claims every reminder due at `at` that no one claimed yet.
fn claim_due(conn: &mut DbConn, at: i64, prefix: &str) -> Result<Vec<Notice>> {
    let keys = ApiKey::expiring_between(conn, at, at + WEEK)?;
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let sent: HashSet<(String, String)> = Reminder::of_subjects(conn, &ids)?.into_iter().collect();
    let mut members = HashMap::new();
    let mut notices = Vec::new();
    for key in &keys {
        let Some(threshold) = key.expires_at.and_then(|e| Threshold::due(e, at)) else { continue };
        if sent.contains(&(key.id.clone(), threshold.kind().to_owned())) {
            continue;
        }
        match claim(conn, &key.id, threshold, at, prefix, &mut members) {
            Ok(notice) => notices.push(notice),
            Err(Claim::Lost) => {}
            Err(Claim::Failed(e)) => return Err(e),
        }
    }
    Ok(notices)
}

/// Why a claim made no notice: another instance won it (or the key changed
/// meanwhile), or the database failed.
enum Claim {
    Lost,
    Failed(Error),
}

impl From<diesel::result::Error> for Claim {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed(StoreError::from(e).into())
    }
}

impl From<Error> for Claim {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// Team id → its members, read once per run.
type Members = HashMap<String, Vec<(Membership, User)>>;

/// One reminder, in one transaction: the key re-read (still due for this
/// reminder?), the claim, the audit event; then the notice to send.
fn claim(
    conn: &mut DbConn,
    key_id: &str,
    threshold: Threshold,
    at: i64,
    prefix: &str,
    members: &mut Members,
) -> std::result::Result<Notice, Claim> {
    crate::store::transaction(conn, |conn| {
        let key = ApiKey::find(conn, key_id)?.ok_or(Claim::Lost)?;
        let still = key.revoked_at.is_none() && key.disabled_at.is_none() && key.replaced_by.is_none();
        let expires_at = key.expires_at.filter(|e| still && Threshold::due(*e, at) == Some(threshold));
        let (Some(expires_at), Some(team_id)) = (expires_at, key.team_id.clone()) else { return Err(Claim::Lost) };
        if !Reminder::claim(conn, &key.id, threshold.kind(), at)? {
            return Err(Claim::Lost);
        }
        let days = days_left(expires_at, at);
        let details = json!({"days": days});
        let event = Event::new(AuditAction::ApiKeyExpiring).team(&team_id).object("api_key", &key.id);
        audit::record(conn, &Actor::system(), event.details(details.clone()))?;
        let recipients = recipients(conn, &team_id, key.created_by.as_deref(), members)?;
        let recipients = crate::service::email::without_opted_out(conn, NoticeKind::KeyExpiring, recipients)?;
        let key_prefix = codec::display(prefix, &key.key_prefix);
        let text =
            format!("Key {} ({key_prefix}…) expires in {days} day{}.", key.name, if days == 1 { "" } else { "s" });
        let key = KeyRef { id: key.id, name: key.name, prefix: key_prefix };
        Ok(Notice::new(NoticeKind::KeyExpiring, recipients, text).team(&team_id).key(key).details(details))
    })
}

/// Who hears about a key: its creator (while a member) and every owner and
/// admin of the team, each once, creator first.
fn recipients(
    conn: &mut DbConn,
    team_id: &str,
    creator: Option<&str>,
    members: &mut Members,
) -> std::result::Result<Vec<Recipient>, Claim> {
    if !members.contains_key(team_id) {
        members.insert(team_id.to_owned(), Membership::list(conn, team_id)?);
    }
    let team = members.get(team_id).map(Vec::as_slice).unwrap_or_default();
    let creator = team.iter().filter(|(m, _)| Some(m.user_id.as_str()) == creator);
    let managers = team.iter().filter(|(m, _)| policy::reminded_of_every_key(m.role));
    Ok(Notice::dedup(creator.chain(managers).map(|(_, user)| Recipient::user(&user.id, &user.email))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_the_week_reminder_then_the_day_one() {
        let at = 1_000_000;
        assert_eq!(Threshold::due(at + 8 * DAY, at), None);
        assert_eq!(Threshold::due(at + WEEK, at), Some(Threshold::Week));
        assert_eq!(Threshold::due(at + DAY + 1, at), Some(Threshold::Week));
        assert_eq!(Threshold::due(at + DAY, at), Some(Threshold::Day));
        assert_eq!(Threshold::due(at + 12 * 3600, at), Some(Threshold::Day));
        assert_eq!(Threshold::due(at, at), None);
    }

    #[test]
    fn days_left_round_up() {
        assert_eq!(days_left(WEEK, 0), 7);
        assert_eq!(days_left(WEEK - 300, 0), 7);
        assert_eq!(days_left(12 * 3600, 0), 1);
        assert_eq!(days_left(1, 0), 1);
    }

    #[test]
    fn the_banner_names_three_and_counts_the_rest() {
        let row = |n: i64| (format!("key_{n}"), format!("k{n}"), Some(n));
        assert_eq!(banner_of(Vec::new()), None);
        let b = banner_of((0..5).map(row).collect()).unwrap();
        assert_eq!((b.named.len(), b.more, b.at_least), (3, 2, false));
        let b = banner_of((0..BANNER_READ).map(row).collect()).unwrap();
        assert!(b.at_least);
    }
}
