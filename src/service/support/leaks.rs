//! Leaked-credential reports from a secret-scanning partner.
//!
//! Rules: every Latchkey credential kind is recognised by prefix and checksum
//! and revoked whatever its kind; a report never reveals which team owns a
//! credential (the outcome says only revoked, already inactive, not found or
//! malformed); each revocation is audited under the credential's team, and
//! each API key revoked is told to its creator and the team's owners
//! ([`notices`], sent after the commit).

use serde_json::json;

use crate::domain::{AuditAction, TokenKind};
use crate::service::audit::{self, Actor, Event, ObjectKind};
use crate::service::crypto::{self, Keys};
use crate::service::keys::codec;
use crate::service::notify::Notice;
use crate::service::{Error, FieldErrors, Result, oauth};
use crate::store::DbConn;
use crate::store::models::{ApiKey, OauthClient, OauthToken};

pub const MAX_LEAK_BATCH: usize = 1000;

/// The prefix of an OAuth client secret.
const CLIENT_SECRET_PREFIX: &str = "lkcs";

/// What happened to one reported candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LeakOutcome)]
pub enum Outcome {
    Revoked,
    AlreadyInactive,
    NotFound,
    Malformed,
}

/// What a leak report did: per-candidate outcomes in input order, the ids of
/// API keys revoked, and whether any OAuth credential changed (for the caches).
#[derive(Debug, Default)]
pub struct LeakReport {
    pub outcomes: Vec<Outcome>,
    pub revoked_keys: Vec<String>,
    pub oauth_changed: bool,
}

/// The kinds of Latchkey credential, told apart by prefix once the checksum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ApiKey,
    AccessToken,
    RefreshToken,
    ClientSecret,
}

fn kind_of(prefix: &str, candidate: &str) -> Option<Kind> {
    let parsed = codec::parse(candidate)?;
    match (parsed.prefix, TokenKind::of_prefix(parsed.prefix)) {
        (p, _) if p == prefix => Some(Kind::ApiKey),
        (_, Some(TokenKind::Access)) => Some(Kind::AccessToken),
        (_, Some(TokenKind::Refresh)) => Some(Kind::RefreshToken),
        (CLIENT_SECRET_PREFIX, None) => Some(Kind::ClientSecret),
        _ => None,
    }
}

/// Revokes every real active credential among the candidates, whatever its
/// kind: an API key as such, an access token, a refresh token with its grant,
/// a client secret by replacing it (the app stops authenticating with it).
pub fn report_leaks(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    (prefix, at): (&str, i64),
    candidates: &[String],
    url: &str,
) -> Result<LeakReport> {
    let mut errors = FieldErrors::default();
    if candidates.is_empty() || candidates.len() > MAX_LEAK_BATCH {
        errors.add("keys", "Send between 1 and 1000 candidate strings.");
    }
    let url = crate::service::validate::source_url(url, 2000).map_err(|m| errors.add("url", m)).unwrap_or_default();
    // Where the keys were found is kept and announced; a credential in it
    // (`?token=…`, `user:password@`) is not.
    let url = crate::service::keys::codec::redact(&url).into_owned();
    let url = url.as_str();
    errors.into_result()?;
    crate::store::transaction(conn, |conn| {
        let mut report = LeakReport { outcomes: Vec::with_capacity(candidates.len()), ..LeakReport::default() };
        for candidate in candidates {
            let c = candidate.trim();
            let hash = hasher.token_hash(c);
            let kind = kind_of(prefix, c);
            let outcome = match kind {
                None => Outcome::Malformed,
                Some(Kind::ApiKey) => leaked_key(conn, actor, &hash, (url, at), &mut report.revoked_keys)?,
                Some(Kind::AccessToken | Kind::RefreshToken) => leaked_token(conn, actor, &hash, (url, at))?,
                Some(Kind::ClientSecret) => leaked_secret(conn, hasher, actor, &hash, (url, at))?,
            };
            report.oauth_changed |= outcome == Outcome::Revoked && kind != Some(Kind::ApiKey);
            report.outcomes.push(outcome);
        }
        Ok(report)
    })
}

