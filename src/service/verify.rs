//! Verification of a presented credential on every API request.
//!
//! Rules: a malformed key (shape or checksum) is refused before any database
//! call; unknown, expired and revoked keys are indistinguishable to the caller;
//! verified keys are cached for at most one second (so a revocation on another
//! instance is effective within a second) and dropped at once when this
//! instance changes them; nothing is written on the request path — usage is
//! buffered and flushed in batches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::audit::{self, Actor, Event};
use super::crypto::Keys;
use super::keys::{self, codec};
use super::ratelimit::{self, Limiter, Plan, RateState};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed, unknown, expired or revoked: one answer for all.
    Unauthorized,
    /// Valid key, but the client address is outside its allowed ranges.
    AddressNotAllowed,
    RateLimited {
        rate: RateState,
        retry_after: i64,
    },
    Internal(String),
}

struct Cached {
    record: Option<Arc<KeyRecord>>,
    fetched: Instant,
}

#[derive(Default)]
struct Usage {
    last_used: HashMap<String, i64>,
    per_day: HashMap<(String, i64), i64>,
}

pub struct Verifier {
    prefix: String,
    default_plan: Plan,
    cache: RwLock<HashMap<String, Cached>>,
    usage: Mutex<Usage>,
    limiter: Limiter,
    refused_audited: Mutex<HashMap<String, i64>>,
}

fn team_plan(team: Option<&Team>, default_plan: Plan) -> Plan {
    team.and_then(|t| t.plan.as_deref()).and_then(ratelimit::plan).unwrap_or(default_plan)
}

/// An OAuth access token, shaped like a key (kind `oauth`; its id is the token's).
fn load_access_token(conn: &mut DbConn, hash: &str, default_plan: Plan) -> Result<Option<KeyRecord>, StoreError> {
    use crate::store::models::{OauthClient, OauthToken};
    let Some(t) = OauthToken::find_by_hash(conn, hash)?.filter(|t| t.kind == "access") else { return Ok(None) };
    let Some(client) = OauthClient::find(conn, &t.client_id)? else { return Ok(None) };
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
        scopes: super::oauth::scopes_of(&t.scopes).into(),
        allowed: Vec::new(),
        expires_at: Some(t.expires_at),
        revoked: t.revoked_at.is_some(),
    }))
}

fn load(conn: &mut DbConn, hash: &str, prefix: &str, default_plan: Plan) -> Result<Option<KeyRecord>, StoreError> {
    let Some(key) = ApiKey::find_by_hash(conn, hash)? else { return Ok(None) };
    let team = match key.team_id.as_deref() {
        Some(t) => Team::find(conn, t)?,
        None => None,
    };
    // Service keys are the operator's own: no plan limits them.
    let plan = match key.kind.as_str() {
        "service" => ratelimit::plan("unlimited").unwrap_or(default_plan),
        _ => team.as_ref().and_then(|t| t.plan.as_deref()).and_then(ratelimit::plan).unwrap_or(default_plan),
    };
    Ok(Some(KeyRecord {
        scopes: keys::scopes_of(&key).into(),
        allowed: keys::allowed_ips_of(&key),
        prefix: codec::display(prefix, &key.key_prefix),
        id: key.id,
        kind: key.kind,
        name: key.name,
        team_id: key.team_id,
        team_name: team.map(|t| t.name),
        created_by: key.created_by,
        expires_at: key.expires_at,
        revoked: key.revoked_at.is_some(),
        plan,
    }))
}

impl Verifier {
    pub fn new(prefix: &str, default_plan: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            default_plan: ratelimit::plan(default_plan).unwrap_or(ratelimit::PLANS[0]),
            cache: RwLock::new(HashMap::new()),
            usage: Mutex::new(Usage::default()),
            limiter: Limiter::default(),
            refused_audited: Mutex::new(HashMap::new()),
        }
    }

    /// The key behind a presented secret, from cache or database.
    pub async fn lookup(&self, db: &Db, hasher: &Keys, presented: &str) -> Result<Option<Arc<KeyRecord>>, Refusal> {
        let Some(parsed) = codec::parse(presented) else { return Ok(None) };
        let access_token = parsed.prefix == "lkat";
        if parsed.prefix != self.prefix && !access_token {
            return Ok(None);
        }
        let hash = hasher.token_hash(presented);
        if let Some(c) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(&hash)
            && c.fetched.elapsed() < CACHE_TTL
        {
            return Ok(c.record.clone());
        }
        let (prefix, plan, h) = (self.prefix.clone(), self.default_plan, hash.clone());
        let record = db
            .run(
                move |conn| {
                    if access_token { load_access_token(conn, &h, plan) } else { load(conn, &h, &prefix, plan) }
                },
            )
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?
            .map(Arc::new);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, Cached { record: record.clone(), fetched: Instant::now() });
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
            self.audit_refused(db, &record, client, now).await;
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
            .hit(&record.id, record.plan, now_ms)
            .map_err(|(rate, retry_after)| Refusal::RateLimited { rate, retry_after })?;
        if record.kind != "oauth" {
            // Usage history is kept for keys; OAuth tokens are short-lived.
            self.record_use(&record.id, now);
        }
        Ok(Verified { key: record, rate })
    }

    /// Forgets a key at once (this instance changed it).
    pub fn invalidate(&self, key_id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, c| c.record.as_ref().is_none_or(|r| r.id != key_id));
    }

    /// Forgets everything cached (an OAuth grant was revoked here).
    pub fn invalidate_all(&self) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Forgets cached "unknown" answers (a key was just created here).
    pub fn invalidate_unknown(&self) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
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

    /// Writes buffered usage in one transaction; returns the keys touched.
    pub async fn flush(&self, db: &Db) -> Result<usize, StoreError> {
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

    /// Audits a refused use of a revoked key, at most once a minute per key.
    async fn audit_refused(&self, db: &Db, record: &KeyRecord, client: Option<IpAddr>, now: i64) {
        {
            let mut seen = self.refused_audited.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(&record.id).is_some_and(|&t| now - t < 60) {
                return;
            }
            if seen.len() > 10_000 {
                seen.clear();
            }
            seen.insert(record.id.clone(), now);
        }
        let (id, team) = (record.id.clone(), record.team_id.clone());
        let actor = Actor { label: "API client".into(), ip: client.map(|ip| ip.to_string()), ..Actor::default() };
        let result = db
            .run(move |conn| {
                let mut event = Event::new("api_key.refused_revoked").object("api_key", &id);
                if let Some(t) = team.as_deref() {
                    event = event.team(t);
                }
                audit::record(conn, &actor, event)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "auditing a refused key failed");
        }
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
