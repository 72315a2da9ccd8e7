//! Usage rows: a key's counts per day by outcome (`api_key_usage`), requests
//! per hour (`usage_hours`), the last client addresses and user agents seen
//! (`usage_sightings`), the scopes a key exercised (`api_key_scope_use`),
//! and reminders sent once (`reminders`).
//!
//! Upserts differ in diesel's MultiConnection (and `min`/`max` of two values
//! is `min()` in SQLite, `LEAST()` in PostgreSQL): those branch per backend
//! with the same semantics.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::store::DbConn;
use crate::store::schema::{api_key_scope_use, api_key_usage, reminders, usage_hours, usage_sightings};

/// A key's requests on one day, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_key_usage)]
pub struct UsageDay {
    pub day: i64,
    /// Outcome `ok`.
    pub count: i64,
    pub scope_denied: i64,
    pub address_denied: i64,
    pub rate_limited: i64,
    pub expired: i64,
    pub revoked: i64,
    pub disabled: i64,
}

impl UsageDay {
    /// The counts in `UsageOutcome::ALL` order.
    pub fn counts(&self) -> [i64; 7] {
        [
            self.count,
            self.scope_denied,
            self.address_denied,
            self.rate_limited,
            self.expired,
            self.revoked,
            self.disabled,
        ]
    }

    pub fn total(&self) -> i64 {
        self.counts().iter().sum()
    }
}

/// A client address or user agent seen using a subject.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = usage_sightings)]
pub struct SightingRow {
    pub kind: String,
    pub value: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub requests: i64,
}

/// A scope a key exercised.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_key_scope_use)]
pub struct ScopeUseRow {
    pub scope: String,
    pub first_used: i64,
    pub last_used: i64,
}

/// Database methods
impl UsageDay {
    /// Adds `counts` (by outcome) to a key's day.
    pub fn add(conn: &mut DbConn, key_id: &str, day: i64, counts: &[i64; 7]) -> QueryResult<()> {
        use api_key_usage as u;
        use diesel::upsert::excluded;
        let row = (
            u::key_id.eq(key_id),
            u::day.eq(day),
            u::count.eq(counts[0]),
            u::scope_denied.eq(counts[1]),
            u::address_denied.eq(counts[2]),
            u::rate_limited.eq(counts[3]),
            u::expired.eq(counts[4]),
            u::revoked.eq(counts[5]),
            u::disabled.eq(counts[6]),
        );
        let add = (
            u::count.eq(u::count + excluded(u::count)),
            u::scope_denied.eq(u::scope_denied + excluded(u::scope_denied)),
            u::address_denied.eq(u::address_denied + excluded(u::address_denied)),
            u::rate_limited.eq(u::rate_limited + excluded(u::rate_limited)),
            u::expired.eq(u::expired + excluded(u::expired)),
            u::revoked.eq(u::revoked + excluded(u::revoked)),
            u::disabled.eq(u::disabled + excluded(u::disabled)),
        );
        match conn {
            DbConn::Sqlite(c) => diesel::insert_into(u::table)
                .values(row)
                .on_conflict((u::key_id, u::day))
                .do_update()
                .set(add)
                .execute(c),
            DbConn::Pg(c) => diesel::insert_into(u::table)
                .values(row)
                .on_conflict((u::key_id, u::day))
                .do_update()
                .set(add)
                .execute(c),
        }
        .map(|_| ())
    }

    /// A key's days from `from` to `to` (Unix days, inclusive), oldest first.
    pub fn between(conn: &mut DbConn, key_id: &str, from: i64, to: i64) -> QueryResult<Vec<UsageDay>> {
        api_key_usage::table
            .filter(api_key_usage::key_id.eq(key_id))
            .filter(api_key_usage::day.ge(from))
            .filter(api_key_usage::day.le(to))
            .order(api_key_usage::day)
            .select(UsageDay::as_select())
            .load(conn)
    }
}

/// Database methods
pub struct UsageHour;

impl UsageHour {
    /// Adds `requests` to a subject's hour.
    pub fn add(conn: &mut DbConn, subject: &str, hour: i64, requests: i64) -> QueryResult<()> {
        use diesel::upsert::excluded;
        use usage_hours as h;
        let row = (h::subject.eq(subject), h::hour.eq(hour), h::requests.eq(requests));
        let add = h::requests.eq(h::requests + excluded(h::requests));
        match conn {
            DbConn::Sqlite(c) => diesel::insert_into(h::table)
                .values(row)
                .on_conflict((h::subject, h::hour))
                .do_update()
                .set(add)
                .execute(c),
            DbConn::Pg(c) => diesel::insert_into(h::table)
                .values(row)
                .on_conflict((h::subject, h::hour))
                .do_update()
                .set(add)
                .execute(c),
        }
        .map(|_| ())
    }

