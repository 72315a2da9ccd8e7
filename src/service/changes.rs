//! Following the change feed, and telling the other instances about a change.
//!
//! Rules: each instance reads the feed (`changes`, written by database
//! triggers) every [`POLL_EVERY`] from the last sequence number it has seen —
//! one indexed query, so the database load grows with the number of
//! instances, not with keys × instances — and drops from its cache what the
//! rows name; a successful read tells the verifier that its cache is right as
//! of the moment the read began. Sequence numbers can commit out of order on
//! PostgreSQL (and a rolled-back insert leaves a hole forever): the rows
//! after a missing number are applied as they come, and the missing number
//! is given up only once every transaction that was running when the hole
//! was seen has ended (PostgreSQL's snapshot `xmin` has passed the `xmax`
//! noted then) and the feed has been read once more — so a change that
//! commits late, however late, is never skipped. SQLite's writers never
//! overlap: a hole there is a rolled-back insert, given up after
//! [`GAP_PATIENCE`]. With Redis, a change made here is
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
    /// The holes being waited for, if any.
    hole: Option<Hole>,
    /// PostgreSQL: the next transaction id at the first read, while a
    /// transaction running then may still commit.
    startup_xmax: Option<i64>,
}

/// Missing sequence numbers below `upto`, seen at `since`.
#[derive(Debug, Clone, Copy)]
struct Hole {
    since: Instant,
    /// The highest number applied when the hole was seen: every missing
    /// number below it was taken by a transaction running then, or earlier.
    upto: i64,
    /// PostgreSQL: the next transaction id when the hole was seen.
    xmax: Option<i64>,
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
        let mut applied = self.read_new(db, verifier).await?;
        if self.lock().done.is_some() && !self.lock().above.is_empty() {
            applied += self.settle_holes(db, verifier).await?;
        }
        self.settle_startup(db, verifier).await?;
        verifier.synced_from(started);
        Ok(applied)
    }

    /// Waits for holes, or gives them up once nothing can fill them.
    async fn settle_holes(&self, db: &Db, verifier: &Verifier) -> super::Result<usize> {
        let running = db.run(Change::running_transactions).await.map_err(read_error)?;
        let hole = {
            let mut cursor = self.lock();
            let upto = cursor.above.last().copied().unwrap_or_default();
            *cursor.hole.get_or_insert(Hole { since: Instant::now(), upto, xmax: running.map(|(_, xmax)| xmax) })
        };
        let settled = match (hole.xmax, running) {
            // Every transaction running when the hole was seen has ended.
            (Some(xmax), Some((xmin, _))) => xmin >= xmax,
            _ => hole.since.elapsed() >= GAP_PATIENCE,
        };
        if !settled {
            return Ok(0);
        }
        // What committed late is visible now: read it, then give up the rest.
        let applied = self.read_new(db, verifier).await?;
        let mut cursor = self.lock();
        if let Some(done) = cursor.done
            && done < hole.upto
        {
            cursor.done = Some(hole.upto);
            cursor.above.retain(|s| *s > hole.upto);
        }
        cursor.hole = None;
        drop(cursor);
        self.advance(std::iter::empty());
        Ok(applied)
    }

    /// Reads and applies what is new: every row after `done` not applied
    /// yet (rows above a hole are read again until the hole settles: one
    /// indexed range, whatever the number of holes). The first read finds
    /// where the feed ends, and notes the transactions still running then:
    /// until they have all ended (one may hold a number below the end and
    /// commit later), no cached entry is vouched for by the feed.
    async fn read_new(&self, db: &Db, verifier: &Verifier) -> super::Result<usize> {
        let Some(done) = self.lock().done else {
            let (latest, running) = db
                .run(|conn| {
                    Ok::<_, crate::store::StoreError>((Change::latest(conn)?, Change::running_transactions(conn)?))
                })
                .await
                .map_err(read_error)?;
            let mut cursor = self.lock();
            cursor.done = Some(latest);
            match running {
                Some((xmin, xmax)) if xmin < xmax => cursor.startup_xmax = Some(xmax),
                _ => verifier.trust_reads_from(Instant::now()),
            }
            return Ok(0);
        };
        let mut after = done;
        let mut applied = 0;
        loop {
            let rows = db.run(move |conn| Change::after(conn, after, BATCH)).await.map_err(read_error)?;
            let full = rows.len() as i64 == BATCH;
            if let Some(last) = rows.last() {
                after = last.seq;
            }
            applied += self.apply(verifier, rows);
            if !full {
                break;
            }
        }
        Ok(applied)
    }

    /// Once every transaction running at the first read has ended, reads
    /// that begin from now on see all they wrote: the feed may vouch for them.
    async fn settle_startup(&self, db: &Db, verifier: &Verifier) -> super::Result<()> {
        let Some(startup_xmax) = self.lock().startup_xmax else { return Ok(()) };
        let running = db.run(Change::running_transactions).await.map_err(read_error)?;
        if running.is_none_or(|(xmin, _)| xmin >= startup_xmax) {
            self.lock().startup_xmax = None;
            verifier.trust_reads_from(Instant::now());
        }
        Ok(())
    }

    /// Drops what `rows` name from the cache (those not applied before).
    fn apply(&self, verifier: &Verifier, rows: Vec<Change>) -> usize {
        let fresh: Vec<Change> = {
            let cursor = self.lock();
            let done = cursor.done.unwrap_or_default();
            rows.into_iter().filter(|c| c.seq > done && !cursor.above.contains(&c.seq)).collect()
        };
        verifier.forget_changes(&fresh);
        self.advance(fresh.iter().map(|c| c.seq));
        fresh.len()
    }

    /// Records applied numbers and moves `done` past every contiguous one.
    fn advance(&self, seqs: impl Iterator<Item = i64>) {
        let mut cursor = self.lock();
        let Some(mut done) = cursor.done else { return };
        cursor.above.extend(seqs.filter(|s| *s > done));
        while cursor.above.first() == Some(&(done + 1)) {
            cursor.above.pop_first();
            done += 1;
        }
        if cursor.above.is_empty() {
            cursor.hole = None;
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
                    // Redis is back: end the shared handle's outage now (so
                    // announcements, limits and throttles use it again at
                    // once), retrying while its own connection comes back.
                    for _ in 0..20 {
                        if redis.ping().await.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
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
    fn numbers_after_a_hole_are_applied_and_the_hole_is_kept_until_settled() {
        let f = Follower::default();
        f.lock().done = Some(10);
        f.advance([11, 12].into_iter());
        assert_eq!(f.lock().done, Some(12));
        // 13 is not committed yet; 14 and 15 are.
        f.advance([14, 15].into_iter());
        assert_eq!(f.lock().done, Some(12), "waits for 13, however long");
        assert!(f.lock().above.contains(&14));
        // 13 commits late: applied, and everything moves on.
        f.advance([13, 14, 15].into_iter());
        assert_eq!(f.lock().done, Some(15));
        assert!(f.lock().above.is_empty());
        assert!(f.lock().hole.is_none());
    }
}
