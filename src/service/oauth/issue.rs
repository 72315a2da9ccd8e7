//! Issuing tokens, for every grant: what they carry, how long they live, and
//! what happens when a code or refresh token comes back.
//!
//! Rules: a token carries only the scopes its holder's current role allows,
//! and nothing at all for a holder who left the team; nothing is issued if the
//! app was rotated or disarmed while the request ran; no token outlives the
//! team's maximum key lifetime, nor (under one) its grant's first refresh
//! token; the issuance and its audit event commit together; a replayed code or
//! refresh token revokes its whole grant, in one transaction with its (gated)
//! event.

use serde_json::json;

use super::client::AuditCtx;
use super::token::GrantType;
use super::{ACCESS_TTL, OAuthError, REFRESH_TTL, app_actor, scopes_of};
use crate::domain::{AuditAction, PlainSecret, TokenKind};
use crate::service::audit::{self, Event};
use crate::service::audit_gate::PendingEvent;
use crate::service::crypto::{self, Keys};
use crate::service::keys::codec;
use crate::service::{Error, policy};
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthToken, Team};

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: PlainSecret,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: Option<PlainSecret>,
    pub scope: String,
}

/// Who a token acts for, with what, in which grant, by which grant type.
pub(super) struct Grant<'a> {
    pub user_id: Option<&'a str>,
    pub team_id: &'a str,
    pub scopes: &'a str,
    pub grant_id: &'a str,
    pub grant_type: GrantType,
    /// A refresh's predecessor expiry: under a team maximum lifetime, the
    /// grant as a whole ends then (rotation never extends it).
    pub not_after: Option<i64>,
}

/// Why a grant's transaction issued nothing.
pub(super) enum Failure {
    Refused(OAuthError),
    /// The code or refresh token was presented again: its grant is to end.
    Replayed,
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Self::Refused(e)
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Self::Refused(e.into())
    }
}

fn generate(prefix: &str) -> Result<String, OAuthError> {
    Ok(codec::generate(prefix).map_err(|e| Error::internal(e, "generating a token"))?)
}

