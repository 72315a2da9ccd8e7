//! Builds the application from a configuration: database, state, middleware,
//! routes and the listener. Tests bind port 0 through the same path.
//!
//! Rules: background work (the usage flush, the session sweep, the expiry
//! reminders) runs on its own timer and logs a failure with its whole cause
//! chain, then tries again on the next tick; flushes never overlap, so one that returns has handed on
//! everything buffered before it began (to Redis or the database, see
//! `service::usage`), and one that fails keeps what it took for the next. At
//! shutdown the flush is tried a few times with a short backoff; if it still
//! fails, an error names the counts left unwritten. With Redis, the instance
//! then moves what every instance handed over to the database unless another
//! instance is moving it (waiting about two seconds for it), so the database
//! holds every count once the last instance has stopped. Prometheus metrics
//! are served by a listener of their own on `metrics_bind` only (never on the
//! public port), stopped after the public server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use anyhow::Context;

use crate::config::Config;
use crate::service::cluster::Redis;
use crate::service::usage::{Moved, Relay, When};
use crate::service::{accounts, crypto};
use crate::store::models::SessionRow;
use crate::store::{Db, StoreError, now};
use crate::web::session_store::DbSessionStore;
use crate::web::{self as routes_mod, AppState, State, csrf, middleware};

pub struct Application {
    port: u16,
    server: Server,
    state: State,
    flusher: UsageFlusher,
    metrics: Option<MetricsListener>,
    webhooks: tokio::task::JoinHandle<()>,
}

/// The `/metrics` listener: where it is bound, and how to stop it.
struct MetricsListener {
    address: SocketAddr,
    handle: ServerHandle,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database)?;
        let setup_token = match db.run(accounts::setup_open).await? {
            true => Some(crypto::random_base62(32).context("drawing the setup token")?),
            false => None,
        };
        let listener = TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let mut config = config;
        if config.public_url.ends_with(":0") {
            // Bound to any free port: the URL is only known now.
            config.public_url = format!("http://{}", listener.local_addr()?);
        }
        if let Some(token) = &setup_token {
            tracing::info!("no user exists yet: finish setup at {}/setup?token={token}", config.public_url);
        }
        let redis = match &config.redis_url {
            Some(url) => Arc::new(Redis::connect(url, &config.redis_prefix)?),
            None => Arc::new(Redis::off()),
        };
        let mut state = AppState::new(config, db, setup_token, redis)
            .context("starting the password hashing threads and the webhook client")?;
        state.notifier =
            crate::service::email::outbox::notifier(&state.config, &state.keys).context("setting up email")?;
        let state = actix_web::web::Data::new(state);
        let keys = state.keys.clone();
        let resealed = state.db.run(move |conn| crate::service::totp::reseal_unbound(conn, &keys)).await?;
        if resealed > 0 {
            tracing::info!(users = resealed, "bound the TOTP secrets of earlier versions to their users");
        }
        let server = serve(listener, state.clone())?;
        let metrics = match state.config.metrics_bind {
            Some(bind) => Some(serve_metrics(bind, state.clone())?),
            None => None,
        };
        spawn_session_sweeper(state.db.clone());
        spawn_wal_checkpointer(state.db.clone());
        let (db, verifier, redis) = (state.db.clone(), state.verifier.clone(), state.redis.clone());
        tokio::spawn(crate::service::changes::follow(db, verifier.clone()));
        tokio::spawn(crate::service::changes::publish(redis.clone(), verifier.clone()));
        tokio::spawn(crate::service::changes::listen(redis, verifier));
        let every = Duration::from_secs(state.config.usage_flush_seconds.unsigned_abs());
        let flusher = UsageFlusher::new(state.clone());
        spawn_usage_flusher(flusher.clone(), every);
        spawn_reminders(state.clone(), Duration::from_secs(state.config.reminder_seconds.unsigned_abs()));
        let webhooks = spawn_webhook_dispatcher(state.clone(), WEBHOOK_POLL);
        Ok(Self { port, server, state, flusher, metrics, webhooks })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where `/metrics` is served, when `metrics_bind` is set (tests bind port 0).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.address)
    }

    /// The clock every service of this instance reads (tests move it).
    pub fn clock(&self) -> crate::service::clock::Clock {
        self.state.clock.clone()
    }

    /// The shared state, for tests that drive a service directly.
    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// What writes buffered key usage and audit events (tests flush now
    /// instead of waiting for the timer).
    pub fn usage_flusher(&self) -> UsageFlusher {
        self.flusher.clone()
    }

    /// The first-run token while no user exists (tests read it here; people read the log).
    pub fn setup_token(&self) -> Option<String> {
        self.state.setup_token.lock().ok().and_then(|t| t.clone())
    }

    /// What stops the server (tests stop one to start another on its database).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    /// Buffered key usage is written once more after the last request; the
    /// webhook delivery under way finishes, and no other starts; email still
    /// queued gets a few seconds to go out.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.state.webhooks.stop();
        if let Err(e) = self.webhooks.await {
            tracing::warn!(error = %e, "the webhook dispatcher stopped abnormally");
        }
        self.flusher.at_shutdown().await;
        let unsent = self.state.notifier.drain(SHUTDOWN_EMAIL_WAIT).await;
        if unsent > 0 {
            tracing::warn!(emails = unsent, "stopped with emails not sent yet");
        }
        if let Some(metrics) = self.metrics {
            metrics.handle.stop(true).await;
        }
        served
    }
}

