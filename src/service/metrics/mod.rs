//! Prometheus metrics of one instance, served apart from the public port
//! (see `startup`, `LATCHKEY_METRICS_BIND`).
//!
//! Rules: each application builds its own recorder — never a global one, so
//! that several applications in one process (the tests) never mix their
//! counts. Every series is registered once, at start, into arrays indexed by
//! closed label enums ([`labels`]): recording on the request path is an atomic
//! increment on a handle found by index — no map lookup, no lock, no
//! allocation, no label a caller can invent. Without a metrics listener every
//! handle is a no-op and nothing is timed. What describes shared state (the
//! database pool, Redis, the password hashing queue, the usage flush) is read
//! when Prometheus scrapes ([`scrape`]), never kept up to date on the way.

mod labels;
mod scrape;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use labels::{CacheResult, Grant, Kind, LoginOutcome, Outcome};
pub use scrape::Sources;

use super::clock::Clock;
use super::ratelimit::{PLANS, Plan};
use crate::domain::OAuthErrorCode;

/// The verification latency histogram's name and its bucket bounds
/// (seconds): a cached credential answers in microseconds, a database read
/// in a millisecond or more.
pub const VERIFY_SECONDS: &str = "latchkey_verification_duration_seconds";
const VERIFY_BUCKETS: [f64; 14] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

const OAUTH_ERRORS: usize = OAuthErrorCode::ALL.len();

/// The metrics of one application: cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Metrics(Arc<Handles>);

struct Handles {
    exporter: Option<PrometheusHandle>,
    /// By [`Outcome`], then [`Kind`].
    verifications: [[Counter; Kind::COUNT]; Outcome::COUNT],
    latency: [Histogram; Kind::COUNT],
    scope_denied: [Counter; Kind::COUNT],
    cache: [Counter; CacheResult::COUNT],
    /// By the plan's place in [`PLANS`].
    rate_limited: [Counter; PLANS.len()],
    tokens_issued: [Counter; Grant::COUNT],
    /// By the place of the code in [`OAuthErrorCode::ALL`].
    tokens_refused: [Counter; OAUTH_ERRORS],
    logins: [Counter; LoginOutcome::COUNT],
    usage_flush_failures: Counter,
    /// When the usage buffer was last handed on (service clock, Unix ms).
    usage_flushed_at_ms: AtomicI64,
    clock: Clock,
    gauges: scrape::Gauges,
}

impl Default for Metrics {
    /// Metrics that record nothing (no listener configured).
    fn default() -> Self {
        Self::build(None, Clock::system())
    }
}

impl Metrics {
    /// Metrics recorded for a listener when `enabled`, no-ops otherwise;
    /// the usage flush lag reads `clock`.
    pub fn new(enabled: bool, clock: Clock) -> Self {
        let recorder = enabled.then(|| {
            let builder = PrometheusBuilder::new();
            let matcher = Matcher::Full(VERIFY_SECONDS.to_owned());
            // Only an empty bucket list is refused; this one is not.
            let builder = match builder.set_buckets_for_metric(matcher, &VERIFY_BUCKETS) {
                Ok(with_buckets) => with_buckets,
                Err(_) => PrometheusBuilder::new(),
            };
            builder.build_recorder()
        });
        Self::build(recorder, clock)
    }

    fn build(recorder: Option<PrometheusRecorder>, clock: Clock) -> Self {
        let r = Registrar(recorder);
        let handles = Handles {
            verifications: std::array::from_fn(|o| {
                r.by_kind(
                    "latchkey_verifications_total",
                    "Credentials presented to the API and forward auth, by outcome and kind.",
                    &[("outcome", Outcome::ALL[o].label())],
                )
            }),
            latency: std::array::from_fn(|k| r.histogram(Kind::ALL[k].label())),
            scope_denied: r.by_kind(
                "latchkey_scope_denied_total",
                "Verified credentials refused by a route for lacking its scope (also counted as ok).",
                &[],
            ),
            cache: std::array::from_fn(|i| {
                let help = "Credential lookups by where the answer came from (hit, miss, stale).";
                r.counter("latchkey_credential_cache_total", help, &[("result", CacheResult::ALL[i].label())])
            }),
            rate_limited: std::array::from_fn(|i| {
                let help = "Requests refused by a team's plan limit, by plan.";
                r.counter("latchkey_rate_limited_total", help, &[("plan", PLANS[i].name)])
            }),
            tokens_issued: std::array::from_fn(|i| {
                let help = "OAuth tokens issued at /oauth/token, by grant.";
                r.counter("latchkey_oauth_tokens_issued_total", help, &[("grant", Grant::ALL[i].label())])
            }),
            tokens_refused: std::array::from_fn(|i| {
                let help = "Requests to /oauth/token that issued nothing, by OAuth error code.";
                r.counter("latchkey_oauth_token_errors_total", help, &[("error", OAuthErrorCode::ALL[i].as_str())])
            }),
            logins: std::array::from_fn(|i| {
                let help = "Sign-in steps (password, then second factor), by outcome.";
                r.counter("latchkey_logins_total", help, &[("outcome", LoginOutcome::ALL[i].label())])
            }),
            usage_flush_failures: r.counter(
                "latchkey_usage_flush_failures_total",
                "Flushes of the buffered key usage that failed (the batch is kept for the next).",
                &[],
            ),
            usage_flushed_at_ms: AtomicI64::new(clock.now_ms()),
            gauges: scrape::Gauges::register(&r),
            clock,
            exporter: r.0.as_ref().map(PrometheusRecorder::handle),
        };
        Self(Arc::new(handles))
    }

