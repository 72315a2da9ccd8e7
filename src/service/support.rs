//! The support console's rules: find keys, teams and users; revoke a key with
//! a reason; take leaked-key reports from a scanning partner.
//!
//! Rules: a pasted whole key is looked up by its hash only; support never sees
//! a secret and cannot create keys; leak reports never reveal which team owns
//! a key; every revocation is audited under the key's team.

use serde_json::json;

use super::audit::{self, Actor, Event};
use super::crypto::Keys;
use super::keys::codec;
use super::{Error, FieldErrors, Result};
use crate::store::models::{ApiKey, Team, User};
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
        out.keys = ApiKey::find_by_hash(conn, &hasher.token_hash(q))?.into_iter().collect();
        return Ok(out);
    }
    let display = q.trim_end_matches(['…', '.']);
    if let Some(body) = display.strip_prefix(&format!("{prefix}_"))
        && body.len() == codec::DISPLAY_LEN
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        out.keys = ApiKey::find_by_prefix(conn, body)?;
    }
    out.teams = Team::search(conn, q, 20)?;
    out.users = User::search(conn, &q.to_lowercase(), 20)?;
    Ok(out)
}

/// Revokes any key with a reason the team will see.
pub fn revoke_with_reason(conn: &mut DbConn, actor: &Actor, key_id: &str, reason: &str) -> Result<ApiKey> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(FieldErrors::single("reason", "Give the reason the team will read.")));
    }
    if let Err(m) = super::validate::text(reason, MAX_REASON) {
        return Err(Error::Invalid(FieldErrors::single("reason", m)));
    }
    crate::store::transaction(conn, |conn| {
        let key = ApiKey::find(conn, key_id)?.ok_or(Error::NotFound)?;
        if ApiKey::revoke(conn, &key.id, "support", Some(reason), now())? != 1 {
            return Err(Error::Invalid(FieldErrors::single("reason", "This key was already revoked.")));
        }
        let mut event =
            Event::new("api_key.revoked_by_support").object("api_key", &key.id).details(json!({"reason": reason}));
        if let Some(t) = key.team_id.as_deref() {
            event = event.team(t);
        }
        audit::record(conn, actor, event)?;
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

/// Revokes every real active key among the candidates; returns the outcomes
/// in input order and the ids of keys revoked (for cache invalidation).
pub fn report_leaks(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    prefix: &str,
    candidates: &[String],
    url: &str,
) -> Result<(Vec<Outcome>, Vec<String>)> {
    let mut errors = FieldErrors::default();
    if candidates.is_empty() || candidates.len() > MAX_LEAK_BATCH {
        errors.add("keys", "Send between 1 and 1000 candidate strings.");
    }
    if super::validate::search(url, 2000).is_err() {
        errors.add("url", "Use at most 2000 characters.");
    }
    errors.into_result()?;
    crate::store::transaction(conn, |conn| {
        let at = now();
        let mut outcomes = Vec::with_capacity(candidates.len());
        let mut revoked = Vec::new();
        for candidate in candidates {
            let c = candidate.trim();
            if codec::parse(c).is_none_or(|p| p.prefix != prefix) {
                outcomes.push(Outcome::Malformed);
                continue;
            }
            let Some(key) = ApiKey::find_by_hash(conn, &hasher.token_hash(c))? else {
                outcomes.push(Outcome::NotFound);
                continue;
            };
            let inactive = key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= at);
            if inactive
                || ApiKey::revoke(conn, &key.id, "leak-report", Some(&format!("reported as leaked at {url}")), at)? != 1
            {
                outcomes.push(Outcome::AlreadyInactive);
                continue;
            }
            let mut event = Event::new("api_key.leak_reported").object("api_key", &key.id).details(json!({"url": url}));
            if let Some(t) = key.team_id.as_deref() {
                event = event.team(t);
            }
            audit::record(conn, actor, event)?;
            revoked.push(key.id);
            outcomes.push(Outcome::Revoked);
        }
        Ok((outcomes, revoked))
    })
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
