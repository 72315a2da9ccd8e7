//! Limits shared by every instance through Redis, without a round trip per
//! request: each instance leases a slice of a key's allowance with one atomic
//! script and spends it in memory.
//!
//! Rules:
//! - Redis holds, per limit and key, one counter per minute and per hour
//!   (`rl:<name>:<key>:m:<index>`, `…:h:<index>`, kept two windows). The
//!   lease script computes the same sliding-window estimates as the
//!   in-process [`Limiter`](super::Limiter) and grants at most what both
//!   windows still allow, counting the grant at once: units are counted when
//!   leased, so the instances together never admit more than the plan.
//! - A lease is spent only in the minute it was counted in. Units left when
//!   the minute passes are given back (on the next lease: the same script
//!   call), so they do not weigh on the next window; units whose give-back
//!   fails stay counted, never spent (an error on the refusing side only).
//! - The slice is 1 % of the minute's burst (at least 1, at most
//!   [`MAX_SLICE`]); while one lease is in flight for a key, concurrent
//!   requests ask for one unit each. An instance thus holds at most
//!   `slice − 1` unspent units of a key: N instances admit at least the plan
//!   minus `N × (slice − 1)` units a window, never more than the plan.
//! - A refusal is remembered for [`REFUSAL_MEMORY_MS`], so a flood against an
//!   exhausted key costs at most a few round trips a second per instance.
//! - `X-RateLimit-Remaining` is the hour estimate Redis returned with the
//!   last lease (other instances' leases included) minus what was spent here
//!   since.
//! - Leases live in a bounded LRU map; an evicted lease's unspent units are
//!   not given back (bounded as above: they were counted, never spent).

use std::sync::{LazyLock, Mutex};

use crate::service::cluster::Redis;
use crate::service::lru::Lru;

use super::{HOUR_MS, MINUTE_MS, Plan, RateState};

/// The largest slice leased at once (`unlimited` costs one round trip per
/// this many requests).
pub const MAX_SLICE: u64 = 1_000;
/// How long a refusal from Redis is answered from memory.
pub const REFUSAL_MEMORY_MS: i64 = 250;
/// How long a lease request counts as in flight (a cancelled request never
/// settles; every Redis call ends within its deadline, `cluster::CALL_TIMEOUT`).
const IN_FLIGHT_MS: i64 = 1_000;

/// The units leased at once for `plan`.
pub fn slice(plan: Plan) -> u64 {
    (plan.per_minute / 100).clamp(1, MAX_SLICE)
}

/// Grants up to `wanted` units if both sliding windows allow them, after
/// giving back units of an earlier lease.
/// KEYS: minute, previous minute, hour, previous hour, the minute and hour
/// the given-back units were counted in.
/// ARGV: now (ms), per minute, per hour, wanted, units given back.
/// Returns {granted, ceil(hour estimate, grant included), retry-after seconds
/// when nothing was granted}.
const LEASE_LUA: &str = r"
local now, per_minute, per_hour = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wanted, back = tonumber(ARGV[4]), tonumber(ARGV[5])
if back > 0 then
  for _, k in ipairs({KEYS[5], KEYS[6]}) do
    if redis.call('EXISTS', k) == 1 then
      local left = redis.call('DECRBY', k, back)
      if left < 0 then redis.call('INCRBY', k, -left) end
    end
  end
end
local function estimate(current, previous, len)
  local into = (now % len) / len
  return (tonumber(redis.call('GET', previous)) or 0) * (1 - into) + (tonumber(redis.call('GET', current)) or 0)
end
local minute = estimate(KEYS[1], KEYS[2], 60000)
local hour = estimate(KEYS[3], KEYS[4], 3600000)
local grant = math.min(wanted, math.floor(per_minute - minute), math.floor(per_hour - hour))
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  redis.call('PEXPIRE', KEYS[1], 120000)
  redis.call('INCRBY', KEYS[3], grant)
  redis.call('PEXPIRE', KEYS[3], 7200000)
  return {grant, math.ceil(hour + grant), 0}
end
local now_s = math.floor(now / 1000)
local retry
if hour + 1 > per_hour then
  retry = (math.floor(now / 3600000) + 1) * 3600 - now_s
else
  retry = (math.floor(now / 60000) + 1) * 60 - now_s
