//! Prometheus metrics: a scripted workload, then a scrape of the separate
//! listener that must show exactly what the workload did; the listener is
//! never the public port; the Grafana dashboard queries only what is exported.

use std::collections::BTreeSet;

use oauth2::{AuthorizationCode, TokenResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_keys::{api_delete, call, create_key};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, TestApp, fresh_redis, spawn_app_with};
use crate::oauth::{REDIRECT, client, code_for, http, register};

const METRICS_ON: (&str, &str) = ("LATCHKEY_METRICS_BIND", "127.0.0.1:0");

/// Runs `$name(app)` on SQLite and PostgreSQL with the metrics listener on.
macro_rules! with_metrics {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = super::spawn(crate::helpers::Backend::Sqlite).await {
                    super::$name(app).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(app) = super::spawn(crate::helpers::Backend::Postgres).await {
                    super::$name(app).await;
                }
            }
        }
    };
}

/// With the metrics listener on; usage is flushed when a test says so
/// (and once at start), never by the timer in the middle of a test.
async fn spawn(backend: Backend) -> Option<TestApp> {
    let app = spawn_app_with(backend, &[METRICS_ON, ("LATCHKEY_USAGE_FLUSH_SECONDS", "3600")]).await?;
    // Lets the timer's first (immediate) flush happen now.
    let _ = Scrape::of(&app).await;
    Some(app)
}

/// A scrape of the metrics listener.
pub struct Scrape(String);

impl Scrape {
    pub async fn of(app: &TestApp) -> Self {
        let url = format!("{}/metrics", app.metrics_address.as_deref().expect("metrics listener on"));
        let res = reqwest::get(url).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        Self(res.text().await.unwrap())
    }

    /// The value of the series `name` with exactly `labels`, if exported.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeSet<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.0.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, set) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}').split(',').map(str::to_owned).collect()),
                None => (series, BTreeSet::new()),
            };
            (series_name == name && set == wanted).then(|| value.parse().unwrap())
        })
    }

    /// [`get`](Self::get), which must be there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("{name} {labels:?} not exported:\n{}", self.0))
    }

    /// The metric families exported (`# TYPE` lines), with their types.
    pub fn families(&self) -> Vec<(String, String)> {
        let typed = self.0.lines().filter_map(|l| l.strip_prefix("# TYPE "));
        typed.filter_map(|l| l.split_once(' ')).map(|(n, t)| (n.to_owned(), t.to_owned())).collect()
    }
}

fn verifications(s: &Scrape, kind: &str, outcome: &str) -> f64 {
    s.value("latchkey_verifications_total", &[("kind", kind), ("outcome", outcome)])
}

