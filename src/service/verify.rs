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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::audit::{Actor, ObjectKind};
use super::audit_gate::{AuditGate, PendingEvent};
use super::crypto::Keys;
use super::keys::codec;
use super::lru::Lru;
use super::metrics::{CacheResult, Kind, Metrics, Outcome};
use super::principal::{self, Principal};
use super::ratelimit::{self, Limits, Plan, RateState};
use super::usage::{self, Relay, Seen, Usage};
use crate::domain::{AuditAction, TokenKind, UsageOutcome};
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

struct Cached {
    record: Option<Arc<Principal>>,
    /// When the database read began (the answer is as of then or later).
    read_at: Instant,
    /// When it entered the cache (a feed read that began later covers it);
    /// `None` when a change was applied while it was being read (it may
    /// predate that change: only the one-second bound holds it).
    cached_at: Option<Instant>,
    /// The access-token generation when it was read (see `invalidate_tokens`).
    tokens: u64,
}

/// When a database read began: the moment, the token generation, and how
/// many changes had been applied to the cache.
#[derive(Clone, Copy)]
struct ReadStart {
    at: Instant,
    tokens: u64,
    forgotten: u64,
}

/// What the cache holds for a hash.
enum Hit {
    Fresh(Option<Arc<Principal>>),
    /// Past its bound, but known right within [`STALE_WINDOW`].
    Stale(Arc<Principal>),
    Miss,
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

