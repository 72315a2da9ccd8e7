//! Audit events an unauthenticated caller can cause (failed token requests,
//! refused revoked credentials, failed logins to unknown accounts), recorded
//! at most once per subject and interval, then summarised.
//!
//! Rules: the first event of a subject in an interval is recorded (at once by
//! the caller, or buffered here); later ones in the same interval are only
//! counted, and one summary event with the count (`details.repeated`) is
//! written after the interval ends — so a flood adds a bounded number of rows
//! however fast it comes. Buffered events and summaries are written with the
//! usage flush and at shutdown, never on the request path. Subjects are
//! bounded by least-recently-used eviction; an evicted subject's pending
//! summary is kept for the next flush (bounded too). A flush that fails puts
//! what it took back, ahead of what was buffered since, for the next flush;
//! the buffer keeps its bound then too, and what does not fit (the newest) is
//! dropped with a warning, never silently.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::audit::{self, Actor, Event};
use super::lru::Lru;
use crate::domain::AuditAction;
use crate::store::Db;

/// An audit event that owns its parts (to be recorded later).
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub action: AuditAction,
    pub team_id: Option<String>,
    pub object: Option<(&'static str, String)>,
    pub details: serde_json::Value,
    pub actor: Actor,
    /// Recorded only if no event of this claim `(subject, kind)` was recorded
    /// in the `every` seconds before `at` (by any instance).
    pub claim: Option<Claim>,
}

/// A claim that lets one event through per interval, whichever instance asks.
#[derive(Debug, Clone)]
pub struct Claim {
    pub subject: String,
    pub kind: String,
    pub at: i64,
    pub every: i64,
}

impl PendingEvent {
    pub fn new(action: AuditAction, actor: Actor) -> Self {
        Self { action, team_id: None, object: None, details: json!({}), actor, claim: None }
    }

    pub fn team(mut self, team_id: Option<&str>) -> Self {
        self.team_id = team_id.map(str::to_owned);
        self
    }

    /// The object, by its kind ([`ObjectKind`](super::audit::ObjectKind), or its text) and id.
    pub fn object(mut self, kind: impl Into<&'static str>, id: &str) -> Self {
        self.object = Some((kind.into(), id.to_owned()));
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Records the event only if no other of `(subject, kind)` was in the
    /// `every` seconds before `at`.
    pub fn at_most_every(mut self, subject: &str, kind: &str, at: i64, every: i64) -> Self {
        self.claim = Some(Claim { subject: subject.to_owned(), kind: kind.to_owned(), at, every });
        self
    }

    pub fn record(&self, conn: &mut crate::store::DbConn) -> super::Result<()> {
        // The claim and the event are written in the caller's transaction (a flush's).
        let Some(claim) = &self.claim else { return self.record_now(conn) };
        let won = crate::store::models::Reminder::claim_every(conn, &claim.subject, &claim.kind, claim.at, claim.every)
            .map_err(crate::store::StoreError::from)?;
        if won { self.record_now(conn) } else { Ok(()) }
    }

    fn record_now(&self, conn: &mut crate::store::DbConn) -> super::Result<()> {
        let mut e = Event::new(self.action).details(self.details.clone());
        if let Some(t) = self.team_id.as_deref() {
            e = e.team(t);
        }
        if let Some((kind, id)) = &self.object {
            e = e.object(*kind, id);
        }
        audit::record(conn, &self.actor, e)
    }
}

/// Whether the caller should record the event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The first of its subject in this interval: record it.
    Record,
    /// Counted into the subject's summary.
    Suppressed,
}

struct Window {
    started: i64,
    last: i64,
    repeated: u64,
    /// What the summary says (the first event, without its details).
    summary: PendingEvent,
}

impl Window {
    fn summary(&self, interval: i64) -> PendingEvent {
        let mut e = self.summary.clone();
        e.actor.ip = None;
        e.actor.user_agent = None;
        e.details =
            json!({"repeated": self.repeated, "from": self.started, "to": self.last, "interval_secs": interval});
        e
    }
}

