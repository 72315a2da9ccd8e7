//! Verification of a presented credential on every API request.
//!
//! Rules: a malformed key (shape or checksum) is refused before any database
//! call; unknown, expired and revoked keys are indistinguishable to the caller.
//! Verified credentials are cached and a change is effective on every instance
//! within one second whatever happens: an entry is served past one second
//! only while the change feed (`service::changes`) has been read successfully
//! within the last second, *and* by a read that began after the entry was
//! cached; and an entry whose database read overlapped a change applied to
//! the cache (the change dropped what was cached before the read's answer
//! arrived) is never trusted past one second. Otherwise it is read again. A change made here drops the entry at once and
//! tells the other instances (which then read the feed at once); "unknown"
//! answers live one second. While the database is unreachable, an entry known
//! correct within [`STALE_WINDOW`] is served rather than failing the request.
//! Nothing is written on the request path — usage and
//! the audit of refused revoked credentials are buffered and flushed in
//! batches, so a revoked key costs what an unknown one does. Usage is handed
//! on as `service::usage` says (through Redis when there is one); a flush
//! that fails loses nothing: its batch goes back into the buffer (its counts
//! added to those that arrived meanwhile, the later last-used time kept) and
//! the next flush writes it; a flush whose commit fails after the database
//! applied it may therefore count twice, never zero times. The usage buffer has no
//! cap of its own and drops nothing: it holds one entry per key used and per
//! key and day, and every key in it was read from the database to be verified,
//! so it is bounded by the keys that exist (a merged-back batch adds no
//! entries for keys already buffered). The plan's limits
//! count per team (all its keys and access tokens together). The cache, like
//! every map here, evicts its least-recently-used entries when full and is
//! never cleared to make room. Expiries and the rate windows read the time
//! the caller passes (the service clock's); the cache's freshness runs on the
//! machine's monotonic clock. Each verification is counted once, by kind and
//! outcome, and timed (one `Instant` pair, only while metrics are served);
//! each lookup counts a cache hit, miss or stale answer (`service::metrics`).

mod buffer;
mod cache;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use self::cache::{Cached, Hit};
use super::audit_gate::AuditGate;
use super::crypto::Keys;
use super::keys::codec;
use super::lru::Lru;
use super::metrics::{CacheResult, Kind, Metrics, Outcome};
use super::principal::{self, Principal};
use super::ratelimit::{self, Limits, Plan, RateState};
use super::usage::{Seen, Usage};
use crate::domain::{TokenKind, UsageOutcome};
use crate::store::Db;

/// How long a cached answer is trusted without the change feed.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// How long a cached credential is kept at most, the feed notwithstanding.
const CACHE_MAX_AGE: Duration = Duration::from_secs(300);
/// While the database is unreachable: how old the last proof that a cached
/// credential is still right may be for it to be served.
pub const STALE_WINDOW: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 100_000;

/// A verified credential.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<Principal>,
    pub rate: RateState,
    /// When it was verified (Unix seconds): its usage is counted then.
    pub at: i64,
}

#[derive(Debug)]
pub enum Refusal {
    /// Missing, malformed, unknown, expired or revoked: one answer for all.
    Unauthorized,
    /// Valid key, but the client address is outside its allowed ranges.
    AddressNotAllowed,
    /// Valid, but without the scope the request needs.
    MissingScope(String),
    RateLimited {
        rate: RateState,
        retry_after: i64,
    },
    Internal(anyhow::Error),
}

/// What is buffered and not yet written (after a failed shutdown flush: what
/// was lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwritten {
    /// Verified requests not yet counted in the usage table.
    pub requests: i64,
    /// The keys they were made with.
    pub keys: usize,
    /// Audit events and summaries not yet recorded.
    pub audit_events: usize,
}