fn serve(listener: TcpListener, state: State) -> std::io::Result<Server> {
    let config = &state.config;
    let https = config.is_https();
    let key = Key::derive_from(state.keys.cookie_master());
    let idle = actix_web::cookie::time::Duration::minutes(config.session_idle_minutes);
    let store = DbSessionStore::new(state.db.clone(), state.keys.clone());
    let api_document = actix_web::web::Data::new(
        routes_mod::openapi::Document::build(config).map_err(|e| std::io::Error::other(format!("{e:#}")))?,
    );
    let server = HttpServer::new(move || {
        let session = SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_name("latchkey_session".into())
            .cookie_secure(https)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .session_lifecycle(
                BrowserSession::default()
                    .state_ttl(idle)
                    .state_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
            )
            .build();
        App::new()
            .app_data(state.clone())
            .app_data(api_document.clone())
            .app_data(web_form_config())
            .configure(routes_mod::routes)
            .default_service(actix_web::web::to(routes_mod::openapi::not_routed))
            .wrap(from_fn(csrf::verify))
            .wrap(session)
            .wrap(from_fn(middleware::render_errors))
            .wrap(from_fn(routes_mod::api_auth::rate_headers))
            .wrap(middleware::security_headers(https))
            .wrap(from_fn(middleware::request_log))
    })
    .listen(listener)?
    .shutdown_timeout(30)
    .run();
    Ok(server)
}

/// Serves `/metrics` on `bind` with one worker, apart from the public port;
/// it answers no signal of its own (the public server's end stops it).
fn serve_metrics(bind: SocketAddr, state: State) -> anyhow::Result<MetricsListener> {
    let listener = TcpListener::bind(bind).with_context(|| format!("binding the metrics listener {bind}"))?;
    let address = listener.local_addr()?;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(routes_mod::metrics::routes)
            .default_service(actix_web::web::to(actix_web::HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tick.tick().await;
            state.metrics.run_upkeep();
        }
    });
    tracing::info!("serving Prometheus metrics at http://{address}/metrics");
    Ok(MetricsListener { address, handle })
}

/// How often recorded histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

fn web_form_config() -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default().limit(64 * 1024)
}

/// How long queued email may delay a shutdown.
const SHUTDOWN_EMAIL_WAIT: Duration = Duration::from_secs(5);

/// How often the shutdown flush is tried, and the wait before the first retry
/// (doubled after each): about 1.5 s in all before giving up.
const SHUTDOWN_FLUSH_TRIES: u32 = 4;
const SHUTDOWN_FLUSH_BACKOFF: Duration = Duration::from_millis(200);

