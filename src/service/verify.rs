//! Verification of a presented credential on every API request.
//!
//! Rules: a malformed key (shape or checksum) is refused before any database
//! call; unknown, expired and revoked keys are indistinguishable to the caller;
//! verified keys are cached for at most one second (so a revocation on another
//! instance is effective within a second) and dropped at once when this
//! instance changes them; nothing is written on the request path — usage and
//! the audit of refused revoked credentials are buffered and flushed in
//! batches, so a revoked key costs what an unknown one does. The plan's limits
//! count per team (all its keys and access tokens together). The cache, like
//! every map here, evicts its least-recently-used entries when full and is
//! never cleared to make room.

use crate::domain::AuditAction;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::accounts::Role;
use super::audit::Actor;
use super::audit_gate::{AuditGate, PendingEvent};
use super::crypto::Keys;
use super::keys::{self, codec};
use super::lru::Lru;
use super::policy;
use super::ratelimit::{self, Limiter, Plan, RateCounter, RateState};
use crate::store::models::{ApiKey, Team};
use crate::store::{Db, DbConn, StoreError};

const CACHE_TTL: Duration = Duration::from_secs(1);
const CACHE_MAX: usize = 100_000;

/// What the database says about a key, as cached.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub prefix: String,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub created_by: Option<String>,
    /// The member answerable for the credential (its creator, the user a
    /// token acts for, or the registrant of a client_credentials app) and
    /// their role in the team *now*; `None` for service keys.
    pub holder: Option<String>,
    pub role: Option<Role>,
    /// What the credential may do now: its scopes that the holder's current
    /// role still allows (policy::effective_scopes).
    pub scopes: Arc<[String]>,
    pub allowed: Vec<IpNet>,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub plan: Plan,
}

/// A verified credential.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<KeyRecord>,
    pub rate: RateState,
}

#[derive(Debug)]
pub enum Refusal {
    /// Missing, malformed, unknown, expired or revoked: one answer for all.
    Unauthorized,
    /// Valid key, but the client address is outside its allowed ranges.
    AddressNotAllowed,
    RateLimited {
        rate: RateState,
        retry_after: i64,
    },
    Internal(anyhow::Error),
}

struct Cached {
    record: Option<Arc<KeyRecord>>,
    fetched: Instant,
    /// The access-token generation when it was read (see `invalidate_tokens`).
    tokens: u64,
}

#[derive(Default)]
struct Usage {
    last_used: HashMap<String, i64>,
    per_day: HashMap<(String, i64), i64>,
}

pub struct Verifier {
    prefix: String,
    default_plan: Plan,
    cache: Mutex<Lru<String, Cached>>,
    usage: Mutex<Usage>,
    limiter: Box<dyn RateCounter>,
    audit: Arc<AuditGate>,
    token_generation: AtomicU64,
}

fn team_plan(team: Option<&Team>, default_plan: Plan) -> Plan {
    team.and_then(|t| t.plan.as_deref()).and_then(ratelimit::plan).unwrap_or(default_plan)
}

/// An OAuth access token, shaped like a key (kind `oauth`; its id is the token's).
/// The holder's role is read here, where the credential is verified (and cached
/// with it), so removal and demotion take effect within the cache's bound. A token whose holder is no longer a member of the team is unknown.
fn load_access_token(conn: &mut DbConn, hash: &str, default_plan: Plan) -> Result<Option<KeyRecord>, StoreError> {
    use crate::store::models::{OauthClient, OauthToken};
    let Some(t) = OauthToken::find_by_hash(conn, hash)?.filter(|t| t.kind == crate::domain::TokenKind::Access) else {
        return Ok(None);
    };
    let Some(client) = OauthClient::find(conn, &t.client_id)? else { return Ok(None) };
    // A user's token acts for the user; a client_credentials token for the
    // member who registered the app.
    let holder = t.user_id.clone().or_else(|| client.created_by.clone());
    let Some(role) = super::accounts::current_role(conn, &t.team_id, holder.as_deref())? else { return Ok(None) };
    let team = Team::find(conn, &t.team_id)?;
    Ok(Some(KeyRecord {
        id: t.id,
        kind: "oauth".into(),
        name: client.name,
        prefix: client.id,
        plan: team_plan(team.as_ref(), default_plan),
        team_id: Some(t.team_id),
        team_name: team.map(|t| t.name),
        created_by: t.user_id,
        holder,
        role: Some(role),
        scopes: policy::effective_scopes(Some(role), &super::oauth::scopes_of(&t.scopes)).into(),
        allowed: Vec::new(),
        expires_at: Some(t.expires_at),
        revoked: t.revoked_at.is_some(),
    }))
}

