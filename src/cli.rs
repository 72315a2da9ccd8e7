//! Operator commands: `migrate`, `user create`, `user reset-totp`,
//! `service-key create`, `team set-plan`, `backup` and `copy-data`. Passwords come from
//! standard input, never arguments. A command that refuses before doing
//! anything fails with [`Refused`] (exit code 2, as a configuration error).

use std::io::BufRead;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, DatabaseUrl};
use crate::service::{self, accounts, password, validate};
use crate::store::{self, DbConn};

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Self-hosted developer portal: API keys, OAuth 2.0, TOTP login")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the portal (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage teams.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Manage the operator's service keys.
    #[command(subcommand, name = "service-key")]
    ServiceKey(ServiceKeyCommand),
    /// Print what this configuration connects to (database, Redis, the
    /// change channel) and whether each part answers; exit 1 if one does not.
    Doctor,
    /// Write a consistent snapshot of the SQLite database to a new file,
    /// while the server keeps serving (on PostgreSQL, use pg_dump).
    Backup {
        /// The snapshot file to create; an existing file is never overwritten.
        #[arg(long)]
        to: PathBuf,
    },
    /// Copy every table of the SQLite database into an empty PostgreSQL
    /// database (migrated first), in one consistent pass, while the server
    /// may keep serving; then serve from PostgreSQL with the same secret.
    #[command(name = "copy-data")]
    CopyData {
        /// The target database: postgres://user[:password]@host[:port]/dbname.
        #[arg(long)]
        to: String,
    },
}

/// A command refused before changing anything (the process exits with 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The exit code for a command's error: 2 when it refused before changing
/// anything, 1 when it failed.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<Refused>() {
        Some(_) => 2,
        None => 1,
    }
}

#[derive(Subcommand)]
pub enum TeamCommand {
    /// Set a team's rate-limit plan (free, starter, standard, pro, unlimited).
    SetPlan {
        #[arg(long)]
        team: String,
        #[arg(long)]
        plan: String,
    },
}

#[derive(Subcommand)]
pub enum ServiceKeyCommand {
    /// Create a service key and print it once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated platform scopes: introspect, leaks:report.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        /// Give the platform role `support`.
        #[arg(long)]
        support: bool,
        /// Also create a team with this name, owned by the user.
        #[arg(long)]
        team: Option<String>,
    },
    /// Turn off a user's two-factor authentication (they lost every factor).
    ResetTotp {
        #[arg(long)]
        email: String,
    },
}

/// Runs a one-shot command on one direct connection (no pool, no threads),
/// closed before returning, so the process exits cleanly on every database.
pub fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    if let Command::Doctor = &command {
        return match crate::doctor::run(config)? {
            true => Ok(()),
            false => anyhow::bail!("a configured part does not answer (see above)"),
        };
    }
    if let Command::Backup { to } = &command {
        return backup(&config.database, to);
    }
    if let Command::CopyData { to } = &command {
        return copy_data(&config.database, to);
    }
    let mut conn = store::connect_once(&config.database)?;
    let result = execute(command, config, &mut conn);
    drop(conn);
    result
}