/// Counts below are exact: the free plan (10 a minute, 100 an hour) limits
/// all of the team's keys and tokens together, and the clock is moved past
/// the minute between phases.
async fn a_scripted_workload_shows_the_expected_counts(app: TestApp) {
    app.owner_session().await;
    for _ in 0..2 {
        let res = app.other_client().login(OWNER_EMAIL, "not the password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let good = create_key(&app, json!({"name": "good", "scopes": ["templates:read"]})).await;
    let good = good["key"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(call(&app, "/api/v1/auth/test", &good).await.status(), StatusCode::OK);
    }
    // A route and a forward-auth location needing scopes the key lacks.
    assert_eq!(call(&app, "/api/v1/api-keys", &good).await.status(), StatusCode::FORBIDDEN);
    let forward = call(&app, "/auth/verify?scope=templates:write", &good).await;
    assert_eq!(forward.status(), StatusCode::FORBIDDEN);
    // Bad credentials: two malformed, one unknown key, one unknown access token.
    let unknown_key = latchkey::service::keys::codec::generate("lk").unwrap();
    let unknown_token = latchkey::service::keys::codec::generate("lkat").unwrap();
    for bad in ["lk_garbage", "nonsense", &unknown_key, &unknown_token] {
        let res = app.other_client().client.get(app.url("/api/v1/auth/test")).bearer_auth(bad).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let revoked = create_key(&app, json!({"name": "revoked", "scopes": ["templates:read"]})).await;
    let id = revoked["id"].as_str().unwrap();
    assert_eq!(api_delete(&app, &format!("/api/v1/api-keys/{id}")).await.status(), StatusCode::OK);
    let res = call(&app, "/api/v1/auth/test", revoked["key"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A burst past the free plan's 10 a minute.
    app.clock().advance(120);
    let mut limited = 0;
    for _ in 0..12 {
        if call(&app, "/api/v1/auth/test", &good).await.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 2);

    // OAuth: a code exchange, its refresh, a client_credentials token, and a call with one.
    app.clock().advance(120);
    let a = register(&app, "confidential", REDIRECT, &["templates:read"]).await;
    let c = client(&app, &a, REDIRECT);
    let (code, _) = code_for(&app, &c, &[], None).await;
    let first = c.exchange_code(AuthorizationCode::new(code)).request_async(&http()).await.unwrap();
    c.exchange_refresh_token(first.refresh_token().unwrap()).request_async(&http()).await.unwrap();
    let machine = c.exchange_client_credentials().request_async(&http()).await.unwrap();
    let res = crate::oauth::auth_test(&app, machine.access_token().secret()).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.flush_usage().await;

    let s = Scrape::of(&app).await;
    assert_eq!(verifications(&s, "api_key", "ok"), 17.0, "5 + 2 refused by scope later + 10 of the burst");
    assert_eq!(verifications(&s, "api_key", "rate_limited"), 2.0);
    assert_eq!(verifications(&s, "api_key", "revoked"), 1.0);
    assert_eq!(verifications(&s, "api_key", "unknown"), 1.0);
    assert_eq!(verifications(&s, "unrecognised", "malformed"), 2.0);
    assert_eq!(verifications(&s, "access_token", "unknown"), 1.0);
    assert_eq!(verifications(&s, "access_token", "ok"), 1.0);
    assert_eq!(verifications(&s, "service_key", "ok"), 0.0, "every series is there from the start");
    assert_eq!(verifications(&s, "api_key", "expired"), 0.0);
    let count = |kind| s.value("latchkey_verification_duration_seconds_count", &[("kind", kind)]);
    assert_eq!((count("api_key"), count("access_token"), count("unrecognised")), (21.0, 2.0, 2.0));
    let within_inf = s.value("latchkey_verification_duration_seconds_bucket", &[("kind", "api_key"), ("le", "+Inf")]);
    assert_eq!(within_inf, 21.0);
    assert_eq!(s.value("latchkey_scope_denied_total", &[("kind", "api_key")]), 2.0);
    assert_eq!(s.value("latchkey_rate_limited_total", &[("plan", "free")]), 2.0);
    assert_eq!(s.value("latchkey_rate_limited_total", &[("plan", "pro")]), 0.0);
    let cache = |result| s.value("latchkey_credential_cache_total", &[("result", result)]);
    assert_eq!(cache("hit") + cache("miss"), 23.0, "every well-formed credential looked up once");
    assert!(cache("hit") >= 1.0 && cache("miss") >= 3.0 && cache("stale") == 0.0);
    let issued = |grant| s.value("latchkey_oauth_tokens_issued_total", &[("grant", grant)]);
    assert_eq!((issued("authorization_code"), issued("refresh_token"), issued("client_credentials")), (1.0, 1.0, 1.0));
    assert_eq!(s.value("latchkey_oauth_token_errors_total", &[("error", "invalid_grant")]), 0.0);
    let logins = |outcome| s.value("latchkey_logins_total", &[("outcome", outcome)]);
    assert_eq!((logins("succeeded"), logins("failed"), logins("totp_failed")), (1.0, 2.0, 0.0));
    assert_eq!(s.value("latchkey_usage_flush_failures_total", &[]), 0.0);
    assert_eq!(s.value("latchkey_usage_buffered_requests", &[]), 0.0, "all handed on");
    assert!(s.value("latchkey_usage_flush_lag_seconds", &[]) < 60.0);
    assert_eq!(s.value("latchkey_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
}
with_metrics!(a_scripted_workload_shows_the_expected_counts);

/// The lag counts on the service clock from the last flush; the pool and
/// Redis gauges describe this instance.
async fn the_flush_lag_pool_and_redis_gauges_are_read_at_scrape(app: TestApp) {
    app.flush_usage().await;
    app.clock().advance(90);
    let s = Scrape::of(&app).await;
    let lag = s.value("latchkey_usage_flush_lag_seconds", &[]);
    assert!((90.0..150.0).contains(&lag), "{lag}");
    let max = s.value("latchkey_db_pool_max_connections", &[]);
    let sqlite = app.database_url.starts_with("sqlite");
    assert_eq!(max, if sqlite { 8.0 } else { 16.0 });
    let open = s.value("latchkey_db_pool_connections", &[("state", "in_use")])
        + s.value("latchkey_db_pool_connections", &[("state", "idle")]);
    assert!((1.0..=max).contains(&open), "{open}");
    assert_eq!(s.value("latchkey_db_reachable", &[]), 1.0);
    assert_eq!((s.value("latchkey_redis_configured", &[]), s.value("latchkey_redis_up", &[])), (0.0, 0.0));
    app.flush_usage().await;
    assert!(Scrape::of(&app).await.value("latchkey_usage_flush_lag_seconds", &[]) < 60.0, "a flush resets it");
}
with_metrics!(the_flush_lag_pool_and_redis_gauges_are_read_at_scrape);

#[tokio::test]
async fn with_redis_the_redis_gauge_is_one() {
    let Some((url, prefix)) = fresh_redis() else { return };
    let settings = [("REDIS_URL", url.as_str()), ("LATCHKEY_REDIS_PREFIX", prefix.as_str()), METRICS_ON];
    let app = spawn_app_with(Backend::Sqlite, &settings).await.unwrap();
    let s = Scrape::of(&app).await;
    assert_eq!((s.value("latchkey_redis_configured", &[]), s.value("latchkey_redis_up", &[])), (1.0, 1.0));
}

async fn metrics_are_served_on_their_own_listener_only(app: TestApp) {
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND, "never on the public port");
    let metrics = app.metrics_address.clone().unwrap();
    assert_ne!(metrics, app.address);
    let other = reqwest::get(format!("{metrics}/settings/team")).await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "the metrics listener serves nothing else");
    let _scraped = Scrape::of(&app).await;
}
with_metrics!(metrics_are_served_on_their_own_listener_only);

#[tokio::test]
async fn without_a_metrics_bind_nothing_serves_metrics() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await.unwrap();
    assert!(app.metrics_address.is_none());
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    assert!(app.state().metrics.scrape(app.state().metrics_sources()).await.is_none());
}

/// Sign-ins waiting for a hashing thread show as the queue's depth; one
/// refused after its wait is counted.
#[tokio::test]
async fn the_password_hashing_queue_is_measured() {
    let wait = ("LATCHKEY_PASSWORD_WAIT_MS", "1500");
    let app = spawn_app_with(Backend::Sqlite, &[METRICS_ON, wait]).await.unwrap();
    app.setup_owner().await;
    let held = app.hold_password_threads().await;
    let waiting = app.other_client();
    let sign_in = tokio::spawn(async move { waiting.login(OWNER_EMAIL, OWNER_PASSWORD).await.status() });
    let mut depth = 0.0;
    for _ in 0..200 {
        depth = Scrape::of(&app).await.value("latchkey_password_hash_queue_depth", &[]);
        if depth == 1.0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(depth, 1.0);
    let s = Scrape::of(&app).await;
    assert_eq!(s.value("latchkey_password_hash_busy", &[]), s.value("latchkey_password_hash_threads", &[]));
    assert_eq!(sign_in.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let s = Scrape::of(&app).await;
    assert_eq!(s.value("latchkey_password_hash_queue_depth", &[]), 0.0);
    assert_eq!(s.value("latchkey_password_hash_refused_total", &[]), 1.0);
    assert_eq!(s.value("latchkey_logins_total", &[("outcome", "busy")]), 1.0);
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["latchkey_", "process_"].iter().filter_map(|p| rest.find(p)).min() {
        let word: String =
            rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        rest = &rest[at + word.len()..];
        names.push(word);
    }
    names
}

/// Every `expr` of the dashboard's panels (rows nest theirs).
fn exprs(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("every target has an expr").to_owned());
        }
        exprs(&panel["panels"], out);
    }
}

/// The dashboard cannot drift: every metric a panel queries is one a live
/// instance exports, and every family Latchkey exports has a panel.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/latchkey.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inputs = dashboard["__inputs"].to_string();
    assert!(inputs.contains("DS_PROMETHEUS"), "the datasource is an input");
    let mut queries = Vec::new();
    exprs(&dashboard["panels"], &mut queries);
    assert!(queries.len() >= 15, "{}", queries.len());
    let app = spawn_app_with(Backend::Sqlite, &[METRICS_ON]).await.unwrap();
    let families = Scrape::of(&app).await.families();
    let exported: BTreeSet<String> = families
        .iter()
        .flat_map(|(name, kind)| match kind.as_str() {
            "histogram" => ["_bucket", "_count", "_sum"].iter().map(|s| format!("{name}{s}")).collect(),
            _ => vec![name.clone()],
        })
        .collect();
    let queried: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics Latchkey does not export: {unknown:?}");
    for (family, _) in families.iter().filter(|(n, _)| n.starts_with("latchkey_")) {
        assert!(queried.iter().any(|q| q.starts_with(family.as_str())), "no panel shows {family}");
    }
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", panel["title"]);
    }
}