/// Stores a new access token (and refresh token) and audits the issuance, in
/// one transaction; a refresh passes its derived successor (access, refresh).
pub(super) fn issue(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    (g, refresh): (Grant<'_>, bool),
    successor: Option<(String, String)>,
) -> Result<TokenResponse, OAuthError> {
    // Whatever the grant says, a token carries only what its holder's
    // current role allows.
    let capped = holder_scopes(conn, client, g.user_id, g.team_id, g.scopes)?;
    let g = Grant { scopes: &capped, ..g };
    let tokens = match successor {
        Some((access, refresh)) => (access, Some(refresh)),
        None => (generate("lkat")?, if refresh { Some(generate("lkrt")?) } else { None }),
    };
    crate::store::transaction(conn, |conn| {
        if g.grant_type == GrantType::ClientCredentials {
            lazy_commit(conn)?;
        }
        // The app as it is now, held until this issuance commits: if it was
        // rotated or disarmed since the client authenticated, nothing is issued.
        let unchanged = OauthClient::find_for_share(conn, &client.id)?
            .is_some_and(|now| now.secret_hash == client.secret_hash && now.redirect_uris == client.redirect_uris);
        if !unchanged {
            return Err(OAuthError::invalid_grant("The app changed while this request ran; try again."));
        }
        store_tokens(conn, (hasher, audit_ctx), client, &g, tokens)
    })
}

/// PostgreSQL: this transaction's commit returns before its WAL record is
/// flushed to disk (`synchronous_commit = off`, for this transaction only).
/// Only a `client_credentials` issuance asks for it: it consumes nothing (no
/// code, no refresh token), so what a database crash can lose is the newest
/// tokens — which the app gets again with its own credentials — and their
/// audit events; never a revocation, a consumed code or a rotation. The row
/// is visible to every other connection (every instance) the moment the
/// commit returns, as with a durable commit. SQLite's commits are already
/// not flushed per transaction (`synchronous = NORMAL` under WAL).
fn lazy_commit(conn: &mut DbConn) -> Result<(), OAuthError> {
    use diesel::connection::SimpleConnection;
    if let DbConn::Pg(pg) = conn {
        pg.batch_execute("SET LOCAL synchronous_commit = off")?;
    }
    Ok(())
}

/// Inside the issuance's transaction: the tokens' rows and the audit event.
fn store_tokens(
    conn: &mut DbConn,
    (hasher, audit_ctx): (&Keys, AuditCtx<'_>),
    client: &OauthClient,
    g: &Grant<'_>,
    (access_token, refresh_token): (String, Option<String>),
) -> Result<TokenResponse, OAuthError> {
    let at = audit_ctx.clock.now();
    let (access_ttl, refresh_ttl) = lifetimes(conn, g, at)?;
    insert_token(conn, hasher, client, g, (TokenKind::Access, &access_token, at, access_ttl))?;
    if let Some(r) = &refresh_token {
        insert_token(conn, hasher, client, g, (TokenKind::Refresh, r, at, refresh_ttl))?;
    }
    let e = Event::new(AuditAction::OauthTokenIssued).team(g.team_id).object("oauth_app", &client.id).details(json!({
        "grant_type": g.grant_type.as_str(),
        "scopes": scopes_of(g.scopes),
        "user_id": g.user_id,
        "grant_id": g.grant_id,
        "refresh_token": refresh_token.is_some(),
    }));
    audit::record(conn, &app_actor(client, audit_ctx.ip), e)?;
    Ok(TokenResponse {
        access_token: PlainSecret::new(access_token),
        token_type: "Bearer",
        expires_in: access_ttl,
        refresh_token: refresh_token.map(PlainSecret::new),
        scope: g.scopes.to_owned(),
    })
}

fn insert_token(
    conn: &mut DbConn,
    hasher: &Keys,
    client: &OauthClient,
    g: &Grant<'_>,
    (kind, token, at, ttl): (TokenKind, &str, i64, i64),
) -> Result<(), OAuthError> {
    OauthToken {
        id: crypto::new_id("tok").map_err(|e| Error::internal(e, "generating a token id"))?,
        token_hash: hasher.token_hash(token),
        kind,
        client_id: client.id.clone(),
        user_id: g.user_id.map(str::to_owned),
        team_id: g.team_id.to_owned(),
        scopes: g.scopes.to_owned(),
        grant_id: g.grant_id.to_owned(),
        created_at: at,
        expires_at: at + ttl,
        revoked_at: None,
        used_at: None,
    }
    .insert(conn)?;
    Ok(())
}

/// Seconds the access and refresh tokens of an issuance live: never beyond
/// the team's maximum key lifetime, and under one, never beyond the grant's
/// first refresh token (a rotation does not extend the grant).
fn lifetimes(conn: &mut DbConn, g: &Grant<'_>, at: i64) -> Result<(i64, i64), OAuthError> {
    let max_days = Team::find(conn, g.team_id)?.and_then(|t| t.max_key_lifetime_days);
    let end = |ttl: i64| {
        let capped = policy::cap_expiry(Some(at + ttl), max_days, at).unwrap_or(at + ttl);
        let capped = match (max_days, g.not_after) {
            (Some(_), Some(limit)) => capped.min(limit),
            _ => capped,
        };
        (capped - at).max(1)
    };
    Ok((end(ACCESS_TTL), end(REFRESH_TTL)))
}

/// The scopes a token issued now may carry: those of `scopes` that its
/// holder's current role allows (the user it acts for, or the member who
/// registered a client_credentials app). A holder who left the team, or a
/// role that allows none of them, gets no token.
fn holder_scopes(
    conn: &mut DbConn,
    client: &OauthClient,
    user_id: Option<&str>,
    team_id: &str,
    scopes: &str,
) -> Result<String, OAuthError> {
    let role = crate::service::accounts::current_role(conn, team_id, user_id.or(client.created_by.as_deref()))?;
    let effective = policy::effective_scopes(role, &scopes_of(scopes));
    if effective.is_empty() {
        return Err(OAuthError::invalid_grant("The grant is no longer valid for this account."));
    }
    Ok(effective.join(" "))
}

/// Audits a failed token request: anyone holding a public client id can cause
/// one, so at most one per app, action and minute is recorded, then a count.
pub(super) fn audit_failure(
    conn: &mut DbConn,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    action: AuditAction,
    why: &str,
) -> Result<(), OAuthError> {
    let e = PendingEvent::new(action, app_actor(client, audit_ctx.ip))
        .team(Some(&client.team_id))
        .object("oauth_app", &client.id)
        .details(json!({"reason": why}));
    Ok(audit_ctx.gated(client, &e, action, conn)?)
}

/// A presented credential was used again: its whole grant (if the
/// credential is still there) ends, in one transaction with the event that
/// says so. (Replays can be repeated by whoever holds the copy: the event
/// goes through the audit gate like other failures.)
pub(super) fn revoke_replayed(
    conn: &mut DbConn,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    grant_id: Option<&str>,
    (action, why): (AuditAction, &str),
) -> Result<(), OAuthError> {
    let Some(grant_id) = grant_id else { return Ok(()) };
    crate::store::transaction(conn, |conn| {
        let revoked = OauthToken::revoke_grant(conn, grant_id, audit_ctx.clock.now())?;
        let e = PendingEvent::new(action, app_actor(client, audit_ctx.ip))
            .team(Some(&client.team_id))
            .object("oauth_app", &client.id)
            .details(json!({"reason": why, "revoked": "grant", "grant_id": grant_id, "tokens_revoked": revoked}));
        Ok(audit_ctx.gated(client, &e, action, conn)?)
    })
}
