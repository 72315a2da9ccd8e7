//! Usage read back: a key's days by outcome, the client addresses and user
//! agents seen last, the scopes it exercised, and what it never uses.
//!
//! Rules: days are listed from `from` to `to` with zeros included; least
//! privilege is judged only once a key has been watched exercising scopes
//! for [`OBSERVE_DAYS`] days, over the last [`UNUSED_WINDOW_DAYS`] days: a
//! granted scope is unused when no scope exercised in the window was its own
//! (for `admin`: when every exercised scope was also granted by name).

use crate::domain::UsageOutcome;
use crate::service::keys::scopes;
use crate::store::models::{ApiKey, ScopeUseRow, SightingRow, UsageDay};
use crate::store::{DbConn, StoreError};

use super::SightKind;

/// Days of exercised scopes before unused ones are named.
pub const OBSERVE_DAYS: i64 = 14;
/// The window a scope must have been exercised in to count as used.
pub const UNUSED_WINDOW_DAYS: i64 = 30;
/// Days a report may span at most.
pub const MAX_DAYS: i64 = 366;
const DAY: i64 = 86_400;

/// A key's requests on one day, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayOutcomes {
    /// Unix day.
    pub day: i64,
    /// In [`UsageOutcome::ALL`] order.
    pub counts: [i64; 7],
}

impl DayOutcomes {
    pub fn get(&self, outcome: UsageOutcome) -> i64 {
        self.counts[outcome.index()]
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }
}

/// What a key's usage says.
#[derive(Debug, Clone)]
pub struct Report {
    pub days: Vec<DayOutcomes>,
    /// The last client addresses seen, latest first.
    pub addresses: Vec<SightingRow>,
    /// The last user agents seen, latest first.
    pub agents: Vec<SightingRow>,
    /// The scopes it exercised (ever), by name.
    pub exercised: Vec<ScopeUseRow>,
    pub privilege: Privilege,
}

/// Least privilege, as far as use tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// Not watched long enough (no scope exercised [`OBSERVE_DAYS`] ago).
    Unknown,
    /// Watched for `days` days (at most [`UNUSED_WINDOW_DAYS`]): `unused`
    /// are granted and not exercised within them; `used` are the scopes
    /// exercised within them (what a least-privilege key would carry).
    Known { days: i64, unused: Vec<String>, used: Vec<String> },
}

impl Privilege {
    /// Granted scopes not used, when known.
    pub fn unused(&self) -> Option<&[String]> {
        match self {
            Self::Unknown => None,
            Self::Known { unused, .. } => Some(unused),
        }
    }

    /// Whether the key carries scopes it does not use.
    pub fn is_over_privileged(&self) -> bool {
        self.unused().is_some_and(|u| !u.is_empty())
    }
}

/// Judges a key's scopes against what it exercised, at `at`.
pub fn privilege(granted: &[String], exercised: &[ScopeUseRow], at: i64) -> Privilege {
    let Some(watched_from) = exercised.iter().map(|s| s.first_used).min() else { return Privilege::Unknown };
    if at - watched_from < OBSERVE_DAYS * DAY {
        return Privilege::Unknown;
    }
    let days = ((at - watched_from) / DAY).min(UNUSED_WINDOW_DAYS);
    let since = at - days * DAY;
    let recent: Vec<&str> = exercised.iter().filter(|s| s.last_used >= since).map(|s| s.scope.as_str()).collect();
    let used_via = |g: &str| recent.iter().any(|e| *e == g || (g == scopes::ADMIN && !granted.iter().any(|x| x == e)));
    let unused = granted.iter().filter(|g| !used_via(g)).cloned().collect();
    let mut used: Vec<String> = recent.iter().map(|s| (*s).to_owned()).collect();
    used.sort_unstable();
    used.dedup();
    Privilege::Known { days, unused, used }
}

/// A key's usage from day `from` to day `to` (Unix days, inclusive), judged at `at`.
pub fn report(conn: &mut DbConn, key: &ApiKey, from: i64, to: i64, at: i64) -> Result<Report, StoreError> {
    let rows = UsageDay::between(conn, &key.id, from, to)?;
    let days = (from..=to)
        .map(|day| DayOutcomes { day, counts: rows.iter().find(|r| r.day == day).map_or([0; 7], UsageDay::counts) })
        .collect();
    let n = i64::try_from(super::SIGHTINGS).unwrap_or(10);
    let addresses = SightingRow::latest(conn, &key.id, SightKind::Address.as_str(), n)?;
    let agents = SightingRow::latest(conn, &key.id, SightKind::Agent.as_str(), n)?;
    let exercised = ScopeUseRow::of_key(conn, &key.id)?;
    let privilege = privilege(&scopes::scopes_of(&key.scopes), &exercised, at);
    Ok(Report { days, addresses, agents, exercised, privilege })
}

/// Least privilege of each key in `keys`, judged at `at` (one query).
pub fn privileges(
    conn: &mut DbConn,
    keys: &[ApiKey],
    at: i64,
) -> Result<std::collections::HashMap<String, Privilege>, StoreError> {
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let rows = ScopeUseRow::of_keys(conn, &ids)?;
    Ok(keys
        .iter()
        .map(|k| {
            let exercised: Vec<ScopeUseRow> =
                rows.iter().filter(|(id, _)| *id == k.id).map(|(_, s)| s.clone()).collect();
            (k.id.clone(), privilege(&scopes::scopes_of(&k.scopes), &exercised, at))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(scope: &str, first_day: i64, last_day: i64) -> ScopeUseRow {
        ScopeUseRow { scope: scope.into(), first_used: first_day * DAY, last_used: last_day * DAY }
    }

    fn granted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn nothing_is_judged_before_fourteen_days_of_use() {
        let g = granted(&["products:read", "products:write"]);
        assert_eq!(privilege(&g, &[], 100 * DAY), Privilege::Unknown);
        assert_eq!(privilege(&g, &[used("products:read", 90, 99)], 100 * DAY), Privilege::Unknown);
        let p = privilege(&g, &[used("products:read", 86, 99)], 100 * DAY);
        assert_eq!(p.unused(), Some(&["products:write".to_owned()][..]));
    }

    #[test]
    fn a_scope_used_only_long_ago_is_unused_and_the_window_is_thirty_days() {
        let g = granted(&["products:read", "products:write"]);
        let p = privilege(&g, &[used("products:read", 10, 99), used("products:write", 10, 60)], 100 * DAY);
        assert_eq!(
            p,
            Privilege::Known { days: 30, unused: vec!["products:write".into()], used: vec!["products:read".into()] }
        );
    }

    #[test]
    fn admin_is_used_only_for_scopes_not_granted_by_name() {
        let g = granted(&["admin", "products:read"]);
        let by_name = privilege(&g, &[used("products:read", 50, 99)], 100 * DAY);
        assert_eq!(by_name.unused(), Some(&["admin".to_owned()][..]));
        let via_admin = privilege(&g, &[used("contacts:read", 50, 99)], 100 * DAY);
        assert_eq!(via_admin.unused(), Some(&["products:read".to_owned()][..]));
        assert!(via_admin.is_over_privileged());
    }
}
