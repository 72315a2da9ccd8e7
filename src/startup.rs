//! Builds the application from a configuration: database, state, middleware,
//! routes and the listener. Tests bind port 0 through the same path.
//!
//! Rules: background work (the usage flush, the session sweep) runs on its
//! own timer and logs a failure with its whole cause chain, then tries again
//! on the next tick; flushes never overlap, so one that returns has written
//! everything buffered before it began, and one that fails keeps what it took
//! for the next. At shutdown the flush is tried a few times with a short
//! backoff; if it still fails, an error names the counts left unwritten.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use anyhow::Context;

use crate::config::Config;
use crate::error::AppError;
use crate::service::cluster::Redis;
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
        let state = actix_web::web::Data::new(AppState::new(config, db, setup_token, redis));
        let keys = state.keys.clone();
        let resealed = state.db.run(move |conn| crate::service::totp::reseal_unbound(conn, &keys)).await?;
        if resealed > 0 {
            tracing::info!(users = resealed, "bound the TOTP secrets of earlier versions to their users");
        }
        let server = serve(listener, state.clone())?;
        spawn_session_sweeper(state.db.clone());
        let (db, verifier, redis) = (state.db.clone(), state.verifier.clone(), state.redis.clone());
        tokio::spawn(crate::service::changes::follow(db, verifier.clone()));
        tokio::spawn(crate::service::changes::publish(redis.clone(), verifier.clone()));
        tokio::spawn(crate::service::changes::listen(redis, verifier));
        let flusher = UsageFlusher::new(state.clone());
        spawn_usage_flusher(flusher.clone(), state.config.usage_flush_seconds);
        Ok(Self { port, server, state, flusher })
    }

    pub fn port(&self) -> u16 {
        self.port
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

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    /// Buffered key usage is written once more after the last request.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.flusher.flush_all().await;
        served
    }
}

fn serve(listener: TcpListener, state: State) -> std::io::Result<Server> {
    let config = &state.config;
    let https = config.is_https();
    let key = Key::derive_from(state.keys.cookie_master());
    let idle = actix_web::cookie::time::Duration::minutes(config.session_idle_minutes);
    let store = DbSessionStore::new(state.db.clone(), state.keys.clone());
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
            .app_data(web_form_config())
            .configure(routes_mod::routes)
            .default_service(actix_web::web::to(|| async { Err::<actix_web::HttpResponse, _>(AppError::NotFound) }))
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

fn web_form_config() -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default().limit(64 * 1024)
}

/// How often the shutdown flush is tried, and the wait before the first retry
/// (doubled after each): about 1.5 s in all before giving up.
const SHUTDOWN_FLUSH_TRIES: u32 = 4;
const SHUTDOWN_FLUSH_BACKOFF: Duration = Duration::from_millis(200);

/// Writes buffered key usage and audit events, one flush at a time.
#[derive(Clone)]
pub struct UsageFlusher {
    state: State,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl UsageFlusher {
    fn new(state: State) -> Self {
        Self { state, one_at_a_time: Arc::default() }
    }

    /// Usage, the buffered audit events and the summaries of ended intervals;
    /// returns the keys touched.
    pub async fn flush(&self) -> crate::service::Result<usize> {
        let _running = self.one_at_a_time.lock().await;
        self.state.verifier.flush(&self.state.db).await
    }

    /// At shutdown: usage, and every buffered audit event and summary, tried
    /// up to `SHUTDOWN_FLUSH_TRIES` times; logs the outcome, and on giving up
    /// the requests, keys and audit events left unwritten.
    async fn flush_all(&self) {
        let _running = self.one_at_a_time.lock().await;
        let verifier = &self.state.verifier;
        let mut backoff = SHUTDOWN_FLUSH_BACKOFF;
        for attempt in 1..=SHUTDOWN_FLUSH_TRIES {
            match verifier.flush_all(&self.state.db).await {
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
}

/// An error and its causes on one line, for the log.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// Writes buffered key usage every few seconds.
fn spawn_usage_flusher(flusher: UsageFlusher, every_secs: i64) {
    let every = Duration::from_secs(every_secs.unsigned_abs());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = flusher.flush().await {
                tracing::warn!(error = %chain(e), "flushing key usage failed");
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
