//! Several instances keep the promises of one: a change made on one instance
//! (a revoke, a membership removal) is seen on the others at once, through the
//! change feed the database writes and the Redis channel that announces it.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::json;

use crate::api_keys::{api_delete, call, create_key};
use crate::both;
use crate::helpers::{TestApp, fresh_postgres, serve, spawn_instances};
use latchkey::store::StoreError;
use latchkey::store::models::Change;

/// Polls `key` on `app` until it is refused; the time that took.
async fn until_refused(app: &TestApp, key: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if call(app, "/api/v1/auth/test", key).await.status() == StatusCode::UNAUTHORIZED {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

#[tokio::test]
async fn a_revoke_on_one_instance_is_a_401_on_the_other_within_50_ms() {
    let Some(apps) = spawn_instances(2, &[("LATCHKEY_DEFAULT_PLAN", "unlimited")]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let mut delays = Vec::new();
    for i in 0..5 {
        let created = create_key(a, json!({"name": format!("k{i}"), "scopes": ["messages:send"]})).await;
        let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
        // B verifies it, and caches it.
        assert_eq!(call(b, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
        assert_eq!(call(b, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
        assert!(api_delete(a, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
        let revoked = Instant::now();
        // The first request B gets 50 ms after the revoke is refused.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(call(b, "/api/v1/auth/test", key).await.status(), StatusCode::UNAUTHORIZED, "try {i}");
        delays.push(revoked.elapsed());
    }
    // How long it really takes (for the reader of the test's output).
    let created = create_key(a, json!({"name": "timed", "scopes": ["messages:send"]})).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(b, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
    assert!(api_delete(a, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
    let seen = until_refused(b, key, Duration::from_secs(2)).await.expect("refused on B");
    println!("revocation seen on the other instance after {} ms", seen.as_millis());
}

#[tokio::test]
async fn without_redis_a_revoke_reaches_the_other_instance_within_a_second() {
    let Some(url) = fresh_postgres() else { return };
    let dir = |n: &str| {
        let d = std::env::temp_dir().join(format!("latchkey-test-noredis-{n}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let settings = [("LATCHKEY_DEFAULT_PLAN", "unlimited")];
    let a = serve(&dir(&format!("a{}", url.len())), &url, &settings).await;
    let b = serve(&dir(&format!("b{}", url.len())), &url, &settings).await;
    a.owner_session().await;
    let created = create_key(&a, json!({"name": "k", "scopes": ["messages:send"]})).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(&b, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
    assert!(api_delete(&a, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
    let seen = until_refused(&b, key, Duration::from_millis(1500)).await;
    assert!(seen.is_some(), "the change feed bounds the delay at one second");
}

#[tokio::test]
async fn a_membership_removal_on_one_instance_ends_the_session_on_the_other() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let dev = crate::accounts::member(a, "dev@acme.test", "developer").await;
    let dev_on_b = dev.on(b);
    assert_eq!(dev_on_b.get("/settings/team").await.status(), StatusCode::OK, "signed in on B too");
    let id = crate::accounts::member_id(&a.get_html("/settings/team").await, "dev@acme.test");
    let res = a.post_form("/settings/team", &format!("/settings/team/members/{id}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = dev_on_b.get("/settings/team").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "signed out on the other instance at its next request");
}

/// Runs SQL on the test database.
fn sql(app: &TestApp, statements: &str) {
    let s = statements.to_owned();
    app.db().run_sync(move |c| c.batch_execute(&s).map_err(StoreError::from)).unwrap();
}

fn latest_change(app: &TestApp) -> i64 {
    app.db().run_sync(Change::latest).unwrap()
}

async fn a_change_made_by_hand_in_the_database_reaches_the_cache(app: TestApp) {
    app.owner_session().await;
    let created = create_key(&app, json!({"name": "k", "scopes": ["messages:send"]})).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(call(&app, "/api/v1/auth/test", key).await.status(), StatusCode::OK);
    let before = latest_change(&app);
    // The usage flush is bookkeeping, not a change.
    app.flush_usage().await;
    assert_eq!(latest_change(&app), before, "usage writes nothing to the feed");
    sql(&app, &format!("UPDATE api_keys SET revoked_at = 1 WHERE id = '{id}'"));
    assert!(latest_change(&app) > before, "the trigger wrote the change");
    assert!(until_refused(&app, key, Duration::from_millis(1500)).await.is_some());
}
both!(a_change_made_by_hand_in_the_database_reaches_the_cache);

/// Every column of the tables a cached verification reads is a change when
/// updated, except the usage bookkeeping: a column added later and missing
/// from the SQLite triggers' `UPDATE OF` lists fails here (PostgreSQL's
/// trigger compares whole rows, so it needs no list).
#[tokio::test]
async fn every_column_but_usage_bookkeeping_is_a_change() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    // One row in each table (foreign keys off for the hand-made token only).
    crate::helpers::service_key(&app, &["introspect"]);
    sql(
        &app,
        "PRAGMA foreign_keys = OFF;
         INSERT INTO oauth_tokens (id, token_hash, kind, client_id, user_id, team_id, scopes, grant_id, created_at, expires_at)
         VALUES ('tok_probe', 'h', 'access', 'app_x', NULL, 'team_x', '', 'g', 0, 1);
         PRAGMA foreign_keys = ON;",
    );
    for (table, bookkeeping) in [("api_keys", "last_used_at"), ("oauth_tokens", "used_at")] {
        let query = format!("SELECT name FROM pragma_table_info('{table}')");
        let columns: Vec<Column> =
            app.db().run_sync(move |c| diesel::sql_query(query).load(c).map_err(StoreError::from)).unwrap();
        assert!(columns.len() > 5, "{table} has columns");
        for column in columns.iter().map(|c| c.name.as_str()).filter(|c| *c != "id") {
            let before = latest_change(&app);
            sql(
                &app,
                &format!(
                    "PRAGMA foreign_keys = OFF; UPDATE {table} SET {column} = {column}; PRAGMA foreign_keys = ON;"
                ),
            );
            let noted = latest_change(&app) > before;
            assert_eq!(noted, column != bookkeeping, "{table}.{column}: a change unless it is {bookkeeping}");
        }
    }
}

/// A connection of its own to the test's PostgreSQL database, on a thread
/// (the server runs on the test's runtime: nothing here may block it): runs
/// `first`, signals, waits for the go-ahead, runs `then`.
fn hold_open(url: &str, first: &str, then: &str) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    use diesel::Connection;
    let (url, first, then) = (url.to_owned(), first.to_owned(), then.to_owned());
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        conn.batch_execute(&first).unwrap();
        started_tx.send(()).unwrap();
        let _ = go_rx.recv();
        conn.batch_execute(&then).unwrap();
    });
    (started, go)
}

/// A new key `name` on `app` (messages:send): its id and secret.
async fn new_key(app: &TestApp, name: &str) -> (String, String) {
    let created = create_key(app, json!({"name": name, "scopes": ["messages:send"]})).await;
    (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
}

/// Revokes key `id` in a transaction of its own that stays open (holding its
/// change's sequence number) until the returned sender says commit.
fn revoke_uncommitted(app: &TestApp, id: &str) -> std::sync::mpsc::Sender<()> {
    let begin = format!("BEGIN; UPDATE api_keys SET revoked_at = 1 WHERE id = '{id}';");
    let (updated, commit) = hold_open(&app.database_url, &begin, "COMMIT;");
    updated.recv().unwrap();
    commit
}

/// A verification whose database read is in flight while a revoke commits
/// and the feed applies it must not plant an entry the feed then vouches
/// for: the answer it read is held by the one-second bound only.
#[tokio::test]
async fn a_read_racing_a_revoke_cannot_outlive_the_one_second_bound() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else { return };
    app.owner_session().await;
    let (id, key) = new_key(&app, "k").await;
    // Hold the teams table: the key's read stops there, after its own row.
    let (locked, release) =
        hold_open(&app.database_url, "BEGIN; LOCK TABLE teams IN ACCESS EXCLUSIVE MODE;", "COMMIT;");
    locked.recv().unwrap();
    let in_flight = {
        let (app, key) = (app.other_client(), key.clone());
        tokio::spawn(async move { call(&app, "/api/v1/auth/test", &key).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The revoke commits (by hand: the feed is the only messenger) and the
    // feed applies it while the read is still waiting.
    sql(&app, &format!("UPDATE api_keys SET revoked_at = 1 WHERE id = '{id}'"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    release.send(()).unwrap();
    // The in-flight request began before the revoke: either answer is right.
    let _answered = in_flight.await.unwrap();
    // Feed reads that began after its answer was cached have succeeded since;
    // they must not vouch for an answer read before the revoke.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = call(&app, "/api/v1/auth/test", &key).await.status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the raced answer outlived the one-second bound");
}

/// A change whose transaction commits long after it took its sequence
/// number (after later numbers committed) still reaches the cache.
#[tokio::test]
async fn a_change_that_commits_late_is_never_skipped() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else { return };
    app.owner_session().await;
    let ((id, key), (other_id, _)) = (new_key(&app, "late").await, new_key(&app, "other").await);
    assert_eq!(call(&app, "/api/v1/auth/test", &key).await.status(), StatusCode::OK);
    // The revoke takes its sequence number now and commits in 11 s; a later
    // change commits meanwhile.
    let commit = revoke_uncommitted(&app, &id);
    sql(&app, &format!("UPDATE api_keys SET revoked_at = 1 WHERE id = '{other_id}'"));
    // Longer than a time-based patience would wait: the key is still valid.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(call(&app, "/api/v1/auth/test", &key).await.status(), StatusCode::OK, "not committed yet");
    commit.send(()).unwrap();
    let refused = until_refused(&app, &key, Duration::from_millis(1500)).await;
    assert!(refused.is_some(), "the late change was skipped");
}

/// Subscribers of the deployment's change channel on the Redis at `url`.
async fn subscribers(url: &str, channel: &str) -> i64 {
    let Ok(client) = redis::Client::open(url) else { return -1 };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return -1 };
    let counted: redis::RedisResult<(String, i64)> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await;
    counted.map_or(-1, |(_, n)| n)
}

/// Creates a key on `a`, has `b` verify it, revokes it on `a`; returns it.
async fn revoke_a_key_b_holds(a: &TestApp, b: &TestApp, name: &str) -> String {
    let created = create_key(a, json!({"name": name, "scopes": ["messages:send"]})).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap().to_owned());
    assert_eq!(call(b, "/api/v1/auth/test", &key).await.status(), StatusCode::OK);
    assert!(api_delete(a, &format!("/api/v1/api-keys/{id}")).await.status().is_success());
    key
}

/// The change channel survives a Redis restart: while Redis is down a revoke
/// still reaches the other instance within a second (the feed); once Redis
/// is back, both instances subscribe again by themselves, and a revoke is
/// seen at once again.
#[tokio::test]
async fn a_lost_subscription_is_re_established_by_itself() {
    let Some(url) = fresh_postgres() else { return };
    crate::helpers::init_test_log();
    let Some(mut redis) = crate::helpers::PrivateRedis::start().await else { return };
    let (redis_url, prefix) = (redis.url(), "latchkey-resubscribe:");
    let channel = format!("{prefix}{}", latchkey::service::changes::CHANNEL);
    let settings =
        [("REDIS_URL", redis_url.as_str()), ("LATCHKEY_REDIS_PREFIX", prefix), ("LATCHKEY_DEFAULT_PLAN", "unlimited")];
    let mut apps = Vec::new();
    for n in ["a", "b"] {
        let dir = std::env::temp_dir().join(format!("latchkey-test-resub-{n}-{}", redis.port));
        std::fs::create_dir_all(&dir).unwrap();
        apps.push(serve(&dir, &url, &settings).await);
    }
    let (a, b) = (&apps[0], &apps[1]);
    a.owner_session().await;
    let wait_for_subscribers = || async {
        let start = Instant::now();
        while subscribers(&redis_url, &channel).await != 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "both instances subscribe within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for_subscribers().await;
    let key = revoke_a_key_b_holds(a, b, "before").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(call(b, "/api/v1/auth/test", &key).await.status(), StatusCode::UNAUTHORIZED, "instant");

    redis.kill();
    let key = revoke_a_key_b_holds(a, b, "during").await;
    assert!(until_refused(b, &key, Duration::from_millis(1500)).await.is_some(), "the feed: within a second");

    assert!(redis.restart().await);
    wait_for_subscribers().await;
    // Having subscribed again, each instance ends its Redis outage (its
    // shared connection answers again) by itself.
    let start = Instant::now();
    while apps.iter().any(|app| app.redis().status() != latchkey::service::cluster::RedisStatus::Up) {
        assert!(start.elapsed() < Duration::from_secs(5), "the outage ends by itself once Redis is back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = revoke_a_key_b_holds(a, b, "after").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(call(b, "/api/v1/auth/test", &key).await.status(), StatusCode::UNAUTHORIZED, "instant again");
}

/// A revoke that commits late, after more than a thousand rolled-back
/// changes left holes in the feed's sequence, still reaches the cache.
#[tokio::test]
async fn a_late_change_behind_many_holes_is_never_skipped() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else { return };
    app.owner_session().await;
    let ((id, key), (other_id, _)) = (new_key(&app, "late").await, new_key(&app, "other").await);
    assert_eq!(call(&app, "/api/v1/auth/test", &key).await.status(), StatusCode::OK);
    // 1,500 changes rolled back: 1,500 numbers that will never commit.
    sql(
        &app,
        &format!(
            "DO $$ BEGIN FOR i IN 1..1500 LOOP BEGIN UPDATE api_keys SET name = name || 'x' WHERE id = '{other_id}'; \
             RAISE EXCEPTION 'rolled back'; EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$;"
        ),
    );
    let commit = revoke_uncommitted(&app, &id);
    sql(&app, &format!("UPDATE api_keys SET revoked_at = 1 WHERE id = '{other_id}'"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    commit.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(&app, "/api/v1/auth/test", &key).await.status(), StatusCode::UNAUTHORIZED, "skipped");
}

/// An instance that starts while a change is still uncommitted (holding a
/// number below the feed's end) does not let the feed vouch for what it
/// caches until that transaction has ended.
#[tokio::test]
async fn an_instance_started_during_a_slow_change_still_sees_it() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else { return };
    app.owner_session().await;
    let ((id, key), (other_id, _)) = (new_key(&app, "late").await, new_key(&app, "other").await);
    let commit = revoke_uncommitted(&app, &id);
    sql(&app, &format!("UPDATE api_keys SET revoked_at = 1 WHERE id = '{other_id}'"));
    // A new instance starts now, and caches the key (not revoked yet).
    let dir = std::env::temp_dir().join(format!("latchkey-test-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let late = serve(&dir, &app.database_url, &[]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&late, "/api/v1/auth/test", &key).await.status(), StatusCode::OK, "not committed yet");
    commit.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(call(&late, "/api/v1/auth/test", &key).await.status(), StatusCode::UNAUTHORIZED);
}
