//! What the verifier buffers off the request path: usage by outcome, the
//! scopes exercised, and the audit of refused revoked credentials and of
//! rate-limited keys; and their flush (see the rules in `service::verify`).

use std::net::IpAddr;
use std::sync::Arc;

use super::{Observed, RATE_LIMITED_EVERY, Unwritten, Verifier};
use crate::domain::{AuditAction, UsageOutcome};
use crate::service::audit::{Actor, ObjectKind};
use crate::service::audit_gate::PendingEvent;
use crate::service::metrics::Kind;
use crate::service::principal::Principal;
use crate::service::ratelimit::RateState;
use crate::service::usage::{self, Relay, Seen};
use crate::store::Db;

impl Verifier {
    /// Counts a request of a key (usage history is kept for keys; OAuth
    /// tokens are short-lived), and notes its outcome for the metrics.
    pub(super) fn record(&self, record: &Principal, outcome: UsageOutcome, seen: &Seen<'_>, observed: &mut Observed) {
        observed.outcome = outcome.into();
        if let Some(id) = record.key_id() {
            self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(id.as_str(), outcome, seen);
        }
    }

    /// A verified credential was refused by its route for lacking a scope:
    /// counted, and a key's request (verified at `at`) moves from `ok` to
    /// `scope_denied` in its usage.
    pub fn refused_for_scope(&self, principal: &Principal, at: i64) {
        self.metrics.scope_denied(Kind::of(principal));
        if let Some(id) = principal.key_id() {
            self.scope_denied(id.as_str(), at);
        }
    }

    /// A request of `key_id` verified at `at` was refused by its route for a
    /// scope: its `ok` becomes `scope_denied`.
    pub(super) fn scope_denied(&self, key_id: &str, at: i64) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.reclassify(key_id, at, UsageOutcome::Ok, UsageOutcome::ScopeDenied);
    }

    /// A request of `key_id` at `at` exercised `scope` (a scope of the catalog).
    pub fn exercised(&self, key_id: &str, scope: &str, at: i64) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).exercised(key_id, scope, at);
    }

    /// The last presentation (Unix seconds, at most `at`) of each key and
    /// client secret whose usage is still in this instance's buffer.
    pub fn buffered_presentations(&self, at: i64) -> std::collections::HashMap<String, i64> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).last_presented(at)
    }

    /// Counts a use of a client secret (`subject`, see
    /// [`usage::secret_subject`]) at the token endpoint.
    pub fn record_secret_use(&self, subject: &str, seen: &Seen<'_>) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(subject, UsageOutcome::Ok, seen);
    }

    #[cfg(test)]
    pub(super) fn record_use(&self, key_id: &str, now: i64) {
        let seen = Seen { at: now, ip: None, agent: None };
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).record(key_id, UsageOutcome::Ok, &seen);
    }

    /// Hands buffered usage on (see [`usage`]), then writes the buffered
    /// audit events and the summaries of ended intervals; returns the keys
    /// whose usage was handed on.
    pub async fn flush(&self, db: &Db, relay: &Relay) -> crate::service::Result<usize> {
        let n = self.flush_usage(db, relay).await?;
        self.audit.flush(db, Some(crate::store::now())).await?;
        Ok(n)
    }

    /// At shutdown: usage, and every buffered audit event and summary. One
    /// attempt; what it could not write stays buffered (the caller retries).
    pub async fn flush_all(&self, db: &Db, relay: &Relay) -> crate::service::Result<usize> {
        let n = self.flush_usage(db, relay).await?;
        self.audit.flush(db, None).await?;
        Ok(n)
    }

    /// What is buffered and not yet written.
    pub fn unwritten(&self) -> Unwritten {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        Unwritten { requests: usage.requests(), keys: usage.keys(), audit_events: self.audit.pending() }
    }

    /// Hands the buffered usage to Redis; what Redis did not take (all of it
    /// without Redis) is written in one transaction, and if that fails it
    /// goes back into the buffer for the next flush.
    pub(super) async fn flush_usage(&self, db: &Db, relay: &Relay) -> crate::service::Result<usize> {
        let batch = std::mem::take(&mut *self.usage.lock().unwrap_or_else(|p| p.into_inner()));
        let n = batch.keys();
        let Some(rest) = relay.hand_over(batch).await else {
            self.metrics.usage_flushed();
            return Ok(n);
        };
        let (keys, requests) = (rest.keys(), rest.requests());
        let rest = Arc::new(rest);
        match usage::write(db, rest.clone()).await {
            Ok(()) => {
                self.metrics.usage_flushed();
                Ok(n)
            }
            Err(e) => {
                self.metrics.usage_flush_failed();
                // The task has ended, so this is the only handle left (a clone otherwise).
                let rest = Arc::try_unwrap(rest).unwrap_or_else(|shared| (*shared).clone());
                self.usage.lock().unwrap_or_else(|p| p.into_inner()).merge(rest);
                let doing = format!("writing the usage of {keys} keys ({requests} requests, kept for the next flush)");
                Err(anyhow::Error::new(e).context(doing).into())
            }
        }
    }

    /// Audits a refused use of a revoked credential off the request path:
    /// buffered for the next flush, at most once a minute per credential (then
    /// a summary with the count). A key is labelled as a key; an OAuth access
    /// token as a token of its app.
    /// Announces a team key refused for its team's rate limit: at most once an
    /// hour per key on this instance (here) and across instances (the claim
    /// the event is recorded with; see `AuditGate::enqueue`).
    pub(super) fn announce_rate_limited(&self, record: &Principal, rate: &RateState, at: i64) {
        let (Some(key), Some(team)) = (record.key_id(), record.team_id()) else { return };
        {
            let mut noted = self.rate_noted.lock().unwrap_or_else(|p| p.into_inner());
            let (last, _) = noted.get_or_insert_with(&key.as_str().to_owned(), || i64::MIN / 2);
            if at - *last < RATE_LIMITED_EVERY {
                return;
            }
            *last = at;
        }
        let plan = record.grant().plan.name;
        let event = PendingEvent::new(AuditAction::ApiKeyRateLimited, Actor::system())
            .team(Some(team.as_str()))
            .object(ObjectKind::ApiKey, key.as_str())
            .details(serde_json::json!({"plan": plan, "limit": rate.limit, "reset": rate.reset}))
            .at_most_every(&format!("rl:{key}"), "rate_limited", at, RATE_LIMITED_EVERY);
        self.audit.enqueue(event);
    }

    pub(super) fn audit_refused(&self, record: &Principal, client: Option<IpAddr>, now: i64) {
        let actor = Actor { label: "API client".into(), ip: client.map(|ip| ip.to_string()), ..Actor::default() };
        let event = match record {
            Principal::AccessToken { id, client_id, .. } => {
                PendingEvent::new(AuditAction::OauthTokenRefusedRevoked, actor)
                    .object(ObjectKind::OauthApp, client_id.as_str())
                    .details(serde_json::json!({"token_id": id}))
            }
            _ => PendingEvent::new(AuditAction::ApiKeyRefusedRevoked, actor).object(ObjectKind::ApiKey, record.id()),
        };
        let team = record.team_id().map(|t| t.as_str());
        self.audit.buffer(&format!("refused:{}", record.id()), event.team(team), now);
    }
}
