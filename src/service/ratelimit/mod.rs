//! Rate limits: requests per hour with a per-minute burst, counted with a
//! sliding-window counter (the previous window's count, weighted by how much of
//! it still overlaps, plus the current one).
//!
//! Rules: a team's plan limits all of its keys and access tokens together
//! (the caller counts under the team, so a new credential never buys a new
//! allowance); token issuance is limited per OAuth client ([`TOKEN_ISSUANCE`]).
//! With Redis configured, every instance counts in Redis through leases
//! ([`shared`]: never more than the plan across instances, no round trip per
//! request); while Redis is not configured, down or failing, each request is
//! counted in process ([`Limiter`]) instead, and the shared count resumes by
//! itself when Redis answers again. Counters and leases are bounded by
//! least-recently-used eviction — an active team's are the most recently
//! used, so a flood of others never resets them — and never cleared wholesale.

use std::sync::{Arc, Mutex};

use super::cluster::Redis;
use super::lru::Lru;

pub mod shared;

/// A team's plan (AImyChats' published limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub name: &'static str,
    pub per_hour: u64,
    pub per_minute: u64,
}

/// For the operator's own services and load tests: no practical limit.
pub const UNLIMITED: Plan = Plan { name: "unlimited", per_hour: 1_000_000_000_000, per_minute: 1_000_000_000_000 };

/// The four published plans, plus [`UNLIMITED`].
pub const PLANS: [Plan; 5] = [
    Plan { name: "free", per_hour: 100, per_minute: 10 },
    Plan { name: "starter", per_hour: 500, per_minute: 50 },
    Plan { name: "standard", per_hour: 2_000, per_minute: 100 },
    Plan { name: "pro", per_hour: 10_000, per_minute: 500 },
    UNLIMITED,
];

/// Tokens one OAuth client may be issued at `/oauth/token` (every grant),
/// unless its team is on the `unlimited` plan.
pub const TOKEN_ISSUANCE: Plan = Plan { name: "token_issuance", per_hour: 1_000, per_minute: 60 };

pub fn plan(name: &str) -> Option<Plan> {
    PLANS.iter().copied().find(|p| p.name == name)
}

/// The issuance limit of an OAuth client of `team_id`: [`TOKEN_ISSUANCE`],
/// or none when the team's plan (else `default_plan`) is `unlimited`.
pub fn issuance_limit(
    conn: &mut crate::store::DbConn,
    team_id: &str,
    default_plan: &str,
) -> Result<Option<Plan>, crate::store::StoreError> {
    let team = crate::store::models::Team::find(conn, team_id)?;
    let plan = team.and_then(|t| t.plan).unwrap_or_else(|| default_plan.to_owned());
    Ok((plan != UNLIMITED.name).then_some(TOKEN_ISSUANCE))
}

/// What the `X-RateLimit-*` headers report (the hourly window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RateState {
    /// Requests per hour the team's plan (or the key's override) allows.
    pub limit: u64,
    /// Requests left in the current window.
    pub remaining: u64,
    /// Unix seconds at which the hourly window rolls over.
    pub reset: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    index: i64,
    current: u64,
    previous: u64,
}

impl Window {
    /// Moves to the window holding `now_ms`, returns the weighted count.
    fn estimate(&mut self, now_ms: i64, len_ms: i64) -> f64 {
        let index = now_ms.div_euclid(len_ms);
        if index != self.index {
            self.previous = if index == self.index + 1 { self.current } else { 0 };
            self.current = 0;
            self.index = index;
        }
        let into = (now_ms - index * len_ms) as f64 / len_ms as f64;
        self.previous as f64 * (1.0 - into) + self.current as f64
    }
}

#[derive(Debug, Default)]
struct Counters {
    hour: Window,
    minute: Window,
}

/// A synchronous counter (the in-process [`Limiter`]; the shared count is
/// [`Limits`], which is async).
pub trait RateCounter: Send + Sync {
    /// Counts one request for `key` at `now_ms`, or refuses it with the
    /// seconds to wait; counting and checking are one atomic step.
    fn hit(&self, key: &str, plan: Plan, now_ms: i64) -> Result<RateState, (RateState, i64)>;
    /// Gives back one request counted at `now_ms` (the time of its `hit`:
    /// it was not served).
    fn release(&self, key: &str, now_ms: i64);
}

/// Keys kept at most; more than the teams (and clients) active in an hour.
pub const MAX_KEYS: usize = 200_000;

pub struct Limiter {
    counters: Mutex<Lru<String, Counters>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::with_capacity(MAX_KEYS)
    }
}

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

impl Limiter {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { counters: Mutex::new(Lru::new(capacity)) }
    }
}