    /// `(hour, requests)` of a subject from `from` to `to` (hours, inclusive), oldest first.
    pub fn between(conn: &mut DbConn, subject: &str, from: i64, to: i64) -> QueryResult<Vec<(i64, i64)>> {
        usage_hours::table
            .filter(usage_hours::subject.eq(subject))
            .filter(usage_hours::hour.ge(from))
            .filter(usage_hours::hour.le(to))
            .order(usage_hours::hour)
            .select((usage_hours::hour, usage_hours::requests))
            .load(conn)
    }

    /// The last hour a subject was presented in, if any.
    pub fn last(conn: &mut DbConn, subject: &str) -> QueryResult<Option<i64>> {
        usage_hours::table
            .filter(usage_hours::subject.eq(subject))
            .select(diesel::dsl::max(usage_hours::hour))
            .first::<Option<i64>>(conn)
    }

    /// Forgets hours before `before`.
    pub fn prune(conn: &mut DbConn, before: i64) -> QueryResult<usize> {
        diesel::delete(usage_hours::table.filter(usage_hours::hour.lt(before))).execute(conn)
    }
}

/// Database methods
impl SightingRow {
    /// Merges a sighting (earliest first, latest last, requests added).
    pub fn merge(conn: &mut DbConn, subject: &str, row: &SightingRow) -> QueryResult<()> {
        // The same statement; only the two-value min/max differs.
        let sql = |min: &str, max: &str| {
            format!(
                "INSERT INTO usage_sightings (subject, kind, value, first_seen, last_seen, requests) \
                 VALUES ({}) ON CONFLICT (subject, kind, value) DO UPDATE SET \
                 first_seen = {min}(usage_sightings.first_seen, excluded.first_seen), \
                 last_seen = {max}(usage_sightings.last_seen, excluded.last_seen), \
                 requests = usage_sightings.requests + excluded.requests",
                placeholders(conn, 6)
            )
        };
        let query = match conn {
            DbConn::Sqlite(_) => sql("min", "max"),
            DbConn::Pg(_) => sql("LEAST", "GREATEST"),
        };
        diesel::sql_query(query)
            .bind::<Text, _>(subject)
            .bind::<Text, _>(&row.kind)
            .bind::<Text, _>(&row.value)
            .bind::<BigInt, _>(row.first_seen)
            .bind::<BigInt, _>(row.last_seen)
            .bind::<BigInt, _>(row.requests)
            .execute(conn)
            .map(|_| ())
    }

    /// Keeps the `keep` seen last of every subject's every kind (one
    /// statement; ties broken by value).
    pub fn prune_all(conn: &mut DbConn, keep: i64) -> QueryResult<usize> {
        let query = format!(
            "DELETE FROM usage_sightings WHERE (subject, kind, value) IN (\
               SELECT subject, kind, value FROM (\
                 SELECT subject, kind, value, row_number() OVER \
                   (PARTITION BY subject, kind ORDER BY last_seen DESC, value) AS n \
                 FROM usage_sightings) AS ranked \
               WHERE n > {})",
            placeholders(conn, 1)
        );
        diesel::sql_query(query).bind::<BigInt, _>(keep).execute(conn)
    }

    /// A subject's `kind` sightings seen last, latest first.
    pub fn latest(conn: &mut DbConn, subject: &str, kind: &str, limit: i64) -> QueryResult<Vec<SightingRow>> {
        usage_sightings::table
            .filter(usage_sightings::subject.eq(subject))
            .filter(usage_sightings::kind.eq(kind))
            .order((usage_sightings::last_seen.desc(), usage_sightings::value))
            .limit(limit)
            .select(SightingRow::as_select())
            .load(conn)
    }

    /// Distinct `kind` values of a subject seen at or after `since`.
    pub fn seen_since(conn: &mut DbConn, subject: &str, kind: &str, since: i64) -> QueryResult<i64> {
        usage_sightings::table
            .filter(usage_sightings::subject.eq(subject))
            .filter(usage_sightings::kind.eq(kind))
            .filter(usage_sightings::last_seen.ge(since))
            .count()
            .get_result(conn)
    }
}

