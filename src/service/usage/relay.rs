//! Usage handed on between instances. Each instance buffers the requests
//! it verified (see the parent module); every `LATCHKEY_USAGE_FLUSH_SECONDS`
//! it hands the batch on.
//!
//! Rules:
//! - Without Redis, or while it does not answer, an instance writes its batch
//!   to the database itself in one transaction; a batch that could not be
//!   written goes back into its buffer (counts added to those that arrived
//!   meanwhile, the later last-used time kept) for the next flush.
//! - With Redis, an instance hands its batch over instead, in chunks of at
//!   most [`CHUNK`] entries, each one atomic script: `HINCRBY` of
//!   `usage:pending` fields `d|<subject>|<day>|<outcome>` and
//!   `h|<subject>|<hour>`, the latest last-used time per subject in
//!   `usage:last`, and in `usage:seen` sightings `s|<subject>|<kind>|<value>`
//!   and exercised scopes `x|<subject>|<scope>` as `first last requests`
//!   (earliest first, latest last, requests added). A chunk is handed over when the script's reply
//!   says so; what was not is written to the database as above. A batch is
//!   always in Redis, in the database, or back in the buffer.
//! - One instance per interval moves what was handed over to the database:
//!   it takes the lease `usage:lock` (held during the move, at least twice
//!   the interval, renewed before writing, released only if still its own),
//!   and only if no move began within the last nine tenths of an interval
//!   (`usage:due`) unless it must move now (at shutdown, or when asked). It
//!   renames the three hashes to their `flushing` names atomically, writes it in one
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

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{OUTCOMES, SightKind, SubjectUse, Usage, write};
use crate::service::cluster::Redis;
use crate::store::Db;

/// Entries (counts and last-used times) per hand-over script.
pub const CHUNK: usize = 1_000;
/// The shortest lease a move holds.
const MIN_LEASE: Duration = Duration::from_secs(10);
/// How long a move that must happen now waits for another instance's move.
const WAIT_FOR_LEASE: Duration = Duration::from_secs(2);
const WAIT_STEP: Duration = Duration::from_millis(100);

const PENDING: &str = "usage:pending";
const LAST: &str = "usage:last";
const SEEN: &str = "usage:seen";
const FLUSHING: &str = "usage:flushing";
const FLUSHING_LAST: &str = "usage:flushing-last";
const FLUSHING_SEEN: &str = "usage:flushing-seen";
const LOCK: &str = "usage:lock";
const DUE: &str = "usage:due";

/// Adds counts, keeps the later last-used time, merges sightings and
/// scopes. KEYS: pending, last, seen. ARGV: the number n of counts, the
/// number m of last-used times, n pairs `field count`, m pairs `subject at`,
/// then quadruples `field first last requests`.
const HAND_OVER_LUA: &str = r"
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, m do
  local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > seen then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
while i <= #ARGV do
  local first, last, req = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local had = redis.call('HGET', KEYS[3], ARGV[i])
  if had then
    local f, l, r = string.match(had, '^(-?%d+) (-?%d+) (-?%d+)$')
    if f then
      first = math.min(first, tonumber(f))
      last = math.max(last, tonumber(l))
      req = req + tonumber(r)
    end
  end
  redis.call('HSET', KEYS[3], ARGV[i], string.format('%d %d %d', first, last, req))
  i = i + 4
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