pub struct Verifier {
    prefix: String,
    default_plan: Plan,
    /// Keyed by [`Verifier::index_of`] the presented credential.
    cache: Mutex<Lru<u128, Cached>>,
    /// SipHash-2-4-128 keyed from the server secret.
    index: siphasher::sip128::SipHasher24,
    usage: Mutex<Usage>,
    limiter: Limits,
    audit: Arc<AuditGate>,
    token_generation: AtomicU64,
    /// Changes applied to the cache so far (bumped under the cache lock).
    forgotten: AtomicU64,
    /// Only entries whose read began at or after this (nanoseconds after
    /// `epoch`) may be vouched for by the feed: until the follower knows no
    /// change older than its first read can still commit, none is.
    trusted_from: AtomicU64,
    /// The origin of `synced`.
    epoch: Instant,
    /// When the last successful read of the change feed began (nanoseconds
    /// after `epoch`; 0: never).
    synced: AtomicU64,
    /// A change was made here (the publisher tells the other instances).
    changed_here: tokio::sync::Notify,
    /// Another instance announced a change (the feed follower reads now).
    changed_elsewhere: tokio::sync::Notify,
    /// Outcomes, latency and cache results (no-ops without a listener).
    metrics: Metrics,
    /// Key id → when this instance last announced it rate limited (unix
    /// seconds): at most one `api_key.rate_limited` an hour per key.
    rate_noted: Mutex<Lru<String, i64>>,
}

/// The longest a key's `api_key.rate_limited` waits before it may come again.
pub const RATE_LIMITED_EVERY: i64 = 3600;

/// What a presented credential looks like before it is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A key with this deployment's prefix (a team's or a service key).
    Key,
    AccessToken,
}

impl Shape {
    /// The kind counted for a credential of this shape that is not found.
    fn kind(self) -> Kind {
        match self {
            Self::Key => Kind::ApiKey,
            Self::AccessToken => Kind::AccessToken,
        }
    }
}

/// How a verification ended, for the metrics.
struct Observed {
    kind: Kind,
    outcome: Outcome,
}

impl Verifier {
    /// A verifier whose refused-credential audit goes through `audit`, its
    /// cache indexed under `index_key` (see [`Verifier::index_of`]).
    pub fn new(prefix: &str, default_plan: &str, audit: Arc<AuditGate>, limiter: Limits, index_key: [u8; 16]) -> Self {
        Self {
            prefix: prefix.to_owned(),
            default_plan: ratelimit::plan(default_plan).unwrap_or(ratelimit::PLANS[0]),
            cache: Mutex::new(Lru::new(CACHE_MAX)),
            index: siphasher::sip128::SipHasher24::new_with_key(&index_key),
            usage: Mutex::new(Usage::default()),
            limiter,
            audit,
            token_generation: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            trusted_from: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            synced: AtomicU64::new(0),
            changed_here: tokio::sync::Notify::new(),
            changed_elsewhere: tokio::sync::Notify::new(),
            metrics: Metrics::default(),
            rate_noted: Mutex::new(Lru::new(CACHE_MAX)),
        }
    }

    /// The same verifier, counting into `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// What a presented secret looks like: `None` when it is malformed (its
    /// shape or checksum is wrong, or it has another deployment's prefix).
    fn shape_of(&self, presented: &str) -> Option<Shape> {
        let parsed = codec::parse(presented)?;
        if parsed.prefix == TokenKind::Access.prefix() {
            Some(Shape::AccessToken)
        } else {
            (parsed.prefix == self.prefix).then_some(Shape::Key)
        }
    }

    /// The key behind a presented secret, from cache or database.
    pub async fn lookup(&self, db: &Db, hasher: &Keys, presented: &str) -> Result<Option<Arc<Principal>>, Refusal> {
        match self.shape_of(presented) {
            Some(shape) => self.lookup_shaped(db, hasher, presented, shape).await,
            None => Ok(None),
        }
    }

