//! `spawn_app`, a cookie-jar client with redirects off, and page helpers.
//!
//! Rules: every test gets a database of its own, already migrated: a copy of
//! a SQLite file migrated once per run, or a PostgreSQL database cloned from a
//! template migrated once per run. A test reads and writes its database
//! through the server's own pool ([`TestApp::db`]). Background work the
//! server does on a timer (usage and audit flushes, the credential cache's
//! expiry) has a hook here that does it now, so no test sleeps for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use latchkey::config::Config;
use latchkey::startup::{Application, UsageFlusher};
use latchkey::web::State;
use reqwest::{Client, Response, StatusCode};

pub const OWNER_EMAIL: &str = "owner@acme.test";
pub const OWNER_PASSWORD: &str = "owner password 123";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body on each backend: `both!(name)` makes `name::sqlite` and
/// `name::postgres` from `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                    super::$name(app).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                    super::$name(app).await;
                }
            }
        }
    };
}

/// `both!` for an app with `extra` settings: `both_with!(name, &[(key, value)])`.
#[macro_export]
macro_rules! both_with {
    ($name:ident, $extra:expr) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                if let Some(app) = $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $extra).await {
                    super::$name(app).await;
                }
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(app) = $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $extra).await {
                    super::$name(app).await;
                }
            }
        }
    };
}

pub struct TestApp {
    pub address: String,
    pub setup_token: Option<String>,
    pub client: Client,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// `http://host:port` of the `/metrics` listener, when `LATCHKEY_METRICS_BIND` is set.
    pub metrics_address: Option<String>,
    state: State,
    flusher: UsageFlusher,
    /// Stops this server (see [`TestApp::stop`]).
    server: actix_web::dev::ServerHandle,
    running: std::sync::Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>>,
}

/// Says loudly, once per kind and past the test harness's output capture, that
/// tests were skipped.
pub fn skipped(what: &str) {
    use std::io::Write;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap();
    if !said.iter().any(|s| s == what) {
        said.push(what.to_owned());
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {what} ***");
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn random_suffix() -> String {
    latchkey::service::crypto::random_base62(12).unwrap().to_lowercase()
}

/// A new PostgreSQL database on the server named by `LATCHKEY_TEST_DATABASE_URL`,
/// migrated (a clone of this run's template).
pub fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else {
        if in_ci() {
            panic!("LATCHKEY_TEST_DATABASE_URL is not set: PostgreSQL tests are mandatory in CI");
        }
        skipped("PostgreSQL tests: set LATCHKEY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run them");
        return None;
    };
    let template = postgres_template(&base);
    let name = format!("latchkey_test_{}", random_suffix());
    admin_connection(&base).batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).unwrap();
    Some(database_url_named(&base, &name))
}

fn admin_connection(base: &str) -> diesel::PgConnection {
    diesel::PgConnection::establish(base).unwrap_or_else(|e| panic!("connecting to LATCHKEY_TEST_DATABASE_URL: {e}"))
}

/// The URL of database `name` on the server of `base`. Without TLS unless the
/// base asks for it: the test process exits while pools may still be opening
/// connections in the background, and libpq's TLS setup would then race
/// OpenSSL's exit-time cleanup (a crash at exit, about one run in five).
fn database_url_named(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').map_or((base, None), |(u, q)| (u, Some(q)));
    let (prefix, _) = url.rsplit_once('/').expect("database URL ends with /dbname");
    format!("{prefix}/{name}?{}", query.unwrap_or("sslmode=disable"))
}

/// This run's migrated PostgreSQL template (named per run, so runs side by
/// side never clone a template another run is still migrating).
fn postgres_template(base: &str) -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = format!("latchkey_template_{}", random_suffix());
        admin_connection(base).batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = latchkey::config::DatabaseUrl::parse(&database_url_named(base, &name)).unwrap();
        // Migrated, then closed: a template with a session open cannot be cloned.
        drop(latchkey::store::connect_once(&url).unwrap());
        name
    })
}

/// This run's migrated SQLite file, in rollback-journal mode so that the one
/// file holds everything (the server turns WAL on again in each copy).
fn sqlite_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("latchkey-template-{}", random_suffix())).join("template.db");
        let url = latchkey::config::DatabaseUrl::Sqlite(path.clone());
        let mut conn = latchkey::store::connect_once(&url).unwrap();
        conn.batch_execute("PRAGMA journal_mode = DELETE").unwrap();
        drop(conn);
        path
    })
}