impl RateCounter for Limiter {
    fn hit(&self, key: &str, plan: Plan, now_ms: i64) -> Result<RateState, (RateState, i64)> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        // Found by `&str` first: the key is copied only when it is new.
        let c = match map.get_mut(key) {
            Some(c) => c,
            None => map.get_or_insert_with(&key.to_owned(), Counters::default).0,
        };
        let hour = c.hour.estimate(now_ms, HOUR_MS);
        let minute = c.minute.estimate(now_ms, MINUTE_MS);
        let reset = (c.hour.index + 1) * HOUR_MS / 1000;
        let state = |used: f64| RateState {
            limit: plan.per_hour,
            remaining: (plan.per_hour as f64 - used).max(0.0).floor() as u64,
            reset,
        };
        if hour + 1.0 > plan.per_hour as f64 {
            return Err((state(hour), (reset - now_ms / 1000).max(1)));
        }
        if minute + 1.0 > plan.per_minute as f64 {
            let minute_reset = (c.minute.index + 1) * MINUTE_MS / 1000;
            return Err((state(hour), (minute_reset - now_ms / 1000).max(1)));
        }
        c.hour.current += 1;
        c.minute.current += 1;
        Ok(state(hour + 1.0))
    }

    fn release(&self, key: &str, now_ms: i64) {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(key) {
            for (w, len) in [(&mut c.hour, HOUR_MS), (&mut c.minute, MINUTE_MS)] {
                let counted_in = now_ms.div_euclid(len);
                if w.index == counted_in {
                    w.current = w.current.saturating_sub(1);
                } else if w.index == counted_in + 1 {
                    w.previous = w.previous.saturating_sub(1);
                }
            }
        }
    }
}

/// One kind of limit (the plans, or token issuance) as every instance
/// counts it: in Redis when it is configured and answers, in process
/// otherwise (one instance, or while Redis is down).
pub struct Limits {
    local: Limiter,
    leases: shared::Leases,
    shared: Arc<Redis>,
    /// Names this kind of limit in Redis keys (`plan`, `issuance`).
    name: &'static str,
}

impl Limits {
    pub fn new(name: &'static str, shared: Arc<Redis>) -> Self {
        Self { local: Limiter::default(), leases: shared::Leases::with_capacity(MAX_KEYS), shared, name }
    }

    /// Counted in process only.
    pub fn in_process(name: &'static str) -> Self {
        Self::new(name, Arc::new(Redis::off()))
    }

    /// Counts one request for `key` at `now_ms`, or refuses it with the
    /// seconds to wait: from this instance's lease when it holds one, else
    /// through Redis, else (no Redis, or Redis down) in process.
    pub async fn hit(&self, key: &str, plan: Plan, now_ms: i64) -> Result<RateState, (RateState, i64)> {
        if !self.shared.is_configured() {
            return self.local.hit(key, plan, now_ms);
        }
        let ask = match self.leases.take(key, plan, now_ms) {
            shared::Step::Done(answer) => return answer,
            shared::Step::Ask(ask) => ask,
        };
        match shared::lease(&self.shared, self.name, key, plan, now_ms, ask).await {
            Some(grant) => self.leases.settle(key, plan, now_ms, ask, grant),
            None => self.local.hit(key, plan, now_ms),
        }
    }

    /// Gives back one request counted at `now_ms` (it was not served): to
    /// this minute's lease if it was spent from it, else in process.
    pub async fn release(&self, key: &str, now_ms: i64) {
        if !self.shared.is_configured() || !self.leases.release(key, now_ms) {
            self.local.release(key, now_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_enforced_and_recovers() {
        let l = Limiter::default();
        let free = plan("free").unwrap();
        let t0 = 1_000 * HOUR_MS;
        for i in 0..10 {
            let s = l.hit("k", free, t0 + i).unwrap();
            assert_eq!(s.remaining, 100 - (i as u64 + 1));
        }
        let (state, retry) = l.hit("k", free, t0 + 10).unwrap_err();
        assert_eq!(state.remaining, 90);
        assert!(retry > 0 && retry <= 60);
        assert!(l.hit("other", free, t0 + 10).is_ok());
        // Two minutes later the burst window has slid past.
        assert!(l.hit("k", free, t0 + 2 * MINUTE_MS).is_ok());
    }

    #[test]
    fn the_hourly_limit_is_enforced() {
        let l = Limiter::default();
        let free = plan("free").unwrap();
        let t0 = 500 * HOUR_MS;
        let mut ok = 0;
        for minute in 0..60 {
            for _ in 0..10 {
                if l.hit("k", free, t0 + minute * MINUTE_MS + 1).is_ok() {
                    ok += 1;
                }
            }
        }
        assert_eq!(ok, 100);
    }

    #[test]
    fn a_flood_of_other_keys_never_resets_an_active_team() {
        let l = Limiter::with_capacity(100);
        let free = plan("free").unwrap();
        let t0 = 2_000 * HOUR_MS;
        for i in 0..10 {
            l.hit("team:busy", free, t0 + i).unwrap();
        }
        for i in 0..5_000 {
            let _ = l.hit(&format!("team:other-{i}"), free, t0 + 20);
            if i % 20 == 0 {
                assert!(l.hit("team:busy", free, t0 + 20).is_err(), "still at its burst after {i} others");
            }
        }
    }

    #[test]
    fn a_released_hit_is_given_back() {
        let l = Limiter::default();
        let t0 = 3_000 * HOUR_MS;
        let tight = Plan { name: "t", per_hour: 10, per_minute: 2 };
        l.hit("c", tight, t0).unwrap();
        l.hit("c", tight, t0 + 1).unwrap();
        assert!(l.hit("c", tight, t0 + 2).is_err());
        l.release("c", t0 + 3);
        assert!(l.hit("c", tight, t0 + 4).is_ok());
    }
}
