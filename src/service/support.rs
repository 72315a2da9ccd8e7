//! The support console's rules: find keys, teams and users; revoke a key with
//! a reason; take leaked-key reports from a scanning partner.
//!
//! Rules: a pasted whole key is looked up by its hash only; support never sees
//! a secret and cannot create keys; support acts on team keys only (the
//! operator's service keys answer not found); leak reports recognise every
//! Latchkey credential kind by prefix and checksum and never reveal which team
//! owns one; every revocation is audited under the key's team, where
//! support reads as "Latchkey support", never as a person.

use crate::domain::AuditAction;
use serde_json::json;

use super::audit::{self, Actor, Event};
use super::crypto::{self, Keys};
use super::keys::codec;
use super::{Error, FieldErrors, Result, oauth};
use crate::store::models::{ApiKey, OauthClient, OauthToken, Team, User};
use crate::store::{DbConn, now};

pub const MAX_QUERY: usize = 200;
pub const MAX_REASON: usize = 500;
pub const MAX_LEAK_BATCH: usize = 1000;

#[derive(Default)]
pub struct SearchResults {
    pub keys: Vec<ApiKey>,
    pub teams: Vec<Team>,
    pub users: Vec<User>,
    /// The query was a whole, well-formed key.
    pub whole_key: bool,
}

pub fn search(conn: &mut DbConn, hasher: &Keys, prefix: &str, raw: &str) -> Result<SearchResults> {
    let q = raw.trim();
    if q.is_empty() {
        return Err(Error::Invalid(FieldErrors::single(
            "q",
            "Enter a key prefix, a whole key, a team name or an email.",
        )));
    }
    if q.chars().count() > MAX_QUERY || q.chars().any(char::is_control) {
        return Err(Error::Invalid(FieldErrors::single(
            "q",
            "Use at most 200 characters, without control characters.",
        )));
    }
    let mut out = SearchResults::default();
    if codec::parse(q).is_some() {
        out.whole_key = true;
        out.keys = ApiKey::find_by_hash(conn, &hasher.token_hash(q))?.into_iter().filter(visible).collect();
        return Ok(out);
    }
    let display = q.trim_end_matches(['…', '.']);
    if let Some(body) = display.strip_prefix(&format!("{prefix}_"))
        && body.len() == codec::DISPLAY_LEN
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        out.keys = ApiKey::find_by_prefix(conn, body)?.into_iter().filter(visible).collect();
    }
    out.teams = Team::search(conn, q, 20)?;
    out.users = User::search(conn, &q.to_lowercase(), 20)?;
    Ok(out)
}

/// Whether support may see and act on a key: team keys only. The operator's
/// service keys carry the SaaS's own verification; support cannot touch them.
pub fn visible(key: &ApiKey) -> bool {
    key.kind != crate::domain::KeyKind::Service && key.team_id.is_some()
}

/// Revokes any team key with a reason the team will see.
pub fn revoke_with_reason(conn: &mut DbConn, actor: &Actor, key_id: &str, reason: &str) -> Result<ApiKey> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(FieldErrors::single("reason", "Give the reason the team will read.")));
    }
    if let Err(m) = super::validate::text(reason, MAX_REASON) {
        return Err(Error::Invalid(FieldErrors::single("reason", m)));
    }
    crate::store::transaction(conn, |conn| {
        let key = ApiKey::find(conn, key_id)?.filter(visible).ok_or(Error::NotFound)?;
        if ApiKey::revoke(conn, &key.id, "support", Some(reason), now())? != 1 {
            return Err(Error::Invalid(FieldErrors::single("reason", "This key was already revoked.")));
        }
        let mut event = Event::new(AuditAction::ApiKeyRevokedBySupport)
            .object("api_key", &key.id)
            .details(json!({"reason": reason}));
        if let Some(t) = key.team_id.as_deref() {
            event = event.team(t);
        }
        // The team reads "Latchkey support"; support's own views name the person (by actor id).
        audit::record(conn, &Actor { label: audit::SUPPORT_LABEL.to_owned(), ..actor.clone() }, event)?;
        Ok(key)
    })
}

/// What happened to one reported candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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
    match parsed.prefix {
        p if p == prefix => Some(Kind::ApiKey),
        "lkat" => Some(Kind::AccessToken),
        "lkrt" => Some(Kind::RefreshToken),
        "lkcs" => Some(Kind::ClientSecret),
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
    prefix: &str,
    candidates: &[String],
    url: &str,
) -> Result<LeakReport> {
    let mut errors = FieldErrors::default();
    if candidates.is_empty() || candidates.len() > MAX_LEAK_BATCH {
        errors.add("keys", "Send between 1 and 1000 candidate strings.");
    }
    let url = super::validate::source_url(url, 2000).map_err(|m| errors.add("url", m)).unwrap_or_default();
    let url = url.as_str();
    errors.into_result()?;
    crate::store::transaction(conn, |conn| {
        let at = now();
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

fn leaked_key(
    conn: &mut DbConn,
    actor: &Actor,
    hash: &str,
    (url, at): (&str, i64),
    revoked: &mut Vec<String>,
) -> Result<Outcome> {
    let Some(key) = ApiKey::find_by_hash(conn, hash)? else { return Ok(Outcome::NotFound) };
    let inactive = key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= at);
    if inactive || ApiKey::revoke(conn, &key.id, "leak-report", Some(&format!("reported as leaked at {url}")), at)? != 1
    {
        return Ok(Outcome::AlreadyInactive);
    }
    let mut event = Event::new(AuditAction::ApiKeyLeakReported).object("api_key", &key.id).details(json!({"url": url}));
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
    let (revoked, count) = if t.kind == crate::domain::TokenKind::Refresh {
        let dead = t.revoked_at.is_some() || (t.used_at.is_none() && t.expires_at <= at);
        ("grant", if dead { 0 } else { OauthToken::revoke_grant(conn, &t.grant_id, at)? })
    } else {
        let dead = t.revoked_at.is_some() || t.expires_at <= at;
        ("access_token", if dead { 0 } else { OauthToken::revoke(conn, &t.id, at)? })
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
        let unknown = hasher.token_hash(&codec::generate("lkcs").map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))?);
        let old = if old_live { (c.old_secret_hash.as_deref(), c.old_secret_expires_at) } else { (None, None) };
        OauthClient::set_secrets(conn, &c.id, Some(&unknown), old)?;
    } else {
        OauthClient::set_secrets(conn, &c.id, c.secret_hash.as_deref(), (None, None))?;
        if !old_live {
            return Ok(Outcome::AlreadyInactive);
        }
    }
    let tokens = OauthToken::revoke_machine_tokens(conn, &c.id, at)?;
    let e = Event::new(AuditAction::OauthSecretLeaked).team(&c.team_id).object("oauth_app", &c.id).details(json!({
        "url": url,
        "secret": if is_current { "current" } else { "previous" },
        "client_credentials_tokens_revoked": tokens,
    }));
    audit::record(conn, actor, e)?;
    Ok(Outcome::Revoked)
}

/// How a revocation reads on the team's key list.
pub fn revocation_note(key: &ApiKey) -> Option<String> {
    let reason = key.revoked_reason.as_deref()?;
    Some(match key.revoked_by.as_deref() {
        Some("support") => format!("Revoked by Latchkey support: {reason}"),
        Some("leak-report") => format!("Revoked automatically: {reason}"),
        _ => format!("Revoked: {reason}"),
    })
}