/// A new migrated SQLite file in `data_dir`.
fn fresh_sqlite(data_dir: &Path) -> String {
    let path = data_dir.join("latchkey.db");
    std::fs::copy(sqlite_template(), &path).unwrap();
    format!("sqlite://{}", path.display())
}

/// The server's log: with `TEST_LOG` set, written to stdout as it happens;
/// otherwise captured with the output of the test that started the server
/// (the harness captures the threads a test starts, the server's workers and
/// its blocking pool included) and printed only if that test fails.
/// `LATCHKEY_LOG` filters it as it does the server's.
pub fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let log = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
        let _ = match std::env::var_os("TEST_LOG").is_some_and(|v| !v.is_empty()) {
            true => log.with_writer(std::io::stdout).try_init(),
            false => log.with_ansi(false).with_test_writer().try_init(),
        };
    });
}

/// The server secret every test app uses.
pub const TEST_SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

/// An operator service key with `scopes`, made as `latchkey service-key create` does.
pub fn service_key(app: &TestApp, scopes: &[&str]) -> String {
    let hasher = latchkey::service::crypto::Keys::derive(TEST_SECRET.as_bytes());
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    app.db()
        .run_sync(|c| latchkey::service::keys::create_service_key(c, &hasher, "lk", "partner", &scopes))
        .unwrap()
        .1
        .expose()
        .to_owned()
}

