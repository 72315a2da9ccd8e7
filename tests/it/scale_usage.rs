//! Key usage with several instances: every instance hands its batch to
//! Redis and one moves the sum to the database per interval, so the database
//! sees one row write per active key and day, not one per instance; the
//! counts are exact through a Redis outage, a failed move and shutdown.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use latchkey::store::StoreError;
use latchkey::store::schema::{api_key_usage, api_keys};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::{call, create_key};
use crate::helpers::{PrivateRedis, TestApp, fresh_postgres, init_test_log, serve, spawn_instances};

const UNLIMITED: (&str, &str) = ("LATCHKEY_DEFAULT_PLAN", "unlimited");
/// Long enough that the background flush never moves during a test (its
/// first tick, at start, finds nothing to move).
const HOURLY: (&str, &str) = ("LATCHKEY_USAGE_FLUSH_SECONDS", "3600");

/// A signed-in owner on `app` and a new key: its id and secret.
async fn key(app: &TestApp, name: &str) -> (String, String) {
    let key = create_key(app, json!({"name": name, "scopes": ["templates:read"]})).await;
    (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned())
}

async fn serve_requests(app: &TestApp, secret: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(call(app, "/api/v1/auth/test", secret).await.status(), StatusCode::OK);
    }
}

/// The key's counted requests (all days) and last use, from the database.
fn counted(app: &TestApp, id: &str) -> (i64, Option<i64>) {
    let id = id.to_owned();
    app.db()
        .run_sync(move |c| {
            let counts = api_key_usage::table
                .filter(api_key_usage::key_id.eq(&id))
                .select(api_key_usage::count)
                .load::<i64>(c)?;
            let last = api_keys::table.find(&id).select(api_keys::last_used_at).first::<Option<i64>>(c)?;
            Ok::<_, StoreError>((counts.iter().sum(), last))
        })
        .unwrap()
}

fn sql(app: &TestApp, statements: &str) {
    let statements = statements.to_owned();
    app.db().run_sync(move |c| c.batch_execute(&statements).map_err(StoreError::from)).unwrap();
}

/// Counts, in the database itself, every row written to `api_key_usage` and
/// every `last_used_at` set on `api_keys` from now on.
fn count_usage_writes(app: &TestApp) {
    sql(
        app,
        "CREATE TABLE usage_row_writes (tbl TEXT NOT NULL);
         CREATE FUNCTION count_usage_write() RETURNS trigger AS $$
           BEGIN INSERT INTO usage_row_writes VALUES (TG_TABLE_NAME); RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER usage_rows AFTER INSERT OR UPDATE ON api_key_usage
           FOR EACH ROW EXECUTE FUNCTION count_usage_write();
         CREATE TRIGGER last_used AFTER UPDATE OF last_used_at ON api_keys
           FOR EACH ROW EXECUTE FUNCTION count_usage_write();",
    );
}

/// Rows written to (`api_key_usage`, `api_keys.last_used_at`) so far.
fn usage_writes(app: &TestApp) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Writes {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        usage: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last: i64,
    }
    let query = "SELECT count(*) FILTER (WHERE tbl = 'api_key_usage') AS usage, \
                 count(*) FILTER (WHERE tbl = 'api_keys') AS last FROM usage_row_writes";
    let writes = app
        .db()
        .run_sync(|c| match c {
            latchkey::store::DbConn::Pg(pg) => {
                diesel::sql_query(query).get_result::<Writes>(pg).map_err(StoreError::from)
            }
            latchkey::store::DbConn::Sqlite(_) => unreachable!("PostgreSQL only"),
        })
        .unwrap();
    (writes.usage, writes.last)
}

