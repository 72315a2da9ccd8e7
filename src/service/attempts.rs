//! Throttling of repeated failures (passwords, TOTP codes, password re-checks,
//! token requests), per account and per client address, over a sliding window.
//!
//! Rules: an attempt is *reserved* before the secret is checked, atomically
//! with the check of the limit, so concurrent attempts cannot race past it; a
//! failure keeps its reservation, a success gives it back (or clears the key,
//! as the caller's policy says), and a request refused for another reason
//! gives it back too (the token endpoint, which guards no guessable secret,
//! checks first and counts failures after: see [`Throttle::check`]).
//! Per-address keys count an IPv6 client by its /64 (one
//! host owns a whole /64) and an IPv4 client by its address.
//!
//! Where attempts are counted: in Redis when it is configured and answers,
//! so every instance shares one count per key (a sorted set
//! `{prefix}at:{throttle}:{HMAC-SHA256(key)}` of attempt times, scored by the
//! service clock; a Lua script forgets the expired ones, checks the limit and
//! records the attempt in one atomic step, and the set expires with its
//! window). When Redis is not configured, known down, or a call fails, that
//! operation uses the in-process [`AttemptLog`] instead: every instance still
//! throttles on its own (fail safe), and the shared count resumes by itself
//! when Redis answers again. An [`Attempt`] remembers where it was counted,
//! so it is given back there; one counted in Redis that cannot be given back
//! (Redis went down in between) stays as a failure until its window passes.
//! A success clears the key in both places.
//!
//! Bound: while Redis answers, at most `max_failures` per window for a key
//! across all instances; during an outage, at most `max_failures` per
//! instance; across the start or end of an outage, the in-process and shared
//! counts add up: at most `(instances + 1) × max_failures` in one window, or
//! `(instances + 2) × max_failures` when Redis comes back empty (it keeps
//! nothing on disk) and forgets the shared count of before the outage.
//! In-process memory is bounded by least-recently-used eviction, never
//! cleared; Redis memory by the window (every set expires with it) and by
//! `max_failures` members per set.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use redis::Script;

use super::cluster::Redis;
use super::lru::Lru;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: usize,
    pub window_secs: i64,
}

/// One reserved attempt, to keep (a failure) or give back (anything else).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an attempt is kept as a failure unless it is released"]
pub struct Attempt {
    pub key: String,
    pub id: u64,
    /// Where it was counted (and so where it is given back).
    pub place: Place,
}

/// Where an attempt was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The in-process log of this instance.
    Local,
    /// Redis, shared by every instance.
    Shared,
}

/// An attempt log of one process (the fallback when Redis does not answer).
pub trait AttemptLog: Send + Sync {
    /// Atomically forgets attempts older than the window and, unless the key
    /// already holds `max_failures`, records one at `now`. `Err` is the
    /// seconds until the oldest attempt leaves the window.
    fn reserve(&self, key: &str, policy: Policy, now: i64) -> Result<Attempt, i64>;
    /// `Err(retry_after)` when `key` is at its limit; stores nothing.
    fn check(&self, key: &str, policy: Policy, now: i64) -> Result<(), i64>;
    /// Gives back one reserved attempt.
    fn release(&self, attempt: &Attempt);
    /// Forgets every attempt of `key`.
    fn clear(&self, key: &str);
}

/// Attempt times per key, in process.
pub struct InProcess {
    next_id: AtomicU64,
    keys: Mutex<Lru<String, VecDeque<(i64, u64)>>>,
}

/// Keys kept at most (a spray of distinct keys evicts the quietest ones).
pub const MAX_KEYS: usize = 100_000;

/// How many of the oldest keys a full log looks at for one it may evict.
const EVICTION_SCAN: usize = 64;

impl InProcess {
    pub fn new(capacity: usize) -> Self {
        Self { next_id: AtomicU64::new(1), keys: Mutex::new(Lru::new(capacity)) }
    }
}

