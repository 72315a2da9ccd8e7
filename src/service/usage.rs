//! Key usage on its way to the database. Each instance buffers the requests
//! it verified (a count per key and day, and the last time each key was
//! used); every `LATCHKEY_USAGE_FLUSH_SECONDS` it hands the batch on.
//!
//! Rules:
//! - Without Redis, or while it does not answer, an instance writes its batch
//!   to the database itself in one transaction; a batch that could not be
//!   written goes back into its buffer (counts added to those that arrived
//!   meanwhile, the later last-used time kept) for the next flush.
//! - With Redis, an instance hands its batch over instead, in chunks of at
//!   most [`CHUNK`] entries, each one atomic script: `HINCRBY` of
//!   `usage:pending` fields `<key id>|<day>`, and the latest last-used time
//!   per key in `usage:last`. A chunk is handed over when the script's reply
//!   says so; what was not is written to the database as above. A batch is
//!   always in Redis, in the database, or back in the buffer.
//! - One instance per interval moves what was handed over to the database:
//!   it takes the lease `usage:lock` (held during the move, at least twice
//!   the interval, renewed before writing, released only if still its own),
//!   and only if no move began within the last nine tenths of an interval
//!   (`usage:due`) unless it must move now (at shutdown, or when asked). It
//!   renames `usage:pending` to `usage:flushing` atomically, writes it in one
//!   transaction and deletes it. A move that fails leaves `usage:flushing` in
//!   place; the next move writes it before anything newer. The database thus
//!   sees one row write per active key and day per interval, however many
//!   instances serve the key.
//! - Counts of keys that no longer exist are dropped (their rows could never
//!   be written, and must not block the others).
//! - At least once, never zero times: a count may be written twice when a
//!   commit fails after the database applied it, when Redis applied a
//!   hand-over whose reply was lost (the batch then also goes to the
//!   database), or when Redis cannot be told that a move committed.
//! - What Redis holds is as durable as Redis: one that restarts without
//!   persistence loses what was handed over and not yet moved (about two
//!   intervals of usage).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::cluster::Redis;
use crate::store::models::ApiKey;
use crate::store::{Db, DbConn, StoreError};

/// Entries (counts and last-used times) per hand-over script.
pub const CHUNK: usize = 1_000;
/// The shortest lease a move holds.
const MIN_LEASE: Duration = Duration::from_secs(10);
/// Key ids per existence query.
const IDS_PER_QUERY: usize = 500;
/// How long a move that must happen now waits for another instance's move.
const WAIT_FOR_LEASE: Duration = Duration::from_secs(2);
const WAIT_STEP: Duration = Duration::from_millis(100);

const PENDING: &str = "usage:pending";
const LAST: &str = "usage:last";
const FLUSHING: &str = "usage:flushing";
const FLUSHING_LAST: &str = "usage:flushing-last";
const LOCK: &str = "usage:lock";
const DUE: &str = "usage:due";

/// Adds counts and keeps the later last-used time. KEYS: pending, last.
/// ARGV: the number n of counts, n pairs `field count`, then pairs `key at`.
const HAND_OVER_LUA: &str = r"
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
for i = 2 * n + 2, #ARGV, 2 do
  local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > seen then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 1
";

/// Takes the lease. KEYS: lock, due. ARGV: owner, lease ms, interval ms,
/// force (1: ignore `due`). 1: taken; 0: another instance holds it; -1: a
/// move began within the interval.
const ACQUIRE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[4] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return 1
";

/// Stages what to write. KEYS: pending, last, flushing, flushing-last.
/// 2: a failed move's batch is staged already; 1: pending was staged now;
/// 0: nothing to move.
const STAGE_LUA: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
local staged = 0
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[3]); staged = 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]); staged = 1 end
return staged
";

/// Renews the lease if still ours. KEYS: lock. ARGV: owner, lease ms.
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Releases the lease if still ours. KEYS: lock. ARGV: owner.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

static HAND_OVER: LazyLock<Script> = LazyLock::new(|| Script::new(HAND_OVER_LUA));
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
static STAGE: LazyLock<Script> = LazyLock::new(|| Script::new(STAGE_LUA));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));

