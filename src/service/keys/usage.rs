//! A key's usage read back for its pages and the JSON API: the days asked
//! for by outcome, the addresses and user agents seen last, and the scopes
//! it exercised (`service::usage::report`).
//!
//! Rules: keys of other teams do not exist here (reading a team's keys is any
//! member's right, so the team is the policy); a span runs from `from` to `to`
//! (Unix days, inclusive), `from` ≤ `to`, at most [`report::MAX_DAYS`] days;
//! left out, `to` is today and `from` the [`DEFAULT_DAYS`] days up to `to`,
//! "today" being the service clock's.

use crate::service::usage::report::{self, Report};
use crate::service::{FieldErrors, Result};
use crate::store::DbConn;
use crate::store::models::ApiKey;

/// Days a report spans when not told otherwise (and the key pages show).
pub const DEFAULT_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// A key with its usage from day `from` to day `to`.
#[derive(Debug, Clone)]
pub struct KeyUsage {
    pub key: ApiKey,
    /// Unix days, inclusive.
    pub from: i64,
    pub to: i64,
    pub report: Report,
}

/// The days asked for, defaults filled in, checked.
pub fn span(from: Option<i64>, to: Option<i64>, today: i64) -> Result<(i64, i64)> {
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to - DEFAULT_DAYS + 1);
    let mut errors = FieldErrors::default();
    if from > to {
        errors.add("from", "Start on or before the end date.");
        errors.add("to", "End on or after the start date.");
    } else if to - from + 1 > report::MAX_DAYS {
        let m = format!("Ask for at most {} days at once.", report::MAX_DAYS);
        errors.add("from", m.clone());
        errors.add("to", m);
    }
    errors.into_result()?;
    Ok((from, to))
}

/// A key of the team with its usage over the span asked for, judged at `at`.
pub fn of_key(
    conn: &mut DbConn,
    team_id: &str,
    id: &str,
    from: Option<i64>,
    to: Option<i64>,
    at: i64,
) -> Result<KeyUsage> {
    let key = super::get(conn, team_id, id)?;
    let (from, to) = span(from, to, at.div_euclid(DAY))?;
    let report = report::report(conn, &key, from, to, at)?;
    Ok(KeyUsage { key, from, to, report })
}

/// A key's usage over the [`DEFAULT_DAYS`] days up to `at` (its pages).
pub fn recent(conn: &mut DbConn, key: &ApiKey, at: i64) -> Result<Report> {
    let today = at.div_euclid(DAY);
    Ok(report::report(conn, key, today - DEFAULT_DAYS + 1, today, at)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<(i64, i64)>) -> Vec<String> {
        match r {
            Err(crate::service::Error::Invalid(f)) => f.0.into_keys().collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn the_default_is_the_thirty_days_up_to_today() {
        assert_eq!(span(None, None, 1000).ok(), Some((971, 1000)));
        assert_eq!(span(None, Some(500), 1000).ok(), Some((471, 500)));
        assert_eq!(span(Some(990), None, 1000).ok(), Some((990, 1000)));
        assert_eq!(span(Some(7), Some(7), 1000).ok(), Some((7, 7)));
    }

    #[test]
    fn a_reversed_or_too_long_span_names_both_fields() {
        assert_eq!(fields(span(Some(11), Some(10), 1000)), ["from", "to"]);
        assert_eq!(span(Some(1), Some(366), 1000).ok(), Some((1, 366)));
        assert_eq!(fields(span(Some(1), Some(367), 1000)), ["from", "to"]);
        assert_eq!(fields(span(Some(0), None, 1000)), ["from", "to"]);
    }
}