impl AttemptLog for InProcess {
    fn reserve(&self, key: &str, policy: Policy, now: i64) -> Result<Attempt, i64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let key = key.to_owned();
        // A new key takes the place of an old one that locks nothing; a
        // lockout is never pushed out by a flood of other keys. When every
        // candidate is a lockout, the new key is refused (fail closed).
        let live = |times: &VecDeque<(i64, u64)>| times.iter().filter(|&&(t, _)| t > now - policy.window_secs).count();
        if keys.peek(&key).is_none() && !keys.make_room(EVICTION_SCAN, |times| live(times) < policy.max_failures) {
            return Err(policy.window_secs);
        }
        let (times, _) = keys.get_or_insert_with(&key, VecDeque::new);
        while times.front().is_some_and(|&(t, _)| t <= now - policy.window_secs) {
            times.pop_front();
        }
        if times.len() >= policy.max_failures {
            let oldest = times.front().map_or(now, |&(t, _)| t);
            return Err((oldest + policy.window_secs - now).max(1));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        times.push_back((now, id));
        Ok(Attempt { key, id, place: Place::Local })
    }

    fn check(&self, key: &str, policy: Policy, now: i64) -> Result<(), i64> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = keys.peek(key) else { return Ok(()) };
        let live: Vec<i64> = times.iter().map(|&(t, _)| t).filter(|&t| t > now - policy.window_secs).collect();
        match live.first() {
            Some(&oldest) if live.len() >= policy.max_failures => Err((oldest + policy.window_secs - now).max(1)),
            _ => Ok(()),
        }
    }

    fn release(&self, attempt: &Attempt) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(times) = keys.peek_mut(attempt.key.as_str()) {
            times.retain(|&(_, id)| id != attempt.id);
            // A key with nothing to remember takes no room (a refused or
            // successful attempt leaves no entry behind).
            if times.is_empty() {
                keys.remove(attempt.key.as_str());
            }
        }
    }

    fn clear(&self, key: &str) {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// A failure policy over an attempt log: the shared one (Redis) when it is
/// configured and answers, the in-process one otherwise.
pub struct Throttle {
    policy: Policy,
    log: Box<dyn AttemptLog>,
    shared: Arc<Redis>,
    /// Names this throttle in Redis keys (`login_account`, …).
    name: &'static str,
    /// Keys the hash that names a throttled key in Redis (derived from the
    /// server secret): someone who can list Redis cannot test guesses of
    /// emails or addresses against the names. Unset: plain SHA-256.
    name_secret: Option<String>,
    /// Makes this process's Redis members unique among instances.
    instance: u64,
    next_id: AtomicU64,
}

/// Forgets the attempts that left the window, then records one unless the
/// key is at its limit. KEYS[1]: the set. ARGV: now, cutoff (now − window:
/// attempts at or before it are forgotten), window (seconds), max, member.
/// Returns 0 when recorded, else the seconds until the oldest attempt leaves
/// the window (at least 1, at most the window, whatever the clocks of the
/// instances that recorded it).
const RESERVE_LUA: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local window = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = tonumber(oldest[2]) + window - tonumber(ARGV[1])
  return math.max(1, math.min(retry, window))
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[1], window * 1000)
return 0
";

/// Like [`RESERVE_LUA`] without writing anything: 0 when below the limit.
/// ARGV: now, cutoff, window, max.
const CHECK_LUA: &str = r"
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES')
local window = tonumber(ARGV[3])
if #live / 2 >= tonumber(ARGV[4]) then
  local retry = tonumber(live[2]) + window - tonumber(ARGV[1])
  return math.max(1, math.min(retry, window))
end
return 0
";

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE_LUA));
static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK_LUA));

impl Throttle {
    /// Counted in process only.
    pub fn new(policy: Policy) -> Self {
        Self::with_log(policy, Box::new(InProcess::new(MAX_KEYS)))
    }

