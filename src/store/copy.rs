//! `latchkey copy-data`: every table of a SQLite database copied into an
//! empty, migrated PostgreSQL database, in one consistent pass.
//!
//! Rules:
//! - The tables copied are [`TABLES`], in an order that satisfies every
//!   foreign key; [`NOT_COPIED`] names the only tables left out. A source
//!   table in neither list, or a listed table missing from either side, is
//!   refused before anything is written (so a table added by a migration can
//!   never be left behind silently).
//! - The source is read inside one read transaction (a snapshot: under WAL a
//!   server keeps writing meanwhile, and none of its later writes is copied);
//!   the target is written inside one transaction, committed only when every
//!   table's counts agree (rows in the source snapshot == rows read == rows
//!   inserted == rows in the target), so a failure leaves the target as it was.
//! - The target's copied tables are locked (`EXCLUSIVE`: others may read) and
//!   must all be empty; one that has rows refuses the copy. The target keeps
//!   its own migration bookkeeping and change feed.
//! - Both sides must have the same columns per table (by name); a difference
//!   refuses the copy, so no column is dropped. Values travel as JSON
//!   (`json_object` on SQLite, `json_populate_recordset` on PostgreSQL), which
//!   converts the dialects' types: SQLite's 0/1 booleans are PostgreSQL
//!   booleans, integers are BIGINTs, a BLOB is sent as `\x…` hex (BYTEA).
//! - Ids are copied as they are; every serial or identity column's sequence is
//!   then set past the copied ids (and past SQLite's AUTOINCREMENT counter), so
//!   new rows continue after the copied ones.
//! - Identifiers in the SQL come from [`TABLES`] and the databases' own column
//!   lists, always quoted; row data is bound, never spliced.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;

use super::{SQLITE_MIGRATIONS, StoreError};

/// The tables copied, parents before children (every foreign key points to a
/// table earlier in the list; `api_keys.rolled_from`/`replaced_by` are not
/// foreign keys, so a rolled pair needs no second pass).
pub const TABLES: &[&str] = &[
    "teams",
    "users",
    "memberships",
    "invites",
    "sessions",
    "audit_events",
    "api_keys",
    "api_key_usage",
    "api_key_scope_use",
    "usage_hours",
    "usage_sightings",
    "reminders",
    "recovery_codes",
    "oauth_clients",
    "oauth_consents",
    "oauth_codes",
    "oauth_tokens",
    "webhook_endpoints",
    "webhook_messages",
    "webhook_deliveries",
    "email_opt_outs",
    "known_devices",
];

/// The only source tables not copied: diesel's migration bookkeeping, SQLite's
/// AUTOINCREMENT counters (carried over as sequence values) and the change
/// feed (each database keeps its own).
pub const NOT_COPIED: &[&str] = &["__diesel_schema_migrations", "sqlite_sequence", "changes"];

/// Rows per INSERT statement.
const BATCH: i64 = 500;

/// Why a copy did not happen. Nothing was written to the target either way.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The databases are not fit for a copy (the operator must act).
    #[error("{0}")]
    Refused(String),
    /// The copy failed; the target's transaction was rolled back.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: StoreError,
    },
    /// The rows counted on both sides disagree; the target's transaction was
    /// rolled back.
    #[error("{0}")]
    Inconsistent(String),
}

impl From<diesel::result::Error> for CopyError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Failed { what: "the copy's transaction".into(), source: StoreError::Query(e) }
    }
}

/// A closure for `map_err` that names the step that failed.
fn failed(what: impl Into<String>) -> impl FnOnce(diesel::result::Error) -> CopyError {
    let what = what.into();
    move |e| CopyError::Failed { what, source: StoreError::Query(e) }
}

/// What was copied: rows per table (in [`TABLES`] order) and the sequences
/// set (`table.column` and the last id used).
#[derive(Debug, Default)]
pub struct Report {
    pub tables: Vec<(&'static str, i64)>,
    pub sequences: Vec<(String, i64)>,
}

/// One text column `name` of a raw query's rows.
#[derive(QueryableByName)]
pub struct Name {
    #[diesel(sql_type = Text)]
    pub name: String,
}

/// One count `n` of a raw query.
#[derive(QueryableByName)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = BigInt)]
    rid: i64,
    #[diesel(sql_type = Text)]
    row: String,
}