fn execute(command: Command, config: &Config, conn: &mut DbConn) -> anyhow::Result<()> {
    match command {
        Command::Serve => anyhow::bail!("serve is not a one-shot command"),
        Command::Backup { .. } => anyhow::bail!("backup opens its own connection"),
        Command::Doctor => anyhow::bail!("doctor opens its own connections"),
        Command::CopyData { .. } => anyhow::bail!("copy-data opens its own connections"),
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create { email, support, team }) => create_user(conn, &email, support, team),
        Command::User(UserCommand::ResetTotp { email }) => {
            let email = email.trim().to_lowercase();
            crate::service::totp::operator_reset(conn, &email).map_err(|e| match e {
                service::Error::NotFound => anyhow::anyhow!("no user with the email {email}"),
                other => anyhow::anyhow!(other),
            })?;
            println!("two-factor authentication is off for {email}; their sessions have ended");
            tell_totp_reset(config, &email);
            Ok(())
        }
        Command::Team(TeamCommand::SetPlan { team, plan }) => {
            let changed = accounts::set_plan(conn, &team, &plan).map_err(|e| match e {
                service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
                other => anyhow::anyhow!(other),
            })?;
            println!(
                "{changed} team(s) named {team:?} now on the {plan} plan (running servers apply it within a second)"
            );
            Ok(())
        }
        Command::ServiceKey(ServiceKeyCommand::Create { name, scopes }) => {
            let hasher = crate::service::crypto::Keys::derive(config.secret_bytes());
            let prefix = config.api_key_prefix.clone();
            let (key, secret) = crate::service::keys::create_service_key(conn, &hasher, &prefix, &name, &scopes)
                .map_err(|e| match e {
                    service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
                    other => anyhow::anyhow!(other),
                })?;
            eprintln!("created service key {} ({}) with scopes {}; it is shown once:", key.name, key.id, key.scopes);
            println!("{}", secret.expose());
            Ok(())
        }
    }
}

/// Emails the user that the operator turned their 2FA off (a failure to
/// send is logged; the reset stands).
fn tell_totp_reset(config: &Config, email: &str) {
    let actor = crate::service::audit::Actor::operator();
    let at = crate::store::now();
    let notice = crate::service::notify::Notice::totp_disabled(email.into(), &actor, at, true);
    let within = std::time::Duration::from_secs(20);
    if let Err(e) = crate::service::email::outbox::send_now(config, &notice, within) {
        tracing::warn!(error = %format!("{e:#}"), "emailing the user about the reset failed");
    }
}

fn create_user(conn: &mut DbConn, email: &str, support: bool, team: Option<String>) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']);
    let email = validate::account(email, pw).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let team = team.map(|t| validate::team_name(&t).map_err(|m| anyhow::anyhow!("team: {m}"))).transpose()?;
    let hash = password::hash(&mut password::Memory::default(), pw)?;
    let user = accounts::create_user(conn, &email, hash, support, team.as_deref()).map_err(|e| match e {
        service::Error::Invalid(f) => anyhow::anyhow!(describe(&f)),
        other => anyhow::anyhow!(other),
    })?;
    println!("created user {} ({}){}", user.email, user.id, if support { " with the support role" } else { "" });
    Ok(())
}

/// `latchkey backup --to FILE`: checks everything it can before writing,
/// claims the new file (so an existing one is refused and left as it is),
/// writes the snapshot into it, and removes it again if that fails.
fn backup(database: &DatabaseUrl, to: &Path) -> anyhow::Result<()> {
    let source = match database {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::Postgres(_) => {
            return Err(Refused(
                "backup writes SQLite snapshots, and this configuration uses PostgreSQL: back it up with \
                 pg_dump instead (for example `pg_dump --format=custom --file=latchkey.dump \"$DATABASE_URL\"`, \
                 restored with pg_restore)"
                    .into(),
            )
            .into());
        }
    };
    if !source.is_file() {
        return Err(Refused(format!(
            "no SQLite database at {}: nothing to back up (check DATABASE_URL or LATCHKEY_DATA_DIR)",
            source.display()
        ))
        .into());
    }
    let target = std::path::absolute(to).with_context(|| format!("resolving the snapshot path {}", to.display()))?;
    let Some(target_text) = target.to_str() else {
        return Err(Refused(format!("the snapshot path {} is not valid UTF-8", target.display())).into());
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {} for the snapshot", parent.display()))?;
    }
    // Private from the start (0600): it holds every hash and sealed secret.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target) {
        Ok(file) => drop(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Refused(format!(
                "{} already exists: a backup never overwrites a file, choose a new name",
                target.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("creating the snapshot file {}", target.display())),
    }
    match write_snapshot(database, target_text, &target) {
        Ok(size) => {
            println!("snapshot of {} written to {} ({size} bytes)", source.display(), target.display());
            Ok(())
        }
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_file(&target) {
                eprintln!("latchkey: could not remove the incomplete snapshot {}: {cleanup}", target.display());
            }
            Err(e)
        }
    }
}

