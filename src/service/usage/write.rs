//! Writing a batch of usage in one transaction.
//!
//! Rules: subjects are written in order (concurrent writers take row locks
//! in the same order); a key's days, last use and scopes are written only if
//! the key exists (counts of deleted keys are dropped: their rows could never
//! be written, and must not block the others); hours and sightings are
//! written for every subject (upserts only: sightings beyond the last
//! [`super::SIGHTINGS`] of a kind are pruned by [`prune`], periodically, in
//! one statement, and readers read the latest ones only).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{SubjectUse, Usage, is_secret_subject};
use crate::store::models::{ApiKey, ScopeUseRow, SightingRow, UsageDay, UsageHour};
use crate::store::{Db, DbConn, StoreError};

/// Key ids per existence query.
const IDS_PER_QUERY: usize = 500;

/// Writes a batch in one transaction.
pub async fn write(db: &Db, batch: Arc<Usage>) -> Result<(), StoreError> {
    db.run(move |conn| crate::store::transaction(conn, |conn| write_in(conn, &batch)).map_err(StoreError::from)).await
}

fn write_in(conn: &mut DbConn, batch: &Usage) -> diesel::QueryResult<()> {
    let subjects: BTreeMap<&str, &SubjectUse> = batch.subjects.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let keys: Vec<&str> = subjects.keys().copied().filter(|s| !is_secret_subject(s)).collect();
    let mut existing = BTreeSet::new();
    for ids in keys.chunks(IDS_PER_QUERY) {
        existing.extend(ApiKey::existing(conn, ids)?);
    }
    for (subject, u) in &subjects {
        let is_key = !is_secret_subject(subject);
        if is_key && !existing.contains(*subject) {
            continue;
        }
        if is_key {
            write_key(conn, subject, u)?;
        }
        for (hour, n) in &u.hours {
            UsageHour::add(conn, subject, *hour, *n)?;
        }
        write_sightings(conn, subject, u)?;
    }
    if existing.len() < keys.len() {
        tracing::info!(keys = keys.len() - existing.len(), "dropped the usage of deleted keys");
    }
    Ok(())
}

fn write_key(conn: &mut DbConn, key_id: &str, u: &SubjectUse) -> diesel::QueryResult<()> {
    if u.last_used > 0 {
        ApiKey::set_last_used(conn, key_id, u.last_used)?;
    }
    let mut days = u.days.clone();
    days.sort_unstable_by_key(|(d, _)| *d);
    for (day, counts) in days.iter().filter(|(_, c)| c.iter().any(|n| *n != 0)) {
        UsageDay::add(conn, key_id, *day, counts)?;
    }
    let mut scopes = u.scopes.clone();
    scopes.sort_unstable_by(|a, b| a.scope.cmp(&b.scope));
    for s in &scopes {
        ScopeUseRow::merge(conn, key_id, &s.scope, s.first, s.last)?;
    }
    Ok(())
}

fn write_sightings(conn: &mut DbConn, subject: &str, u: &SubjectUse) -> diesel::QueryResult<()> {
    let mut all = u.all_sightings();
    if all.is_empty() {
        return Ok(());
    }
    all.sort_unstable_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
    for s in &all {
        let row = SightingRow {
            kind: s.kind.as_str().to_owned(),
            value: s.value.clone(),
            first_seen: s.first,
            last_seen: s.last,
            requests: s.requests,
        };
        SightingRow::merge(conn, subject, &row)?;
    }
    Ok(())
}

/// Housekeeping: forgets sightings beyond the last [`super::SIGHTINGS`] of
/// each subject and kind, and hours older than `hours_before`; returns the
/// rows removed.
pub async fn prune(db: &Db, hours_before: i64) -> Result<usize, StoreError> {
    let keep = i64::try_from(super::SIGHTINGS).unwrap_or(i64::MAX);
    db.run(move |conn| {
        let sightings = SightingRow::prune_all(conn, keep)?;
        Ok::<_, StoreError>(sightings + UsageHour::prune(conn, hours_before)?)
    })
    .await
}
