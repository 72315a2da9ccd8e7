//! What several instances share besides the database: Redis, when
//! `REDIS_URL` is set (plan limits, issuance limits, login throttles and the
//! invalidation channel). Without it every instance counts in process, as one
//! instance always does.
//!
//! Rules: every call has a short deadline ([`CALL_TIMEOUT`]); a failed call
//! marks Redis down (logged once per outage, shown by `/readyz`) and, for the
//! next [`RETRY_AFTER`], callers are told at once that it is down — they fall
//! back to their in-process counters — rather than each waiting out a
//! timeout; the first call after that tries again, and its success ends the
//! outage (logged). Every key and channel carries the deployment's prefix, so
//! several deployments can share one Redis. The connection manager reconnects
//! by itself; nothing here needs a restart after an outage.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long one Redis call may take before it counts as a failure.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long callers skip Redis after a failure before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What `/readyz` and `latchkey doctor` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisStatus {
    /// No `REDIS_URL`: everything is counted in process.
    Off,
    Up,
    /// Unix seconds since when, and the last error.
    Down {
        since: i64,
        error: String,
    },
}

#[derive(Default)]
struct Health {
    /// Since when (Unix seconds) and the last error, while down.
    down: Option<(i64, String)>,
    /// Calls skip Redis until then.
    hold_until: Option<Instant>,
}

struct Inner {
    client: redis::Client,
    manager: ConnectionManager,
    prefix: String,
    health: Mutex<Health>,
}

/// A handle on the shared Redis, or on nothing (one instance, or no
/// `REDIS_URL`). Cheap to share: keep one per process.
pub struct Redis {
    inner: Option<Inner>,
}

impl Redis {
    /// No shared store: every caller uses its in-process fallback.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// A lazily connected handle (starting never waits for Redis, and a
    /// Redis that is down at start is an outage like any other). Only a
    /// malformed URL is an error. Must be called inside a Tokio runtime.
    pub fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let client = redis::Client::open(url).context("REDIS_URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("setting up the Redis connection")?;
        Ok(Self { inner: Some(Inner { client, manager, prefix: prefix.to_owned(), health: Mutex::default() }) })
    }

    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// A key (or channel) name under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        let prefix = self.inner.as_ref().map_or("", |i| i.prefix.as_str());
        format!("{prefix}{name}")
    }

    /// The client, for connections of their own (a subscription).
    pub fn client(&self) -> Option<&redis::Client> {
        self.inner.as_ref().map(|i| &i.client)
    }

    pub fn status(&self) -> RedisStatus {
        let Some(inner) = &self.inner else { return RedisStatus::Off };
        match &lock(&inner.health).down {
            Some((since, error)) => RedisStatus::Down { since: *since, error: error.clone() },
            None => RedisStatus::Up,
        }
    }

    /// Runs one call on the shared connection: `None` when there is no Redis,
    /// when it is known to be down, or when this call fails (which marks it
    /// down). `what` names the call in the outage log line.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = self.inner.as_ref()?;
        {
            let health = lock(&inner.health);
            if health.hold_until.is_some_and(|t| Instant::now() < t) {
                return None;
            }
        }
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, f(inner.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", CALL_TIMEOUT.as_millis())),
        };
        let mut health = lock(&inner.health);
        match outcome {
            Ok(value) => {
                if let Some((since, _)) = health.down.take() {
                    let seconds = crate::store::now() - since;
                    tracing::info!(outage_seconds = seconds, "Redis answers again: shared limits and throttles resume");
                }
                health.hold_until = None;
                Some(value)
            }
            Err(error) => {
                if health.down.is_none() {
                    tracing::error!(
                        call = what,
                        error = %error,
                        "Redis is unreachable: limits and throttles are counted in process, and usage written to the database directly, until it answers again"
                    );
                    health.down = Some((crate::store::now(), error));
                } else if let Some(down) = health.down.as_mut() {
                    down.1 = error;
                }
                health.hold_until = Some(Instant::now() + RETRY_AFTER);
                None
            }
        }
    }

    /// Asks Redis to answer now, whatever the outage state (for `/readyz`
    /// and `latchkey doctor`); a success ends a recorded outage.
    pub async fn ping(&self) -> Result<(), String> {
        let Some(inner) = &self.inner else { return Err("not configured".into()) };
        lock(&inner.health).hold_until = None;
        let answered =
            self.call("PING", |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await;
        match answered {
            Some(_) => Ok(()),
            None => Err(match self.status() {
                RedisStatus::Down { error, .. } => error,
                _ => "no answer".into(),
            }),
        }
    }

    /// Publishes `message` on this deployment's `channel` (best effort: a
    /// subscriber that misses it catches up from the change feed).
    pub async fn publish(&self, channel: &str, message: &str) {
        let (channel, message) = (self.key(channel), message.to_owned());
        let _delivered = self
            .call("PUBLISH", |mut c| async move {
                redis::cmd("PUBLISH").arg(channel).arg(message).query_async::<i64>(&mut c).await
            })
            .await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
