//! Delivering queued messages: every instance runs a [`Dispatcher`] pass
//! every second; each endpoint is served by one instance at a time.
//!
//! Rules: an instance claims an endpoint with a conditional UPDATE of its
//! lease ([`LEASE`] of real time: it is about a live process, not the
//! services' clock), then sends that endpoint's deliveries strictly in order
//! — only the oldest pending one, and only once due — and gives the lease
//! back; a crashed instance's lease simply runs out. Every other time is the
//! services' [`Clock`]. Retries follow [`RETRY_DELAYS`] after the first
//! attempt, then a last try [`LAST_TRY_AFTER`] the first attempt; when that
//! fails too the delivery is `failed`, the endpoint is disabled (audited,
//! actor Latchkey) and the team's owners are told (`webhook.endpoint_disabled`)
//! after the commit. All state is in the database, so a restart loses nothing.
//!
//! Fairness: a pass serves every team's longest-overdue endpoint before any
//! team's second one, at most [`ENDPOINTS_PER_TEAM`] of one team, and a claim
//! stops sending after [`CLAIM_BUDGET`]; so neither one team's backlog nor
//! several teams' slow receivers can fill a pass or make it long, and another
//! team's delivery waits at most about one attempt's timeout (until more
//! than [`ENDPOINTS_PER_PASS`] teams have deliveries due at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use super::outbox::render;
use super::sender::{Outcome, Sender, Signed};
use super::signing::{self, Slot};
use crate::domain::{AuditAction, DeliveryStatus, Role};
use crate::service::audit::{self, Actor, Event, ObjectKind};
use crate::service::clock::Clock;
use crate::service::crypto::Keys;
use crate::service::notify::{Notice, Notifier, Recipient};
use crate::service::{Error, Result};
use crate::store::models::{Attempt, Membership, WebhookDelivery, WebhookEndpoint, WebhookMessage};
use crate::store::{Db, DbConn};

/// The waits after the 1st … 6th failed attempt (Standard Webhooks' schedule).
pub const RETRY_DELAYS: [i64; 6] = [5, 300, 1800, 7200, 18_000, 36_000];
/// The last try comes this long after the first attempt.
pub const LAST_TRY_AFTER: i64 = 86_400;
/// How long a claim on an endpoint lasts (real seconds).
pub const LEASE: i64 = 120;
/// Deliveries sent to one endpoint per claim (each at most 5 s).
const BATCH: usize = 20;
/// After this long on one endpoint a claim sends no further delivery: a
/// slow receiver keeps its pass short, so the next pass comes soon.
const CLAIM_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// Endpoints served at once by one pass.
const ENDPOINTS_PER_PASS: usize = 32;
/// Endpoints of one team served at once by one pass: a team with a backlog
/// (or slow receivers) takes at most these slots, never every other team's.
const ENDPOINTS_PER_TEAM: usize = 4;

/// When the next attempt is due after `attempts` failed ones, or `None`
/// when the delivery has failed for good.
pub fn next_attempt(attempts: i64, first_attempt_at: i64, now: i64) -> Option<i64> {
    match usize::try_from(attempts) {
        Ok(n @ 1..=6) => Some(now + RETRY_DELAYS[n - 1]),
        Ok(7) => Some((first_attempt_at + LAST_TRY_AFTER).max(now)),
        _ => None,
    }
}

/// Sends this instance's share of the queued deliveries.
pub struct Dispatcher {
    db: Db,
    keys: Keys,
    clock: Clock,
    sender: Sender,
    /// This instance, as leases name it.
    me: String,
    api_key_prefix: String,
    /// One pass at a time on this instance.
    one_pass: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
    /// The timer's passes are skipped (tests drive delivery themselves).
    timer_held: AtomicBool,
}