/// Requests counted per key and day, and the last use of each key.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    pub(crate) last_used: HashMap<String, i64>,
    pub(crate) per_day: HashMap<(String, i64), i64>,
}

impl Usage {
    /// One verified request with `key_id` at `now` (Unix seconds).
    pub fn record(&mut self, key_id: &str, now: i64) {
        match self.last_used.get_mut(key_id) {
            Some(at) => *at = (*at).max(now),
            None => {
                self.last_used.insert(key_id.to_owned(), now);
            }
        }
        *self.per_day.entry((key_id.to_owned(), now.div_euclid(86_400))).or_default() += 1;
    }

    /// Takes back a batch that was not written: its counts add to those
    /// buffered since, and the later of the two last-used times is kept.
    pub fn merge(&mut self, unwritten: Usage) {
        for (id, at) in unwritten.last_used {
            let latest = self.last_used.entry(id).or_insert(at);
            *latest = (*latest).max(at);
        }
        for (key_day, count) in unwritten.per_day {
            *self.per_day.entry(key_day).or_default() += count;
        }
    }

    pub fn requests(&self) -> i64 {
        self.per_day.values().sum()
    }

    pub fn keys(&self) -> usize {
        self.last_used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_used.is_empty() && self.per_day.is_empty()
    }
}

/// Writes a batch in one transaction, in key order (concurrent writers take
/// row locks in the same order); counts of keys that no longer exist are
/// dropped.
pub async fn write(db: &Db, batch: Arc<Usage>) -> Result<(), StoreError> {
    db.run(move |conn| crate::store::transaction(conn, |conn| write_in(conn, &batch)).map_err(StoreError::from)).await
}

fn write_in(conn: &mut DbConn, batch: &Usage) -> diesel::QueryResult<()> {
    let named: BTreeSet<&str> =
        batch.last_used.keys().chain(batch.per_day.keys().map(|(id, _)| id)).map(String::as_str).collect();
    let named: Vec<&str> = named.into_iter().collect();
    let mut existing = BTreeSet::new();
    for ids in named.chunks(IDS_PER_QUERY) {
        existing.extend(ApiKey::existing(conn, ids)?);
    }
    let last_used: BTreeMap<&String, i64> = batch.last_used.iter().map(|(id, at)| (id, *at)).collect();
    for (id, at) in last_used.into_iter().filter(|(id, _)| existing.contains(*id)) {
        ApiKey::set_last_used(conn, id, at)?;
    }
    let per_day: BTreeMap<&(String, i64), i64> = batch.per_day.iter().map(|(k, n)| (k, *n)).collect();
    for ((id, day), count) in per_day.into_iter().filter(|((id, _), _)| existing.contains(id)) {
        ApiKey::add_usage(conn, id, *day, count)?;
    }
    if existing.len() < named.len() {
        tracing::info!(keys = named.len() - existing.len(), "dropped the usage of deleted keys");
    }
    Ok(())
}

/// When a move may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The periodic move: only if no move began within this interval.
    Due,
    /// Now (at shutdown, or when asked), waiting a little for another
    /// instance's move to end.
    Now,
}

/// What a move did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// No Redis, or it did not answer: nothing moved.
    Unavailable,
    /// Another instance moved within this interval.
    NotDue,
    /// Another instance holds the lease (it moves what was handed over).
    Busy,
    /// Written to the database (nothing when nothing was pending).
    Done { keys: usize, requests: i64 },
}

/// Relays the usage of every instance through Redis to the database.
pub struct Relay {
    redis: Arc<Redis>,
    /// Names this instance's lease.
    owner: String,
    every: Duration,
}

impl Relay {
    /// A relay for batches flushed every `every` (off when Redis is).
    pub fn new(redis: Arc<Redis>, every: Duration) -> Self {
        let owner = super::crypto::random_base62(16)
            .unwrap_or_else(|_| format!("{}-{}", std::process::id(), crate::store::now()));
        Self { redis, owner, every }
    }

