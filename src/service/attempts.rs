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
//! host owns a whole /64) and an IPv4 client by its address. Counters live in
//! process behind [`AttemptLog`], which a shared (Redis) store can implement;
//! their memory is bounded by least-recently-used eviction, never cleared.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
}

/// Where attempts are counted: in process here; a shared store later.
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
        Ok(Attempt { key, id })
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
}

impl Throttle {
    /// Counted in process only.
    pub fn new(policy: Policy) -> Self {
        Self::with_log(policy, Box::new(InProcess::new(MAX_KEYS)))
    }

    pub fn with_log(policy: Policy, log: Box<dyn AttemptLog>) -> Self {
        Self { policy, log, shared: Arc::new(Redis::off()), name: "local" }
    }

    /// Counted in `shared` (every instance together) while it answers.
    pub fn shared(name: &'static str, policy: Policy, shared: Arc<Redis>) -> Self {
        Self { shared, name, ..Self::new(policy) }
    }

    /// Reserves an attempt for `key`, or `Err(retry_after_secs)` when the key
    /// is at its limit at `now`.
    pub async fn reserve(&self, key: &str, now: i64) -> Result<Attempt, i64> {
        let _ = (&self.shared, self.name);
        self.log.reserve(&bounded(key), self.policy, now)
    }

    /// The attempt did not fail (or was refused for another reason).
    pub async fn release(&self, attempt: &Attempt) {
        self.log.release(attempt);
    }

    /// Whether `key` is below its limit, without reserving: for endpoints
    /// that guard no guessable secret (the token endpoint: codes, tokens and
    /// client secrets are 128 bits or more), where a client's concurrent
    /// requests must not count as failures while in flight. Failures are
    /// recorded afterwards with [`record_failure`](Self::record_failure).
    /// Whether `key` is locked now. A probe: a key with no failures is not
    /// looked up in a way that could take room (a full log of lockouts never
    /// refuses callers that have not failed).
    pub async fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        self.log.check(&bounded(key), self.policy, now)
    }

    pub async fn record_failure(&self, key: &str, now: i64) {
        // At the limit already: nothing more to count.
        let _kept = self.reserve(key, now).await;
    }

    /// Forgets every failure of `key` (a success that proves the secret).
    pub async fn clear(&self, key: &str) {
        self.log.clear(&bounded(key));
    }
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
}