/// Stages what to write. KEYS: pending, last, seen, then their flushing
/// names. 2: a failed move's batch is staged already; 1: pending was staged
/// now; 0: nothing to move.
const STAGE_LUA: &str = r"
for i = 4, 6 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 2 end
end
local staged = 0
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + 3]); staged = 1 end
end
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
        let owner = crate::service::crypto::random_base62(16)
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
        let mut subjects: Vec<(String, SubjectUse)> = batch.subjects.into_iter().collect();
        let (mut rest, mut answering) = (Usage::default(), true);
        while !subjects.is_empty() {
            // Whole subjects per chunk, about CHUNK entries each.
            let (mut take, mut entries) = (0, 0);
            while take < subjects.len() && (take == 0 || entries + subjects[take].1.entries() <= CHUNK) {
                entries += subjects[take].1.entries();
                take += 1;
            }
            let chunk: Vec<(String, SubjectUse)> = subjects.drain(..take).collect();
            answering = answering && self.hand_chunk(&chunk).await;
            if !answering {
                rest.subjects.extend(chunk);
            }
        }
        (!rest.is_empty()).then_some(rest)
    }

    async fn hand_chunk(&self, chunk: &[(String, SubjectUse)]) -> bool {
        let (mut counts, mut lasts, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        for (subject, u) in chunk {
            for (day, by_outcome) in &u.days {
                for (outcome, n) in by_outcome.iter().enumerate().filter(|(_, n)| **n != 0) {
                    counts.extend([format!("d|{subject}|{day}|{outcome}"), n.to_string()]);
                }
            }
            for (hour, n) in &u.hours {
                counts.extend([format!("h|{subject}|{hour}"), n.to_string()]);
            }
            if u.last_used > 0 {
                lasts.extend([subject.clone(), u.last_used.to_string()]);
            }
            for s in u.all_sightings() {
                let field = format!("s|{subject}|{}|{}", s.kind.as_str(), s.value);
                seen.extend([field, s.first.to_string(), s.last.to_string(), s.requests.to_string()]);
            }
            for s in &u.scopes {
                seen.extend([format!("x|{subject}|{}", s.scope), s.first.to_string(), s.last.to_string(), "0".into()]);
            }
        }
        let mut args = Vec::with_capacity(2 + counts.len() + lasts.len() + seen.len());
        args.extend([(counts.len() / 2).to_string(), (lasts.len() / 2).to_string()]);
        args.extend(counts);
        args.extend(lasts);
        args.extend(seen);
        let keys = [PENDING, LAST, SEEN].map(|k| self.redis.key(k));
        let acknowledged = self
            .redis
            .call("usage hand-over", move |mut conn| async move {
                let mut call = HAND_OVER.prepare_invoke();
                for key in keys {
                    call.key(key);
                }
                call.arg(args).invoke_async::<i64>(&mut conn).await
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
            if let Err(e) = write::write(db, Arc::new(batch)).await {
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
        let keys = [PENDING, LAST, SEEN, FLUSHING, FLUSHING_LAST, FLUSHING_SEEN].map(|k| self.redis.key(k));
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
        let [counts, lasts, seen] = [FLUSHING, FLUSHING_LAST, FLUSHING_SEEN].map(|k| self.redis.key(k));
        type Hash = HashMap<String, String>;
        let (counts, lasts, seen): (Hash, Hash, Hash) = self
            .redis
            .call("usage read", move |mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("HGETALL").arg(counts).cmd("HGETALL").arg(lasts).cmd("HGETALL").arg(seen);
                pipe.query_async(&mut conn).await
            })
            .await?;
        let mut batch = Usage::default();
        for (field, value) in counts.iter().chain(&lasts).chain(&seen) {
            let read = if lasts.contains_key(field) && !field.contains('|') {
                value.parse().ok().map(|at: i64| batch_subject(&mut batch, field).last_used = at)
            } else {
                read_field(&mut batch, field, value)
            };
            if read.is_none() {
                tracing::warn!(field = %field, "skipped a malformed usage field in Redis");
            }
        }
        Some(batch)
    }

    async fn forget_staged(&self) -> bool {
        let keys = [FLUSHING, FLUSHING_LAST, FLUSHING_SEEN].map(|k| self.redis.key(k));
        let deleted = self
            .redis
            .call("usage moved", move |mut conn| async move {
                redis::cmd("DEL").arg(&keys[..]).query_async::<i64>(&mut conn).await
            })
            .await;
        deleted.is_some()
    }
}

fn batch_subject<'a>(batch: &'a mut Usage, subject: &str) -> &'a mut SubjectUse {
    batch.subjects.entry(subject.to_owned()).or_default()
}