    /// Hands `batch` to Redis; returns what Redis did not acknowledge (all of
    /// it without Redis), which the caller writes itself.
    pub async fn hand_over(&self, batch: Usage) -> Option<Usage> {
        if batch.is_empty() {
            return None;
        }
        if !self.redis.is_configured() {
            return Some(batch);
        }
        let mut counts: Vec<((String, i64), i64)> = batch.per_day.into_iter().collect();
        let mut lasts: Vec<(String, i64)> = batch.last_used.into_iter().collect();
        let (mut rest, mut answering) = (Usage::default(), true);
        while !counts.is_empty() || !lasts.is_empty() {
            let chunk_counts: Vec<_> = counts.drain(..counts.len().min(CHUNK)).collect();
            let chunk_lasts: Vec<_> = lasts.drain(..lasts.len().min(CHUNK - chunk_counts.len())).collect();
            answering = answering && self.hand_chunk(&chunk_counts, &chunk_lasts).await;
            if !answering {
                rest.per_day.extend(chunk_counts);
                rest.last_used.extend(chunk_lasts);
            }
        }
        (!rest.is_empty()).then_some(rest)
    }

    async fn hand_chunk(&self, counts: &[((String, i64), i64)], lasts: &[(String, i64)]) -> bool {
        let mut args = Vec::with_capacity(1 + 2 * (counts.len() + lasts.len()));
        args.push(counts.len().to_string());
        for ((id, day), count) in counts {
            args.extend([format!("{id}|{day}"), count.to_string()]);
        }
        for (id, at) in lasts {
            args.extend([id.clone(), at.to_string()]);
        }
        let (pending, last) = (self.redis.key(PENDING), self.redis.key(LAST));
        let acknowledged = self
            .redis
            .call("usage hand-over", move |mut conn| async move {
                let mut call = HAND_OVER.key(pending);
                call.key(last).arg(args);
                call.invoke_async::<i64>(&mut conn).await
            })
            .await;
        acknowledged == Some(1)
    }

    /// Moves what was handed over (by every instance) to the database, if
    /// this instance can take the lease; `Err` when the database write failed
    /// (the batch stays in Redis for the next move).
    pub async fn move_to_db(&self, db: &Db, when: When) -> crate::service::Result<Moved> {
        if !self.redis.is_configured() {
            return Ok(Moved::Unavailable);
        }
        let mut waited = Duration::ZERO;
        loop {
            match self.acquire(when).await {
                None => return Ok(Moved::Unavailable),
                Some(-1) => return Ok(Moved::NotDue),
                Some(0) if when == When::Now && waited < WAIT_FOR_LEASE => {
                    tokio::time::sleep(WAIT_STEP).await;
                    waited += WAIT_STEP;
                }
                Some(0) => return Ok(Moved::Busy),
                Some(_) => break,
            }
        }
        let moved = self.move_held(db).await;
        self.release().await;
        moved
    }

    /// The batch a failed move left, then what is pending (lease held).
    async fn move_held(&self, db: &Db) -> crate::service::Result<Moved> {
        let (mut keys, mut requests) = (0, 0);
        for _ in 0..2 {
            let Some(staged) = self.stage().await else { return Ok(stopped(keys, requests)) };
            if staged == 0 {
                break;
            }
            let Some(batch) = self.read_staged().await else { return Ok(stopped(keys, requests)) };
            if !self.renew().await {
                tracing::warn!("the usage lease expired before the write: left for the next move");
                return Ok(Moved::Busy);
            }
            let (k, r) = (batch.keys(), batch.requests());
            if let Err(e) = write(db, Arc::new(batch)).await {
                let doing = format!(
                    "moving the usage of {k} keys ({r} requests) to the database (kept in Redis for the next move)"
                );
                return Err(anyhow::Error::new(e).context(doing).into());
            }
            (keys, requests) = (keys + k, requests + r);
            if !self.forget_staged().await {
                tracing::warn!(
                    keys = k,
                    requests = r,
                    "Redis did not confirm a committed usage move: the next move writes it again"
                );
                break;
            }
            if staged == 1 {
                break;
            }
        }
        Ok(Moved::Done { keys, requests })
    }

    /// The lease this move holds at most: twice the interval, at least [`MIN_LEASE`].
    fn lease_ms(&self) -> u64 {
        millis(self.every.saturating_mul(2).max(MIN_LEASE))
    }

