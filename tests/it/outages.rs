//! Outages and stops under load: every request served is counted once.
//!
//! Rules: PostgreSQL is cut off through a TCP proxy owned by the test (the
//! shared server is never touched); while it is cut, a credential the
//! instance has not verified yet gets `503 unavailable` with `Retry-After`
//! and the token endpoint `503 temporarily_unavailable`, never a 500; once
//! it is back, the same instance serves again without a restart. A
//! credential verified just before the cut is still served, from the cache,
//! for the stale window (30 s after it was last known right), and each 200
//! it gets is counted. After the outage, and after a SIGTERM in the middle of
//! concurrent load, the recorded usage of a key equals the 200s it was
//! served, exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::api_keys::{call, create_key};
use crate::helpers::{fresh_postgres, serve};

/// A TCP proxy to one upstream address that can be cut (every open
/// connection closed, new ones closed as soon as they are accepted) and
/// restored. It runs until the test's runtime ends.
struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let state = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                // Subscribed before the check: a cut that lands after it is
                // still seen by the connection's task.
                let mut cut = state.subscribe();
                if *cut.borrow_and_update() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                    // Both sockets are dropped (closed) here.
                });
            }
        });
        Proxy { addr, cut }
    }

    /// Closes every open connection and refuses new ones until `restore`.
    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// `url` with its host and port replaced by `addr` (user and database kept).
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    format!("{scheme}://{user}{addr}{path}")
}

