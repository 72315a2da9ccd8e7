//! Watching a rotation: an old credential (a rolled API key, an OAuth app's
//! previous client secret) that keeps working for a grace period beside its
//! replacement. The rules both kinds share; `keys::rotation` and
//! `oauth::rotation` apply them.
//!
//! Rules:
//! - A credential is *presented* by every request that carries it, whatever
//!   the answer. Its last presentation is the latest of its last accepted use
//!   (`last_used_at`, keys only), the last client address and user agent seen
//!   with it (exact times), and its last hour bucket in `usage_hours`; an hour
//!   bucket later than all of those (requests seen with neither address nor
//!   agent) counts as presented at the end of that hour, or now if sooner.
//!   Usage is buffered by each instance and reaches the database within one
//!   flush interval (a few seconds): a presentation younger than that may not
//!   be seen yet, which the quiet periods (15 minutes at least) dwarf.
//! - Finishing early: only when the old credential has not been presented for
//!   the quiet period chosen among [`QUIET_CHOICES`].
//! - Busy near the deadline: the grace ends within [`horizon`] (24 hours, or a
//!   quarter of the grace when that is shorter, at least 1 hour) and the old
//!   credential was presented within the last [`BUSY_WINDOW`].
//! - An extension: once per rotation, by one of [`EXTEND_CHOICES`], never past
//!   now + [`MAX_EXTENSION_SECS`] (and, for keys, the team's maximum lifetime);
//!   refused when that leaves nothing to add.

use crate::domain::Role;
use crate::service::audit::Actor;
use crate::service::usage::SightKind;
use crate::service::{Error, FieldErrors, Result};
use crate::store::DbConn;
use crate::store::models::{Membership, SightingRow, UsageHour};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// The quiet periods "Finish now" offers (seconds): 15 minutes, 1 hour, 6 hours, 24 hours.
pub const QUIET_CHOICES: [i64; 4] = [900, HOUR, 6 * HOUR, DAY];
pub const DEFAULT_QUIET: i64 = HOUR;
/// What an extension may add (seconds): 1 hour, 24 hours, 7 days.
pub const EXTEND_CHOICES: [i64; 3] = [HOUR, DAY, 7 * DAY];
pub const DEFAULT_EXTEND: i64 = DAY;
/// An extended grace never ends later than this after the extension.
pub const MAX_EXTENSION_SECS: i64 = 7 * DAY;
/// An old credential presented this recently is in use.
pub const BUSY_WINDOW: i64 = HOUR;
/// Hours the side-by-side view lists at most (the latest).
pub const HOURS_SHOWN: i64 = 24;
/// The kind of the reminder that a busy rotation was warned about (once).
pub const BUSY_REMINDER: &str = "rotation_busy";

/// How close to its end a grace of `grace` seconds counts as near its deadline.
pub fn horizon(grace: i64) -> i64 {
    (grace / 4).clamp(HOUR, DAY)
}

/// Whether a grace that began at `started` and ends at `ends` is near its end at `at`.
pub fn near_deadline(started: i64, ends: i64, at: i64) -> bool {
    ends > at && ends - at <= horizon(ends - started)
}

/// Whether an old credential last presented at `last` is busy near its deadline.
pub fn busy(started: i64, ends: i64, last: Option<i64>, at: i64) -> bool {
    near_deadline(started, ends, at) && last.is_some_and(|t| t > at - BUSY_WINDOW)
}

/// One credential of a rotation, as its use since the rotation tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub last_presented: Option<i64>,
    /// Distinct client addresses seen since the rotation began.
    pub addresses: i64,
    /// Requests since the hour the rotation began.
    pub requests: i64,
}

/// Requests in one hour: the old credential's and the new one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourPair {
    /// Unix seconds at the start of the hour.
    pub start: i64,
    pub old: i64,
    pub new: i64,
}

/// A rotation side by side: old and new, hour by hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub started: i64,
    pub ends: i64,
    pub old: Side,
    pub new: Side,
    /// The last [`HOURS_SHOWN`] hours since the rotation began, latest first, zeros included.
    pub hours: Vec<HourPair>,
    pub busy: bool,
}

/// A credential's usage subject and its last accepted use, if it has one.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub id: &'a str,
    pub last_used: Option<i64>,
}