/// What Redis holds for `id` today: (pending, staged by a failed move).
async fn in_redis(app: &TestApp, id: &str) -> (i64, i64) {
    let redis = app.redis();
    let field = format!("d|{id}|{}|0", latchkey::store::now().div_euclid(86_400));
    let (pending, flushing) = (redis.key("usage:pending"), redis.key("usage:flushing"));
    redis
        .call("test read", move |mut c| async move {
            redis::pipe()
                .cmd("HGET")
                .arg(pending)
                .arg(&field)
                .cmd("HGET")
                .arg(flushing)
                .arg(&field)
                .query_async::<(Option<i64>, Option<i64>)>(&mut c)
                .await
        })
        .await
        .map(|(p, f)| (p.unwrap_or(0), f.unwrap_or(0)))
        .expect("Redis answers")
}

/// Both instances serve one key; the periodic flushes hand their batches to
/// Redis and write nothing; one move writes the sum as one usage row and one
/// last-used update — the same row writes one instance alone would cost.
#[tokio::test]
async fn one_move_writes_what_both_instances_served_once() {
    let Some(apps) = spawn_instances(2, &[UNLIMITED, HOURLY]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (id, secret) = key(a, "shared").await;
    // A move now: the periodic flushes of this interval leave it at that.
    a.flush_usage().await;
    count_usage_writes(a);
    let (n, mut writes) = (20, (0, 0));
    for round in 1..=2i64 {
        serve_requests(a, &secret, n).await;
        serve_requests(b, &secret, n).await;
        a.usage_flusher().tick().await.unwrap();
        b.usage_flusher().tick().await.unwrap();
        assert_eq!(usage_writes(a), writes, "the periodic flushes wrote nothing to the database");
        assert_eq!(in_redis(a, &id).await, (2 * n as i64, 0), "both batches wait in Redis, added up");
        assert_eq!(counted(a, &id).0, (round - 1) * 2 * n as i64);
        // The next interval's move (here: asked for), by either instance.
        [a, b][round as usize % 2].flush_usage().await;
        let now = usage_writes(a);
        assert_eq!(now.0, writes.0 + 1, "one usage row write for the key and day");
        // One last-used update (none when the last use falls in the same second).
        assert!(now.1 - writes.1 <= 1 && now.1 >= 1, "{now:?}");
        writes = now;
        assert_eq!(in_redis(a, &id).await, (0, 0));
        let (count, last_used) = counted(a, &id);
        assert_eq!(count, round * 2 * n as i64, "every request counted once");
        assert!(last_used.is_some(), "last used is set");
    }
}

/// A move whose database write fails keeps its batch in Redis; the next
/// move writes it, and what was handed over meanwhile, exactly once.
#[tokio::test]
async fn a_failed_move_stays_in_redis_and_the_next_writes_it_once() {
    let Some(apps) = spawn_instances(2, &[UNLIMITED, HOURLY]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (id, secret) = key(a, "moved").await;
    let n = 15;
    sql(a, "ALTER TABLE api_key_usage RENAME TO api_key_usage_gone");
    serve_requests(a, &secret, n).await;
    let failed = a.try_flush_usage().await.expect_err("the usage table is gone");
    let cause = format!("{:#}", anyhow::Error::new(failed));
    assert!(cause.contains(&format!("({n} requests) to the database (kept in Redis for the next move)")), "{cause}");
    serve_requests(b, &secret, n).await;
    b.try_flush_usage().await.expect_err("the failed move's batch goes first, and fails again");
    assert_eq!(in_redis(a, &id).await, (n as i64, n as i64), "B's batch pending, A's staged by the failed move");
    sql(a, "ALTER TABLE api_key_usage_gone RENAME TO api_key_usage");
    assert_eq!(counted(a, &id).0, 0);
    b.flush_usage().await;
    assert_eq!(in_redis(a, &id).await, (0, 0));
    assert_eq!(counted(a, &id).0, 2 * n as i64);
    a.flush_usage().await;
    b.flush_usage().await;
    assert_eq!(counted(a, &id).0, 2 * n as i64, "written once");
}

/// Usage handed over for a key that was deleted since does not block the
/// move of the others.
#[tokio::test]
async fn a_deleted_key_does_not_hold_up_the_move() {
    let Some(apps) = spawn_instances(2, &[UNLIMITED, HOURLY]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (gone, gone_secret) = key(a, "deleted").await;
    let (kept, kept_secret) = key(a, "kept").await;
    serve_requests(b, &gone_secret, 3).await;
    serve_requests(b, &kept_secret, 4).await;
    b.usage_flusher().tick().await.unwrap();
    sql(a, &format!("DELETE FROM api_keys WHERE id = '{gone}'"));
    a.flush_usage().await;
    assert_eq!(counted(a, &kept).0, 4);
    assert_eq!(in_redis(a, &gone).await, (0, 0), "dropped, not retried forever");
}

/// Instances stop one after the other: each hands over its last batch and
/// moves what is in Redis, so the database holds every request served.
#[tokio::test]
async fn after_the_last_instance_stops_the_database_holds_every_count() {
    let Some(apps) = spawn_instances(2, &[UNLIMITED, HOURLY]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (id, secret) = key(a, "stopping").await;
    a.flush_usage().await;
    serve_requests(a, &secret, 7).await;
    a.usage_flusher().tick().await.unwrap();
    serve_requests(a, &secret, 5).await;
    serve_requests(b, &secret, 11).await;
    b.usage_flusher().at_shutdown().await;
    assert_eq!(counted(a, &id).0, 7 + 11, "B moved A's handed-over batch with its own");
    a.usage_flusher().at_shutdown().await;
    assert_eq!(counted(a, &id).0, 7 + 11 + 5);
    assert_eq!(in_redis(a, &id).await, (0, 0));
}

/// Redis goes away: each instance writes its batch to the database itself,
/// exactly; Redis comes back (empty): the counts go through it again.
#[tokio::test]
async fn with_redis_down_usage_goes_to_the_database_exactly() {
    init_test_log();
    let Some(database_url) = fresh_postgres() else { return };
    let Some(mut redis) = PrivateRedis::start().await else { return };
    let url = redis.url();
    let settings =
        [("REDIS_URL", url.as_str()), ("LATCHKEY_REDIS_PREFIX", "latchkey-usage-outage:"), UNLIMITED, HOURLY];
    let mut apps = Vec::new();
    for i in 0..2 {
        let data_dir = std::env::temp_dir().join(format!("latchkey-test-usage-outage-{}-{i}", redis.port));
        std::fs::create_dir_all(&data_dir).unwrap();
        apps.push(serve(&data_dir, &database_url, &settings).await);
    }
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let (id, secret) = key(a, "outage").await;
    let mut served = 0;
    for (app, n) in [(a, 4), (b, 6)] {
        serve_requests(app, &secret, n).await;
        served += n as i64;
    }
    a.flush_usage().await;
    b.flush_usage().await;
    assert_eq!(counted(a, &id).0, served);

    redis.kill();
    for (app, n) in [(a, 9), (b, 8), (a, 3)] {
        serve_requests(app, &secret, n).await;
        served += n as i64;
        app.flush_usage().await;
        assert_eq!(counted(a, &id).0, served, "written by the instance itself");
    }

    assert!(redis.restart().await);
    for (app, n) in [(b, 5), (a, 2)] {
        serve_requests(app, &secret, n).await;
        served += n as i64;
        app.flush_usage().await;
    }
    for app in [a, b] {
        assert_eq!(app.redis().ping().await, Ok(()), "Redis answers again");
    }
    // A move now: the periodic flushes of this interval leave it at that.
    a.flush_usage().await;
    serve_requests(b, &secret, 10).await;
    served += 10;
    b.usage_flusher().tick().await.unwrap();
    assert_eq!(in_redis(a, &id).await.0, 10, "handed to the restarted Redis");
    a.flush_usage().await;
    assert_eq!(counted(a, &id).0, served);
}
