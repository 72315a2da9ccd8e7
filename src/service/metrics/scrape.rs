//! What a scrape reads at the moment Prometheus asks: the database pool,
//! Redis, the password hashing queue, the usage flush and the process.
//!
//! Rules: nothing here runs on the request path; Redis is asked to answer
//! (as `/readyz` does) so that its gauge tells the truth on an idle
//! instance; a figure the platform cannot give (the process's memory
//! outside Linux) is left out rather than reported as zero.

use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge};

use super::{Metrics, Registrar};
use crate::service::cluster::{Redis, RedisStatus};
use crate::service::hashing::Hashing;
use crate::service::verify::Verifier;
use crate::store::Db;

/// What a scrape reads from the application.
pub struct Sources<'a> {
    pub db: &'a Db,
    pub redis: &'a Redis,
    pub hashing: &'a Hashing,
    pub verifier: &'a Verifier,
}

/// The handles set at scrape time.
pub(super) struct Gauges {
    hashing_threads: Gauge,
    hashing_busy: Gauge,
    hashing_waiting: Gauge,
    hashing_refused: Counter,
    flush_lag: Gauge,
    buffered_requests: Gauge,
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    db_reachable: Gauge,
    redis_configured: Gauge,
    redis_up: Gauge,
    resident_bytes: Gauge,
    open_fds: Gauge,
}

impl Gauges {
    pub(super) fn register(r: &Registrar) -> Self {
        let pool = |state| {
            let help = "Database connections of this instance's pool, by state (in_use, idle).";
            r.gauge("latchkey_db_pool_connections", help, &[("state", state)])
        };
        let gauges = Self {
            hashing_threads: r.gauge("latchkey_password_hash_threads", "Password hashing (argon2) threads.", &[]),
            hashing_busy: r.gauge(
                "latchkey_password_hash_busy",
                "Password hashing threads taken (hashing, or handed a hash).",
                &[],
            ),
            hashing_waiting: r.gauge(
                "latchkey_password_hash_queue_depth",
                "Callers waiting for a password hashing thread.",
                &[],
            ),
            hashing_refused: r.counter(
                "latchkey_password_hash_refused_total",
                "Callers refused (503) after waiting too long for a password hashing thread.",
                &[],
            ),
            flush_lag: r.gauge(
                "latchkey_usage_flush_lag_seconds",
                "Seconds since this instance last handed on its buffered key usage.",
                &[],
            ),
            buffered_requests: r.gauge(
                "latchkey_usage_buffered_requests",
                "Key requests counted in this instance's buffer and not yet handed on.",
                &[],
            ),
            pool_in_use: pool("in_use"),
            pool_idle: pool("idle"),
            pool_max: r.gauge("latchkey_db_pool_max_connections", "The pool's maximum size.", &[]),
            db_reachable: r.gauge(
                "latchkey_db_reachable",
                "1 while the database answers, 0 since a connection attempt failed.",
                &[],
            ),
            redis_configured: r.gauge("latchkey_redis_configured", "1 when REDIS_URL is set.", &[]),
            redis_up: r.gauge("latchkey_redis_up", "1 when Redis answered the scrape's PING, else 0.", &[]),
            resident_bytes: r.gauge("process_resident_memory_bytes", "Resident memory of the process.", &[]),
            open_fds: r.gauge("process_open_fds", "Open file descriptors of the process.", &[]),
        };
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        r.gauge("process_start_time_seconds", "When the process started (Unix seconds).", &[])
            .set(started.as_secs_f64());
        r.gauge("latchkey_build_info", "The running version (always 1).", &[("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        gauges
    }
}

impl Metrics {
    /// The metrics in Prometheus text format (`None` when disabled).
    pub async fn scrape(&self, sources: Sources<'_>) -> Option<String> {
        let exporter = self.0.exporter.as_ref()?;
        if sources.redis.is_configured() {
            // Its outcome is what `status` reports next.
            let _answered = sources.redis.ping().await;
        }
        self.read(&sources);
        Some(exporter.render())
    }

    fn read(&self, s: &Sources<'_>) {
        let g = &self.0.gauges;
        let hashing = s.hashing.load();
        g.hashing_threads.set(hashing.threads);
        g.hashing_busy.set(hashing.busy);
        g.hashing_waiting.set(hashing.waiting as f64);
        g.hashing_refused.absolute(hashing.refused);
        let flushed = self.0.usage_flushed_at_ms.load(Ordering::Relaxed);
        g.flush_lag.set((self.0.clock.now_ms() - flushed).max(0) as f64 / 1000.0);
        g.buffered_requests.set(s.verifier.unwritten().requests as f64);
        let pool = s.db.pool_usage();
        g.pool_in_use.set(pool.open.saturating_sub(pool.idle));
        g.pool_idle.set(pool.idle);
        g.pool_max.set(pool.max);
        g.db_reachable.set(if s.db.is_unreachable() { 0.0 } else { 1.0 });
        g.redis_configured.set(if s.redis.is_configured() { 1.0 } else { 0.0 });
        g.redis_up.set(if s.redis.status() == RedisStatus::Up { 1.0 } else { 0.0 });
        if let Some(bytes) = resident_bytes() {
            g.resident_bytes.set(bytes as f64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            g.open_fds.set(fds.count() as f64);
        }
    }
}

/// The process's resident memory (Linux: `VmRSS` of `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