/// The old and the new credential of a rotation that began at `started` and
/// ends at `ends`, watched at `at`.
pub fn watch(
    conn: &mut DbConn,
    (old, new): (Subject<'_>, Subject<'_>),
    (started, ends): (i64, i64),
    at: i64,
) -> Result<Watch> {
    let (first, now) = (started.div_euclid(HOUR), at.div_euclid(HOUR));
    let old_hours = UsageHour::between(conn, old.id, first, now)?;
    let new_hours = UsageHour::between(conn, new.id, first, now)?;
    let count = |rows: &[(i64, i64)], h: i64| rows.iter().find(|(hour, _)| *hour == h).map_or(0, |(_, n)| *n);
    let hours = (first.max(now - HOURS_SHOWN + 1)..=now)
        .rev()
        .map(|h| HourPair { start: h * HOUR, old: count(&old_hours, h), new: count(&new_hours, h) })
        .collect();
    let old_side = side(conn, old, &old_hours, started, at)?;
    let new_side = side(conn, new, &new_hours, started, at)?;
    let busy = busy(started, ends, old_side.last_presented, at);
    Ok(Watch { started, ends, old: old_side, new: new_side, hours, busy })
}

fn side(conn: &mut DbConn, s: Subject<'_>, hours: &[(i64, i64)], started: i64, at: i64) -> Result<Side> {
    Ok(Side {
        last_presented: last_presented(conn, s, at)?,
        addresses: SightingRow::seen_since(conn, s.id, SightKind::Address.as_str(), started)?,
        requests: hours.iter().map(|(_, n)| n).sum(),
    })
}

/// When a credential was last presented, as far as the database knows (see the module's rules).
pub fn last_presented(conn: &mut DbConn, s: Subject<'_>, at: i64) -> Result<Option<i64>> {
    let mut exact = s.last_used;
    for kind in [SightKind::Address, SightKind::Agent] {
        let seen = SightingRow::latest(conn, s.id, kind.as_str(), 1)?.first().map(|r| r.last_seen);
        exact = exact.max(seen);
    }
    let Some(hour) = UsageHour::last(conn, s.id)? else { return Ok(exact) };
    let explained = exact.is_some_and(|t| t.div_euclid(HOUR) >= hour);
    Ok(if explained { exact } else { exact.max(Some((hour * HOUR + HOUR - 1).min(at))) })
}

/// Refuses to finish a grace early while the old credential (`what`: "key",
/// "secret") was presented within `quiet` seconds of `at`.
pub fn refuse_unless_quiet(last: Option<i64>, quiet: i64, at: i64, what: &str) -> Result<()> {
    match last {
        Some(t) if at - t < quiet => Err(Error::Invalid(FieldErrors::single(
            "quiet",
            format!(
                "The old {what} was used {}: end its grace once it has been quiet for {}, or let the grace run out.",
                ago(at - t),
                period(quiet)
            ),
        ))),
        _ => Ok(()),
    }
}

/// A quiet period among [`QUIET_CHOICES`], or the field error.
pub fn quiet_choice(secs: Option<i64>) -> Result<i64> {
    secs.filter(|s| QUIET_CHOICES.contains(s)).ok_or_else(|| {
        Error::Invalid(FieldErrors::single("quiet", "Choose a quiet period: 15 minutes, 1 hour, 6 hours or 24 hours."))
    })
}

/// An extension among [`EXTEND_CHOICES`], or the field error.
pub fn extend_choice(secs: Option<i64>) -> Result<i64> {
    secs.filter(|s| EXTEND_CHOICES.contains(s))
        .ok_or_else(|| Error::Invalid(FieldErrors::single("extend", "Choose 1 hour, 24 hours or 7 days.")))
}

/// Where an extension of a grace ending at `ends` by `by` lands, at most
/// `limit`; refused when nothing is left to add.
pub fn extended_end(ends: i64, by: i64, limit: i64) -> Result<i64> {
    let until = ends.saturating_add(by).min(limit);
    if until <= ends {
        return Err(Error::Invalid(FieldErrors::single(
            "extend",
            "The grace cannot be extended: it already ends as late as it may (7 days from now at most, \
             and never past the team's maximum key lifetime).",
        )));
    }
    Ok(until)
}

