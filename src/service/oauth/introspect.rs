//! What an OAuth token may do now, for introspection (RFC 7662).
//!
//! Rules: a token is active while unrevoked and unexpired, a refresh token
//! only until it is used; its scopes are those its holder's current role
//! allows, and a token that may do nothing is not active.

use super::scopes_of;
use crate::domain::TokenKind;
use crate::service::crypto::Keys;
use crate::service::{Result, policy};
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthToken};

/// An active token and its app, with the scopes it holds now.
pub fn active_token(
    conn: &mut DbConn,
    hasher: &Keys,
    token: &str,
    at: i64,
) -> Result<Option<(OauthToken, OauthClient)>> {
    let Some(t) = OauthToken::find_by_hash(conn, &hasher.token_hash(token))? else { return Ok(None) };
    let live = t.revoked_at.is_none() && t.expires_at > at && (t.kind == TokenKind::Access || t.used_at.is_none());
    if !live {
        return Ok(None);
    }
    let Some(client) = OauthClient::find(conn, &t.client_id)? else { return Ok(None) };
    // What the token may do now: its holder's current role decides.
    let holder = t.user_id.as_deref().or(client.created_by.as_deref());
    let role = crate::service::accounts::current_role(conn, &t.team_id, holder)?;
    let effective = policy::effective_scopes(role, &scopes_of(&t.scopes));
    if effective.is_empty() {
        return Ok(None);
    }
    let t = OauthToken { scopes: effective.join(" "), ..t };
    Ok(Some((t, client)))
}