impl Dispatcher {
    pub fn new(db: Db, keys: Keys, clock: Clock, allow_private: bool, api_key_prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            keys,
            clock,
            sender: Sender::new(allow_private)?,
            me: crate::service::crypto::new_id("inst")?,
            api_key_prefix: api_key_prefix.to_owned(),
            one_pass: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            timer_held: AtomicBool::new(false),
        })
    }

    /// Stops taking new deliveries (the one under way finishes).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Keeps the timer from running passes: only [`run_once`](Self::run_once)
    /// called directly delivers (a test that watches each attempt).
    pub fn hold_timer(&self) {
        self.timer_held.store(true, Ordering::Relaxed);
    }

    pub fn timer_held(&self) -> bool {
        self.timer_held.load(Ordering::Relaxed)
    }

    /// One pass: every endpoint with a delivery due that no other instance
    /// holds; returns how many attempts were made.
    pub async fn run_once(self: &Arc<Self>, notifier: &Notifier) -> Result<usize> {
        let _one = self.one_pass.lock().await;
        let (at, real) = (self.clock.now(), crate::store::now());
        let due = self.db.run(move |c| {
            Ok::<_, Error>(WebhookDelivery::due_endpoints(c, at, real, ENDPOINTS_PER_PASS, ENDPOINTS_PER_TEAM)?)
        });
        let mut tasks = tokio::task::JoinSet::new();
        for endpoint_id in due.await? {
            let (me, notifier) = (self.clone(), notifier.clone());
            tasks.spawn(async move { me.serve(&endpoint_id, &notifier).await });
        }
        let mut attempts = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(n)) => attempts += n,
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "delivering webhooks failed")
                }
                Err(e) => tracing::warn!(error = %e, "a webhook delivery task stopped"),
            }
        }
        Ok(attempts)
    }

    /// Claims one endpoint, sends its due deliveries in order, lets it go.
    async fn serve(&self, endpoint_id: &str, notifier: &Notifier) -> Result<usize> {
        let (id, me, real) = (endpoint_id.to_owned(), self.me.clone(), crate::store::now());
        let claimed =
            self.db.run(move |c| Ok::<_, Error>(WebhookEndpoint::claim(c, &id, &me, real, real + LEASE)?)).await?;
        if !claimed {
            return Ok(0);
        }
        let sent = self.send_in_order(endpoint_id, notifier).await;
        let (id, me) = (endpoint_id.to_owned(), self.me.clone());
        self.db.run(move |c| Ok::<_, Error>(WebhookEndpoint::release(c, &id, &me)?)).await?;
        sent
    }

    async fn send_in_order(&self, endpoint_id: &str, notifier: &Notifier) -> Result<usize> {
        let (mut attempts, started) = (0, std::time::Instant::now());
        while attempts < BATCH && started.elapsed() < CLAIM_BUDGET && !self.is_stopping() {
            let (id, at) = (endpoint_id.to_owned(), self.clock.now());
            let next = self.db.run(move |c| next_due(c, &id, at)).await?;
            let Some((endpoint, delivery, message)) = next else { break };
            attempts += 1;
            if !self.attempt(&endpoint, &delivery, &message, notifier).await? {
                break;
            }
        }
        Ok(attempts)
    }

    /// Sends one delivery and records how it went; `true` if delivered.
    async fn attempt(
        &self,
        endpoint: &WebhookEndpoint,
        delivery: &WebhookDelivery,
        message: &WebhookMessage,
        notifier: &Notifier,
    ) -> Result<bool> {
        let at = self.clock.now();
        let body = render(&message.payload, &self.api_key_prefix);
        let signature = signing::header(&self.secrets(endpoint, at)?, &message.id, at, &body)?;
        let signed = Signed { msg_id: message.id.clone(), timestamp: at, signature };
        let outcome = self.sender.send(&endpoint.url, &signed, body).await;
        let delivered = matches!(outcome, Outcome::Delivered { .. });
        let (endpoint, delivery) = (endpoint.clone(), delivery.clone());
        let now = self.clock.now();
        let disabled = self.db.run(move |c| record(c, &endpoint, &delivery, &outcome, now)).await?;
        if let Some(notice) = disabled {
            notifier.send(&notice);
        }
        Ok(delivered)
    }

    /// The secrets that sign now: the current one, and the previous one
    /// while its grace lasts.
    fn secrets(&self, e: &WebhookEndpoint, at: i64) -> Result<Vec<crate::domain::PlainSecret>> {
        let mut out = vec![signing::open(&self.keys, &e.secret_enc, &e.id, Slot::Current)?];
        if let (Some(old), Some(until)) = (&e.old_secret_enc, e.old_secret_until)
            && until > at
        {
            out.push(signing::open(&self.keys, old, &e.id, Slot::Previous)?);
        }
        Ok(out)
    }
}