/// Who records what Latchkey itself noticed (a busy rotation).
pub fn system_actor() -> Actor {
    Actor { label: "Latchkey".into(), ..Actor::default() }
}

/// Tells the credential's holder and the team's owners and admins that a
/// rotation is busy near its deadline. Email is not sent yet: the notice is
/// logged (who would get it, by member id, never an address).
pub fn notify_busy(conn: &mut DbConn, team_id: &str, holder: Option<&str>, what: &str) -> Result<()> {
    let recipients: Vec<String> = Membership::list(conn, team_id)?
        .into_iter()
        .filter(|(m, _)| m.role >= Role::Admin || Some(m.user_id.as_str()) == holder)
        .map(|(m, _)| m.user_id)
        .collect();
    tracing::info!(team = team_id, ?recipients, "notice (log only): {what} is still in use near the end of its grace");
    Ok(())
}

/// "less than a minute ago", "5 minutes ago", "3 hours ago", "2 days ago" (rounded down).
pub fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => "less than a minute ago".into(),
        s => format!("{} ago", period(s - s % 60)),
    }
}

/// "15 minutes", "1 hour", "24 hours", "7 days" (rounded down).
pub fn period(secs: i64) -> String {
    let (n, unit) = match secs.max(60) {
        s if (s > DAY && s % DAY == 0) || s >= 2 * DAY => (s / DAY, "day"),
        s if s >= HOUR => (s / HOUR, "hour"),
        s => (s / 60, "minute"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_the_deadline_is_a_quarter_of_the_grace_between_one_and_twenty_four_hours() {
        assert_eq!(horizon(7 * DAY), DAY);
        assert_eq!(horizon(DAY), 6 * HOUR);
        assert_eq!(horizon(HOUR), HOUR);
        assert_eq!(horizon(0), HOUR);
        let t = 1_000_000;
        assert!(near_deadline(t, t + DAY, t + DAY - 6 * HOUR));
        assert!(!near_deadline(t, t + DAY, t + DAY - 6 * HOUR - 1));
        assert!(!near_deadline(t, t + DAY, t + DAY), "ended");
    }

    #[test]
    fn busy_needs_a_presentation_within_the_last_hour() {
        let t = 1_000_000;
        let at = t + HOUR - 60;
        assert!(busy(t, t + HOUR, Some(at - 10), at));
        assert!(!busy(t, t + HOUR, Some(at - HOUR), at));
        assert!(!busy(t, t + HOUR, None, at));
        assert!(!busy(t, t + 7 * DAY, Some(t + 10), t + 20), "far from the deadline");
    }

    #[test]
    fn quiet_periods_and_extensions_are_chosen_from_their_lists() {
        assert_eq!(quiet_choice(Some(900)).ok(), Some(900));
        assert!(quiet_choice(Some(60)).is_err() && quiet_choice(None).is_err());
        assert_eq!(extend_choice(Some(7 * DAY)).ok(), Some(7 * DAY));
        assert!(extend_choice(Some(8 * DAY)).is_err());
        assert_eq!(extended_end(100, 50, 120).ok(), Some(120));
        assert!(extended_end(100, 50, 100).is_err(), "nothing left");
        assert_eq!(extended_end(100, i64::MAX, i64::MAX).ok(), Some(i64::MAX));
    }

    #[test]
    fn refusals_say_when_the_old_credential_was_used() {
        let Err(Error::Invalid(e)) = refuse_unless_quiet(Some(1_000), HOUR, 1_000 + 5 * 60 + 20, "key") else {
            panic!("refused")
        };
        assert!(e.get("quiet").is_some_and(|m| m.starts_with("The old key was used 5 minutes ago")), "{e:?}");
        assert!(refuse_unless_quiet(Some(1_000), 900, 1_000 + 900, "key").is_ok());
        assert!(refuse_unless_quiet(None, DAY, 0, "secret").is_ok());
        assert_eq!(period(DAY), "24 hours");
        assert_eq!(period(7 * DAY), "7 days");
        assert_eq!(period(900), "15 minutes");
        assert_eq!(ago(30), "less than a minute ago");
        assert_eq!(ago(2 * HOUR + 5), "2 hours ago");
    }
}