/// The longest the outbox grows between flushes before new rows are dropped.
const OUTBOX_MAX: usize = 10_000;
pub const MAX_SUBJECTS: usize = 100_000;

struct Inner {
    windows: Lru<String, Window>,
    /// Subjects with repeated events not yet summarised.
    repeating: HashSet<String>,
    outbox: VecDeque<PendingEvent>,
    dropped: u64,
}

pub struct AuditGate {
    interval: i64,
    inner: Mutex<Inner>,
}

impl Default for AuditGate {
    fn default() -> Self {
        Self::new(60, MAX_SUBJECTS)
    }
}

impl Inner {
    fn push(&mut self, e: PendingEvent) {
        if self.outbox.len() < OUTBOX_MAX {
            self.outbox.push_back(e);
        } else {
            self.dropped += 1;
        }
    }
}

impl AuditGate {
    pub fn new(interval_secs: i64, max_subjects: usize) -> Self {
        let inner =
            Inner { windows: Lru::new(max_subjects), repeating: HashSet::new(), outbox: VecDeque::new(), dropped: 0 };
        Self { interval: interval_secs.max(1), inner: Mutex::new(inner) }
    }

    /// Counts an event about `subject` at `now`; says whether to record it.
    pub fn admit(&self, subject: &str, event: &PendingEvent, now: i64) -> Admission {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let interval = self.interval;
        let fresh = || Window { started: now, last: now, repeated: 0, summary: event.clone() };
        let existed = inner.windows.peek(subject).is_some();
        let (w, evicted) = inner.windows.get_or_insert_with(&subject.to_owned(), fresh);
        let (decision, ended) = if !existed {
            (Admission::Record, None)
        } else if now - w.started < interval {
            w.repeated += 1;
            w.last = now;
            inner.repeating.insert(subject.to_owned());
            (Admission::Suppressed, None)
        } else {
            let ended = std::mem::replace(w, fresh());
            (Admission::Record, Some(ended).filter(|e| e.repeated > 0))
        };
        let pending = ended.into_iter().chain(evicted.map(|(_, w)| w).filter(|w| w.repeated > 0));
        for w in pending.collect::<Vec<_>>() {
            inner.push(w.summary(interval));
        }
        decision
    }

