//! Following the change feed, and telling the other instances about a change.
//!
//! Rules: each instance reads the feed (`changes`, written by database
//! triggers) every [`POLL_EVERY`] from the last sequence number it has seen —
//! one indexed query, so the database load grows with the number of
//! instances, not with keys × instances — and drops from its cache what the
//! rows name; a successful read tells the verifier that its cache is right as
//! of the moment the read began. Sequence numbers can commit out of order on
//! PostgreSQL (and a rolled-back insert leaves a hole forever): a missing
//! number is waited for up to [`GAP_PATIENCE`], the rows after it being
//! applied as they come, then skipped. With Redis, a change made here is
//! published at once and every other instance reads its feed on hearing it
//! (well under 50 ms on a local network); the channel is only a shortcut — a
//! lost message or subscription costs at most the poll interval, and a lost
//! subscription is re-established by itself. Rows older than [`KEEP`] are
//! pruned.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::cluster::Redis;
use super::verify::Verifier;
use crate::store::Db;
use crate::store::models::Change;

/// How often the feed is read without being told.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a hole in the sequence is waited for.
pub const GAP_PATIENCE: Duration = Duration::from_secs(10);
/// How long rows stay in the feed.
pub const KEEP: Duration = Duration::from_secs(3600);
/// Rows read per query.
const BATCH: i64 = 500;
/// The channel (under the deployment's prefix) that announces a change.
pub const CHANNEL: &str = "changes";

#[derive(Default)]
struct Cursor {
    /// Every sequence number up to this one has been applied (or given up on).
    done: Option<i64>,
    /// Applied numbers above `done` (after a hole).
    above: BTreeSet<i64>,
    /// Since when the hole just above `done` has been open.
    hole_since: Option<Instant>,
}

/// One instance's position in the feed.
#[derive(Default)]
pub struct Follower {
    cursor: Mutex<Cursor>,
}

impl Follower {
    /// Reads what is new and drops it from `verifier`'s cache; returns the
    /// number of rows applied. The first read only finds where the feed ends
    /// (an empty cache needs nothing from the past).
    pub async fn poll(&self, db: &Db, verifier: &Verifier) -> super::Result<usize> {
        let started = Instant::now();
        let mut applied = 0;
        loop {
            let done = self.lock().done;
            let rows = match done {
                None => {
                    let latest = db.run(Change::latest).await.map_err(read_error)?;
                    self.lock().done = Some(latest);
                    break;
                }
                Some(after) => db.run(move |conn| Change::after(conn, after, BATCH)).await.map_err(read_error)?,
            };
            let full = rows.len() as i64 == BATCH;
            let fresh: Vec<Change> = {
                let cursor = self.lock();
                rows.into_iter().filter(|c| !cursor.above.contains(&c.seq)).collect()
            };
            verifier.forget_changes(&fresh);
            applied += fresh.len();
            self.advance(fresh.iter().map(|c| c.seq));
            if !full {
                break;
            }
        }
        verifier.synced_from(started);
        Ok(applied)
    }

    /// Records applied numbers and moves `done` past every contiguous one
    /// (and past a hole older than [`GAP_PATIENCE`]).
    fn advance(&self, seqs: impl Iterator<Item = i64>) {
        let mut cursor = self.lock();
        let Some(mut done) = cursor.done else { return };
        cursor.above.extend(seqs.filter(|s| *s > done));
        loop {
            while cursor.above.first() == Some(&(done + 1)) {
                cursor.above.pop_first();
                done += 1;
            }
            match cursor.above.first().copied() {
                None => {
                    cursor.hole_since = None;
                    break;
                }
                Some(next) => match cursor.hole_since {
                    Some(since) if since.elapsed() >= GAP_PATIENCE => {
                        // A rolled-back insert: nothing will ever fill it.
                        done = next - 1;
                        cursor.hole_since = None;
                    }
                    Some(_) => break,
                    None => {
                        cursor.hole_since = Some(Instant::now());
                        break;
                    }
                },
            }
        }
        cursor.done = Some(done);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_error(e: crate::store::StoreError) -> super::Error {
    super::Error::Internal(anyhow::Error::new(e).context("reading the change feed"))
}

/// Reads the feed every [`POLL_EVERY`], or at once when another instance
/// announces a change; prunes old rows now and then. Logs a failure once
/// until the feed can be read again (the cache then falls back to its
/// one-second bound by itself).
pub async fn follow(db: Db, verifier: Arc<Verifier>) {
    let follower = Follower::default();
    let mut failing = false;
    let mut last_prune = Instant::now();
    loop {
        match follower.poll(&db, &verifier).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the change feed is read again: cached credentials are trusted past one second");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = ?anyhow::Error::from(e), "cannot read the change feed: cached credentials are read again after one second");
            }
            Err(_) => {}
        }
        if last_prune.elapsed() >= Duration::from_secs(60) {
            last_prune = Instant::now();
            let before = crate::store::now() - KEEP.as_secs() as i64;
            if let Err(e) = db.run(move |conn| Change::prune(conn, before)).await {
                tracing::warn!(error = %e, "pruning the change feed");
            }
        }
        verifier.changed_elsewhere(POLL_EVERY).await;
    }
}

/// Announces each change made here to the other instances (coalescing a
/// burst of changes into one message).
pub async fn publish(redis: Arc<Redis>, verifier: Arc<Verifier>) {
    if !redis.is_configured() {
        return;
    }
    loop {
        verifier.changed_here().await;
        redis.publish(CHANNEL, "changed").await;
    }
}

/// Listens for the other instances' announcements and wakes the follower;
/// re-subscribes by itself after a lost connection (and reads the feed then,
/// in case a message was missed).
pub async fn listen(redis: Arc<Redis>, verifier: Arc<Verifier>) {
    let Some(client) = redis.client().cloned() else { return };
    let channel = redis.key(CHANNEL);
    let mut lost = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(pubsub)) => {
                if lost {
                    tracing::info!("subscribed again to the change channel");
                }
                verifier.announce_changed_elsewhere();
                let mut messages = pubsub.into_on_message();
                while messages.next().await.is_some() {
                    verifier.announce_changed_elsewhere();
                }
                tracing::warn!(
                    "the change channel was lost: changes from other instances arrive within a second until it is back"
                );
                lost = true;
            }
            Ok(Err(e)) if !lost => {
                tracing::warn!(error = %e, "cannot subscribe to the change channel: changes from other instances arrive within a second");
                lost = true;
            }
            Err(_) if !lost => {
                tracing::warn!(
                    "cannot subscribe to the change channel (no answer): changes from other instances arrive within a second"
                );
                lost = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_in_the_sequence_is_waited_for_then_skipped() {
        let f = Follower::default();
        f.lock().done = Some(10);
        f.advance([11, 12].into_iter());
        assert_eq!(f.lock().done, Some(12));
        // 13 is not committed yet; 14 and 15 are.
        f.advance([14, 15].into_iter());
        assert_eq!(f.lock().done, Some(12), "waits for 13");
        assert!(f.lock().above.contains(&14));
        // 13 commits late: applied, and everything moves on.
        f.advance([13, 14, 15].into_iter());
        assert_eq!(f.lock().done, Some(15));
        assert!(f.lock().above.is_empty());
        // 16 never commits (rolled back): given up after the patience.
        f.advance([17].into_iter());
        assert_eq!(f.lock().done, Some(15));
        f.lock().hole_since = Some(Instant::now() - GAP_PATIENCE);
        f.advance(std::iter::empty());
        assert_eq!(f.lock().done, Some(17));
    }
}