/// The notices of the API keys a report revoked (`ids`).
pub fn notices(conn: &mut DbConn, ids: &[String], prefix: &str) -> Result<Vec<Notice>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(key) = ApiKey::find(conn, id)? else { continue };
        let people = crate::service::email::key_people(conn, &key, true)?;
        out.push(Notice::key_leaked(&key, prefix, people));
    }
    Ok(out)
}

fn leaked_key(
    conn: &mut DbConn,
    actor: &Actor,
    hash: &str,
    (url, at): (&str, i64),
    revoked: &mut Vec<String>,
) -> Result<Outcome> {
    let Some(key) = ApiKey::find_by_hash(conn, hash)? else { return Ok(Outcome::NotFound) };
    let reason = format!("reported as leaked at {url}");
    // A disabled key is revoked too: enabled again, it would work.
    let live = !key.status(at).is_final();
    if !live || ApiKey::revoke(conn, &key.id, super::REVOKED_BY_LEAK_REPORT, Some(&reason), at)? != 1 {
        return Ok(Outcome::AlreadyInactive);
    }
    let event = Event::new(AuditAction::ApiKeyLeakReported).object(ObjectKind::ApiKey, &key.id);
    let mut event = event.details(json!({"url": url}));
    if let Some(t) = key.team_id.as_deref() {
        event = event.team(t);
    }
    audit::record(conn, actor, event)?;
    revoked.push(key.id);
    Ok(Outcome::Revoked)
}

/// An access token is revoked alone; a refresh token takes its whole grant
/// (even a rotated one: its successors descend from what leaked).
fn leaked_token(conn: &mut DbConn, actor: &Actor, hash: &str, (url, at): (&str, i64)) -> Result<Outcome> {
    let Some(t) = OauthToken::find_by_hash(conn, hash)? else { return Ok(Outcome::NotFound) };
    let (revoked, count) = if t.kind == TokenKind::Refresh {
        let dead = t.revoked_at.is_some() || (t.used_at.is_none() && t.expires_at <= at);
        ("grant", if dead { 0 } else { OauthToken::revoke_grant(conn, &t.grant_id, at)? })
    } else {
        let dead = t.revoked_at.is_some() || t.expires_at <= at;
        (TokenKind::Access.hint(), if dead { 0 } else { OauthToken::revoke(conn, &t.id, at)? })
    };
    if count == 0 {
        return Ok(Outcome::AlreadyInactive);
    }
    oauth::audit_revoked(conn, actor, &t, revoked, count, &format!("reported as leaked at {url}"))?;
    Ok(Outcome::Revoked)
}

/// A leaked current secret is replaced by one nobody knows (an admin rotates
/// to get a working one); a leaked previous secret is cleared. Tokens the app
/// got for itself with client_credentials are revoked too.
fn leaked_secret(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    hash: &str,
    (url, at): (&str, i64),
) -> Result<Outcome> {
    let Some(c) = OauthClient::find_by_secret_hash(conn, hash)? else { return Ok(Outcome::NotFound) };
    let is_current = c.secret_hash.as_deref().is_some_and(|h| crypto::ct_eq(h, hash));
    let old_live = c.old_secret_expires_at.is_some_and(|t| t > at);
    if is_current {
        let unknown = codec::generate(CLIENT_SECRET_PREFIX).map_err(|e| Error::internal(e, "generating a secret"))?;
        let unknown = hasher.token_hash(&unknown);
        let old = if old_live { (c.old_secret_hash.as_deref(), c.old_secret_expires_at) } else { (None, None) };
        OauthClient::set_secrets(conn, &c.id, Some(&unknown), old)?;
    } else {
        OauthClient::set_secrets(conn, &c.id, c.secret_hash.as_deref(), (None, None))?;
        if !old_live {
            return Ok(Outcome::AlreadyInactive);
        }
    }
    let tokens = OauthToken::revoke_machine_tokens(conn, &c.id, at)?;
    let e = Event::new(AuditAction::OauthSecretLeaked).team(&c.team_id).object(ObjectKind::OauthApp, &c.id);
    let e = e.details(json!({
        "url": url,
        "secret": if is_current { "current" } else { "previous" },
        "client_credentials_tokens_revoked": tokens,
    }));
    audit::record(conn, actor, e)?;
    Ok(Outcome::Revoked)
}
