//! The `refresh_token` grant (RFC 6749 §6, RFC 9700 §4.14).
//!
//! Rules: a refresh token is used once, by its client, and may narrow its
//! scopes but never widen them; the pair it yields is derived from it under a
//! server key, so a retry within [`REFRESH_RETRY_GRACE`] gets that same pair
//! back (while it is unused) instead of a second branch of the grant; any
//! other use of a rotated token is a replay and revokes the whole grant.

use super::client::AuditCtx;
use super::issue::{Failure, Grant, TokenResponse, issue, revoke_replayed};
use super::token::GrantType;
use super::{OAuthError, REFRESH_RETRY_GRACE, scopes_of};
use crate::domain::{AuditAction, OAuthErrorCode, PlainSecret, TokenKind};
use crate::service::crypto::Keys;
use crate::service::keys::codec;
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthToken};

/// What the client sends to refresh.
pub(super) struct Refresh {
    pub token: String,
    pub scope: Option<String>,
}

/// The pair a refresh yields. It is derived from the presented refresh token
/// under a server key of its own, so that a retry within the grace gets the
/// very same pair (the database holds only hashes) instead of a second branch
/// of the grant; nobody without the server secret can compute it.
struct Successor {
    access: String,
    refresh: String,
}

impl Successor {
    fn of(hasher: &Keys, refresh_token: &str) -> Self {
        let derive = |role: &str| hasher.derived_base62(&format!("{role}:{refresh_token}"), codec::RANDOM_LEN);
        Self { access: codec::encode("lkat", &derive("access")), refresh: codec::encode("lkrt", &derive("refresh")) }
    }
}

fn not_valid() -> OAuthError {
    OAuthError::invalid_grant("The refresh token is not valid.")
}

/// Rotates a refresh token. The first refresh stores the derived successor;
/// a retry with the same token within [`REFRESH_RETRY_GRACE`] gets that same
/// successor back (while it is unused); any other use of a rotated token is
/// reuse, and revokes the whole grant.
pub(super) fn refresh(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    r: &Refresh,
) -> Result<TokenResponse, OAuthError> {
    let hash = hasher.token_hash(&r.token);
    let result = crate::store::transaction(conn, |conn| rotate(conn, hasher, audit_ctx, client, (r, &hash)));
    match result {
        Ok(t) => Ok(t),
        Err(Failure::Replayed) => {
            // A rotated refresh token came back: someone holds a copy. End the grant.
            let grant = OauthToken::find_by_hash(conn, &hash)?.map(|t| t.grant_id);
            let why = "a rotated refresh token was reused; the grant was revoked";
            revoke_replayed(conn, audit_ctx, client, grant.as_deref(), (AuditAction::OauthRefreshReuse, why))?;
            Err(not_valid())
        }
        Err(Failure::Refused(e)) => Err(e),
    }
}

/// Inside the refresh's transaction: marks the token used and issues its
/// successor, or answers a retry.
fn rotate(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    (r, hash): (&Refresh, &str),
) -> Result<TokenResponse, Failure> {
    let t = OauthToken::find_by_hash(conn, hash)?
        .filter(|t| t.kind == TokenKind::Refresh && t.client_id == client.id)
        .ok_or_else(not_valid)?;
    if t.revoked_at.is_some() {
        return Err(not_valid().into());
    }
    if t.used_at.is_none() {
        if t.expires_at <= audit_ctx.clock.now() {
            return Err(not_valid().into());
        }
        let scopes = narrowed(&t.scopes, r.scope.as_deref())?;
        if OauthToken::mark_used(conn, &t.id, audit_ctx.clock.now())? == 1 {
            let g = Grant {
                user_id: t.user_id.as_deref(),
                team_id: &t.team_id,
                scopes: &scopes,
                grant_id: &t.grant_id,
                grant_type: GrantType::RefreshToken,
                not_after: Some(t.expires_at),
            };
            let s = Successor::of(hasher, &r.token);
            return Ok(issue(conn, hasher, audit_ctx, client, (g, true), Some((s.access, s.refresh)))?);
        }
    }
    // Rotated already (perhaps by a concurrent request that just committed).
    same_successor(conn, hasher, hash, Successor::of(hasher, &r.token), audit_ctx.clock.now())
}

fn narrowed(had: &str, scope: Option<&str>) -> Result<String, OAuthError> {
    match scope.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let had = scopes_of(had);
            let asked = scopes_of(s);
            if asked.iter().any(|a| !had.contains(a)) {
                return Err(OAuthError::new(OAuthErrorCode::InvalidScope, "A refresh cannot widen the scopes."));
            }
            Ok(asked.join(" "))
        }
        None => Ok(had.to_owned()),
    }
}

/// The answer to a retry of a rotated refresh token: the successor it already
/// got, if the retry comes within the grace and the successor is unused and
/// live; otherwise a replay.
fn same_successor(
    conn: &mut DbConn,
    hasher: &Keys,
    hash: &str,
    successor: Successor,
    at: i64,
) -> Result<TokenResponse, Failure> {
    let t = OauthToken::find_by_hash(conn, hash)?.ok_or_else(not_valid)?;
    if t.revoked_at.is_some() {
        return Err(not_valid().into());
    }
    if t.used_at.is_none_or(|u| at - u > REFRESH_RETRY_GRACE) {
        return Err(Failure::Replayed);
    }
    let next_refresh = OauthToken::find_by_hash(conn, &hasher.token_hash(&successor.refresh))?;
    let next_access = OauthToken::find_by_hash(conn, &hasher.token_hash(&successor.access))?;
    let (Some(r), Some(a)) = (next_refresh, next_access) else { return Err(Failure::Replayed) };
    if r.grant_id != t.grant_id || a.grant_id != t.grant_id || r.used_at.is_some() {
        return Err(Failure::Replayed);
    }
    if r.revoked_at.is_some() || a.revoked_at.is_some() || r.expires_at <= at {
        return Err(not_valid().into());
    }
    Ok(TokenResponse {
        access_token: PlainSecret::new(successor.access),
        token_type: "Bearer",
        expires_in: (a.expires_at - at).max(0),
        refresh_token: Some(PlainSecret::new(successor.refresh)),
        scope: a.scopes,
    })
}