pub fn test_config(data_dir: &std::path::Path, database_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut values = BTreeMap::from([
        ("LATCHKEY_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("LATCHKEY_DATA_DIR".to_owned(), data_dir.display().to_string()),
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("LATCHKEY_SECRET".to_owned(), TEST_SECRET.to_owned()),
        // Tests that fire many sign-ins at once check throttles, not the
        // hashing queue: on a loaded machine 1.5 s is not enough for all of
        // them (tests/it/login_flood.rs sets its own short wait).
        ("LATCHKEY_PASSWORD_WAIT_MS".to_owned(), "60000".to_owned()),
    ]);
    for (k, v) in extra {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_values(&values).unwrap()
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    init_test_log();
    let data_dir = std::env::temp_dir().join(format!("latchkey-test-{}", random_suffix()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let database_url = match backend {
        Backend::Sqlite => fresh_sqlite(&data_dir),
        Backend::Postgres => fresh_postgres()?,
    };
    Some(serve(&data_dir, &database_url, extra).await)
}

/// The Redis of `LATCHKEY_TEST_REDIS_URL` and a prefix no other test uses, or
/// `None` (skipped loudly; mandatory in CI).
pub fn fresh_redis() -> Option<(String, String)> {
    let Ok(url) = std::env::var("LATCHKEY_TEST_REDIS_URL") else {
        if in_ci() {
            panic!("LATCHKEY_TEST_REDIS_URL is not set: Redis tests are mandatory in CI");
        }
        skipped("Redis tests: set LATCHKEY_TEST_REDIS_URL=redis://127.0.0.1:6379/0 to run them");
        return None;
    };
    Some((url, format!("latchkey-test-{}:", random_suffix())))
}

/// `n` instances of the server on one fresh PostgreSQL database, sharing one
/// fresh Redis prefix (`None` when PostgreSQL or Redis is not configured).
/// Each has its own caches, counters and workers, as separate processes would.
pub async fn spawn_instances(n: usize, extra: &[(&str, &str)]) -> Option<Vec<TestApp>> {
    init_test_log();
    let database_url = fresh_postgres()?;
    let (redis_url, prefix) = fresh_redis()?;
    let mut settings = vec![("REDIS_URL", redis_url.as_str()), ("LATCHKEY_REDIS_PREFIX", prefix.as_str())];
    settings.extend_from_slice(extra);
    let mut apps = Vec::with_capacity(n);
    for _ in 0..n {
        let data_dir = std::env::temp_dir().join(format!("latchkey-test-{}", random_suffix()));
        std::fs::create_dir_all(&data_dir).unwrap();
        apps.push(serve(&data_dir, &database_url, &settings).await);
    }
    Some(apps)
}

/// A server on an existing database (e.g. a restored backup), with the test
/// secret unless `extra` names another.
pub async fn serve(data_dir: &Path, database_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let config = test_config(data_dir, database_url, extra);
    let app = Application::build(config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (setup_token, state, flusher, server) =
        (app.setup_token(), app.state(), app.usage_flusher(), app.server_handle());
    let metrics_address = app.metrics_address().map(|a| format!("http://{a}"));
    let running = std::sync::Arc::new(tokio::sync::Mutex::new(Some(tokio::spawn(app.run_until_stopped()))));
    let (database_url, data_dir) = (database_url.to_owned(), data_dir.to_owned());
    TestApp {
        address,
        setup_token,
        client: new_client(),
        database_url,
        data_dir,
        metrics_address,
        state,
        flusher,
        server,
        running,
    }
}

pub fn new_client() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The value of `name="csrf_token"` on a page.
pub fn csrf_from(html: &str) -> String {
    attr_after(html, r#"name="csrf_token" value=""#).expect("page has a CSRF token")
}

/// The text after `marker` up to the next `"` or `<`.
pub fn attr_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let rest = &html[start..];
    let end = rest.find(['"', '<'])?;
    Some(rest[..end].to_owned())
}

pub fn location(res: &Response) -> String {
    res.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// POSTs a form with the CSRF token found on `page` added.
    pub async fn post_form(&self, page: &str, path: &str, fields: &[(&str, &str)]) -> Response {
        let csrf = csrf_from(&self.get_html(page).await);
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &csrf));
        self.client.post(self.url(path)).form(&form).send().await.unwrap()
    }

    /// First-run setup of team "Acme" with the default owner.
    /// Changes the signed-in user's password on the security page.
    pub async fn change_password(&self, current: &str, new: &str) -> Response {
        let fields = [("current_password", current), ("new_password", new)];
        self.post_form("/settings/security", "/settings/security/password", &fields).await
    }

    /// Turns two-factor sign-in off on the security page.
    pub async fn disable_totp(&self, password: &str, code: &str) -> Response {
        self.post_form(
            "/settings/security",
            "/settings/security/totp/disable",
            &[("password", password), ("code", code)],
        )
        .await
    }

    pub async fn setup_owner(&self) {
        let token = self.setup_token.clone().expect("fresh app has a setup token");
        let page = format!("/setup?token={token}");
        let res = self
            .post_form(
                &page,
                "/setup",
                &[("token", &token), ("team_name", "Acme"), ("email", OWNER_EMAIL), ("password", OWNER_PASSWORD)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_form("/login", "/login", &[("email", email), ("password", password)]).await
    }

    /// Setup plus a signed-in owner.
    pub async fn owner_session(&self) {
        self.setup_owner().await;
        let res = self.login(OWNER_EMAIL, OWNER_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }

    /// Invites `email` as `role` and returns the invite link's path.
    pub async fn invite(&self, email: &str, role: &str) -> String {
        let res = self.post_form("/settings/team", "/settings/team/invites", &[("email", email), ("role", role)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        let html = res.text().await.unwrap();
        let link = attr_after(&html, r#"<code id="invite-link">"#).expect("invite link shown");
        link[link.find("/invite/").unwrap()..].to_owned()
    }

    /// A second browser: a fresh cookie jar on the same server.
    pub fn other_client(&self) -> TestApp {
        TestApp {
            address: self.address.clone(),
            setup_token: None,
            client: new_client(),
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            metrics_address: self.metrics_address.clone(),
            state: self.state.clone(),
            flusher: self.flusher.clone(),
            server: self.server.clone(),
            running: self.running.clone(),
        }
    }

    /// Stops the server as SIGTERM does (in-flight work finishes, buffered
    /// usage is written) and waits until it has stopped.
    pub async fn stop(&self) {
        self.server.stop(true).await;
        if let Some(running) = self.running.lock().await.take() {
            running.await.unwrap().unwrap();
        }
    }

    /// Runs one webhook delivery pass now, as each instance's timer does
    /// (whose passes stop from then on: the test drives delivery); returns
    /// the attempts made.
    pub async fn deliver_webhooks(&self) -> usize {
        self.state.webhooks.hold_timer();
        self.state.webhooks.run_once(&self.state.notifier).await.unwrap()
    }

    /// [`deliver_webhooks`](Self::deliver_webhooks), with the notices it sent.
    pub async fn deliver_webhooks_recorded(&self) -> (usize, Vec<latchkey::service::notify::Notice>) {
        let recorder = std::sync::Arc::new(latchkey::service::notify::Recorder::default());
        let notifier = self.state.notifier.clone().with_channel(recorder.clone());
        self.state.webhooks.hold_timer();
        let n = self.state.webhooks.run_once(&notifier).await.unwrap();
        (n, recorder.notices())
    }

    /// The same browser (cookie jar) talking to another instance `other`
    /// (cookies are per host, not per port, as behind one load balancer).
    pub fn on(&self, other: &TestApp) -> TestApp {
        TestApp { client: self.client.clone(), setup_token: None, ..other.other_client() }
    }

    /// The test's database, through the server's own pool (to check or
    /// arrange what is stored).
    pub fn db(&self) -> latchkey::store::Db {
        self.state.db.clone()
    }

    /// Writes the buffered key usage and audit events now, as the server's
    /// periodic flush does (and after any flush already under way).
    pub async fn flush_usage(&self) {
        self.flusher.flush().await.unwrap();
    }

    /// The server's usage flusher, to run its periodic flush (`tick`) or
    /// its shutdown flush (`at_shutdown`) now.
    pub fn usage_flusher(&self) -> UsageFlusher {
        self.flusher.clone()
    }

    /// Like [`flush_usage`](Self::flush_usage), for a flush that may fail.
    pub async fn try_flush_usage(&self) -> latchkey::service::Result<usize> {
        self.flusher.flush().await
    }

    /// The clock every service of this server reads: advance it instead of
    /// sleeping past an expiry, a grace period or a window.
    pub fn clock(&self) -> latchkey::service::clock::Clock {
        self.state.clock.clone()
    }

    /// Sends the expiry reminders due at the test clock's now, as the
    /// server's periodic task does; returns how many this call claimed.
    pub async fn run_reminders(&self) -> usize {
        self.state.reminder_service().remind_expiring().await.unwrap()
    }

    /// [`run_reminders`](Self::run_reminders), with the notices it sent.
    pub async fn run_reminders_recorded(&self) -> (usize, Vec<latchkey::service::notify::Notice>) {
        let recorder = std::sync::Arc::new(latchkey::service::notify::Recorder::default());
        let notifier = self.state.notifier.clone().with_channel(recorder.clone());
        let (db, clock, prefix) = (&self.state.db, &self.state.clock, &self.state.config.api_key_prefix);
        let n = latchkey::service::reminders::remind_expiring(db, clock, &notifier, prefix).await.unwrap();
        (n, recorder.notices())
    }

    /// The server's shared state, to call a service directly (what the
    /// periodic task does, say).
    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// This server's handle on the shared Redis (to ask it to answer now,
    /// ending an outage without waiting out its hold-off).
    pub fn redis(&self) -> std::sync::Arc<latchkey::service::cluster::Redis> {
        self.state.redis.clone()
    }

    /// Takes every password hashing thread of this server until the guard is
    /// dropped: sign-ins meanwhile wait, then get 503.
    pub async fn hold_password_threads(&self) -> latchkey::service::hashing::HeldThreads {
        self.state.hashing.hold_all().await.unwrap()
    }

    /// Forgets every verified credential the server holds in its cache, as
    /// the cache's one-second bound does: the next request reads the database.
    pub fn forget_cached_credentials(&self) {
        self.state.verifier.invalidate_all();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private `redis-server`, killed when dropped (also when a test panics).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// `None` (skipped loudly; mandatory in CI) when `redis-server` cannot be started.
    pub async fn start() -> Option<Self> {
        let mut redis = Self { port: free_port(), child: None };
        if !redis.restart().await {
            assert!(!in_ci(), "redis-server is needed for the outage test in CI");
            skipped("Redis outage test: redis-server is not installed");
            return None;
        }
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server on its port; waits (bounded) until it accepts.
    pub async fn restart(&mut self) -> bool {
        let spawned = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = spawned else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many failed sign-ins the audit log holds.
pub fn login_failures(app: &TestApp) -> usize {
    app.db()
        .run_sync(|c| {
            latchkey::store::models::AuditEvent::recent_by_action(c, "login.failed", 10_000)
                .map_err(latchkey::store::StoreError::from)
        })
        .unwrap()
        .len()
}

/// Sends the form of `page` to `path` twice with the same CSRF and
/// `submission` tokens, as a browser without JavaScript does when the page
/// its first answer showed is reloaded. Returns both answers.
pub async fn submit_twice(app: &TestApp, page: &str, path: &str, fields: &[(&str, &str)]) -> (Response, Response) {
    let html = app.get_html(page).await;
    let submission = attr_after(&html, r#"name="submission" value=""#).expect("the form carries a submission token");
    let csrf = csrf_from(&html);
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &csrf), ("submission", &submission)];
    form.extend_from_slice(fields);
    let first = app.client.post(app.url(path)).form(&form).send().await.unwrap();
    let again = app.client.post(app.url(path)).form(&form).send().await.unwrap();
    (first, again)
}
