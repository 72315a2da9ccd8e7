//! The revocation endpoint (RFC 7009) and the audit record of any revocation
//! of OAuth credentials.
//!
//! Rules: the client authenticates (throttled and audited as at the token
//! endpoint, though only a failed authentication counts as a failure); a
//! token of another client, or none, is answered like a revoked one; either
//! kind of token takes the rest of its grant with it (§2.1), and the verifier
//! then forgets its cached tokens; a client that authenticated with a secret
//! counts a use of it, as at the token endpoint.

use serde_json::json;

use super::client::{AuditCtx, ClientCredentials, authenticate_audited, field, presented_subject};
use super::token::{Owned, TokenCall, TokenService};
use super::{OAuthError, TokenError, app_actor};
use crate::domain::{AuditAction, OAuthErrorCode};
use crate::service::Result;
use crate::service::audit::{self, Actor, Event};
use crate::service::crypto::Keys;
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthToken};

impl TokenService<'_> {
    /// `POST /oauth/revoke`: `Ok` whether or not the token existed.
    pub async fn revoke(&self, call: TokenCall) -> Result<(), TokenError> {
        let creds = ClientCredentials::of_request(call.basic, &call.form)?;
        let token = field(&call.form, "token");
        let failures = self.failures(&creds, call.ip);
        failures.check().await.map_err(|retry_after| TokenError::SlowDown {
            retry_after,
            description: "Too many failed requests: wait before trying again.",
        })?;
        let (owned, presented) = (self.owned(call.ip), presented_subject(self.keys, &creds));
        let result = self.db.run(move |conn| revoke_for_client(conn, &owned, &creds, token)).await;
        if result.is_ok() {
            self.count_secret(presented.as_deref(), call.ip, call.agent.as_deref());
        }
        let result = result.and_then(|revoked| revoked);
        if result.as_ref().is_err_and(|e| e.error == OAuthErrorCode::InvalidClient) {
            failures.record().await;
        }
        if result?.is_some() {
            self.verifier.invalidate_tokens();
        }
        Ok(())
    }
}

/// `Err` when the client did not authenticate; else what the revocation answered.
fn revoke_for_client(
    conn: &mut DbConn,
    owned: &Owned,
    creds: &ClientCredentials,
    token: Option<String>,
) -> Result<Result<Option<String>, OAuthError>, OAuthError> {
    let client = authenticate_audited(conn, &owned.keys, creds, owned.audit())?;
    let Some(token) = token else { return Ok(Err(OAuthError::invalid_request("token is required."))) };
    Ok(revoke(conn, &owned.keys, owned.audit(), &client, &token))
}

/// Revokes a token of this client with its grant. Returns the revoked grant, if any.
fn revoke(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    token: &str,
) -> Result<Option<String>, OAuthError> {
    let Some(t) = OauthToken::find_by_hash(conn, &hasher.token_hash(token))? else { return Ok(None) };
    if t.client_id != client.id {
        return Ok(None);
    }
    // RFC 7009 §2.1 lets either kind take the rest of its grant with it.
    crate::store::transaction(conn, |conn| {
        let revoked = OauthToken::revoke_grant(conn, &t.grant_id, audit_ctx.clock.now())?;
        if revoked > 0 {
            let actor = app_actor(client, audit_ctx.ip);
            audit_revoked(conn, &actor, &t, "grant", revoked, "revoked by the client (RFC 7009)")?;
        }
        Ok::<_, OAuthError>(())
    })?;
    Ok(Some(t.grant_id))
}

/// Records a revocation of OAuth credentials: `revoked` is `access_token`,
/// `refresh_token` or `grant`; `presented` the kind of token that caused it.
pub fn audit_revoked(
    conn: &mut DbConn,
    actor: &Actor,
    t: &OauthToken,
    revoked: &str,
    count: usize,
    why: &str,
) -> Result<()> {
    let e =
        Event::new(AuditAction::OauthTokenRevoked).team(&t.team_id).object("oauth_app", &t.client_id).details(json!({
            "revoked": revoked,
            "presented": t.kind.hint(),
            "grant_id": t.grant_id,
            "tokens_revoked": count,
            "reason": why,
        }));
    audit::record(conn, actor, e)
}