    pub fn with_log(policy: Policy, log: Box<dyn AttemptLog>) -> Self {
        Self {
            policy,
            log,
            shared: Arc::new(Redis::off()),
            name: "local",
            name_secret: None,
            instance: instance_nonce(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Counted in `shared` (every instance together) while it answers.
    pub fn shared(name: &'static str, policy: Policy, shared: Arc<Redis>) -> Self {
        Self { shared, name, ..Self::new(policy) }
    }

    /// Names throttled keys in Redis by an HMAC under `secret`.
    pub fn with_name_secret(mut self, secret: String) -> Self {
        self.name_secret = Some(secret);
        self
    }

    /// Reserves an attempt for `key`, or `Err(retry_after_secs)` when the key
    /// is at its limit at `now`.
    pub async fn reserve(&self, key: &str, now: i64) -> Result<Attempt, i64> {
        let key = bounded(key);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (set, member, args) = (self.set_name(&key), self.member(id), self.script_args(now));
        let answer = self
            .shared
            .call("throttle reserve", move |mut conn| async move {
                let mut call = RESERVE.key(set);
                call.arg(&args[..]).arg(member);
                call.invoke_async::<i64>(&mut conn).await
            })
            .await;
        match answer {
            Some(0) => Ok(Attempt { key: key.into_owned(), id, place: Place::Shared }),
            Some(retry_after) => Err(retry_after),
            None => self.log.reserve(&key, self.policy, now),
        }
    }

    /// The attempt did not fail (or was refused for another reason).
    pub async fn release(&self, attempt: &Attempt) {
        match attempt.place {
            Place::Local => self.log.release(attempt),
            Place::Shared => {
                let (set, member) = (self.set_name(&attempt.key), self.member(attempt.id));
                // Unanswered, the attempt stays a failure until its window passes.
                let _given_back = self
                    .shared
                    .call("throttle release", move |mut conn| async move {
                        redis::cmd("ZREM").arg(set).arg(member).query_async::<i64>(&mut conn).await
                    })
                    .await;
            }
        }
    }

    /// Whether `key` is below its limit, without reserving: for endpoints
    /// that guard no guessable secret (the token endpoint: codes, tokens and
    /// client secrets are 128 bits or more), where a client's concurrent
    /// requests must not count as failures while in flight. Failures are
    /// recorded afterwards with [`record_failure`](Self::record_failure).
    /// A probe: it writes nothing, in Redis or in process (a full log of
    /// lockouts never refuses callers that have not failed).
    pub async fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        let key = bounded(key);
        if !self.shared.is_configured() {
            // No Redis: no set name to compute (an HMAC per request).
            return self.log.check(&key, self.policy, now);
        }
        let (set, args) = (self.set_name(&key), self.script_args(now));
        let answer = self
            .shared
            .call("throttle check", move |mut conn| async move {
                CHECK.key(set).arg(&args[..]).invoke_async::<i64>(&mut conn).await
            })
            .await;
        match answer {
            Some(0) => Ok(()),
            Some(retry_after) => Err(retry_after),
            None => self.log.check(&key, self.policy, now),
        }
    }

    pub async fn record_failure(&self, key: &str, now: i64) {
        // At the limit already: nothing more to count.
        let _kept = self.reserve(key, now).await;
    }

    /// Forgets every failure of `key` (a success that proves the secret), in
    /// process and in Redis (unanswered, the shared failures stay until their
    /// window passes).
    pub async fn clear(&self, key: &str) {
        let key = bounded(key);
        self.log.clear(&key);
        let set = self.set_name(&key);
        let _cleared = self
            .shared
            .call("throttle clear", move |mut conn| async move {
                redis::cmd("DEL").arg(set).query_async::<i64>(&mut conn).await
            })
            .await;
    }

    /// The Redis set of `key`: the key is hashed, so whatever a client typed
    /// cannot reach outside this throttle's namespace (and no email is
    /// written to Redis in the clear).
    fn set_name(&self, key: &str) -> String {
        use hmac::digest::KeyInit;
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let digest = match &self.name_secret {
            Some(secret) => match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
                Ok(mac) => hex::encode(mac.chain_update(key.as_bytes()).finalize().into_bytes()),
                Err(_) => hex::encode(Sha256::digest(key.as_bytes())),
            },
            None => hex::encode(Sha256::digest(key.as_bytes())),
        };
        self.shared.key(&format!("at:{}:{digest}", self.name))
    }

    /// A member no other attempt of any instance uses.
    fn member(&self, id: u64) -> String {
        format!("{:016x}-{id:x}", self.instance)
    }

    /// ARGV now, cutoff, window, max of the scripts.
    fn script_args(&self, now: i64) -> [i64; 4] {
        let max = i64::try_from(self.policy.max_failures).unwrap_or(i64::MAX);
        [now, now - self.policy.window_secs, self.policy.window_secs, max]
    }
}

/// 64 random bits naming this process's attempts in Redis (from the clock
/// and the process id should the system's randomness fail: still unique
/// among live instances in practice).
fn instance_nonce() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0));
        nanos ^ (u64::from(std::process::id()) << 32)
    })
}

/// Keys are whatever a client typed (an email, a client id): a long one is
/// stored as its SHA-256, so the memory a key costs stays bounded.
fn bounded(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    if key.len() <= 256 {
        return key.into();
    }
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes()))).into()
}

