//! Plan and issuance limits shared by several instances through Redis
//! leases: counted once across instances, never above the plan, served from
//! memory between leases, and counted in process while Redis is down (the
//! shared count resumes by itself when it is back).
//!
//! The `Limits` tests drive the limiter directly with a synthetic clock; the
//! others drive real instances on one PostgreSQL database and one Redis.

use std::sync::Arc;
use std::time::Duration;

use latchkey::service::cluster::{Redis, RedisStatus};
use latchkey::service::ratelimit::{Limiter, Limits, Plan, RateCounter, UNLIMITED, plan, shared};
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::api_keys::{call, create_key};
use crate::helpers::{
    PrivateRedis, TestApp, free_port, fresh_postgres, fresh_redis, init_test_log, serve, spawn_instances,
};

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

async fn connect(url: &str, prefix: &str) -> Arc<Redis> {
    Arc::new(Redis::connect(url, prefix).unwrap())
}

/// Three instances' limiters on one Redis, flooded in turn for ten minutes
/// across an hour boundary: every admission is one a single in-process
/// limiter fed only the admissions accepts (never above the plan), and
/// together they admit within `N × (slice − 1)` a minute of what one
/// instance alone admits.
#[tokio::test]
async fn leases_keep_several_instances_within_the_plan() {
    let Some((url, prefix)) = fresh_redis() else { return };
    let redis = connect(&url, &prefix).await;
    let instances: Vec<Limits> = (0..3).map(|_| Limits::new("plan", redis.clone())).collect();
    let tight = Plan { name: "tight", per_hour: 1_000, per_minute: 200 };
    assert_eq!(shared::slice(tight), 2);
    let (reference, alone) = (Limiter::default(), Limiter::default());
    let t0 = 500_000 * HOUR_MS + 55 * MINUTE_MS;
    let (mut admitted, mut admitted_alone, mut worst_remaining_gap) = (0u64, 0u64, 0u64);
    for step in 0..6_000i64 {
        let now = t0 + step * 100;
        if alone.hit("k", tight, now).is_ok() {
            admitted_alone += 1;
        }
        if let Ok(state) = instances[step as usize % 3].hit("team:t", tight, now).await {
            admitted += 1;
            let truth = reference.hit("k", tight, now).unwrap_or_else(|_| panic!("admitted above the plan at {step}"));
            worst_remaining_gap = worst_remaining_gap.max(state.remaining.abs_diff(truth.remaining));
        }
    }
    eprintln!("admitted {admitted}, alone {admitted_alone}, worst remaining gap {worst_remaining_gap}");
    let bound = 3 * (shared::slice(tight) - 1) * 10;
    assert!(admitted <= admitted_alone && admitted + bound >= admitted_alone, "{admitted} vs {admitted_alone}");
    assert!(worst_remaining_gap <= tight.per_minute, "X-RateLimit-Remaining off by {worst_remaining_gap}");
}

async fn counted(conn: &mut redis::aio::MultiplexedConnection, counter: &str) -> u64 {
    redis::cmd("GET").arg(counter).query_async(conn).await.unwrap()
}

/// The `unlimited` plan leases a thousand units at a time: the next 999
/// requests are served without asking Redis for more.
#[tokio::test]
async fn an_unlimited_team_asks_redis_once_per_thousand_requests() {
    let Some((url, prefix)) = fresh_redis() else { return };
    let limits = Limits::new("plan", connect(&url, &prefix).await);
    let mut direct = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let now = 600_000 * HOUR_MS;
    let counter = format!("{prefix}rl:plan:team:u:m:{}", now / MINUTE_MS);
    limits.hit("team:u", UNLIMITED, now).await.unwrap();
    assert_eq!(counted(&mut direct, &counter).await, 1_000);
    for i in 1..1_000 {
        limits.hit("team:u", UNLIMITED, now + i).await.unwrap();
    }
    assert_eq!(counted(&mut direct, &counter).await, 1_000, "served from the lease");
    limits.hit("team:u", UNLIMITED, now + 1_000).await.unwrap();
    assert_eq!(counted(&mut direct, &counter).await, 2_000);
}

/// Units of a lease whose minute passed go back to the window they were
/// counted in.
#[tokio::test]
async fn unspent_units_are_given_back_when_the_minute_passes() {
    let Some((url, prefix)) = fresh_redis() else { return };
    let limits = Limits::new("plan", connect(&url, &prefix).await);
    let mut direct = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let pro = plan("pro").unwrap();
    let now = 700_000 * HOUR_MS;
    limits.hit("team:p", pro, now).await.unwrap();
    let counter = format!("{prefix}rl:plan:team:p:m:{}", now / MINUTE_MS);
    assert_eq!(counted(&mut direct, &counter).await, shared::slice(pro));
    limits.hit("team:p", pro, now + MINUTE_MS).await.unwrap();
    assert_eq!(counted(&mut direct, &counter).await, 1, "only the spent unit stays counted");
}

/// With Redis out of reach every request is counted in process, at once.
#[tokio::test]
async fn an_unreachable_redis_leaves_the_limits_in_process() {
    let redis = connect(&format!("redis://127.0.0.1:{}/0", free_port()), "latchkey-none:").await;
    let limits = Limits::new("plan", redis.clone());
    let free = plan("free").unwrap();
    let now = 800_000 * HOUR_MS;
    for i in 0..10 {
        assert_eq!(limits.hit("team:f", free, now + i).await.unwrap().remaining, 99 - i as u64);
    }
    assert!(limits.hit("team:f", free, now + 10).await.is_err());
    assert!(matches!(redis.status(), RedisStatus::Down { .. }));
}

