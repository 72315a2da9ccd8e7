//! Readiness: whether this instance can serve, as a load balancer asks, and
//! what it depends on.
//!
//! Rules: ready means the database answers a trivial query now; nothing is
//! cached and nothing is written. Redis and the change feed are reported but
//! never make an instance unready: without Redis it limits in process, and
//! without the feed its cache falls back to its one-second bound.

use std::time::Duration;

use diesel::connection::SimpleConnection;

use super::cluster::{Redis, RedisStatus};
use super::verify::Verifier;
use crate::store::{Db, StoreError};

/// Whether the database answers.
pub async fn database_answers(db: &Db) -> Result<(), StoreError> {
    db.run(|conn| conn.batch_execute("SELECT 1").map_err(StoreError::from)).await
}

/// What `/readyz` reports.
pub struct Readiness {
    pub database: Result<(), StoreError>,
    pub redis: RedisStatus,
    pub feed_read_ago: Option<Duration>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database.is_ok()
    }

    /// One line per part, first the verdict (`ready` or `not ready`).
    pub fn detail(&self) -> String {
        let database = match &self.database {
            Ok(()) => "ok".to_owned(),
            Err(_) => "unreachable".to_owned(),
        };
        let redis = match &self.redis {
            RedisStatus::Off => "off (limits and throttles are counted in this process)".to_owned(),
            RedisStatus::Up => "ok".to_owned(),
            RedisStatus::Down { since, .. } => {
                format!(
                    "down for {} s (limits and throttles are counted in this process until it answers)",
                    crate::store::now() - since
                )
            }
        };
        let feed = match self.feed_read_ago {
            Some(ago) if ago < Duration::from_secs(2) => format!("read {} ms ago", ago.as_millis()),
            Some(ago) => {
                format!("last read {} s ago (cached credentials are read again after one second)", ago.as_secs())
            }
            None => "not read yet".to_owned(),
        };
        let verdict = if self.is_ready() { "ready" } else { "not ready" };
        format!("{verdict}\ndatabase: {database}\nredis: {redis}\nchange feed: {feed}\n")
    }
}

/// Checks the database and Redis now (a Redis that answers again ends its
/// outage here, as any call would) and reads the change feed's state.
pub async fn readiness(db: &Db, redis: &Redis, verifier: &Verifier) -> Readiness {
    if redis.is_configured() {
        let _answers = redis.ping().await;
    }
    Readiness { database: database_answers(db).await, redis: redis.status(), feed_read_ago: verifier.feed_read_ago() }
}
