//! Storage: one diesel schema, one `MultiConnection` over SQLite and PostgreSQL,
//! an r2d2 pool, and the embedded migrations of both dialects.
//!
//! Rules: the backend is chosen from the URL scheme and connected directly, so a
//! bad URL fails at start with the driver's own message; every SQLite connection
//! gets WAL, a busy timeout and foreign keys; blocking database work runs on
//! tokio's blocking pool through [`Db::run`], never on the async executor;
//! every write transaction goes through [`transaction`], which starts SQLite
//! transactions `IMMEDIATE` (a deferred one that reads and then writes cannot
//! upgrade its lock while another writer is active, and fails at once with
//! `database is locked` whatever the busy timeout), so a busy database makes
//! a request wait, never fail.

pub mod copy;
pub mod models;
pub mod schema;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseUrl;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// A storage failure. Its message already names the driver's error, so that
/// error is not also given as its source (a logged chain would say it twice).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Query(diesel::result::Error),
    #[error("database connection: {0}")]
    Connection(String),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("database task stopped: {0}")]
    Task(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(e)
    }
}

impl StoreError {
    /// The database cannot be reached (no connection within the pool's
    /// timeout, or the connection closed under the query), as opposed to a
    /// query that failed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Connection(_) => true,
            Self::Query(diesel::result::Error::DatabaseError(kind, _)) => {
                matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection)
            }
            _ => false,
        }
    }
}

/// Connects the right variant for a URL; SQLite gets its pragmas here.
pub struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 30000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                     PRAGMA wal_autocheckpoint = 20000;",
                )
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url).map(DbConn::Pg).map_err(diesel::r2d2::Error::ConnectionError)
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<Manager>;

/// The shared handle the services run their queries through.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// SQLite admits one writer at a time: this process's write transactions
    /// take their turn here (see [`transaction`]). `None` on PostgreSQL.
    writer: Option<Arc<Mutex<()>>>,
    /// Whether the last attempt to get a connection failed (cleared by the
    /// next that succeeds): errors raised outside our code (the session
    /// middleware's) are answered 503 rather than 500 while it is set.
    unreachable: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Db {
    /// Opens the pool (creating the SQLite folder if needed) and applies migrations.
    pub fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        // Fail fast with the driver's own message rather than r2d2's 30 s timeout.
        drop(connect_once(url)?);
        let manager = Manager { url: url.clone() };
        // SQLite: every connection opened at start (a local file: cheap, and
        // none is opened later under load) and never tested on checkout (a
        // file does not drop a connection). PostgreSQL: opened as needed,
        // each tested before use (the server may have restarted).
        let (size, min_idle, test) = match url {
            DatabaseUrl::Sqlite(_) => (8, None, false),
            DatabaseUrl::Postgres(_) => (16, Some(1), true),
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(min_idle)
            .test_on_check_out(test)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|e| StoreError::Connection(e.to_string()))?;
        let writer = matches!(url, DatabaseUrl::Sqlite(_)).then(Arc::default);
        Ok(Self { pool, writer, unreachable: Default::default() })
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (pool, unreachable, writer) = (self.pool.clone(), self.unreachable.clone(), self.writer.clone());
        tokio::task::spawn_blocking(move || {
            let _turns = WriterTurns::enter(writer);
            let mut conn = checkout(&pool, &unreachable)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with a pooled connection on the current thread (CLI commands).
    pub fn run_sync<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E>,
        E: From<StoreError>,
    {
        let _turns = WriterTurns::enter(self.writer.clone());
        let mut conn = checkout(&self.pool, &self.unreachable)?;
        f(&mut conn)
    }

    /// SQLite: copies what the write-ahead log holds into the database file
    /// without blocking writers (`PRAGMA wal_checkpoint(PASSIVE)`). Run in
    /// the background (see `startup`), so that a commit rarely does it
    /// itself while holding the write lock (the pragma in [`Manager`] makes
    /// that the backstop, at 20,000 pages). Nothing on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.run(|conn| match conn {
            DbConn::Sqlite(c) => Ok(c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")?),
            DbConn::Pg(_) => Ok(()),
        })
        .await
    }

    /// Whether the database could not be reached at the last attempt.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The pool's connections now (for the metrics).
    pub fn pool_usage(&self) -> PoolUsage {
        let state = self.pool.state();
        PoolUsage { open: state.connections, idle: state.idle_connections, max: self.pool.max_size() }
    }
}

/// How many connections the pool holds and how many of them wait for work.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

thread_local! {
    /// The writer lock of the database whose work runs on this thread.
    static WRITER: RefCell<Option<Arc<Mutex<()>>>> = const { RefCell::new(None) };
}

/// Sets [`WRITER`] for the work of one [`Db::run`] (restoring it after).
struct WriterTurns(Option<Arc<Mutex<()>>>);

impl WriterTurns {
    fn enter(writer: Option<Arc<Mutex<()>>>) -> Self {
        Self(WRITER.with(|w| w.replace(writer)))
    }
}

impl Drop for WriterTurns {
    fn drop(&mut self) {
        WRITER.with(|w| *w.borrow_mut() = self.0.take());
    }
}