/// Refuses a source whose migrations differ from this binary's (pending ones,
/// or ones this binary does not know). Read only: the source is never migrated
/// here, since a server of another version may be using it.
pub fn check_source_version(conn: &mut SqliteConnection) -> Result<(), CopyError> {
    use diesel::migration::MigrationSource;
    let applied: Vec<String> = diesel::sql_query("SELECT version AS name FROM __diesel_schema_migrations")
        .load::<Name>(conn)
        .map(|rows| rows.into_iter().map(|r| r.name).collect())
        .unwrap_or_default();
    let embedded = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
        .map_err(|e| CopyError::Refused(format!("reading this binary's migrations: {e}")))?;
    let embedded: Vec<String> = embedded.iter().map(|m| m.name().version().to_string()).collect();
    if embedded.iter().any(|v| !applied.contains(v)) {
        return Err(CopyError::Refused(
            "the SQLite database has pending migrations: run `latchkey migrate` first (with this binary), \
             then copy"
                .into(),
        ));
    }
    if let Some(unknown) = applied.iter().find(|v| !embedded.contains(v)) {
        return Err(CopyError::Refused(format!(
            "the SQLite database has a migration this binary does not know ({unknown}): copy with the \
             latchkey version that serves it"
        )));
    }
    Ok(())
}

/// Copies every table of `source` into `target` (migrated, its tables empty):
/// one read transaction on the source, one write transaction on the target.
pub fn copy(source: &mut SqliteConnection, target: &mut PgConnection) -> Result<Report, CopyError> {
    source.transaction(|source| {
        check_source_tables(source)?;
        target.transaction(|target| {
            lock_and_check_empty(target)?;
            let mut report = Report::default();
            for table in TABLES {
                let columns = same_columns(source, target, table)?;
                report.tables.push((table, copy_table(source, target, table, &columns)?));
            }
            report.sequences = set_sequences(source, target)?;
            Ok(report)
        })
    })
}

/// Every source table is either copied or deliberately left out, and every
/// copied table exists.
fn check_source_tables(source: &mut SqliteConnection) -> Result<(), CopyError> {
    let tables: Vec<String> = diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
        .load::<Name>(source)
        .map_err(failed("listing the SQLite tables"))?
        .into_iter()
        .map(|t| t.name)
        .collect();
    if let Some(unknown) = tables.iter().find(|t| !TABLES.contains(&t.as_str()) && !NOT_COPIED.contains(&t.as_str())) {
        return Err(CopyError::Refused(format!(
            "the SQLite database has a table this binary does not copy ({unknown}): copy with the latchkey \
             version that serves it"
        )));
    }
    if let Some(missing) = TABLES.iter().find(|t| !tables.iter().any(|s| s == *t)) {
        return Err(CopyError::Refused(format!(
            "the SQLite database has no table {missing}: is it a Latchkey database?"
        )));
    }
    Ok(())
}

/// Locks the copied tables against writers until the commit, and refuses a
/// target where any of them has rows.
fn lock_and_check_empty(target: &mut PgConnection) -> Result<(), CopyError> {
    let list = TABLES.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ");
    target
        .batch_execute(&format!("LOCK TABLE {list} IN EXCLUSIVE MODE"))
        .map_err(failed("locking the target tables"))?;
    let mut filled = Vec::new();
    for table in TABLES {
        let n = count_pg(target, table).map_err(failed(format!("counting the target's {table}")))?;
        if n > 0 {
            filled.push(format!("{table} ({n} rows)"));
        }
    }
    match filled.is_empty() {
        true => Ok(()),
        false => Err(CopyError::Refused(format!(
            "the target database is not empty: {}. Copy into a new database (nothing was written)",
            filled.join(", ")
        ))),
    }
}