end
return {0, math.ceil(hour), math.max(retry, 1)}
";

static LEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LEASE_LUA));

/// Units to give back: how many, and the minute they were counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveBack {
    pub minute: i64,
    pub units: u64,
}

/// What to ask Redis for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub wanted: u64,
    pub give_back: Option<GiveBack>,
}

/// What Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub units: u64,
    /// The hour estimate, rounded up, this grant included.
    pub hour: u64,
    /// Seconds to wait, when nothing was granted.
    pub retry_after: i64,
}

/// The answer to one request: served from the lease (or a remembered
/// refusal), or Redis must be asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Done(Result<RateState, (RateState, i64)>),
    Ask(Ask),
}

#[derive(Debug, Clone, Copy)]
struct Refused {
    until_ms: i64,
    /// Unix seconds until which to wait.
    retry_at: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    minute: i64,
    /// The plan its units were leased under (a team's plan may change).
    plan: Option<Plan>,
    available: u64,
    /// Spent from this minute's leases (what `release` may give back).
    spent: u64,
    /// The hour estimate of the last answer, our unspent units included.
    hour: u64,
    refused: Option<Refused>,
    /// Since when a full slice is being asked for.
    asking_since: Option<i64>,
}

impl Lease {
    fn state(&self, plan: Plan, now_ms: i64) -> RateState {
        RateState {
            limit: plan.per_hour,
            remaining: plan.per_hour.saturating_sub(self.hour.saturating_sub(self.available)),
            reset: (now_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS / 1000,
        }
    }

    fn spend(&mut self, plan: Plan, now_ms: i64) -> RateState {
        self.available -= 1;
        self.spent += 1;
        self.state(plan, now_ms)
    }
}

/// This instance's leases, per key.
pub struct Leases {
    map: Mutex<Lru<String, Lease>>,
}

impl Leases {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { map: Mutex::new(Lru::new(capacity)) }
    }

    /// Spends from the lease of `key` or answers a remembered refusal; else
    /// says what to ask Redis for (taking out the units of a lease whose
    /// minute has passed, to give back).
    pub fn take(&self, key: &str, plan: Plan, now_ms: i64) -> Step {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Found by `&str` first: the key is copied only when it is new.
        let lease = match map.get_mut(key) {
            Some(lease) => lease,
            None => map.get_or_insert_with(&key.to_owned(), Lease::default).0,
        };
        let mut give_back = None;
        // A new minute, or a new plan (a downgrade must not keep spending
        // what the old plan leased): unspent units go back.
        if lease.minute < minute || lease.plan.is_some_and(|p| p != plan) {
            if lease.available > 0 {
                give_back = Some(GiveBack { minute: lease.minute, units: lease.available });
            }
            *lease = Lease { minute, hour: lease.hour, ..Lease::default() };
        }
        lease.plan = Some(plan);
        if lease.available > 0 {
            return Step::Done(Ok(lease.spend(plan, now_ms)));
        }
        if let Some(r) = lease.refused.filter(|r| now_ms < r.until_ms) {
            return Step::Done(Err((lease.state(plan, now_ms), (r.retry_at - now_ms.div_euclid(1000)).max(1))));
        }
        let wanted = match lease.asking_since {
            Some(since) if now_ms.abs_diff(since) < IN_FLIGHT_MS as u64 => 1,
            _ => {
                lease.asking_since = Some(now_ms);
                slice(plan)
            }
        };
        Step::Ask(Ask { wanted, give_back })
    }