/// A pooled connection, noting whether the database answered.
fn checkout(
    pool: &Pool,
    unreachable: &std::sync::atomic::AtomicBool,
) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
    let conn = pool.get().map_err(|e| StoreError::Connection(e.to_string()));
    unreachable.store(conn.is_err(), std::sync::atomic::Ordering::Relaxed);
    conn
}

/// One direct connection, migrations applied (creating the SQLite folder if
/// needed). One-shot commands use it instead of a pool: no background thread
/// is left opening a connection while the process exits (libpq's OpenSSL
/// clean-up at exit would crash under it), and the connection is closed when
/// the caller drops it.
pub fn connect_once(url: &DatabaseUrl) -> Result<DbConn, StoreError> {
    if let DatabaseUrl::Sqlite(path) = url
        && let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Connection(format!("{}: {e}", parent.display())))?;
    }
    let mut conn = Manager { url: url.clone() }.connect().map_err(|e| StoreError::Connection(e.to_string()))?;
    run_migrations(&mut conn)?;
    Ok(conn)
}

/// One connection to the database exactly as it is: no folder created, no
/// migration applied (a backup taken by a newer binary must not migrate the
/// database under the server that is using it).
pub fn connect_as_is(url: &DatabaseUrl) -> Result<DbConn, StoreError> {
    Manager { url: url.clone() }.connect().map_err(|e| StoreError::Connection(e.to_string()))
}

/// Applies the pending migrations of the connection's dialect. On PostgreSQL
/// an up-to-date database is left alone without any DDL, so the server can run
/// as a role that does not own its tables (the owner runs `latchkey migrate`).
pub fn run_migrations(conn: &mut DbConn) -> Result<(), StoreError> {
    let result = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConn::Pg(c) => match pg_up_to_date(c) {
            true => Ok(()),
            false => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        },
    };
    result.map_err(|e| StoreError::Migration(e.to_string()))
}

/// The versions of migrations recorded as applied (read only: diesel's own
/// check first creates its bookkeeping table, which needs the CREATE privilege).
#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

const APPLIED: &str = "SELECT version FROM __diesel_schema_migrations";

/// Whether every embedded PostgreSQL migration is recorded as applied.
fn pg_up_to_date(conn: &mut PgConnection) -> bool {
    use diesel::migration::MigrationSource;
    let Ok(applied) = diesel::sql_query(APPLIED).load::<Applied>(conn) else { return false };
    let Ok(embedded) = MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS) else { return false };
    embedded.iter().all(|m| applied.iter().any(|a| a.version == m.name().version().to_string()))
}

/// Whether every migration this binary carries is applied (read only).
pub fn migrations_up_to_date(conn: &mut DbConn) -> bool {
    use diesel::migration::MigrationSource;
    match conn {
        DbConn::Pg(c) => pg_up_to_date(c),
        DbConn::Sqlite(c) => {
            let Ok(applied) = diesel::sql_query(APPLIED).load::<Applied>(c) else { return false };
            let Ok(embedded) = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS) else {
                return false;
            };
            embedded.iter().all(|m| applied.iter().any(|a| a.version == m.name().version().to_string()))
        }
    }
}

/// Writes a consistent snapshot of the database to `target`, a file that
/// does not exist yet or is empty (`VACUUM INTO`: one read transaction, so
/// under WAL the server's writers carry on meanwhile). The file name is bound
/// as a parameter, never spliced into the SQL.
pub fn sqlite_snapshot(conn: &mut SqliteConnection, target: &str) -> Result<(), StoreError> {
    diesel::sql_query("VACUUM INTO ?").bind::<diesel::sql_types::Text, _>(target).execute(conn)?;
    Ok(())
}

diesel::define_sql_function! {
    /// SQL `lower()`, the same in SQLite and PostgreSQL.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Runs `f` in a transaction: `BEGIN IMMEDIATE` on SQLite (the write lock is
/// taken up front, waiting on the busy timeout), a plain transaction on
/// PostgreSQL, and a savepoint when already inside one. Work run through
/// [`Db::run`] first takes this process's turn to write to that SQLite
/// database, so its transactions queue on a lock instead of SQLite's busy
/// handler, which sleeps 1, 2, 5 … 100 ms between tries (what made token
/// issuance slow under concurrency); another process's writer is still
/// waited for by the busy timeout.
pub fn transaction<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let outermost_sqlite = match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?.is_none(),
        DbConn::Pg(_) => false,
    };
    if !outermost_sqlite {
        return conn.transaction(f);
    }
    let writer = WRITER.with(|w| w.borrow().clone());
    let _turn = writer.as_deref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
    if let DbConn::Sqlite(c) = conn {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    }
    let result = f(conn);
    let DbConn::Sqlite(c) = conn else { return result };
    match result {
        Ok(value) => match AnsiTransactionManager::commit_transaction(c) {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = AnsiTransactionManager::rollback_transaction(c);
                Err(e.into())
            }
        },
        Err(e) => {
            if let Err(rollback) = AnsiTransactionManager::rollback_transaction(c) {
                tracing::error!(error = %rollback, "rolling back a SQLite transaction failed");
            }
            Err(e)
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