/// An API key; a team key whose holder is no longer a member is unknown.
fn load(conn: &mut DbConn, hash: &str, prefix: &str, default_plan: Plan) -> Result<Option<KeyRecord>, StoreError> {
    let Some(key) = ApiKey::find_by_hash(conn, hash)? else { return Ok(None) };
    let (team, role) = match key.team_id.as_deref() {
        Some(t) => match super::accounts::current_role(conn, t, key.created_by.as_deref())? {
            Some(role) => (Team::find(conn, t)?, Some(role)),
            None => return Ok(None),
        },
        None => (None, None),
    };
    // Service keys are the operator's own: no plan limits them, no role caps them.
    let (plan, scopes) = match key.kind.as_str() {
        "service" => (ratelimit::plan("unlimited").unwrap_or(default_plan), keys::scopes_of(&key.scopes)),
        _ => (team_plan(team.as_ref(), default_plan), policy::effective_scopes(role, &keys::scopes_of(&key.scopes))),
    };
    Ok(Some(KeyRecord {
        scopes: scopes.into(),
        allowed: keys::allowed_ips_of(&key),
        prefix: codec::display(prefix, &key.key_prefix),
        id: key.id,
        kind: key.kind.into(),
        name: key.name,
        team_id: key.team_id,
        team_name: team.map(|t| t.name),
        holder: key.created_by.clone(),
        role,
        created_by: key.created_by,
        expires_at: key.expires_at,
        revoked: key.revoked_at.is_some(),
        plan,
    }))
}

