//! The verifier's cache of credentials: how long an answer is trusted,
//! what a change in the feed or on this instance drops (see the rules in
//! `service::verify`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{CACHE_MAX_AGE, CACHE_TTL, STALE_WINDOW, Verifier};
use crate::service::principal::Principal;

/// The cached answer for one presented credential.
pub(super) struct Cached {
    pub(super) record: Option<Arc<Principal>>,
    /// When the database read began (the answer is as of then or later).
    pub(super) read_at: Instant,
    /// When it entered the cache (a feed read that began later covers it);
    /// `None` when a change was applied while it was being read (it may
    /// predate that change: only the one-second bound holds it).
    pub(super) cached_at: Option<Instant>,
    /// The access-token generation when it was read (see `invalidate_tokens`).
    pub(super) tokens: u64,
}

/// When a database read began: the moment, the token generation, and how
/// many changes had been applied to the cache.
#[derive(Clone, Copy)]
pub(super) struct ReadStart {
    pub(super) at: Instant,
    pub(super) tokens: u64,
    pub(super) forgotten: u64,
}

/// What the cache holds for a hash.
pub(super) enum Hit {
    Fresh(Option<Arc<Principal>>),
    /// Past its bound, but known right within [`STALE_WINDOW`].
    Stale(Arc<Principal>),
    Miss,
}

impl Verifier {
    /// When the last successful feed read began, if one did.
    pub(super) fn synced_at(&self) -> Option<Instant> {
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
    pub(super) fn index_of(&self, presented: &str) -> u128 {
        use siphasher::sip128::Hasher128;
        use std::hash::Hasher;
        let mut h = self.index;
        h.write(presented.as_bytes());
        h.finish128().as_u128()
    }

    /// What the cache holds for a credential's index (marking it used).
    pub(super) fn cached(&self, index: u128) -> Hit {
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
    pub(super) fn read_start(&self) -> ReadStart {
        ReadStart {
            at: Instant::now(),
            tokens: self.token_generation.load(Ordering::Acquire),
            forgotten: self.forgotten.load(Ordering::Acquire),
        }
    }

    /// Caches an answer read from `start`; when full, the least-recently-used
    /// entry makes room. If a change was applied since the read began, the
    /// answer may predate it: the feed never covers it.
    pub(super) fn remember(&self, index: u128, record: Option<Arc<Principal>>, start: ReadStart) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let raced = self.forgotten.load(Ordering::Acquire) != start.forgotten;
        let cached_at = (!raced).then(Instant::now);
        cache.insert(index, Cached { record, read_at: start.at, cached_at, tokens: start.tokens });
    }

    /// Counts a change applied to the cache (the caller holds its lock).
    pub(super) fn note_forgotten(&self) {
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
}