    async fn acquire(&self, when: When) -> Option<i64> {
        let (lock, due) = (self.redis.key(LOCK), self.redis.key(DUE));
        let force = u8::from(when == When::Now);
        let args = (self.owner.clone(), self.lease_ms(), millis(self.every * 9 / 10).max(1), force);
        self.redis
            .call("usage lease", move |mut conn| async move {
                let mut call = ACQUIRE.key(lock);
                call.key(due).arg(args.0).arg(args.1).arg(args.2).arg(args.3);
                call.invoke_async::<i64>(&mut conn).await
            })
            .await
    }

    async fn renew(&self) -> bool {
        let (lock, owner, lease) = (self.redis.key(LOCK), self.owner.clone(), self.lease_ms());
        let renewed = self
            .redis
            .call("usage lease renewal", move |mut conn| async move {
                RENEW.key(lock).arg(owner).arg(lease).invoke_async::<i64>(&mut conn).await
            })
            .await;
        renewed == Some(1)
    }

    /// Unanswered, the lease expires by itself.
    async fn release(&self) {
        let (lock, owner) = (self.redis.key(LOCK), self.owner.clone());
        let _released = self
            .redis
            .call("usage lease release", move |mut conn| async move {
                RELEASE.key(lock).arg(owner).invoke_async::<i64>(&mut conn).await
            })
            .await;
    }

    async fn stage(&self) -> Option<i64> {
        let keys = [PENDING, LAST, FLUSHING, FLUSHING_LAST].map(|k| self.redis.key(k));
        self.redis
            .call("usage staging", move |mut conn| async move {
                let mut call = STAGE.prepare_invoke();
                for key in keys {
                    call.key(key);
                }
                call.invoke_async::<i64>(&mut conn).await
            })
            .await
    }

    async fn read_staged(&self) -> Option<Usage> {
        let (counts, lasts) = (self.redis.key(FLUSHING), self.redis.key(FLUSHING_LAST));
        let (counts, last_used): (HashMap<String, i64>, HashMap<String, i64>) = self
            .redis
            .call("usage read", move |mut conn| async move {
                redis::pipe().cmd("HGETALL").arg(counts).cmd("HGETALL").arg(lasts).query_async(&mut conn).await
            })
            .await?;
        let mut batch = Usage { last_used, per_day: HashMap::with_capacity(counts.len()) };
        for (field, count) in counts {
            match field.rsplit_once('|').and_then(|(id, day)| Some((id.to_owned(), day.parse::<i64>().ok()?))) {
                Some(key_day) => *batch.per_day.entry(key_day).or_default() += count,
                None => tracing::warn!(field = %field, "skipped a malformed usage field in Redis"),
            }
        }
        Some(batch)
    }

    async fn forget_staged(&self) -> bool {
        let (counts, lasts) = (self.redis.key(FLUSHING), self.redis.key(FLUSHING_LAST));
        let deleted = self
            .redis
            .call("usage moved", move |mut conn| async move {
                redis::cmd("DEL").arg(counts).arg(lasts).query_async::<i64>(&mut conn).await
            })
            .await;
        deleted.is_some()
    }
}

/// What a move that Redis stopped answering did.
fn stopped(keys: usize, requests: i64) -> Moved {
    if keys == 0 { Moved::Unavailable } else { Moved::Done { keys, requests } }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_record_never_moves_the_last_use_back() {
        let mut usage = Usage::default();
        usage.record("key_1", 200);
        usage.record("key_1", 100);
        assert_eq!(usage.last_used["key_1"], 200);
        assert_eq!(usage.requests(), 2);
    }

    #[tokio::test]
    async fn without_redis_the_whole_batch_comes_back() {
        let relay = Relay::new(Arc::new(Redis::off()), Duration::from_secs(5));
        let mut usage = Usage::default();
        for i in 0..(3 * CHUNK) {
            usage.record(&format!("key_{i}"), 100);
        }
        let rest = relay.hand_over(usage).await.unwrap();
        assert_eq!((rest.keys(), rest.requests()), (3 * CHUNK, 3 * CHUNK as i64));
    }
}