/// The table's columns, which must be the same (by name) on both sides.
fn same_columns(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, CopyError> {
    let mut ours: Vec<String> = diesel::sql_query("SELECT name FROM pragma_table_info(?)")
        .bind::<Text, _>(table)
        .load::<Name>(source)
        .map_err(failed(format!("reading the columns of the SQLite {table}")))?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut theirs: Vec<String> = diesel::sql_query(
        "SELECT column_name::text AS name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind::<Text, _>(table)
    .load::<Name>(target)
    .map_err(failed(format!("reading the columns of the PostgreSQL {table}")))?
    .into_iter()
    .map(|c| c.name)
    .collect();
    ours.sort();
    theirs.sort();
    if theirs.is_empty() {
        return Err(CopyError::Refused(format!("the target database has no table {table}")));
    }
    if ours != theirs {
        return Err(CopyError::Refused(format!(
            "the columns of {table} differ: SQLite has {}, PostgreSQL has {} (are both at the same version?)",
            ours.join(", "),
            theirs.join(", ")
        )));
    }
    Ok(ours)
}

/// Copies one table in batches of [`BATCH`] rows (by rowid, inside the
/// snapshot) and checks the counts; returns the number of rows.
fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &str,
    columns: &[String],
) -> Result<i64, CopyError> {
    let expected = count_sqlite(source, table).map_err(failed(format!("counting the SQLite {table}")))?;
    let fields = columns
        .iter()
        .map(|c| {
            format!("{}, CASE WHEN typeof({q}) = 'blob' THEN '\\x' || hex({q}) ELSE {q} END", literal(c), q = quote(c))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!(
        "SELECT rowid AS rid, json_object({fields}) AS row FROM {t} WHERE rowid > ? ORDER BY rowid LIMIT {BATCH}",
        t = quote(table)
    );
    let names = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let insert = format!(
        "INSERT INTO {t} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{t}, $1::json)",
        t = quote(table)
    );
    let (mut read, mut inserted, mut after) = (0i64, 0i64, i64::MIN);
    loop {
        let rows = diesel::sql_query(&select)
            .bind::<BigInt, _>(after)
            .load::<JsonRow>(source)
            .map_err(failed(format!("reading {table} from SQLite")))?;
        let Some(last) = rows.last() else { break };
        after = last.rid;
        read += rows.len() as i64;
        let batch = format!("[{}]", rows.iter().map(|r| r.row.as_str()).collect::<Vec<_>>().join(","));
        let n = diesel::sql_query(&insert)
            .bind::<Text, _>(batch)
            .execute(target)
            .map_err(failed(format!("writing {table} to PostgreSQL")))?;
        inserted += n as i64;
    }
    let landed = count_pg(target, table).map_err(failed(format!("counting the copied {table}")))?;
    if !(expected == read && read == inserted && inserted == landed) {
        return Err(CopyError::Inconsistent(format!(
            "the counts of {table} disagree: {expected} in SQLite, {read} read, {inserted} inserted, \
             {landed} in PostgreSQL"
        )));
    }
    Ok(landed)
}

/// Sets the sequence of every serial or identity column of the copied tables
/// to the largest id used (copied, or counted by SQLite's AUTOINCREMENT), so
/// the next row gets the next id. A table with no ids used is left alone.
fn set_sequences(source: &mut SqliteConnection, target: &mut PgConnection) -> Result<Vec<(String, i64)>, CopyError> {
    #[derive(QueryableByName)]
    struct Serial {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        column_name: String,
        #[diesel(sql_type = Text)]
        seq: String,
    }
    let serials = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name, seq FROM ( \
           SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq \
           FROM information_schema.columns \
           WHERE table_schema = current_schema() AND table_name = ANY($1)) s \
         WHERE seq IS NOT NULL ORDER BY table_name, column_name",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(TABLES)
    .load::<Serial>(target)
    .map_err(failed("finding the target's sequences"))?;
    let mut set = Vec::new();
    for s in serials {
        let max = diesel::sql_query(format!(
            "SELECT COALESCE(MAX({}), 0)::bigint AS n FROM {}",
            quote(&s.column_name),
            quote(&s.table_name)
        ))
        .get_result::<Count>(target)
        .map_err(failed(format!("reading the largest {}.{}", s.table_name, s.column_name)))?
        .n;
        let last = max.max(autoincrement_counter(source, &s.table_name)?);
        if last < 1 {
            continue;
        }
        diesel::sql_query("SELECT setval($1::regclass, $2) AS n")
            .bind::<Text, _>(&s.seq)
            .bind::<BigInt, _>(last)
            .get_result::<Count>(target)
            .map_err(failed(format!("setting the sequence {}", s.seq)))?;
        set.push((format!("{}.{}", s.table_name, s.column_name), last));
    }
    Ok(set)
}

/// SQLite's AUTOINCREMENT counter for `table` (the largest id it ever gave), or 0.
fn autoincrement_counter(source: &mut SqliteConnection, table: &str) -> Result<i64, CopyError> {
    let exists =
        diesel::sql_query("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
            .get_result::<Count>(source)
            .map_err(failed("looking for sqlite_sequence"))?
            .n
            > 0;
    if !exists {
        return Ok(0);
    }
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = Nullable<BigInt>)]
        n: Option<i64>,
    }
    let seq = diesel::sql_query("SELECT MAX(seq) AS n FROM sqlite_sequence WHERE name = ?")
        .bind::<Text, _>(table)
        .get_result::<Seq>(source)
        .map_err(failed(format!("reading the AUTOINCREMENT counter of {table}")))?;
    Ok(seq.n.unwrap_or(0))
}

fn count_sqlite(conn: &mut SqliteConnection, table: &str) -> QueryResult<i64> {
    Ok(diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {}", quote(table))).get_result::<Count>(conn)?.n)
}

fn count_pg(conn: &mut PgConnection, table: &str) -> QueryResult<i64> {
    Ok(diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {}", quote(table))).get_result::<Count>(conn)?.n)
}

/// A quoted SQL identifier (the same in both dialects).
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A quoted SQL string literal (the same in both dialects).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