/// Fills the empty file at `path` with the snapshot and syncs it to disk;
/// returns its size.
fn write_snapshot(database: &DatabaseUrl, target: &str, path: &Path) -> anyhow::Result<u64> {
    let mut conn = store::connect_as_is(database).context("opening the database")?;
    let DbConn::Sqlite(sqlite) = &mut conn else { anyhow::bail!("backup needs a SQLite database") };
    store::sqlite_snapshot(sqlite, target).with_context(|| format!("writing the snapshot {target}"))?;
    drop(conn);
    let file = std::fs::File::open(path).with_context(|| format!("opening the snapshot {target}"))?;
    file.sync_all().with_context(|| format!("syncing the snapshot {target} to disk"))?;
    let size = file.metadata().with_context(|| format!("reading the size of the snapshot {target}"))?.len();
    Ok(size)
}

/// `latchkey copy-data --to postgres://…`: checks both databases, copies
/// (`store::copy`), and prints the rows per table and the next step. The
/// target's password is never printed.
fn copy_data(database: &DatabaseUrl, to: &str) -> anyhow::Result<()> {
    let source = match database {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::Postgres(_) => {
            return Err(Refused(
                "copy-data copies a SQLite database (DATABASE_URL) into PostgreSQL, and this configuration \
                 already uses PostgreSQL: to move between PostgreSQL servers use pg_dump and pg_restore"
                    .into(),
            )
            .into());
        }
    };
    let target = match DatabaseUrl::parse(to) {
        Ok(DatabaseUrl::Postgres(url)) => url,
        _ => return Err(Refused("--to must be a PostgreSQL URL (postgres://user@host/dbname)".into()).into()),
    };
    if !source.is_file() {
        return Err(Refused(format!(
            "no SQLite database at {}: nothing to copy (check DATABASE_URL or LATCHKEY_DATA_DIR)",
            source.display()
        ))
        .into());
    }
    let shown = redact_url(&target);
    let mut from = store::connect_as_is(database).context("opening the SQLite database")?;
    let DbConn::Sqlite(sqlite) = &mut from else { anyhow::bail!("copy-data needs a SQLite source") };
    store::copy::check_source_version(sqlite).map_err(copy_error)?;
    let mut to_conn = store::connect_once(&DatabaseUrl::Postgres(target))
        .with_context(|| format!("connecting to and migrating the target {shown}"))?;
    let DbConn::Pg(pg) = &mut to_conn else { anyhow::bail!("copy-data needs a PostgreSQL target") };
    let report = store::copy::copy(sqlite, pg).map_err(copy_error)?;
    drop((from, to_conn));
    print_report(&report, source, &shown);
    Ok(())
}

fn copy_error(e: store::copy::CopyError) -> anyhow::Error {
    match e {
        store::copy::CopyError::Refused(m) => Refused(m).into(),
        other => anyhow::Error::new(other).context("the copy failed and was rolled back: nothing was written"),
    }
}

fn print_report(report: &store::copy::Report, source: &Path, target: &str) {
    println!("copied {} into {target} (one transaction):", source.display());
    println!("  {:<16} {:>10}", "table", "rows");
    for (table, rows) in &report.tables {
        println!("  {table:<16} {rows:>10}");
    }
    println!("  {:<16} {:>10}", "total", report.tables.iter().map(|(_, n)| n).sum::<i64>());
    for (column, last) in &report.sequences {
        println!("sequence of {column} set to {last}: new rows continue after the copied ones");
    }
    println!(
        "row counts verified (SQLite snapshot = inserted = PostgreSQL). Next: stop the SQLite server and start \
         latchkey with DATABASE_URL={target} (your --to URL) and the same server secret (LATCHKEY_SECRET, \
         or the `secret` file of LATCHKEY_DATA_DIR)"
    );
}

