//! Throttling of repeated failures (passwords, later TOTP codes), per account
//! and per client address, over a sliding window. Counters live in process, as
//! DESIGN.md allows for rate-limit counters.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: usize,
    pub window_secs: i64,
}

/// Failures per key within the window; a key at the limit is refused until its
/// oldest failure leaves the window.
pub struct Throttle {
    policy: Policy,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Self { policy, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(retry_after_secs)` when the key is over its limit at `now`.
    pub fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(key) else { return Ok(()) };
        prune(times, now - self.policy.window_secs);
        if times.len() >= self.policy.max_failures {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((oldest + self.policy.window_secs - now).max(1));
        }
        Ok(())
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bound memory under a spray of distinct keys: drop the quiet ones.
            let cutoff = now - self.policy.window_secs;
            map.retain(|_, t| t.back().is_some_and(|&last| last > cutoff));
        }
        let times = map.entry(key.to_owned()).or_default();
        prune(times, now - self.policy.window_secs);
        times.push_back(now);
    }

    pub fn clear(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn prune(times: &mut VecDeque<i64>, cutoff: i64) {
    while times.front().is_some_and(|&t| t <= cutoff) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_unlocks_when_the_window_passes() {
        let t = Throttle::new(Policy { max_failures: 3, window_secs: 60 });
        for i in 0..3 {
            assert!(t.check("k", 100 + i).is_ok());
            t.record_failure("k", 100 + i);
        }
        assert_eq!(t.check("k", 110), Err(50));
        assert!(t.check("other", 110).is_ok());
        assert!(t.check("k", 161).is_ok());
        t.clear("k");
        assert!(t.check("k", 110).is_ok());
    }
}
