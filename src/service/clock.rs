//! The time the services see, in Unix seconds.
//!
//! Rules: services take the time from the [`Clock`] they were built with, never
//! from the system directly, so tests can move it (an expiry, a grace period, a
//! lockout window) instead of sleeping; in production it is the system clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The system clock, plus an offset that only tests move.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        crate::store::now() + self.offset.load(Ordering::Relaxed)
    }

    /// Now, in Unix milliseconds (for the rate limiters' sliding windows).
    pub fn now_ms(&self) -> i64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        system + self.offset.load(Ordering::Relaxed) * 1000
    }

    /// Moves this clock (and every service sharing it) forward.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_one_handle_moves_every_clone() {
        let clock = Clock::system();
        let shared = clock.clone();
        let before = shared.now();
        clock.advance(3600);
        assert!(shared.now() >= before + 3600);
    }
}