/// How often a shutdown move that failed is tried again, and the wait between tries.
const SHUTDOWN_MOVE_TRIES: u32 = 3;
const SHUTDOWN_MOVE_BACKOFF: Duration = Duration::from_millis(300);

/// Hands on buffered key usage and writes audit events, one flush at a time.
#[derive(Clone)]
pub struct UsageFlusher {
    state: State,
    relay: Arc<Relay>,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl UsageFlusher {
    fn new(state: State) -> Self {
        let (relay, one_at_a_time) = (state.usage_relay.clone(), state.usage_flush.clone());
        Self { state, relay, one_at_a_time }
    }

    /// Hands on usage, writes the buffered audit events and the summaries
    /// of ended intervals, then moves what every instance handed to Redis
    /// into the database (waiting briefly if another instance is moving it):
    /// when it returns, the database holds every count handed over before.
    /// Returns the keys whose usage this instance handed on.
    pub async fn flush(&self) -> crate::service::Result<usize> {
        self.flush_then_move(When::Now).await
    }

    /// The periodic flush: like [`flush`](Self::flush), but moves only if no
    /// instance has moved within this interval (one move per interval for
    /// the whole deployment).
    pub async fn tick(&self) -> crate::service::Result<usize> {
        self.flush_then_move(When::Due).await
    }

    async fn flush_then_move(&self, when: When) -> crate::service::Result<usize> {
        let _running = self.one_at_a_time.lock().await;
        let n = self.state.verifier.flush(&self.state.db, &self.relay).await?;
        self.relay.move_to_db(&self.state.db, when).await?;
        Ok(n)
    }

    /// What happens at shutdown (after the last request): usage and every
    /// buffered audit event and summary, tried up to `SHUTDOWN_FLUSH_TRIES`
    /// times, then (with Redis) the move of what was handed over. Logs the
    /// outcome, and on giving up the requests, keys and audit events left
    /// unwritten.
    pub async fn at_shutdown(&self) {
        let _running = self.one_at_a_time.lock().await;
        self.flush_all().await;
        if self.state.redis.is_configured() {
            self.move_at_shutdown().await;
        }
    }

    async fn flush_all(&self) {
        let verifier = &self.state.verifier;
        let mut backoff = SHUTDOWN_FLUSH_BACKOFF;
        for attempt in 1..=SHUTDOWN_FLUSH_TRIES {
            match verifier.flush_all(&self.state.db, &self.relay).await {
                Ok(n) => {
                    tracing::info!(keys = n, "flushed key usage at shutdown");
                    return;
                }
                Err(e) if attempt < SHUTDOWN_FLUSH_TRIES => {
                    tracing::warn!(attempt, error = %chain(e), "flushing key usage at shutdown failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    let left = verifier.unwritten();
                    tracing::error!(
                        requests = left.requests,
                        keys = left.keys,
                        audit_events = left.audit_events,
                        attempts = SHUTDOWN_FLUSH_TRIES,
                        error = %chain(e),
                        "flushing key usage at shutdown failed; {} request counts of {} keys and {} audit events \
                         were not written",
                        left.requests,
                        left.keys,
                        left.audit_events,
                    );
                }
            }
        }
    }

    /// Moves what was handed over to Redis into the database; what it cannot
    /// move stays in Redis for the next instance that moves.
    async fn move_at_shutdown(&self) {
        for attempt in 1..=SHUTDOWN_MOVE_TRIES {
            match self.relay.move_to_db(&self.state.db, When::Now).await {
                Ok(Moved::Done { keys, requests }) => {
                    tracing::info!(keys, requests, "moved the usage handed to Redis into the database at shutdown");
                    return;
                }
                Ok(Moved::Busy | Moved::NotDue) => {
                    tracing::info!("another instance is moving the usage handed to Redis: it writes this one's too");
                    return;
                }
                Ok(Moved::Unavailable) => {
                    tracing::warn!(
                        "Redis did not answer at shutdown: usage handed to it earlier stays there until a running \
                         instance moves it"
                    );
                    return;
                }
                Err(e) if attempt < SHUTDOWN_MOVE_TRIES => {
                    tracing::warn!(attempt, error = %chain(e), "moving key usage at shutdown failed; trying again");
                    tokio::time::sleep(SHUTDOWN_MOVE_BACKOFF).await;
                }
                Err(e) => {
                    tracing::error!(
                        attempts = SHUTDOWN_MOVE_TRIES,
                        error = %chain(e),
                        "moving key usage at shutdown failed; it stays in Redis until a running instance moves it"
                    );
                }
            }
        }
    }
}

/// An error and its causes on one line, for the log.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// Hands on buffered key usage every few seconds.
fn spawn_usage_flusher(flusher: UsageFlusher, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = flusher.tick().await {
                tracing::warn!(error = %chain(e), "flushing key usage failed");
            }
        }
    });
}