    /// [`lookup`](Self::lookup) of a well-formed secret.
    async fn lookup_shaped(
        &self,
        db: &Db,
        hasher: &Keys,
        presented: &str,
        shape: Shape,
    ) -> Result<Option<Arc<Principal>>, Refusal> {
        let access_token = shape == Shape::AccessToken;
        let index = self.index_of(presented);
        let stale = match self.cached(index) {
            Hit::Fresh(record) => {
                self.metrics.cache(CacheResult::Hit);
                return Ok(record);
            }
            // The database is out of reach: do not wait for it.
            Hit::Stale(record) if db.is_unreachable() => {
                self.metrics.cache(CacheResult::Stale);
                return Ok(Some(record));
            }
            Hit::Stale(record) => Some(record),
            Hit::Miss => None,
        };
        let start = self.read_start();
        let (prefix, plan, h) = (self.prefix.clone(), self.default_plan, hasher.token_hash(presented));
        let record = db
            .run(move |conn| {
                if access_token {
                    principal::load_access_token(conn, &h, plan)
                } else {
                    principal::load_key(conn, &h, &prefix, plan)
                }
            })
            .await;
        let record = match record {
            Ok(record) => record.map(Arc::new),
            Err(e) if e.is_unavailable() && stale.is_some() => {
                self.metrics.cache(CacheResult::Stale);
                return Ok(stale);
            }
            Err(e) => return Err(Refusal::Internal(anyhow::Error::new(e).context("loading a credential"))),
        };
        self.metrics.cache(CacheResult::Miss);
        self.remember(index, record.clone(), start);
        Ok(record)
    }

    /// Verifies a presented key for a request from `client` (with the user
    /// agent `agent`) at `now_ms` (the service clock's Unix milliseconds: the
    /// expiry is compared in seconds, the rate windows count in
    /// milliseconds). A key's request is counted by outcome: a refused one
    /// here, an accepted one as `ok` (a route that then refuses it for a
    /// scope moves it, see [`Verifier::scope_denied`]).
    pub async fn verify(
        &self,
        db: &Db,
        hasher: &Keys,
        presented: &str,
        client: Option<IpAddr>,
        agent: Option<&str>,
        now_ms: i64,
    ) -> Result<Verified, Refusal> {
        let started = self.metrics.start();
        let mut observed = Observed { kind: Kind::Unrecognised, outcome: Outcome::Malformed };
        let verified = self.verify_observed(db, hasher, (presented, client, agent), now_ms, &mut observed).await;
        self.metrics.verified(observed.kind, observed.outcome, started);
        verified
    }

    /// [`verify`](Self::verify), noting the kind and outcome in `observed`.
    async fn verify_observed(
        &self,
        db: &Db,
        hasher: &Keys,
        (presented, client, agent): (&str, Option<IpAddr>, Option<&str>),
        now_ms: i64,
        observed: &mut Observed,
    ) -> Result<Verified, Refusal> {
        let shape = self.shape_of(presented).ok_or(Refusal::Unauthorized)?;
        (observed.kind, observed.outcome) = (shape.kind(), Outcome::Error);
        let found = self.lookup_shaped(db, hasher, presented, shape).await?;
        observed.outcome = Outcome::Unknown;
        let record = found.ok_or(Refusal::Unauthorized)?;
        observed.kind = Kind::of(&record);
        let at = now_ms.div_euclid(1000);
        let seen = Seen { at, ip: client, agent };
        if let Some(outcome) = record.refusal(at) {
            if outcome == UsageOutcome::Revoked {
                self.audit_refused(&record, client, at);
            }
            self.record(&record, outcome, &seen, observed);
            return Err(Refusal::Unauthorized);
        }
        let allowed = record.allowed_ips();
        if !allowed.is_empty() && !client.is_some_and(|ip| address_allowed(allowed, ip)) {
            self.record(&record, UsageOutcome::AddressDenied, &seen, observed);
            return Err(Refusal::AddressNotAllowed);
        }
        let limited = self.limiter.hit(&record.grant().limit_key, record.grant().plan, now_ms).await;
        let rate = match limited {
            Ok(rate) => rate,
            Err((rate, retry_after)) => {
                self.metrics.rate_limited(record.grant().plan);
                self.announce_rate_limited(&record, &rate, at);
                self.record(&record, UsageOutcome::RateLimited, &seen, observed);
                return Err(Refusal::RateLimited { rate, retry_after });
            }
        };
        self.record(&record, UsageOutcome::Ok, &seen, observed);
        Ok(Verified { key: record, rate, at })
    }
}

/// Whether `ip` is in one of the ranges, an IPv4 address and its IPv4-mapped
/// IPv6 form (`::ffff:9.9.9.9`) being the same address.
fn address_allowed(allowed: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let mapped = match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    allowed.iter().any(|n| n.contains(&ip) || n.contains(&mapped))
}