    /// Whether a listener serves these metrics.
    pub fn is_enabled(&self) -> bool {
        self.0.exporter.is_some()
    }

    /// The start of a timed verification (nothing is timed when disabled).
    pub fn start(&self) -> Option<Instant> {
        self.0.exporter.as_ref().map(|_| Instant::now())
    }

    /// A verification of `kind` ended with `outcome`, begun at `started`.
    pub fn verified(&self, kind: Kind, outcome: Outcome, started: Option<Instant>) {
        self.0.verifications[outcome.index()][kind.index()].increment(1);
        if let Some(started) = started {
            self.0.latency[kind.index()].record(started.elapsed().as_secs_f64());
        }
    }

    /// A verified credential lacked the scope its route needs.
    pub fn scope_denied(&self, kind: Kind) {
        self.0.scope_denied[kind.index()].increment(1);
    }

    pub fn cache(&self, result: CacheResult) {
        self.0.cache[result.index()].increment(1);
    }

    /// A request refused by its team's `plan`.
    pub fn rate_limited(&self, plan: Plan) {
        if let Some(i) = PLANS.iter().position(|p| p.name == plan.name) {
            self.0.rate_limited[i].increment(1);
        }
    }

    pub fn token_issued(&self, grant: Grant) {
        self.0.tokens_issued[grant.index()].increment(1);
    }

    pub fn token_refused(&self, error: OAuthErrorCode) {
        self.0.tokens_refused[error as usize].increment(1);
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.0.logins[outcome.index()].increment(1);
    }

    /// The usage buffer was handed on (to Redis or the database).
    pub fn usage_flushed(&self) {
        self.0.usage_flushed_at_ms.fetch_max(self.0.clock.now_ms(), Ordering::Relaxed);
    }

    pub fn usage_flush_failed(&self) {
        self.0.usage_flush_failures.increment(1);
    }

    /// Drains recorded histogram samples into their buckets (run every few
    /// seconds, so that memory stays bounded between scrapes).
    pub fn run_upkeep(&self) {
        if let Some(exporter) = &self.0.exporter {
            exporter.run_upkeep();
        }
    }
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Registers handles with the application's recorder, or hands out no-ops.
struct Registrar(Option<PrometheusRecorder>);

impl Registrar {
    fn counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        let Some(r) = &self.0 else { return Counter::noop() };
        r.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
        r.register_counter(&key(name, labels), &METADATA)
    }

    /// One counter per credential [`Kind`], each also labelled `extra`.
    fn by_kind(
        &self,
        name: &'static str,
        help: &'static str,
        extra: &[(&'static str, &'static str)],
    ) -> [Counter; Kind::COUNT] {
        std::array::from_fn(|k| self.counter(name, help, &[&[("kind", Kind::ALL[k].label())], extra].concat()))
    }

    fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        let Some(r) = &self.0 else { return Gauge::noop() };
        r.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
        r.register_gauge(&key(name, labels), &METADATA)
    }

    /// The verification latency of one credential kind.
    fn histogram(&self, kind: &'static str) -> Histogram {
        let Some(r) = &self.0 else { return Histogram::noop() };
        let help = "Time to verify a presented credential (cache, database, limits), by kind.";
        r.describe_histogram(KeyName::from_const_str(VERIFY_SECONDS), None, SharedString::const_str(help));
        r.register_histogram(&key(VERIFY_SECONDS, &[("kind", kind)]), &METADATA)
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| Label::from_static_parts(k, v)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_value_sits_at_its_index() {
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
        assert!(Outcome::ALL.iter().enumerate().all(|(i, o)| o.index() == i));
        assert!(CacheResult::ALL.iter().enumerate().all(|(i, c)| c.index() == i));
        assert!(Grant::ALL.iter().enumerate().all(|(i, g)| g.index() == i));
        assert!(LoginOutcome::ALL.iter().enumerate().all(|(i, l)| l.index() == i));
        assert!(OAuthErrorCode::ALL.iter().enumerate().all(|(i, c)| *c as usize == i));
    }

    #[test]
    fn disabled_metrics_time_nothing_and_record_nothing() {
        let m = Metrics::default();
        assert!(!m.is_enabled() && m.start().is_none());
        m.verified(Kind::ApiKey, Outcome::Ok, None);
        m.rate_limited(PLANS[0]);
        m.run_upkeep();
    }

    #[test]
    fn enabled_metrics_render_what_was_recorded_and_every_series_from_the_start() {
        let m = Metrics::new(true, Clock::system());
        m.verified(Kind::ApiKey, Outcome::Ok, m.start());
        m.verified(Kind::ApiKey, Outcome::Ok, m.start());
        m.rate_limited(PLANS[1]);
        let text = m.0.exporter.as_ref().map(PrometheusHandle::render).unwrap_or_default();
        assert!(text.contains(r#"latchkey_verifications_total{kind="api_key",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"latchkey_verifications_total{kind="access_token",outcome="revoked"} 0"#));
        assert!(text.contains(r#"latchkey_rate_limited_total{plan="starter"} 1"#));
        assert!(text.contains(r#"latchkey_verification_duration_seconds_count{kind="api_key"} 2"#));
        assert!(text.contains(r#"latchkey_verification_duration_seconds_bucket{kind="api_key",le="+Inf"} 2"#));
    }
}