    /// Buffers an event for the next flush as it is (the caller decided it
    /// is not repeated; a claim on it may still drop it then).
    pub fn enqueue(&self, event: PendingEvent) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }

    /// Like [`admit`](Self::admit), but an admitted event is buffered for the
    /// next flush instead of recorded by the caller.
    pub fn buffer(&self, subject: &str, event: PendingEvent, now: i64) {
        if self.admit(subject, &event, now) == Admission::Record {
            self.inner.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        }
    }

    /// Takes the buffered events and the summaries of intervals that ended
    /// before `now` (all of them when `now` is `None`: at shutdown).
    pub fn take(&self, now: Option<i64>) -> Vec<PendingEvent> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let interval = self.interval;
        let mut out: Vec<PendingEvent> = inner.outbox.drain(..).collect();
        let windows = &mut inner.windows;
        inner.repeating.retain(|subject| {
            // Evicted subjects were summarised when they left.
            let Some(w) = windows.peek_mut(subject).filter(|w| w.repeated > 0) else { return false };
            if now.is_some_and(|n| n - w.started < interval) {
                return true;
            }
            out.push(w.summary(interval));
            // The interval is summarised: the next event opens a new one.
            w.repeated = 0;
            w.started = i64::MIN / 2;
            false
        });
        let dropped = std::mem::take(&mut inner.dropped);
        if dropped > 0 {
            tracing::warn!(dropped, "audit events dropped: the buffer was full between flushes");
        }
        out
    }

    /// Puts back events a failed flush took, ahead of those buffered since;
    /// past the buffer's bound the newest are dropped, with a warning.
    fn restore(&self, events: Vec<PendingEvent>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let since = std::mem::take(&mut guard.outbox);
        let mut dropped = 0u64;
        for e in events.into_iter().chain(since) {
            if guard.outbox.len() < OUTBOX_MAX {
                guard.outbox.push_back(e);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(dropped, "audit events dropped: more were left by a failed flush than the buffer holds");
        }
    }

    /// Buffered events and summaries not yet written (an open interval's
    /// summary counts as one).
    pub fn pending(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.outbox.len() + inner.repeating.len()
    }

    /// Writes what [`take`](Self::take) returns, in one transaction; if that
    /// fails, the events go back into the buffer for the next flush.
    pub async fn flush(&self, db: &Db, now: Option<i64>) -> super::Result<usize> {
        let events = self.take(now);
        if events.is_empty() {
            return Ok(0);
        }
        let n = events.len();
        let events = Arc::new(events);
        let writing = events.clone();
        let written = db
            .run(move |conn| {
                crate::store::transaction(conn, |conn| {
                    for e in writing.iter() {
                        e.record(conn)?;
                    }
                    Ok::<_, super::Error>(())
                })
            })
            .await;
        if let Err(e) = written {
            // The task has ended, so this is the only handle left (a clone otherwise).
            self.restore(Arc::try_unwrap(events).unwrap_or_else(|shared| (*shared).clone()));
            let doing = format!("recording {n} audit events (kept for the next flush)");
            return Err(anyhow::Error::new(e).context(doing).into());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PendingEvent {
        PendingEvent::new(AuditAction::OauthTokenFailed, Actor::default())
            .team(Some("team_1"))
            .object("oauth_app", "app_1")
    }

    #[test]
    fn a_flood_is_one_event_then_one_summary_per_interval() {
        let gate = AuditGate::new(60, 100);
        let mut recorded = 0;
        for i in 0..300 {
            if gate.admit("app_1", &event(), 1_000 + i / 100) == Admission::Record {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 1);
        assert!(gate.take(Some(1_010)).is_empty(), "the interval is still open");
        let summaries = gate.take(Some(1_060));
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].details["repeated"], 299);
        assert_eq!(summaries[0].action, AuditAction::OauthTokenFailed);
        assert!(gate.take(Some(1_200)).is_empty(), "summarised once");
        assert_eq!(gate.admit("app_1", &event(), 1_300), Admission::Record, "a new interval");
    }

    #[test]
    fn buffered_events_wait_for_the_flush_and_shutdown_takes_everything() {
        let gate = AuditGate::new(60, 100);
        for _ in 0..5 {
            gate.buffer("key_1", event(), 10);
        }
        let taken = gate.take(None);
        assert_eq!(taken.len(), 2, "the first event and, at shutdown, the summary of the other four");
        assert_eq!(taken[1].details["repeated"], 4);
    }

    #[test]
    fn events_a_failed_flush_took_go_back_first_and_stay_bounded() {
        let gate = AuditGate::new(60, 100);
        gate.buffer("key_1", event(), 10);
        let taken = gate.take(None);
        assert_eq!(gate.pending(), 0);
        gate.buffer("key_2", event().object("api_key", "key_2"), 10);
        gate.restore(taken);
        let again = gate.take(None);
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].object, Some(("oauth_app", "app_1".to_owned())), "the older event first");
        let full = vec![event(); OUTBOX_MAX + 5];
        gate.restore(full);
        assert_eq!(gate.pending(), OUTBOX_MAX, "bounded; the excess is dropped with a warning");
    }

    #[test]
    fn a_flood_of_subjects_keeps_an_active_one_and_its_count() {
        let gate = AuditGate::new(60, 50);
        assert_eq!(gate.admit("victim", &event(), 10), Admission::Record);
        for i in 0..1_000 {
            let _ = gate.admit(&format!("spray-{i}"), &event(), 10);
            if i % 10 == 0 {
                assert_eq!(gate.admit("victim", &event(), 10), Admission::Suppressed, "after {i} others");
            }
        }
        let victim = gate.take(None).into_iter().filter(|e| e.details["repeated"] == 100).count();
        assert_eq!(victim, 1);
    }
}
