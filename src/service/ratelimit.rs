//! Per-credential rate limits: requests per hour with a per-minute burst,
//! counted in process with a sliding-window counter (the previous window's
//! count, weighted by how much of it still overlaps, plus the current one).

use std::collections::HashMap;
use std::sync::Mutex;

/// A team's plan (AImyChats' published limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub name: &'static str,
    pub per_hour: u64,
    pub per_minute: u64,
}

/// The four published plans, plus `unlimited` for the operator's own
/// services and load tests (no practical limit).
pub const PLANS: [Plan; 5] = [
    Plan { name: "free", per_hour: 100, per_minute: 10 },
    Plan { name: "starter", per_hour: 500, per_minute: 50 },
    Plan { name: "standard", per_hour: 2_000, per_minute: 100 },
    Plan { name: "pro", per_hour: 10_000, per_minute: 500 },
    Plan { name: "unlimited", per_hour: 1_000_000_000_000, per_minute: 1_000_000_000_000 },
];

pub fn plan(name: &str) -> Option<Plan> {
    PLANS.iter().copied().find(|p| p.name == name)
}

/// What the `X-RateLimit-*` headers report (the hourly window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateState {
    pub limit: u64,
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

#[derive(Default)]
pub struct Limiter {
    counters: Mutex<HashMap<String, Counters>>,
}

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

impl Limiter {
    /// Counts one request for `key` at `now_ms`, or refuses it with the
    /// seconds to wait.
    pub fn hit(&self, key: &str, plan: Plan, now_ms: i64) -> Result<RateState, (RateState, i64)> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 200_000 {
            map.clear();
        }
        if !map.contains_key(key) {
            map.insert(key.to_owned(), Counters::default());
        }
        let Some(c) = map.get_mut(key) else { return Ok(RateState { limit: plan.per_hour, remaining: 0, reset: 0 }) };
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
}