impl Verifier {
    /// A verifier whose refused-credential audit goes through `audit`.
    pub fn new(prefix: &str, default_plan: &str, audit: Arc<AuditGate>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            default_plan: ratelimit::plan(default_plan).unwrap_or(ratelimit::PLANS[0]),
            cache: Mutex::new(Lru::new(CACHE_MAX)),
            usage: Mutex::new(Usage::default()),
            limiter: Box::new(Limiter::default()),
            audit,
            token_generation: AtomicU64::new(0),
        }
    }

    /// Counts the plans' limits in `limiter` (a shared store) instead of in process.
    pub fn with_limiter(mut self, limiter: Box<dyn RateCounter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// A fresh cached answer for a key hash (marking it used), if any.
    fn cached(&self, hash: &str) -> Option<Option<Arc<KeyRecord>>> {
        let generation = self.token_generation.load(Ordering::Acquire);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |c: &&mut Cached| {
            c.fetched.elapsed() < CACHE_TTL
                && (c.tokens == generation || c.record.as_ref().is_none_or(|r| r.kind != "oauth"))
        };
        cache.get_mut(hash).filter(fresh).map(|c| c.record.clone())
    }

    /// Caches an answer read while the token generation was `tokens`; when
    /// full, the least-recently-used entry makes room.
    fn remember(&self, hash: String, record: Option<Arc<KeyRecord>>, tokens: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(hash, Cached { record, fetched: Instant::now(), tokens });
    }

    /// The key behind a presented secret, from cache or database.
    pub async fn lookup(&self, db: &Db, hasher: &Keys, presented: &str) -> Result<Option<Arc<KeyRecord>>, Refusal> {
        let Some(parsed) = codec::parse(presented) else { return Ok(None) };
        let access_token = parsed.prefix == "lkat";
        if parsed.prefix != self.prefix && !access_token {
            return Ok(None);
        }
        let hash = hasher.token_hash(presented);
        if let Some(record) = self.cached(&hash) {
            return Ok(record);
        }
        let generation = self.token_generation.load(Ordering::Acquire);
        let (prefix, plan, h) = (self.prefix.clone(), self.default_plan, hash.clone());
        let record = db
            .run(
                move |conn| {
                    if access_token { load_access_token(conn, &h, plan) } else { load(conn, &h, &prefix, plan) }
                },
            )
            .await
            .map_err(|e: StoreError| Refusal::Internal(anyhow::Error::new(e).context("loading a credential")))?
            .map(Arc::new);
        self.remember(hash, record.clone(), generation);
        Ok(record)
    }

    /// Verifies a presented key for a request from `client`.
    pub async fn verify(
        &self,
        db: &Db,
        hasher: &Keys,
        presented: &str,
        client: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<Verified, Refusal> {
        let record = self.lookup(db, hasher, presented).await?.ok_or(Refusal::Unauthorized)?;
        let now = now_ms / 1000;
        if record.revoked {
            self.audit_refused(&record, client, now);
            return Err(Refusal::Unauthorized);
        }
        if record.expires_at.is_some_and(|e| e <= now) {
            return Err(Refusal::Unauthorized);
        }
        let allowed = record.allowed.is_empty() || client.is_some_and(|ip| address_allowed(&record.allowed, ip));
        if !allowed {
            return Err(Refusal::AddressNotAllowed);
        }
        let rate = self
            .limiter
            .hit(&limit_key(&record), record.plan, now_ms)
            .map_err(|(rate, retry_after)| Refusal::RateLimited { rate, retry_after })?;
        if record.kind != "oauth" {
            // Usage history is kept for keys; OAuth tokens are short-lived.
            self.record_use(&record.id, now);
        }
        Ok(Verified { key: record, rate })
    }

    /// Forgets a key at once (this instance changed it).
    pub fn invalidate(&self, key_id: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.record.as_ref().is_none_or(|r| r.id != key_id));
    }

    /// Forgets everything cached (an OAuth grant was revoked here).
    pub fn invalidate_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Forgets every cached OAuth access token at once (a grant may have been
    /// revoked here), in constant time and without touching cached API keys:
    /// anyone can make the token endpoint fail, so this must stay cheap.
    pub fn invalidate_tokens(&self) {
        self.token_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets cached "unknown" answers (a key was just created here).
    pub fn invalidate_unknown(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.record.is_some());
    }

    pub fn record_use(&self, key_id: &str, now: i64) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        match usage.last_used.get_mut(key_id) {
            Some(at) => *at = now,
            None => {
                usage.last_used.insert(key_id.to_owned(), now);
            }
        }
        *usage.per_day.entry((key_id.to_owned(), now / 86_400)).or_default() += 1;
    }

    /// Writes buffered usage in one transaction, then the buffered audit
    /// events and the summaries of ended intervals; returns the keys touched.
    pub async fn flush(&self, db: &Db) -> Result<usize, StoreError> {
        let n = self.flush_usage(db).await?;
        self.audit.flush(db, Some(crate::store::now())).await?;
        Ok(n)
    }

    /// At shutdown: usage, and every buffered audit event and summary.
    pub async fn flush_all(&self, db: &Db) -> Result<usize, StoreError> {
        let n = self.flush_usage(db).await?;
        self.audit.flush(db, None).await?;
        Ok(n)
    }

    async fn flush_usage(&self, db: &Db) -> Result<usize, StoreError> {
        let batch = std::mem::take(&mut *self.usage.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.last_used.is_empty() {
            return Ok(0);
        }
        let n = batch.last_used.len();
        db.run(move |conn| {
            crate::store::transaction(conn, |conn| {
                for (id, at) in &batch.last_used {
                    ApiKey::set_last_used(conn, id, *at)?;
                }
                for ((id, day), count) in &batch.per_day {
                    ApiKey::add_usage(conn, id, *day, *count)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(StoreError::from)
        })
        .await?;
        Ok(n)
    }

    /// Audits a refused use of a revoked credential off the request path:
    /// buffered for the next flush, at most once a minute per credential (then
    /// a summary with the count). A key is labelled as a key; an OAuth access
    /// token as a token of its app.
    fn audit_refused(&self, record: &KeyRecord, client: Option<IpAddr>, now: i64) {
        let actor = Actor { label: "API client".into(), ip: client.map(|ip| ip.to_string()), ..Actor::default() };
        let event = if record.kind == "oauth" {
            PendingEvent::new(AuditAction::OauthTokenRefusedRevoked, actor)
                .object("oauth_app", &record.prefix)
                .details(serde_json::json!({"token_id": record.id}))
        } else {
            PendingEvent::new(AuditAction::ApiKeyRefusedRevoked, actor).object("api_key", &record.id)
        };
        self.audit.buffer(&format!("refused:{}", record.id), event.team(record.team_id.as_deref()), now);
    }
}

/// What the plan's limits count under: the team (all its keys and tokens),
/// or the credential itself when it has no team (service keys).
fn limit_key(record: &KeyRecord) -> String {
    match record.team_id.as_deref() {
        Some(team) => format!("team:{team}"),
        None => format!("key:{}", record.id),
    }
}

/// Whether `ip` is in one of the ranges, an IPv4 address and its IPv4-mapped
/// IPv6 form (`::ffff:9.9.9.9`) being the same address.
fn address_allowed(allowed: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let mapped = match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    allowed.iter().any(|n| n.contains(&ip) || n.contains(&mapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: &str, revoked: bool) -> Arc<KeyRecord> {
        Arc::new(KeyRecord {
            id: id.into(),
            kind: kind.into(),
            name: "n".into(),
            prefix: if kind == "oauth" { "app_1".into() } else { "lk_abcdefgh".into() },
            team_id: Some("team_1".into()),
            team_name: None,
            created_by: None,
            holder: None,
            role: None,
            scopes: Arc::from(Vec::new()),
            allowed: Vec::new(),
            expires_at: None,
            revoked,
            plan: ratelimit::PLANS[0],
        })
    }

    fn verifier(cache_max: usize) -> Verifier {
        let mut v = Verifier::new("lk", "free", Arc::new(AuditGate::default()));
        v.cache = Mutex::new(Lru::new(cache_max));
        v
    }

    #[test]
    fn a_flood_of_unknown_keys_never_empties_the_cache() {
        let v = verifier(100);
        v.remember("in-use".into(), Some(record("key_1", "api", false)), 0);
        for i in 0..10_000 {
            // Well-formed unknown keys are cached as "unknown".
            v.remember(format!("unknown-{i}"), None, 0);
            if i % 25 == 0 {
                let hit = v.cached("in-use").expect("still cached after the flood");
                assert_eq!(hit.map(|r| r.id.clone()).as_deref(), Some("key_1"));
            }
        }
        assert_eq!(v.cache.lock().unwrap().len(), 100, "bounded, not cleared");
        assert!(v.cached("unknown-0").is_none(), "the least recently used went");
    }

    #[test]
    fn refused_revoked_credentials_are_buffered_and_labelled_by_kind() {
        let v = verifier(10);
        for _ in 0..50 {
            v.audit_refused(&record("key_1", "api", true), None, 100);
            v.audit_refused(&record("tok_1", "oauth", true), None, 100);
        }
        let events = v.audit.take(None);
        let find = |action: AuditAction, repeated: bool| {
            events.iter().filter(|e| e.action == action && e.details.get("repeated").is_some() == repeated).count()
        };
        assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, false), 1);
        assert_eq!(find(AuditAction::ApiKeyRefusedRevoked, true), 1, "one summary of the other 49");
        assert_eq!(find(AuditAction::OauthTokenRefusedRevoked, false), 1);
        let token = events.iter().find(|e| e.action == AuditAction::OauthTokenRefusedRevoked).unwrap();
        assert_eq!(token.object, Some(("oauth_app".to_owned(), "app_1".to_owned())));
        assert_eq!(token.details["token_id"], "tok_1");
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn every_credential_of_a_team_counts_against_one_allowance() {
        let v = verifier(10);
        let free = ratelimit::PLANS[0];
        let creds = [record("key_1", "api", false), record("key_2", "api", false), record("tok_1", "oauth", false)];
        let t0 = 1_000 * 3_600_000;
        let admitted =
            (0..30usize).filter(|&i| v.limiter.hit(&limit_key(&creds[i % 3]), free, t0 + i as i64).is_ok()).count();
        assert_eq!(admitted as u64, free.per_minute);
    }

    #[test]
    fn invalidating_tokens_drops_cached_tokens_only() {
        let v = verifier(10);
        v.remember("key".into(), Some(record("key_1", "api", false)), 0);
        v.remember("token".into(), Some(record("tok_1", "oauth", false)), 0);
        v.invalidate_tokens();
        assert!(v.cached("key").is_some(), "API keys stay cached");
        assert!(v.cached("token").is_none(), "access tokens are read again");
        v.remember("token".into(), Some(record("tok_1", "oauth", false)), 1);
        assert!(v.cached("token").is_some());
    }
}