/// Reserves on every throttle in order; if one refuses, gives back the ones
/// already reserved, so a refused request changes no counter.
pub async fn reserve_all(throttles: &[(&Throttle, &str)], now: i64) -> Result<Vec<Attempt>, i64> {
    let mut taken: Vec<Attempt> = Vec::with_capacity(throttles.len());
    for (i, (throttle, key)) in throttles.iter().enumerate() {
        match throttle.reserve(key, now).await {
            Ok(a) => taken.push(a),
            Err(retry) => {
                for (t, a) in throttles.iter().zip(&taken).take(i) {
                    t.0.release(a).await;
                }
                return Err(retry);
            }
        }
    }
    Ok(taken)
}

/// The per-address throttle key: an IPv4 address (IPv4-mapped IPv6 counts as
/// IPv4), or the /64 of an IPv6 address.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_of_other_keys_never_pushes_out_a_lockout() {
        let policy = Policy { max_failures: 2, window_secs: 900 };
        let t = Throttle::with_log(policy, Box::new(InProcess::new(4)));
        for _ in 0..2 {
            let _failed = t.reserve("victim", 100).await.unwrap();
        }
        assert!(t.reserve("victim", 101).await.is_err());
        // Checks that pass leave nothing behind; attempts that fail fill the log.
        for i in 0..1000 {
            let _ = t.check(&format!("passing{i}"), 102).await;
            let _ = t.reserve(&format!("flood{i}"), 102).await;
        }
        assert!(t.reserve("victim", 103).await.is_err(), "the lockout survived the flood");
        // A log full of lockouts never refuses a caller that has not failed.
        for i in 0..10 {
            for _ in 0..2 {
                let _ = t.reserve(&format!("locked{i}"), 104).await;
            }
        }
        assert!(t.check("never-failed", 105).await.is_ok());
    }

    #[tokio::test]
    async fn locks_after_the_limit_and_unlocks_when_the_window_passes() {
        let t = Throttle::new(Policy { max_failures: 3, window_secs: 60 });
        for i in 0..3 {
            let _failed = t.reserve("k", 100 + i).await.unwrap();
        }
        assert_eq!(t.reserve("k", 110).await, Err(50));
        assert!(t.reserve("other", 110).await.is_ok());
        assert!(t.reserve("k", 161).await.is_ok());
        t.clear("k").await;
        assert!(t.reserve("k", 110).await.is_ok());
    }

    #[test]
    fn concurrent_attempts_cannot_race_past_the_limit() {
        let (log, policy) = (InProcess::new(MAX_KEYS), Policy { max_failures: 5, window_secs: 900 });
        let admitted = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..32).map(|_| s.spawn(|| log.reserve("victim@acme.test", policy, 1_000).is_ok())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count()
        });
        assert_eq!(admitted, 5, "exactly the limit, however many arrive at once");
    }

    #[tokio::test]
    async fn a_success_gives_its_reservation_back_and_a_refusal_takes_none() {
        let t = Throttle::new(Policy { max_failures: 2, window_secs: 60 });
        let ok = t.reserve("k", 10).await.unwrap();
        t.release(&ok).await;
        let _f1 = t.reserve("k", 11).await.unwrap();
        let _f2 = t.reserve("k", 12).await.unwrap();
        assert!(t.reserve("k", 13).await.is_err());
        let other = Throttle::new(Policy { max_failures: 1, window_secs: 60 });
        let _blocked = other.reserve("ip", 10).await.unwrap();
        let free = Throttle::new(Policy { max_failures: 1, window_secs: 60 });
        assert!(reserve_all(&[(&free, "acct"), (&other, "ip")], 11).await.is_err());
        assert!(free.reserve("acct", 12).await.is_ok(), "the refused request left no reservation behind");
    }

    #[tokio::test]
    async fn long_keys_are_stored_bounded_and_still_counted() {
        let t = Throttle::new(Policy { max_failures: 1, window_secs: 60 });
        let long = "x".repeat(60_000);
        let attempt = t.reserve(&long, 1).await.unwrap();
        assert!(attempt.key.len() < 100);
        assert!(t.reserve(&long, 2).await.is_err());
        assert!(t.reserve(&"x".repeat(59_999), 2).await.is_ok());
    }

    #[tokio::test]
    async fn addresses_count_ipv4_by_address_and_ipv6_by_64() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(address_key(None), "unknown");
    }

    #[tokio::test]
    async fn a_flood_of_other_keys_does_not_forget_an_active_one() {
        let t = Throttle::with_log(Policy { max_failures: 2, window_secs: 900 }, Box::new(InProcess::new(50)));
        let _a = t.reserve("victim", 1).await.unwrap();
        let _b = t.reserve("victim", 2).await.unwrap();
        for i in 0..1_000 {
            let _ = t.reserve(&format!("spray-{i}"), 3).await;
            if i % 10 == 0 {
                assert!(t.reserve("victim", 3).await.is_err(), "still locked after {i} other keys");
            }
        }
    }

    /// Two handles on the Redis of `LATCHKEY_TEST_REDIS_URL` under one fresh
    /// prefix (two instances), or `None`: these tests then only say so.
    fn two_instances() -> Option<(Arc<Redis>, Arc<Redis>)> {
        let Ok(url) = std::env::var("LATCHKEY_TEST_REDIS_URL") else {
            eprintln!("SKIPPED: set LATCHKEY_TEST_REDIS_URL to test the shared throttle");
            return None;
        };
        let prefix = format!("latchkey-unit-{:016x}:", instance_nonce());
        Some((Arc::new(Redis::connect(&url, &prefix).unwrap()), Arc::new(Redis::connect(&url, &prefix).unwrap())))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_share_one_count_and_cannot_race_past_it() {
        let Some((a, b)) = two_instances() else { return };
        let policy = Policy { max_failures: 5, window_secs: 60 };
        let (a, b) = (Arc::new(Throttle::shared("test", policy, a)), Arc::new(Throttle::shared("test", policy, b)));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let t = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { (i % 2 == 0, t.reserve("victim@acme.test", 1_000).await) })
            })
            .collect();
        let mut admitted = Vec::new();
        for task in tasks {
            if let (on_a, Ok(attempt)) = task.await.unwrap() {
                admitted.push((on_a, attempt));
            }
        }
        assert_eq!(admitted.len(), 5, "exactly the limit over both instances");
        assert!(admitted.iter().all(|(_, at)| at.place == Place::Shared));
        assert_eq!(a.check("victim@acme.test", 1_001).await, Err(59));
        assert_eq!(b.reserve("victim@acme.test", 1_010).await, Err(50), "the oldest leaves at 1060");
        // A success on one instance gives its reservation back for both.
        let (on_a, first) = &admitted[0];
        let (mine, other) = if *on_a { (&a, &b) } else { (&b, &a) };
        mine.release(first).await;
        let again = other.reserve("victim@acme.test", 1_011).await.unwrap();
        assert_eq!(again.place, Place::Shared);
        assert!(mine.reserve("victim@acme.test", 1_012).await.is_err());
        // The window passes (by the service clock), and a success clears.
        assert!(a.check("victim@acme.test", 1_100).await.is_ok());
        b.clear("victim@acme.test").await;
        assert!(a.check("victim@acme.test", 1_012).await.is_ok());
        // Names and keys are separate counts; nothing leaked in the clear.
        let other = Throttle::shared("other", Policy { max_failures: 1, window_secs: 60 }, a.shared.clone());
        let _kept = other.reserve("victim@acme.test", 1_012).await.unwrap();
        assert!(a.reserve("victim@acme.test", 1_012).await.is_ok());
        assert!(!a.set_name("victim@acme.test").contains("victim"));
    }

    #[tokio::test]
    async fn without_redis_each_instance_counts_alone_and_gives_back_locally() {
        // A closed port: every call fails, then is skipped while Redis is down.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let down = Arc::new(Redis::connect(&format!("redis://127.0.0.1:{port}/0"), "latchkey-unit:").unwrap());
        let t = Throttle::shared("login_account", Policy { max_failures: 2, window_secs: 60 }, down);
        let first = t.reserve("k", 10).await.unwrap();
        assert_eq!(first.place, Place::Local);
        t.release(&first).await;
        let _f1 = t.reserve("k", 11).await.unwrap();
        let _f2 = t.reserve("k", 12).await.unwrap();
        assert_eq!(t.reserve("k", 13).await, Err(58));
        assert_eq!(t.check("k", 13).await, Err(58));
        t.clear("k").await;
        assert!(t.reserve("k", 14).await.is_ok());
    }
}