/// Housekeeping, every `every` (the first one interval after start): sends
/// the expiry reminders due and the warnings about rotations whose old
/// secret is still busy near the end of its grace (every instance looks;
/// each is sent once, see `service::reminders`), and at most once an hour prunes usage
/// rows past what is kept (sightings beyond the last ten, hours older than
/// [`USAGE_HOURS_KEPT`]).
fn spawn_reminders(state: State, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            match state.reminder_service().remind_expiring().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reminders = n, "sent expiry reminders"),
                Err(e) => tracing::warn!(error = %chain(e), "sending expiry reminders failed"),
            }
            let at = state.clock.now();
            match state.key_service().warn_busy_rotations(at).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(warnings = n, "warned about old keys still busy near the end of their grace"),
                Err(e) => tracing::warn!(error = %chain(e), "warning about busy key rotations failed"),
            }
            match state.oauth_app_service().warn_busy_secret_rotations(at).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    warnings = n,
                    "warned about previous client secrets still busy near the end of their grace"
                ),
                Err(e) => tracing::warn!(error = %chain(e), "warning about busy client secret rotations failed"),
            }
            if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                pruned = Some(std::time::Instant::now());
                let before = state.clock.now().div_euclid(3600) - USAGE_HOURS_KEPT;
                match crate::service::usage::prune(&state.db, before).await {
                    Ok(n) => tracing::debug!(rows = n, "pruned usage rows"),
                    Err(e) => tracing::warn!(error = %chain(e), "pruning usage rows failed"),
                }
            }
        }
    });
}

/// How often each instance looks for webhook deliveries due.
const WEBHOOK_POLL: Duration = Duration::from_secs(1);

/// Delivers the webhooks due, every `every`, until the dispatcher is stopped.
fn spawn_webhook_dispatcher(state: State, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !state.webhooks.is_stopping() {
            tick.tick().await;
            if state.webhooks.is_stopping() {
                break;
            }
            if state.webhooks.timer_held() {
                continue;
            }
            if let Err(e) = state.webhooks.run_once(&state.notifier).await {
                tracing::warn!(error = %chain(e), "delivering webhooks failed");
            }
        }
    })
}

/// Hours of per-hour usage kept (a rotation's grace is at most 7 days, plus
/// a 7-day extension).
const USAGE_HOURS_KEPT: i64 = 15 * 24;

/// SQLite: checkpoints the write-ahead log four times a second, off the
/// request path (see `Db::checkpoint`).
fn spawn_wal_checkpointer(db: Db) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut failing = false;
        loop {
            tick.tick().await;
            match db.checkpoint().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %chain(e), "checkpointing the SQLite write-ahead log failed");
                }
                Err(_) => {}
            }
        }
    });
}

/// Deletes expired sessions every ten minutes.
fn spawn_session_sweeper(db: Db) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let swept = db.run(|conn| SessionRow::delete_expired(conn, now()).map_err(StoreError::from)).await;
            if let Err(e) = swept {
                tracing::warn!(error = %chain(e), "sweeping expired sessions failed");
            }
        }
    });
}
