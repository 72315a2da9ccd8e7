//! `latchkey doctor`: what this configuration connects to, and whether each
//! part answers — for an operator setting up one instance or several.
//!
//! Rules: read only (no migration, no write, no key in Redis); secrets and
//! passwords are never printed; exit 0 when every configured part answers,
//! 1 otherwise (the report says which and why).

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;

use crate::config::{Config, DatabaseUrl};
use crate::service::cluster::Redis;
use crate::store::{self, DbConn};

/// One line of the report.
struct Check {
    part: &'static str,
    ok: bool,
    detail: String,
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Runs every check and prints the report; `Ok(false)` when a part failed.
pub fn run(config: &Config) -> anyhow::Result<bool> {
    let mut checks = vec![Check { part: "public URL", ok: true, detail: config.public_url.clone() }];
    checks.push(database(&config.database));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    checks.extend(runtime.block_on(redis(config)));
    // A driver's error may repeat a malformed password from its URL.
    let secrets = crate::cli::configured_secrets(config);
    for c in &mut checks {
        c.detail = crate::cli::without_secrets(&c.detail, &secrets);
    }
    let mode = match (&config.database, &config.redis_url) {
        (DatabaseUrl::Sqlite(_), None) => "one instance (SQLite, everything in process)",
        (DatabaseUrl::Sqlite(_), Some(_)) => {
            "one instance: SQLite is one machine's file — use PostgreSQL to run several (see `latchkey copy-data`)"
        }
        (DatabaseUrl::Postgres(_), None) => {
            "several instances possible, but without Redis each counts limits and throttles alone and sees \
             others' revocations within a second"
        }
        (DatabaseUrl::Postgres(_), Some(_)) => "several instances: shared limits, throttles and instant revocation",
    };
    checks.push(Check { part: "deployment", ok: true, detail: mode.to_owned() });
    let width = checks.iter().map(|c| c.part.len()).max().unwrap_or(0);
    for c in &checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:width$}  {}", c.part, c.detail);
    }
    Ok(checks.iter().all(|c| c.ok))
}

fn database(url: &DatabaseUrl) -> Check {
    let (part, shown) = match url {
        DatabaseUrl::Sqlite(path) => ("database", format!("SQLite {}", path.display())),
        DatabaseUrl::Postgres(url) => ("database", format!("PostgreSQL {}", crate::cli::redact_url(url))),
    };
    if let DatabaseUrl::Sqlite(path) = url
        && !path.exists()
    {
        return Check {
            part,
            ok: false,
            detail: format!("{shown}: no such file (the server creates it at first start)"),
        };
    }
    let started = Instant::now();
    let mut conn = match store::connect_as_is(url) {
        Ok(conn) => conn,
        Err(e) => return Check { part, ok: false, detail: format!("{shown}: cannot connect: {e}") },
    };
    let query = match &conn {
        DbConn::Sqlite(_) => "SELECT sqlite_version() AS version",
        DbConn::Pg(_) => "SELECT current_setting('server_version') AS version",
    };
    let version = match diesel::sql_query(query).get_result::<Version>(&mut conn) {
        Ok(v) => v.version,
        Err(e) => return Check { part, ok: false, detail: format!("{shown}: connected, but a query failed: {e}") },
    };
    let elapsed = started.elapsed().as_millis();
    let migrated = store::migrations_up_to_date(&mut conn);
    let detail = format!(
        "{shown}: answers (version {version}, {elapsed} ms); {}",
        if migrated { "migrations up to date" } else { "migrations pending: run `latchkey migrate`" }
    );
    Check { part, ok: migrated, detail }
}

async fn redis(config: &Config) -> Vec<Check> {
    let Some(url) = &config.redis_url else {
        return vec![Check {
            part: "redis",
            ok: true,
            detail: "not configured: limits and throttles are counted in process".into(),
        }];
    };
    let shown = crate::cli::redact_url(url);
    let redis = match Redis::connect(url, &config.redis_prefix) {
        Ok(r) => r,
        Err(e) => return vec![Check { part: "redis", ok: false, detail: format!("{shown}: {e:#}") }],
    };
    let started = Instant::now();
    if let Err(e) = redis.ping().await {
        return vec![Check { part: "redis", ok: false, detail: format!("{shown}: no answer: {e}") }];
    }
    let ping = Check {
        part: "redis",
        ok: true,
        detail: format!(
            "{shown}: answers ({} ms), key prefix {:?}",
            started.elapsed().as_millis(),
            config.redis_prefix
        ),
    };
    vec![ping, channel(&redis).await]
}

/// Whether a message published on the deployment's change channel comes
/// back to a subscriber (what instant revocation relies on).
async fn channel(redis: &Redis) -> Check {
    use futures_util::StreamExt;
    let part = "change channel";
    let Some(client) = redis.client() else { return Check { part, ok: false, detail: "no client".into() } };
    let name = redis.key("doctor");
    let round_trip = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&name).await?;
        let started = Instant::now();
        redis.publish("doctor", "ping").await;
        let mut messages = pubsub.on_message();
        let got = messages.next().await.is_some();
        Ok::<_, redis::RedisError>((got, started.elapsed()))
    };
    match tokio::time::timeout(Duration::from_secs(2), round_trip).await {
        Ok(Ok((true, took))) => {
            Check { part, ok: true, detail: format!("publish → subscribe in {} ms", took.as_millis()) }
        }
        Ok(Ok((false, _))) => Check { part, ok: false, detail: "the subscription ended without the message".into() },
        Ok(Err(e)) => Check { part, ok: false, detail: format!("cannot subscribe: {e}") },
        Err(_) => Check { part, ok: false, detail: "no message within 2 s".into() },
    }
}