/// The endpoint (still enabled) and its oldest pending delivery, if due.
fn next_due(
    conn: &mut DbConn,
    endpoint_id: &str,
    at: i64,
) -> Result<Option<(WebhookEndpoint, WebhookDelivery, WebhookMessage)>> {
    let Some(endpoint) = WebhookEndpoint::find(conn, endpoint_id)?.filter(|e| e.disabled_at.is_none()) else {
        return Ok(None);
    };
    Ok(WebhookDelivery::head(conn, endpoint_id)?
        .filter(|(d, _)| d.next_attempt_at.is_some_and(|n| n <= at))
        .map(|(d, m)| (endpoint, d, m)))
}

/// Stores an attempt; a delivery that failed for good disables its
/// endpoint, and the notice to send after the commit is returned.
fn record(
    conn: &mut DbConn,
    endpoint: &WebhookEndpoint,
    d: &WebhookDelivery,
    outcome: &Outcome,
    at: i64,
) -> Result<Option<Notice>> {
    crate::store::transaction(conn, |conn| {
        let first = d.first_attempt_at.unwrap_or(at);
        let (status, next, http, error) = match outcome {
            Outcome::Delivered { status } => (DeliveryStatus::Delivered, None, Some(*status), None),
            Outcome::Failed { status, error } => match next_attempt(d.attempts + 1, first, at) {
                Some(next) => (DeliveryStatus::Pending, Some(next), *status, Some(error.as_str())),
                None => (DeliveryStatus::Failed, None, *status, Some(error.as_str())),
            },
        };
        let attempt = Attempt { status, at, next_attempt_at: next, http_status: http.map(i64::from), error };
        WebhookDelivery::record(conn, d.id, &attempt)?;
        if status != DeliveryStatus::Failed {
            return Ok(None);
        }
        disable_after_failure(conn, endpoint, at)
    })
}

/// The reason a failing endpoint is disabled with.
pub const FAILING_REASON: &str = "Deliveries failed for 24 hours.";

fn disable_after_failure(conn: &mut DbConn, e: &WebhookEndpoint, at: i64) -> Result<Option<Notice>> {
    if WebhookEndpoint::disable(conn, &e.id, FAILING_REASON, at)? != 1 {
        return Ok(None);
    }
    let details = json!({"url": e.url, "reason": FAILING_REASON});
    let event = Event::new(AuditAction::WebhookDisabled).team(&e.team_id).object(ObjectKind::Webhook, &e.id);
    audit::record(conn, &Actor::system(), event.details(details))?;
    let owners: Vec<Recipient> = Membership::list(conn, &e.team_id)?
        .into_iter()
        .filter(|(m, _)| m.role == Role::Owner)
        .map(|(_, u)| Recipient::user(&u.id, &u.email))
        .collect();
    Ok(Some(Notice::webhook_endpoint_disabled(&e.team_id, owners, &e.url, FAILING_REASON)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_a_last_try_a_day_after_the_first() {
        let first = 1_000;
        let mut at = first;
        let mut waits = Vec::new();
        for n in 1..=7 {
            let next = next_attempt(n, first, at).unwrap();
            waits.push(next - at);
            at = next;
        }
        assert_eq!(&waits[..6], &RETRY_DELAYS);
        assert_eq!(at, first + LAST_TRY_AFTER);
        assert_eq!(next_attempt(8, first, at), None, "eight attempts in all");
    }
}