/// Database methods
impl ScopeUseRow {
    /// Merges a key's use of a scope (earliest first use, latest last use).
    pub fn merge(conn: &mut DbConn, key_id: &str, scope: &str, first: i64, last: i64) -> QueryResult<()> {
        let sql = |min: &str, max: &str| {
            format!(
                "INSERT INTO api_key_scope_use (key_id, scope, first_used, last_used) VALUES ({}) \
                 ON CONFLICT (key_id, scope) DO UPDATE SET \
                 first_used = {min}(api_key_scope_use.first_used, excluded.first_used), \
                 last_used = {max}(api_key_scope_use.last_used, excluded.last_used)",
                placeholders(conn, 4)
            )
        };
        let query = match conn {
            DbConn::Sqlite(_) => sql("min", "max"),
            DbConn::Pg(_) => sql("LEAST", "GREATEST"),
        };
        diesel::sql_query(query)
            .bind::<Text, _>(key_id)
            .bind::<Text, _>(scope)
            .bind::<BigInt, _>(first)
            .bind::<BigInt, _>(last)
            .execute(conn)
            .map(|_| ())
    }

    /// The scopes a key exercised, by name.
    pub fn of_key(conn: &mut DbConn, key_id: &str) -> QueryResult<Vec<ScopeUseRow>> {
        api_key_scope_use::table
            .filter(api_key_scope_use::key_id.eq(key_id))
            .order(api_key_scope_use::scope)
            .select(ScopeUseRow::as_select())
            .load(conn)
    }

    /// The scopes exercised by each of `key_ids`.
    pub fn of_keys(conn: &mut DbConn, key_ids: &[&str]) -> QueryResult<Vec<(String, ScopeUseRow)>> {
        api_key_scope_use::table
            .filter(api_key_scope_use::key_id.eq_any(key_ids))
            .select((api_key_scope_use::key_id, ScopeUseRow::as_select()))
            .load(conn)
    }
}

/// Reminders: each `(subject, kind)` is sent once.
pub struct Reminder;

/// Database methods
impl Reminder {
    /// Claims a reminder: `true` for the one caller that inserted the row
    /// (whichever instance), `false` if it was sent already.
    pub fn claim(conn: &mut DbConn, subject: &str, kind: &str, at: i64) -> QueryResult<bool> {
        let row = (reminders::subject.eq(subject), reminders::kind.eq(kind), reminders::sent_at.eq(at));
        let inserted = match conn {
            DbConn::Sqlite(c) => diesel::insert_into(reminders::table).values(row).on_conflict_do_nothing().execute(c),
            DbConn::Pg(c) => diesel::insert_into(reminders::table).values(row).on_conflict_do_nothing().execute(c),
        }?;
        Ok(inserted == 1)
    }

    /// Claims `(subject, kind)` at `at` unless it was claimed in the `every`
    /// seconds before: `true` for the one caller that inserted or moved the row.
    pub fn claim_every(conn: &mut DbConn, subject: &str, kind: &str, at: i64, every: i64) -> QueryResult<bool> {
        use diesel::sql_types::{BigInt, Text};
        // The same upsert in both dialects but for the placeholders.
        let sql = format!(
            "INSERT INTO reminders (subject, kind, sent_at) VALUES ({}) ON CONFLICT (subject, kind) \
             DO UPDATE SET sent_at = excluded.sent_at WHERE reminders.sent_at <= excluded.sent_at - {}",
            placeholders(conn, 3),
            every.max(0)
        );
        let query = diesel::sql_query(sql).bind::<Text, _>(subject).bind::<Text, _>(kind).bind::<BigInt, _>(at);
        Ok(query.execute(conn)? == 1)
    }

    /// Whether `(subject, kind)` was sent.
    pub fn sent(conn: &mut DbConn, subject: &str, kind: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            reminders::table.filter(reminders::subject.eq(subject)).filter(reminders::kind.eq(kind)),
        ))
        .get_result(conn)
    }

    /// `(subject, kind)` of the reminders sent about any of `subjects`.
    pub fn of_subjects(conn: &mut DbConn, subjects: &[&str]) -> QueryResult<Vec<(String, String)>> {
        reminders::table
            .filter(reminders::subject.eq_any(subjects))
            .select((reminders::subject, reminders::kind))
            .load(conn)
    }

    /// Forgets one reminder of a subject (it may be sent again).
    pub fn forget_kind(conn: &mut DbConn, subject: &str, kind: &str) -> QueryResult<usize> {
        diesel::delete(reminders::table.filter(reminders::subject.eq(subject)).filter(reminders::kind.eq(kind)))
            .execute(conn)
    }

    /// Forgets the reminders of a subject (a key whose expiry moved may be reminded again).
    pub fn forget(conn: &mut DbConn, subject: &str) -> QueryResult<usize> {
        diesel::delete(reminders::table.filter(reminders::subject.eq(subject))).execute(conn)
    }
}

/// `n` bind placeholders in the connection's dialect.
fn placeholders(conn: &DbConn, n: usize) -> String {
    match conn {
        DbConn::Sqlite(_) => vec!["?"; n].join(", "),
        DbConn::Pg(_) => (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "),
    }
}