/// The `host:port` of a PostgreSQL URL (port 5432 when it names none).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match host.rsplit_once(':') {
        Some((_, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(']') => host.to_owned(),
        _ => format!("{host}:5432"),
    }
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let suffix = latchkey::service::crypto::random_base62(12).unwrap().to_lowercase();
    let dir = std::env::temp_dir().join(format!("latchkey-{label}-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The usage recorded for `key_id`: the sum of its per-day counts.
async fn recorded_usage(db: &latchkey::store::Db, key_id: &str) -> i64 {
    use diesel::prelude::*;
    use latchkey::store::schema::api_key_usage;
    let id = key_id.to_owned();
    let counts: Vec<i64> = db
        .run(move |c| {
            api_key_usage::table
                .filter(api_key_usage::key_id.eq(&id))
                .select(api_key_usage::count)
                .load::<i64>(c)
                .map_err(latchkey::store::StoreError::from)
        })
        .await
        .unwrap();
    counts.iter().sum()
}

/// Asserts the JSON envelope of a `503 unavailable` with a `Retry-After`.
async fn assert_unavailable(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert!(retry.as_deref().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s > 0), "{what}: {retry:?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{what}: {body}");
}

/// PostgreSQL cut off behind a proxy and let back: 503s (never 500) for what
/// needs the database, recovery without a restart, and the key's recorded
/// usage equals the 200s it was served before, during and after the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_answers_503_recovers_and_loses_no_usage() {
    let Some(database_url) = fresh_postgres() else { return };
    let base = std::env::var("LATCHKEY_TEST_DATABASE_URL").unwrap();
    let proxy = Proxy::start(host_port(&base)).await;
    // Usage is flushed only when this test says so (a periodic flush could be
    // mid-commit when the proxy cuts, and count its batch twice, as the
    // verifier's rules allow).
    let settings = [("LATCHKEY_DEFAULT_PLAN", "unlimited"), ("LATCHKEY_USAGE_FLUSH_SECONDS", "86400")];
    let app = serve(&temp_dir("outage"), &through(&database_url, proxy.addr), &settings).await;
    app.owner_session().await;
    let used = create_key(&app, serde_json::json!({"name": "used", "scopes": ["templates:read"]})).await;
    let fresh = create_key(&app, serde_json::json!({"name": "fresh", "scopes": ["templates:read"]})).await;
    let (used_id, used) = (used["id"].as_str().unwrap().to_owned(), used["key"].as_str().unwrap().to_owned());
    let (fresh_id, fresh) = (fresh["id"].as_str().unwrap().to_owned(), fresh["key"].as_str().unwrap().to_owned());
    let oauth_app = crate::oauth::register(&app, "confidential", crate::oauth::REDIRECT, &["templates:read"]).await;
    // Let the change feed apply the setup's changes (the owner's new
    // membership names every credential the owner holds): otherwise it may
    // drop `used` from the cache at any moment below, the cut included.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_id", oauth_app.client_id.as_str()),
        ("client_secret", oauth_app.secret.as_deref().unwrap()),
    ];
    let machine = app.other_client().client;

    let mut served = 0; // the 200s `used` got
    for _ in 0..5 {
        assert_eq!(call(&app, "/api/v1/auth/test", &used).await.status(), StatusCode::OK);
        served += 1;
    }
    // Part of the usage reaches the database now, the rest stays buffered
    // through the outage.
    app.flush_usage().await;
    for _ in 0..3 {
        assert_eq!(call(&app, "/api/v1/auth/test", &used).await.status(), StatusCode::OK);
        served += 1;
    }

    proxy.cut();
    // Each of these waits out the pool's 10 s: they run side by side.
    let (never_verified, token, recent, flush) = tokio::join!(
        call(&app, "/api/v1/auth/test", &fresh),
        machine.post(app.url("/oauth/token")).form(&grant).send(),
        call(&app, "/api/v1/auth/test", &used),
        app.try_flush_usage(),
    );
    assert_unavailable(never_verified, "a key never verified before").await;
    let token = token.unwrap();
    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(token.headers().get("retry-after").is_some());
    let body: serde_json::Value = token.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert_eq!(recent.status(), StatusCode::OK, "a key verified just before the cut is served from the cache");
    served += 1;
    assert!(flush.is_err(), "the usage flush cannot reach the database: {flush:?}");
    // The database has now been out of reach for the pool's 10 s: past the
    // cache's one-second bound, within the 30 s stale window. The key is
    // served from the cache (without waiting for the pool again); one never
    // verified still is not.
    for _ in 0..3 {
        assert_eq!(call(&app, "/api/v1/auth/test", &used).await.status(), StatusCode::OK, "stale window");
        served += 1;
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = call(&app, "/api/v1/auth/test", &used).await;
        match res.status() {
            StatusCode::OK => {
                served += 1;
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => assert_unavailable(res, "recovering").await,
            other => panic!("while recovering: {other}"),
        }
        assert!(Instant::now() < deadline, "the server did not recover within 60 s of the restore");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..4 {
        assert_eq!(call(&app, "/api/v1/auth/test", &used).await.status(), StatusCode::OK);
        served += 1;
    }
    assert_eq!(call(&app, "/api/v1/auth/test", &fresh).await.status(), StatusCode::OK);
    let token = machine.post(app.url("/oauth/token")).form(&grant).send().await.unwrap();
    assert_eq!(token.status(), StatusCode::OK);

    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = app.try_flush_usage().await {
        assert!(Instant::now() < deadline, "the usage flush still fails 60 s after the restore: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recorded_usage(&app.db(), &used_id).await, served, "every 200 counted once");
    assert_eq!(recorded_usage(&app.db(), &fresh_id).await, 1, "the 503 is not counted, the 200 is");
}

/// Runs `latchkey ARGS` with only `envs` for configuration; returns stdout
/// (stderr too, for messages), after asserting success.
fn latchkey(envs: &[(&str, &str)], args: &[&str], stdin: &str) -> (String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .envs(envs.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "latchkey {args:?}: {stderr}");
    (stdout, stderr)
}

/// The binary under concurrent `auth/test` load gets SIGTERM: it stops
/// cleanly, and the usage it recorded equals the 200s it served.
async fn sigterm_under_load(database_url: Option<String>, redis: Option<(String, String)>) {
    use std::io::BufRead;
    let dir = temp_dir("sigterm");
    let data = dir.to_str().unwrap().to_owned();
    let mut envs = vec![
        ("LATCHKEY_DATA_DIR", data.as_str()),
        ("LATCHKEY_DEFAULT_PLAN", "unlimited"),
        ("LATCHKEY_USAGE_FLUSH_SECONDS", "1"),
    ];
    if let Some(url) = &database_url {
        envs.push(("DATABASE_URL", url.as_str()));
    }
    // With Redis the usage goes through it, and the stopping instance moves it.
    if let Some((url, prefix)) = &redis {
        envs.push(("REDIS_URL", url.as_str()));
        envs.push(("LATCHKEY_REDIS_PREFIX", prefix.as_str()));
    }
    latchkey(&envs, &["user", "create", "--email", "ops@acme.test", "--team", "Ops"], "ops password 12345\n");
    let (key, message) = latchkey(&envs, &["service-key", "create", "--name", "load", "--scopes", "introspect"], "");
    let key = key.trim().to_owned();
    // "created service key load (ID) with scopes …"
    let key_id = message.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(id, _)| id.to_owned()).unwrap();

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_") || k == "DATABASE_URL") {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .envs(envs.iter().copied())
        .env("LATCHKEY_BIND", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The log is read to its end (a full pipe would stall the server).
    let stdout = child.stdout.take().unwrap();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("port=") {
                let port: String = line[i + 5..].chars().take_while(char::is_ascii_digit).collect();
                let _ = port_tx.send(port);
            }
            lines.push(line);
        }
        lines
    });
    let port = port_rx.recv_timeout(Duration::from_secs(60)).expect("the port is logged");
    let url = format!("http://127.0.0.1:{port}/api/v1/auth/test");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the server never answered /healthz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, url, key, ok, other) = (client.clone(), url.clone(), key.clone(), ok.clone(), other.clone());
        load.push(tokio::spawn(async move {
            // Until the server is gone (a refused or dropped connection).
            while let Ok(res) = client.get(&url).header("X-API-Key", &key).send().await {
                match res.status() {
                    StatusCode::OK => ok.fetch_add(1, Ordering::SeqCst),
                    status => {
                        other.lock().unwrap().push(status);
                        0
                    }
                };
            }
        }));
    }
    // Long enough for periodic flushes to run under the load too: the stop
    // lands between two of them, with requests in flight.
    let started = Instant::now();
    while ok.load(Ordering::SeqCst) < 500 || started.elapsed() < Duration::from_millis(2500) {
        assert!(started.elapsed() < Duration::from_secs(60), "the load never reached 500 requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    for task in load {
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("the load ends with the server").unwrap();
    }
    let lines = log.join().unwrap();
    assert!(exited.success(), "{exited:?}: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("flushed key usage at shutdown")), "{lines:#?}");
    let other = other.lock().unwrap().clone();
    assert!(!other.iter().any(|s| s.is_server_error() && *s != StatusCode::SERVICE_UNAVAILABLE), "{other:?}");

    let served = ok.load(Ordering::SeqCst) as i64;
    let url = latchkey::config::DatabaseUrl::parse(
        &database_url.unwrap_or_else(|| format!("sqlite://{}", dir.join("latchkey.db").display())),
    )
    .unwrap();
    let recorded = tokio::task::spawn_blocking(move || {
        use diesel::prelude::*;
        use latchkey::store::schema::api_key_usage;
        let mut conn = latchkey::store::connect_as_is(&url).unwrap();
        let counts = api_key_usage::table
            .filter(api_key_usage::key_id.eq(&key_id))
            .select(api_key_usage::count)
            .load::<i64>(&mut conn)
            .unwrap();
        counts.iter().sum::<i64>()
    })
    .await
    .unwrap();
    assert_eq!(recorded, served, "every 200 served before the stop is counted once (others: {other:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_counts_every_request_served_on_sqlite() {
    sigterm_under_load(None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_counts_every_request_served_on_postgres() {
    let Some(url) = fresh_postgres() else { return };
    sigterm_under_load(Some(url), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_counts_every_request_served_on_postgres_with_redis() {
    let Some(url) = fresh_postgres() else { return };
    let Some(redis) = crate::helpers::fresh_redis() else { return };
    sigterm_under_load(Some(url), Some(redis)).await;
}