    /// Spends one unit of what Redis granted (keeping the rest), or refuses.
    pub fn settle(
        &self,
        key: &str,
        plan: Plan,
        now_ms: i64,
        asked: Ask,
        grant: Grant,
    ) -> Result<RateState, (RateState, i64)> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (lease, _) = map.get_or_insert_with(&key.to_owned(), Lease::default);
        if asked.wanted > 1 || lease.asking_since.is_some_and(|s| now_ms.abs_diff(s) >= IN_FLIGHT_MS as u64) {
            lease.asking_since = None;
        }
        if lease.minute < minute {
            // Evicted meanwhile (or never seen): what it held is not ours to spend.
            *lease = Lease { minute, ..Lease::default() };
        }
        if grant.units > 0 {
            if lease.minute == minute && lease.plan.is_none_or(|p| p == plan) {
                lease.plan = Some(plan);
                lease.available += grant.units;
                lease.hour = grant.hour;
                lease.refused = None;
                return Ok(lease.spend(plan, now_ms));
            }
            // The lease moved on to a later minute, or to another plan (the
            // team's plan changed while this grant was in flight): this
            // request is served with its unit; the rest stays counted, unspent.
            let mut one = Lease { minute, hour: grant.hour, available: 1, ..Lease::default() };
            return Ok(one.spend(plan, now_ms));
        }
        if lease.available > 0 {
            // Another request leased meanwhile.
            return Ok(lease.spend(plan, now_ms));
        }
        let retry_at = now_ms.div_euclid(1000) + grant.retry_after.max(1);
        if lease.minute == minute {
            let memory = REFUSAL_MEMORY_MS.min(grant.retry_after.max(1) * 1000);
            lease.refused = Some(Refused { until_ms: now_ms + memory, retry_at });
            lease.hour = grant.hour;
        }
        let state = Lease { hour: grant.hour, ..Lease::default() }.state(plan, now_ms);
        Err((state, grant.retry_after.max(1)))
    }

    /// Gives one unit spent at `now_ms` back to the lease; `false` when it was
    /// not spent from this minute's lease.
    pub fn release(&self, key: &str, now_ms: i64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.peek_mut(key) {
            Some(lease) if lease.minute == now_ms.div_euclid(MINUTE_MS) && lease.spent > 0 => {
                lease.spent -= 1;
                lease.available += 1;
                true
            }
            _ => false,
        }
    }
}