fn remaining(res: &Response) -> u64 {
    res.headers()["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap()
}

fn retry_after(res: &Response) -> i64 {
    res.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

/// Alternates `GET /api/v1/auth/test` between the instances `n` times;
/// returns the `X-RateLimit-Remaining` of each 200, checking each 429.
async fn alternate(instances: &[&TestApp], secret: &str, n: usize) -> Vec<u64> {
    let mut served = Vec::new();
    for i in 0..n {
        let res = call(instances[i % instances.len()], "/api/v1/auth/test", secret).await;
        match res.status() {
            StatusCode::OK => served.push(remaining(&res)),
            StatusCode::TOO_MANY_REQUESTS => assert!((1..=60).contains(&retry_after(&res))),
            other => panic!("unexpected {other}"),
        }
    }
    served
}

async fn free_plan_key(app: &TestApp) -> String {
    app.owner_session().await;
    let key = create_key(app, json!({"name": "shared", "scopes": ["templates:read"]})).await;
    key["key"].as_str().unwrap().to_owned()
}

/// A free-plan team's burst (10 a minute) is counted once across two instances.
#[tokio::test]
async fn the_plan_burst_is_counted_once_across_instances() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    let secret = free_plan_key(&apps[0]).await;
    let served = alternate(&[&apps[0], &apps[1]], &secret, 30).await;
    assert_eq!(served, (90..100).rev().collect::<Vec<u64>>(), "exactly the burst, remaining counting down");
}

/// A team moved from `unlimited` (whose leases hold 1,000 units) to `free`
/// gets the free plan at once on every instance: what the old plan leased
/// is given back, not spent.
#[tokio::test]
async fn a_downgraded_plan_applies_at_once_on_every_instance() {
    use diesel::connection::SimpleConnection;
    let Some(apps) = spawn_instances(2, &[("LATCHKEY_DEFAULT_PLAN", "unlimited")]).await else { return };
    let secret = free_plan_key(&apps[0]).await;
    // Each instance leases a slice of the unlimited plan.
    alternate(&[&apps[0], &apps[1]], &secret, 4).await;
    // The operator downgrades the team (as `latchkey team set-plan` does).
    apps[0]
        .db()
        .run_sync(|c| c.batch_execute("UPDATE teams SET plan = 'free'").map_err(latchkey::store::StoreError::from))
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let mut served = 0;
    for i in 0..40 {
        let res = call(&apps[i % 2], "/api/v1/auth/test", &secret).await;
        match res.status() {
            StatusCode::OK => served += 1,
            // The first refusals may name the hour until the other instance
            // has given back its old lease too: a refusal either way.
            StatusCode::TOO_MANY_REQUESTS => assert!(retry_after(&res) >= 1),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(served <= 10, "at most the free burst after the downgrade, got {served}");
}

/// Token issuance (60 a minute per client) is counted once across instances.
#[tokio::test]
async fn token_issuance_is_counted_once_across_instances() {
    let Some(apps) = spawn_instances(2, &[]).await else { return };
    apps[0].owner_session().await;
    let app = crate::oauth::register(&apps[0], "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    let secret = app.secret.unwrap();
    let grant = [("grant_type", "client_credentials"), ("client_id", &app.client_id), ("client_secret", &secret)];
    let mut issued = 0;
    for i in 0..70 {
        let on = &apps[i % 2];
        let res = on.client.post(on.url("/oauth/token")).form(&grant).send().await.unwrap();
        match res.status() {
            StatusCode::OK => issued += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after(&res) >= 1);
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"], "slow_down");
            }
            other => panic!("unexpected {other}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(issued, 60);
}

/// Sends `GET /api/v1/auth/test` to `app` until a 200 counted in the
/// (fresh) shared Redis, i.e. with `expected` remaining; bounded.
async fn until_shared(app: &TestApp, secret: &str, expected: u64) {
    for _ in 0..100 {
        let res = call(app, "/api/v1/auth/test", secret).await;
        if res.status() == StatusCode::OK {
            assert_eq!(remaining(&res), expected, "counted in the restarted Redis");
            return;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "verification keeps answering");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("shared limits did not resume within five seconds");
}

/// Redis goes away mid-burst: verification keeps answering, each instance
/// counting in process; Redis comes back: the shared count resumes by itself.
#[tokio::test]
async fn a_redis_outage_falls_back_in_process_and_recovers_by_itself() {
    init_test_log();
    let Some(database_url) = fresh_postgres() else { return };
    let Some(mut redis) = PrivateRedis::start().await else { return };
    let url = redis.url();
    let settings = [("REDIS_URL", url.as_str()), ("LATCHKEY_REDIS_PREFIX", "latchkey-outage:")];
    let mut apps = Vec::new();
    for i in 0..2 {
        let data_dir = std::env::temp_dir().join(format!("latchkey-test-outage-{}-{i}", redis.port));
        std::fs::create_dir_all(&data_dir).unwrap();
        apps.push(serve(&data_dir, &database_url, &settings).await);
    }
    let (a, b) = (&apps[0], &apps[1]);
    let secret = free_plan_key(a).await;
    assert_eq!(alternate(&[a, b], &secret, 6).await, vec![99, 98, 97, 96, 95, 94]);

    redis.kill();
    // Each instance now counts in process, from zero: its own burst of ten.
    for app in [a, b] {
        let served = alternate(&[app], &secret, 12).await;
        assert_eq!(served, (90..100).rev().collect::<Vec<u64>>());
    }

    assert!(redis.restart().await);
    until_shared(a, &secret, 99).await;
    until_shared(b, &secret, 98).await;
    assert_eq!(alternate(&[a, b], &secret, 20).await, (90..98).rev().collect::<Vec<u64>>(), "shared again");
}