    /// When the last successful feed read began, if one did.
    fn synced_at(&self) -> Option<Instant> {
        match self.synced.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// How long ago the last successful read of the change feed began.
    pub fn feed_read_ago(&self) -> Option<Duration> {
        self.synced_at().map(|s| s.elapsed())
    }

    /// Lets the feed vouch for entries whose read began at or after `from`.
    pub fn trust_reads_from(&self, from: Instant) {
        let nanos = u64::try_from(from.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.trusted_from.store(nanos, Ordering::Release);
    }

    /// A feed read that began at `started` succeeded: every change committed
    /// before then has been applied to the cache.
    pub fn synced_from(&self, started: Instant) {
        let nanos = u64::try_from(started.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.synced.fetch_max(nanos.max(1), Ordering::AcqRel);
    }

    /// Where the cache keeps a presented credential: a keyed 128-bit PRF of
    /// it, so that the cache never holds a secret and a hit costs a fraction
    /// of the stored hash (HMAC-SHA256), which is computed only to read the
    /// database.
    fn index_of(&self, presented: &str) -> u128 {
        use siphasher::sip128::Hasher128;
        use std::hash::Hasher;
        let mut h = self.index;
        h.write(presented.as_bytes());
        h.finish128().as_u128()
    }

    /// What the cache holds for a credential's index (marking it used).
    fn cached(&self, index: u128) -> Hit {
        let generation = self.token_generation.load(Ordering::Acquire);
        let (now, synced) = (Instant::now(), self.synced_at());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = cache.get_mut(&index) else { return Hit::Miss };
        if c.tokens != generation && c.record.as_ref().is_some_and(|r| r.is_access_token()) {
            return Hit::Miss;
        }
        let young = now.saturating_duration_since(c.read_at) < CACHE_TTL;
        let Some(record) = c.record.clone() else {
            return if young { Hit::Fresh(None) } else { Hit::Miss };
        };
        // The last moment this entry was known right: its read, or the start
        // of a feed read that covered it.
        let trusted = match self.trusted_from.load(Ordering::Acquire) {
            u64::MAX => false,
            nanos => c.read_at >= self.epoch + Duration::from_nanos(nanos),
        };
        let covered = synced.filter(|s| trusted && c.cached_at.is_some_and(|cached| *s >= cached));
        let known_right = covered.map_or(c.read_at, |s| s.max(c.read_at));
        let since = now.saturating_duration_since(known_right);
        if since < CACHE_TTL && now.saturating_duration_since(c.read_at) < CACHE_MAX_AGE {
            Hit::Fresh(Some(record))
        } else if since < STALE_WINDOW {
            Hit::Stale(record)
        } else {
            Hit::Miss
        }
    }

    /// Notes where a database read begins.
    fn read_start(&self) -> ReadStart {
        ReadStart {
            at: Instant::now(),
            tokens: self.token_generation.load(Ordering::Acquire),
            forgotten: self.forgotten.load(Ordering::Acquire),
        }
    }

    /// Caches an answer read from `start`; when full, the least-recently-used
    /// entry makes room. If a change was applied since the read began, the
    /// answer may predate it: the feed never covers it.
    fn remember(&self, index: u128, record: Option<Arc<Principal>>, start: ReadStart) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let raced = self.forgotten.load(Ordering::Acquire) != start.forgotten;
        let cached_at = (!raced).then(Instant::now);
        cache.insert(index, Cached { record, read_at: start.at, cached_at, tokens: start.tokens });
    }

    /// Counts a change applied to the cache (the caller holds its lock).
    fn note_forgotten(&self) {
        self.forgotten.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops what the change feed names: keys and tokens by id, every
    /// credential of a team, held by a user (a membership changed), or issued
    /// to an OAuth app.
    pub fn forget_changes(&self, changes: &[crate::store::models::Change]) {
        if changes.is_empty() {
            return;
        }
        let named = |kind: &str| -> std::collections::HashSet<&str> {
            changes.iter().filter(|c| c.kind == kind).map(|c| c.object_id.as_str()).collect()
        };
        let (ids, teams, users, clients) = (named("key"), named("team"), named("user"), named("client"));
        let tokens = named("token");
        let hit = |r: &Principal| {
            ids.contains(r.id())
                || tokens.contains(r.id())
                || r.team_id().is_some_and(|t| teams.contains(t.as_str()))
                || r.holder().is_some_and(|u| users.contains(u.as_str()))
                || matches!(r, Principal::AccessToken { client_id, .. } if clients.contains(client_id.as_str()))
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.note_forgotten();
        cache.retain(|_, c| c.record.as_deref().is_none_or(|r| !hit(r)));
    }

    /// Waits until this instance changes a credential (for the publisher).
    pub async fn changed_here(&self) {
        self.changed_here.notified().await;
    }

    /// Another instance announced a change: the feed follower reads at once.
    pub fn announce_changed_elsewhere(&self) {
        self.changed_elsewhere.notify_one();
    }

    /// Waits for an announced change, at most `wait`.
    pub async fn changed_elsewhere(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.changed_elsewhere.notified()).await;
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

    /// Counts a request of a key (usage history is kept for keys; OAuth
    /// tokens are short-lived), and notes its outcome for the metrics.
    fn record(&self, record: &Principal, outcome: UsageOutcome, seen: &Seen<'_>, observed: &mut Observed) {
        observed.outcome = outcome.into();
        if let Some(id) = record.key_id() {
            self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(id.as_str(), outcome, seen);
        }
    }

    /// A verified credential was refused by its route for lacking a scope:
    /// counted, and a key's request (verified at `at`) moves from `ok` to
    /// `scope_denied` in its usage.
    pub fn refused_for_scope(&self, principal: &Principal, at: i64) {
        self.metrics.scope_denied(Kind::of(principal));
        if let Some(id) = principal.key_id() {
            self.scope_denied(id.as_str(), at);
        }
    }

    /// A request of `key_id` verified at `at` was refused by its route for a
    /// scope: its `ok` becomes `scope_denied`.
    fn scope_denied(&self, key_id: &str, at: i64) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.reclassify(key_id, at, UsageOutcome::Ok, UsageOutcome::ScopeDenied);
    }

    /// A request of `key_id` at `at` exercised `scope` (a scope of the catalog).
    pub fn exercised(&self, key_id: &str, scope: &str, at: i64) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).exercised(key_id, scope, at);
    }

    /// The last presentation (Unix seconds, at most `at`) of each key and
    /// client secret whose usage is still in this instance's buffer.
    pub fn buffered_presentations(&self, at: i64) -> std::collections::HashMap<String, i64> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).last_presented(at)
    }

    /// Counts a use of a client secret (`subject`, see
    /// [`usage::secret_subject`]) at the token endpoint.
    pub fn record_secret_use(&self, subject: &str, seen: &Seen<'_>) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(subject, UsageOutcome::Ok, seen);
    }

    /// Forgets a key at once (this instance changed it) and tells the others.
    pub fn invalidate(&self, key_id: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.note_forgotten();
        cache.retain(|_, c| c.record.as_ref().is_none_or(|r| r.id() != key_id));
        drop(cache);
        self.changed_here.notify_one();
    }

    /// Forgets everything cached (an OAuth grant was revoked here) and tells
    /// the others.
    pub fn invalidate_all(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.note_forgotten();
        cache.clear();
        drop(cache);
        self.changed_here.notify_one();
    }

    /// Forgets every cached OAuth access token at once (a grant may have been
    /// revoked here), in constant time and without touching cached API keys:
    /// anyone can make the token endpoint fail, so this must stay cheap.
    pub fn invalidate_tokens(&self) {
        self.token_generation.fetch_add(1, Ordering::AcqRel);
        self.changed_here.notify_one();
    }

    /// Forgets cached "unknown" answers (a key was just created here).
    pub fn invalidate_unknown(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.record.is_some());
    }

    #[cfg(test)]
    fn record_use(&self, key_id: &str, now: i64) {
        let seen = Seen { at: now, ip: None, agent: None };
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(key_id, UsageOutcome::Ok, &seen);
    }

    /// Hands buffered usage on (see [`usage`]), then writes the buffered
    /// audit events and the summaries of ended intervals; returns the keys
    /// whose usage was handed on.
    pub async fn flush(&self, db: &Db, relay: &Relay) -> super::Result<usize> {
        let n = self.flush_usage(db, relay).await?;
        self.audit.flush(db, Some(crate::store::now())).await?;
        Ok(n)
    }

    /// At shutdown: usage, and every buffered audit event and summary. One
    /// attempt; what it could not write stays buffered (the caller retries).
    pub async fn flush_all(&self, db: &Db, relay: &Relay) -> super::Result<usize> {
        let n = self.flush_usage(db, relay).await?;
        self.audit.flush(db, None).await?;
        Ok(n)
    }

    /// What is buffered and not yet written.
    pub fn unwritten(&self) -> Unwritten {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        Unwritten { requests: usage.requests(), keys: usage.keys(), audit_events: self.audit.pending() }
    }

    /// Hands the buffered usage to Redis; what Redis did not take (all of it
    /// without Redis) is written in one transaction, and if that fails it
    /// goes back into the buffer for the next flush.
    async fn flush_usage(&self, db: &Db, relay: &Relay) -> super::Result<usize> {
        let batch = std::mem::take(&mut *self.usage.lock().unwrap_or_else(|p| p.into_inner()));
        let n = batch.keys();
        let Some(rest) = relay.hand_over(batch).await else {
            self.metrics.usage_flushed();
            return Ok(n);
        };
        let (keys, requests) = (rest.keys(), rest.requests());
        let rest = Arc::new(rest);
        match usage::write(db, rest.clone()).await {
            Ok(()) => {
                self.metrics.usage_flushed();
                Ok(n)
            }
            Err(e) => {
                self.metrics.usage_flush_failed();
                // The task has ended, so this is the only handle left (a clone otherwise).
                let rest = Arc::try_unwrap(rest).unwrap_or_else(|shared| (*shared).clone());
                self.usage.lock().unwrap_or_else(|p| p.into_inner()).merge(rest);
                let doing = format!("writing the usage of {keys} keys ({requests} requests, kept for the next flush)");
                Err(anyhow::Error::new(e).context(doing).into())
            }
        }
    }

    /// Audits a refused use of a revoked credential off the request path:
    /// buffered for the next flush, at most once a minute per credential (then
    /// a summary with the count). A key is labelled as a key; an OAuth access
    /// token as a token of its app.
    /// Announces a team key refused for its team's rate limit: at most once an
    /// hour per key on this instance (here) and across instances (the claim
    /// the event is recorded with; see `AuditGate::enqueue`).
    fn announce_rate_limited(&self, record: &Principal, rate: &RateState, at: i64) {
        let (Some(key), Some(team)) = (record.key_id(), record.team_id()) else { return };
        {
            let mut noted = self.rate_noted.lock().unwrap_or_else(|p| p.into_inner());
            let (last, _) = noted.get_or_insert_with(&key.as_str().to_owned(), || i64::MIN / 2);
            if at - *last < RATE_LIMITED_EVERY {
                return;
            }
            *last = at;
        }
        let plan = record.grant().plan.name;
        let event = PendingEvent::new(AuditAction::ApiKeyRateLimited, Actor::system())
            .team(Some(team.as_str()))
            .object(ObjectKind::ApiKey, key.as_str())
            .details(serde_json::json!({"plan": plan, "limit": rate.limit, "reset": rate.reset}))
            .at_most_every(&format!("rl:{key}"), "rate_limited", at, RATE_LIMITED_EVERY);
        self.audit.enqueue(event);
    }

    fn audit_refused(&self, record: &Principal, client: Option<IpAddr>, now: i64) {
        let actor = Actor { label: "API client".into(), ip: client.map(|ip| ip.to_string()), ..Actor::default() };
        let event = match record {
            Principal::AccessToken { id, client_id, .. } => {
                PendingEvent::new(AuditAction::OauthTokenRefusedRevoked, actor)
                    .object(ObjectKind::OauthApp, client_id.as_str())
                    .details(serde_json::json!({"token_id": id}))
            }
            _ => PendingEvent::new(AuditAction::ApiKeyRefusedRevoked, actor).object(ObjectKind::ApiKey, record.id()),
        };
        let team = record.team_id().map(|t| t.as_str());
        self.audit.buffer(&format!("refused:{}", record.id()), event.team(team), now);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: &str, revoked: bool) -> Arc<Principal> {
        let grant = principal::Grant {
            team_id: Some("team_1".into()),
            team_name: None,
            holder: Some("user_1".into()),
            role: None,
            scopes: Arc::from(Vec::new()),
            allowed: Vec::new(),
            expires_at: None,
            revoked,
            disabled: false,
            plan: ratelimit::PLANS[0],
            shown: Default::default(),
            limit_key: principal::limit_key(Some("team_1"), id),
        };
        Arc::new(if kind == "oauth" {
            Principal::AccessToken {
                id: id.into(),
                client_id: "app_1".into(),
                app: "n".into(),
                user_id: None,
                issued_at: 0,
                grant,
            }
        } else {
            Principal::ApiKey { id: id.into(), name: "n".into(), prefix: "lk_abcdefgh".into(), grant }
        })
    }

    /// A fresh answer, if the cache holds one.
    fn fresh(v: &Verifier, hash: &str) -> Option<Option<Arc<Principal>>> {
        match v.cached(v.index_of(hash)) {
            Hit::Fresh(record) => Some(record),
            _ => None,
        }
    }

    fn remember(v: &Verifier, hash: &str, record: Option<Arc<Principal>>, tokens: u64) {
        let start = ReadStart { tokens, ..v.read_start() };
        v.remember(v.index_of(hash), record, start);
    }

    fn verifier(cache_max: usize) -> Verifier {
        let mut v = Verifier::new("lk", "free", Arc::new(AuditGate::default()), Limits::in_process("plan"), [7; 16]);
        // As if the feed had been followed for an hour (tests move entries back in time).
        v.epoch -= Duration::from_secs(3600);
        v.trust_reads_from(v.epoch);
        v.cache = Mutex::new(Lru::new(cache_max));
        v
    }

    #[test]
    fn a_flood_of_unknown_keys_never_empties_the_cache() {
        let v = verifier(100);
        remember(&v, "in-use", Some(record("key_1", "api", false)), 0);
        for i in 0..10_000 {
            // Well-formed unknown keys are cached as "unknown".
            remember(&v, &format!("unknown-{i}"), None, 0);
            if i % 25 == 0 {
                let hit = fresh(&v, "in-use").expect("still cached after the flood");
                assert_eq!(hit.as_deref().map(Principal::id), Some("key_1"));
            }
        }
        assert_eq!(v.cache.lock().unwrap().len(), 100, "bounded, not cleared");
        assert!(fresh(&v, "unknown-0").is_none(), "the least recently used went");
    }

    #[test]
    fn refused_revoked_credentials_are_buffered_and_labelled_by_kind() {
        let v = verifier(10);
        for _ in 0..50 {
            v.audit_refused(&record("key_1", "api", true), None, 100);
            v.audit_refused(&record("tok_1", "oauth", true), None, 100);
        }
        let events = v.audit.take(None);
        let find = |action: AuditAction, repeated: bool| {
            events.iter().filter(|e| e.action == action && e.details.get("repeated").is_some() == repeated).count()
        };
        assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, false), 1);
        assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, true), 1, "one summary of the other 49");
        assert_eq!(find(AuditAction::OauthTokenRefusedRevoked, false), 1);
        let token = events.iter().find(|e| e.action == AuditAction::OauthTokenRefusedRevoked).unwrap();
        assert_eq!(token.object, Some(("oauth_app", "app_1".to_owned())));
        assert_eq!(token.details["token_id"], "tok_1");
        assert_eq!(events.len(), 4);
    }

    #[tokio::test]
    async fn every_credential_of_a_team_counts_against_one_allowance() {
        let v = verifier(10);
        let free = ratelimit::PLANS[0];
        let creds = [record("key_1", "api", false), record("key_2", "api", false), record("tok_1", "oauth", false)];
        let t0 = 1_000 * 3_600_000;
        let mut admitted = 0;
        for i in 0..30usize {
            if v.limiter.hit(&creds[i % 3].grant().limit_key, free, t0 + i as i64).await.is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted as u64, free.per_minute);
    }

    #[test]
    fn an_unwritten_batch_merges_back_into_what_arrived_meanwhile() {
        let v = verifier(10);
        let day = 20_000 * 86_400;
        for at in [day + 10, day + 20, day + 86_400 + 5] {
            v.record_use("key_1", at);
        }
        v.record_use("key_2", day + 30);
        let unwritten = std::mem::take(&mut *v.usage.lock().unwrap());
        assert_eq!(v.unwritten().requests, 0, "taken by the flush");
        // Meanwhile: key_1 again (later), and a key the batch does not have.
        v.record_use("key_1", day + 86_400 + 50);
        v.record_use("key_3", day + 40);
        v.usage.lock().unwrap().merge(unwritten);
        let usage = v.usage.lock().unwrap().clone();
        assert_eq!(usage.last_used("key_1"), Some(day + 86_400 + 50), "the later time is kept");
        assert_eq!(usage.last_used("key_2"), Some(day + 30));
        assert_eq!(usage.last_used("key_3"), Some(day + 40));
        assert_eq!(usage.day_counts("key_1", 20_000).map(|c| c[0]), Some(2));
        assert_eq!(usage.day_counts("key_1", 20_001).map(|c| c[0]), Some(2), "counts add up");
        assert_eq!(v.unwritten(), Unwritten { requests: 6, keys: 3, audit_events: 0 });
    }

    #[test]
    fn invalidating_tokens_drops_cached_tokens_only() {
        let v = verifier(10);
        remember(&v, "key", Some(record("key_1", "api", false)), 0);
        remember(&v, "token", Some(record("tok_1", "oauth", false)), 0);
        v.invalidate_tokens();
        assert!(fresh(&v, "key").is_some(), "API keys stay cached");
        assert!(fresh(&v, "token").is_none(), "access tokens are read again");
        remember(&v, "token", Some(record("tok_1", "oauth", false)), 1);
        assert!(fresh(&v, "token").is_some());
    }

    /// Moves an entry's read and caching back by `secs` (instead of waiting).
    fn age(v: &Verifier, hash: &str, secs: u64) {
        let mut cache = v.cache.lock().unwrap();
        let c = cache.get_mut(&v.index_of(hash)).unwrap();
        c.read_at -= Duration::from_secs(secs);
        c.cached_at = c.cached_at.map(|at| at - Duration::from_secs(secs));
    }

    #[test]
    fn past_one_second_an_entry_is_served_only_while_a_feed_read_covers_it() {
        let v = verifier(10);
        remember(&v, "key", Some(record("key_1", "api", false)), 0);
        remember(&v, "unknown", None, 0);
        assert!(fresh(&v, "key").is_some(), "young entries need no feed");
        age(&v, "key", 5);
        age(&v, "unknown", 5);
        assert!(
            matches!(v.cached(v.index_of("key")), Hit::Stale(_)),
            "no feed read: read again (or served stale in an outage)"
        );
        assert!(matches!(v.cached(v.index_of("unknown")), Hit::Miss), "unknown answers live one second");
        // A feed read that began after the entry was cached covers it.
        v.synced_from(Instant::now());
        assert!(fresh(&v, "key").is_some());
        // A feed read that began before the entry was cached does not: the
        // read may have raced with a change the feed had already passed on.
        v.cache.lock().unwrap().get_mut(&v.index_of("key")).unwrap().cached_at =
            Some(Instant::now() + Duration::from_secs(1));
        assert!(fresh(&v, "key").is_none());
        // Past the stale window (and with no feed read since) an entry is never served.
        let v2 = verifier(10);
        remember(&v2, "old", Some(record("key_2", "api", false)), 0);
        age(&v2, "old", STALE_WINDOW.as_secs() + 1);
        assert!(matches!(v2.cached(v2.index_of("old")), Hit::Miss));
    }

    #[test]
    fn an_answer_read_while_a_change_was_applied_is_held_by_the_one_second_bound_only() {
        use crate::store::models::Change;
        let v = verifier(10);
        // A read begins; meanwhile the feed applies a revoke (nothing cached
        // yet to drop); then the read's (older) answer arrives.
        let start = v.read_start();
        v.forget_changes(&[Change { seq: 1, kind: "key".into(), object_id: "key_1".into(), at: 0 }]);
        v.remember(v.index_of("key"), Some(record("key_1", "api", false)), start);
        assert!(fresh(&v, "key").is_some(), "young: within the one-second bound");
        age(&v, "key", 2);
        v.synced_from(Instant::now());
        assert!(fresh(&v, "key").is_none(), "a later feed read does not vouch for it: read again");
        // The same for a change made here.
        let start = v.read_start();
        v.invalidate("key_2");
        v.remember(v.index_of("key2"), Some(record("key_2", "api", false)), start);
        age(&v, "key2", 2);
        v.synced_from(Instant::now());
        assert!(fresh(&v, "key2").is_none());
        // A read with no change in between is vouched for by a later feed read.
        let start = v.read_start();
        v.remember(v.index_of("key3"), Some(record("key_3", "api", false)), start);
        age(&v, "key3", 2);
        v.synced_from(Instant::now());
        assert!(fresh(&v, "key3").is_some());
    }

    #[test]
    fn before_the_feed_is_trusted_entries_live_one_second() {
        let mut v = Verifier::new("lk", "free", Arc::new(AuditGate::default()), Limits::in_process("plan"), [7; 16]);
        v.epoch -= Duration::from_secs(3600);
        remember(&v, "early", Some(record("key_1", "api", false)), 0);
        age(&v, "early", 5);
        remember(&v, "later", Some(record("key_2", "api", false)), 0);
        age(&v, "later", 2);
        v.synced_from(Instant::now());
        assert!(fresh(&v, "early").is_none() && fresh(&v, "later").is_none(), "nothing vouched for yet");
        // Trusted from 3 s ago: the entry read before stays on the one-second bound.
        v.trust_reads_from(Instant::now() - Duration::from_secs(3));
        v.synced_from(Instant::now());
        assert!(fresh(&v, "early").is_none(), "read before the feed could vouch for it");
        assert!(fresh(&v, "later").is_some());
    }

    #[test]
    fn a_change_in_the_feed_drops_every_entry_it_names() {
        use crate::store::models::Change;
        let change = |kind: &str, id: &str| Change { seq: 1, kind: kind.into(), object_id: id.into(), at: 0 };
        let fill = |v: &Verifier| {
            remember(v, "key", Some(record("key_1", "api", false)), 0);
            remember(v, "token", Some(record("tok_1", "oauth", false)), 0);
        };
        let v = verifier(10);
        fill(&v);
        v.forget_changes(&[change("key", "key_9"), change("team", "team_9"), change("user", "user_9")]);
        assert!(fresh(&v, "key").is_some() && fresh(&v, "token").is_some(), "others' changes drop nothing");
        for (kind, id, key_gone, token_gone) in [
            ("key", "key_1", true, false),
            ("token", "tok_1", false, true),
            ("client", "app_1", false, true),
            ("team", "team_1", true, true),
            ("user", "user_1", true, true),
        ] {
            let v = verifier(10);
            fill(&v);
            v.forget_changes(&[change(kind, id)]);
            assert_eq!(fresh(&v, "key").is_none(), key_gone, "{kind}");
            assert_eq!(fresh(&v, "token").is_none(), token_gone, "{kind}");
        }
    }
}