/// Runs the lease script: `None` when Redis is not configured, down or failed.
pub async fn lease(redis: &Redis, name: &str, key: &str, plan: Plan, now_ms: i64, ask: Ask) -> Option<Grant> {
    let window = |kind: &str, index: i64| redis.key(&format!("rl:{name}:{key}:{kind}:{index}"));
    let (minute, hour) = (now_ms.div_euclid(MINUTE_MS), now_ms.div_euclid(HOUR_MS));
    let back = ask.give_back.unwrap_or(GiveBack { minute, units: 0 });
    let mut call = LEASE.prepare_invoke();
    call.key(window("m", minute))
        .key(window("m", minute - 1))
        .key(window("h", hour))
        .key(window("h", hour - 1))
        .key(window("m", back.minute))
        .key(window("h", (back.minute * MINUTE_MS).div_euclid(HOUR_MS)))
        .arg(now_ms)
        .arg(plan.per_minute)
        .arg(plan.per_hour)
        .arg(ask.wanted)
        .arg(back.units);
    let (units, hour, retry_after): (u64, u64, i64) =
        redis.call("rate-limit lease", |mut conn| async move { call.invoke_async(&mut conn).await }).await?;
    Some(Grant { units, hour, retry_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 7_000 * HOUR_MS;
    const PRO: Plan = Plan { name: "pro", per_hour: 10_000, per_minute: 500 };
    const FREE: Plan = Plan { name: "free", per_hour: 100, per_minute: 10 };

    fn ask(step: Step) -> Ask {
        match step {
            Step::Ask(a) => a,
            Step::Done(d) => panic!("expected to ask Redis, got {d:?}"),
        }
    }

    #[test]
    fn slices_are_one_percent_of_the_burst_within_bounds() {
        assert_eq!(slice(FREE), 1);
        assert_eq!(slice(super::super::TOKEN_ISSUANCE), 1);
        assert_eq!(slice(PRO), 5);
        assert_eq!(slice(super::super::UNLIMITED), MAX_SLICE);
    }

    #[test]
    fn a_lease_is_spent_locally_then_renewed() {
        let l = Leases::with_capacity(10);
        let a = ask(l.take("k", PRO, T0));
        assert_eq!(a, Ask { wanted: 5, give_back: None });
        let s = l.settle("k", PRO, T0, a, Grant { units: 5, hour: 5, retry_after: 0 }).unwrap();
        assert_eq!(s.remaining, 10_000 - 1);
        for i in 2..=5 {
            match l.take("k", PRO, T0 + i) {
                Step::Done(Ok(s)) => assert_eq!(s.remaining, 10_000 - i as u64),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ask(l.take("k", PRO, T0 + 6)).wanted, 5, "empty: lease again");
    }

    #[test]
    fn concurrent_askers_ask_for_one_unit_each() {
        let l = Leases::with_capacity(10);
        let first = ask(l.take("k", PRO, T0));
        let second = ask(l.take("k", PRO, T0 + 1));
        assert_eq!((first.wanted, second.wanted), (5, 1));
        // The second answer arrives first; the first adds its slice.
        l.settle("k", PRO, T0 + 1, second, Grant { units: 1, hour: 1, retry_after: 0 }).unwrap();
        l.settle("k", PRO, T0, first, Grant { units: 5, hour: 6, retry_after: 0 }).unwrap();
        let served = (0..10).filter(|i| matches!(l.take("k", PRO, T0 + 2 + i), Step::Done(Ok(_)))).count();
        assert_eq!(served, 4, "never more than was leased");
    }

    #[test]
    fn a_passed_minute_gives_its_unspent_units_back() {
        let l = Leases::with_capacity(10);
        let a = ask(l.take("k", PRO, T0));
        l.settle("k", PRO, T0, a, Grant { units: 5, hour: 5, retry_after: 0 }).unwrap();
        let next = ask(l.take("k", PRO, T0 + MINUTE_MS));
        assert_eq!(next.give_back, Some(GiveBack { minute: T0 / MINUTE_MS, units: 4 }));
    }

    #[test]
    fn a_new_plan_gives_back_what_the_old_one_leased() {
        let l = Leases::with_capacity(10);
        let unlimited = super::super::UNLIMITED;
        let a = ask(l.take("team:t", unlimited, T0));
        l.settle("team:t", unlimited, T0, a, Grant { units: 1_000, hour: 1_000, retry_after: 0 }).unwrap();
        assert!(matches!(l.take("team:t", unlimited, T0 + 1), Step::Done(Ok(_))));
        // Downgraded to free: nothing of the old lease is spent, it goes back.
        let next = ask(l.take("team:t", FREE, T0 + 2));
        assert_eq!(next, Ask { wanted: 1, give_back: Some(GiveBack { minute: T0 / MINUTE_MS, units: 998 }) });
    }

    #[test]
    fn a_grant_asked_under_the_old_plan_is_not_added_to_the_new_one() {
        let l = Leases::with_capacity(10);
        let unlimited = super::super::UNLIMITED;
        let old = ask(l.take("team:t", unlimited, T0));
        // The plan changes while that lease request is in flight.
        let new = ask(l.take("team:t", FREE, T0 + 1));
        l.settle("team:t", FREE, T0 + 1, new, Grant { units: 1, hour: 1, retry_after: 0 }).unwrap();
        l.settle("team:t", unlimited, T0, old, Grant { units: 1_000, hour: 1_001, retry_after: 0 }).unwrap();
        assert!(matches!(l.take("team:t", FREE, T0 + 2), Step::Ask(_)), "nothing of the old grant to spend");
    }

    #[test]
    fn a_refusal_is_remembered_briefly() {
        let l = Leases::with_capacity(10);
        let a = ask(l.take("k", FREE, T0));
        let (state, retry) = l.settle("k", FREE, T0, a, Grant { units: 0, hour: 10, retry_after: 42 }).unwrap_err();
        assert_eq!((state.remaining, retry), (90, 42));
        match l.take("k", FREE, T0 + 100) {
            Step::Done(Err((s, r))) => assert_eq!((s.remaining, r), (90, 42)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(l.take("k", FREE, T0 + REFUSAL_MEMORY_MS), Step::Ask(_)), "asked again after the memory");
    }

    #[test]
    fn a_released_unit_returns_to_the_lease() {
        let l = Leases::with_capacity(10);
        let a = ask(l.take("k", FREE, T0));
        l.settle("k", FREE, T0, a, Grant { units: 1, hour: 1, retry_after: 0 }).unwrap();
        assert!(l.release("k", T0));
        assert!(matches!(l.take("k", FREE, T0 + 1), Step::Done(Ok(_))));
        assert!(!l.release("k", T0 + MINUTE_MS), "not spent from that minute's lease");
        assert!(!l.release("unknown", T0));
    }
}