/// The URL with its password (in the user part or a `password=` parameter)
/// replaced by `***`.
/// The secrets a URL carries as typed (its password, and the value of any
/// query parameter whose name holds "pass"), raw and percent-decoded.
pub fn secrets_in_url(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut found = Vec::new();
    if let Some(at) = rest.rfind('@')
        && let Some((_, password)) = rest[..at].split_once(':')
    {
        found.push(password.to_owned());
    }
    if let Some((_, query)) = rest.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=')
                && k.to_ascii_lowercase().contains("pass")
            {
                found.push(v.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found
        .iter()
        .filter_map(|s| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|d| d.into_owned()))
        .collect();
    found.extend(decoded);
    found.retain(|s| s.len() >= 3);
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

/// The secrets of the configured database and Redis URLs.
pub fn configured_secrets(config: &Config) -> Vec<String> {
    let mut secrets = Vec::new();
    if let DatabaseUrl::Postgres(url) = &config.database {
        secrets.extend(secrets_in_url(url));
    }
    if let Some(url) = &config.redis_url {
        secrets.extend(secrets_in_url(url));
    }
    secrets
}

/// `text` with every secret of `secrets` replaced by `***` (for errors a
/// driver built from a URL: libpq repeats a malformed password).
pub fn without_secrets(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The authority ends at the first `/` or `?` after the last `@` (a
    // password may hold an unescaped `/` or `?`; an `@` later in the URL
    // only hides more than needed).
    let host_start = rest.rfind('@').map_or(0, |at| at + 1);
    let (authority, tail) = rest[host_start..].find(['/', '?']).map_or((rest, ""), |i| rest.split_at(host_start + i));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let (path, query) = tail.split_once('?').map_or((tail, None), |(p, q)| (p, Some(q)));
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                // password, sslpassword, pass (Redis), …
                Some((k, _)) if k.to_ascii_lowercase().contains("pass") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

fn describe(errors: &service::FieldErrors) -> String {
    errors.0.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::{redact_url, secrets_in_url, without_secrets};

    #[test]
    fn a_printed_url_never_shows_its_password() {
        assert_eq!(
            redact_url("postgres://app:s3cr@t@db.internal:5432/latchkey"),
            "postgres://app:***@db.internal:5432/latchkey"
        );
        assert_eq!(
            redact_url("postgres://app@db/latchkey?sslmode=require"),
            "postgres://app@db/latchkey?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://db/latchkey?user=app&password=hunter2&sslmode=disable"),
            "postgresql://db/latchkey?user=app&password=***&sslmode=disable"
        );
        for (url, secret) in [
            ("postgres://u:pa/ss@host/db", "pa/ss"),
            ("postgres://u:pa?ss@host/db", "pa?ss"),
            ("postgres://u@db/x?sslpassword=S3cr3tSSL", "S3cr3tSSL"),
            ("redis+unix:///run/redis.sock?db=0&pass=R3disUnixPW", "R3disUnixPW"),
            ("redis://:R3disPW@cache:6379/0", "R3disPW"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} → {shown}");
        }
        assert_eq!(redact_url("postgres://u:pa/ss@host/db"), "postgres://u:***@host/db");
        let url = "postgres://postgres:S3cr%ZZetPW7@127.0.0.1/x?sslpassword=ssl%21pw";
        let message = "invalid percent-encoded token: \"S3cr%ZZetPW7\", ssl!pw, ssl%21pw";
        let cleaned = without_secrets(message, &secrets_in_url(url));
        assert!(!cleaned.contains("S3cr") && !cleaned.contains("ssl!pw") && !cleaned.contains("ssl%21pw"), "{cleaned}");
    }
}