/// Reads one field of the staged hashes into `batch`; `None` if malformed.
/// A field `<key id>|<day>` (as written before outcomes were counted) is a
/// count of `ok` requests.
fn read_field(batch: &mut Usage, field: &str, value: &str) -> Option<()> {
    let number = |s: &str| s.parse::<i64>().ok();
    let mut parts = field.splitn(4, '|');
    match (parts.next()?, parts.next(), parts.next(), parts.next()) {
        ("d", Some(subject), Some(day), Some(outcome)) => {
            let outcome = outcome.parse::<usize>().ok().filter(|o| *o < OUTCOMES)?;
            let (day, n) = (number(day)?, number(value)?);
            batch_subject(batch, subject).add_count(day, outcome, n);
        }
        ("h", Some(subject), Some(hour), None) => {
            let (hour, n) = (number(hour)?, number(value)?);
            batch_subject(batch, subject).add_hour(hour, n);
        }
        ("s", Some(subject), Some(kind), Some(seen)) => {
            let kind = SightKind::parse(kind)?;
            let (first, last, n) = triple(value)?;
            batch_subject(batch, subject).add_sighting(kind, seen, first, last, n);
        }
        ("x", Some(subject), Some(scope), None) => {
            let (first, last, _) = triple(value)?;
            batch_subject(batch, subject).add_scope(scope, first, last);
        }
        (subject, Some(day), None, None) => {
            let (day, n) = (number(day)?, number(value)?);
            batch_subject(batch, subject).add_count(day, 0, n);
        }
        _ => return None,
    }
    Some(())
}

/// `first last requests`.
fn triple(value: &str) -> Option<(i64, i64, i64)> {
    let mut it = value.split(' ').map(|p| p.parse::<i64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
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
    use crate::domain::UsageOutcome;
    use crate::service::usage::Seen;

    #[tokio::test]
    async fn without_redis_the_whole_batch_comes_back() {
        let relay = Relay::new(Arc::new(Redis::off()), Duration::from_secs(5));
        let mut usage = Usage::default();
        for i in 0..(3 * CHUNK) {
            usage.record(&format!("key_{i}"), UsageOutcome::Ok, &Seen { at: 100, ip: None, agent: None });
        }
        let rest = relay.hand_over(usage).await.unwrap();
        assert_eq!((rest.keys(), rest.requests()), (3 * CHUNK, 3 * CHUNK as i64));
    }

    #[test]
    fn staged_fields_read_back_into_a_batch_and_old_fields_count_as_ok() {
        let mut batch = Usage::default();
        for (field, value) in [
            ("d|key_1|20000|0", "5"),
            ("d|key_1|20000|4", "2"),
            ("h|key_1|480000", "7"),
            ("s|key_1|agent|curl/8 | odd", "10 20 7"),
            ("s|key_1|address|10.0.0.1", "10 20 7"),
            ("x|key_1|products:read", "10 20 0"),
            ("key_2|20000", "3"),
        ] {
            assert!(read_field(&mut batch, field, value).is_some(), "{field}");
        }
        assert!(read_field(&mut batch, "d|key_1|x|0", "1").is_none());
        assert!(read_field(&mut batch, "d|key_1|1|9", "1").is_none());
        assert!(read_field(&mut batch, "s|key_1|agent|a", "1 2").is_none());
        assert_eq!(batch.day_counts("key_1", 20_000), Some([5, 0, 0, 0, 2, 0, 0]));
        assert_eq!(batch.day_counts("key_2", 20_000), Some([3, 0, 0, 0, 0, 0, 0]));
        let k = &batch.subjects["key_1"];
        assert_eq!(k.hours, vec![(480_000, 7)]);
        assert_eq!(k.all_sightings().len(), 2);
        assert!(k.all_sightings().iter().any(|s| s.value == "curl/8 | odd"));
        assert_eq!(k.scopes.len(), 1);
    }
}
