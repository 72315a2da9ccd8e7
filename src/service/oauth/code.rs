//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
//!
//! Rules: a code is used once, by the client it was issued to, within its
//! lifetime; the redirect URI must repeat the authorization request's (and is
//! required only if that request named one); the verifier must be well formed
//! and match the S256 challenge, and is refused when the request had none; a
//! second use of a code revokes everything it issued.

use sha2::{Digest, Sha256};

use super::OAuthError;
use super::client::AuditCtx;
use super::issue::{Failure, Grant, TokenResponse, audit_failure, issue, revoke_replayed};
use super::token::GrantType;
use crate::domain::{AuditAction, OAuthErrorCode};
use crate::service::crypto::{self, Keys};
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthCode};

/// What the client sends to exchange a code.
pub(super) struct CodeExchange {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub verifier: Option<String>,
}

/// Exchanges a code for tokens; a second use of the code revokes them.
pub(super) fn exchange_code(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    x: &CodeExchange,
) -> Result<TokenResponse, OAuthError> {
    let hash = hasher.token_hash(&format!("code:{}", x.code));
    let result = crate::store::transaction(conn, |conn| redeem(conn, hasher, audit_ctx, client, (x, &hash)));
    match result {
        Ok(t) => Ok(t),
        Err(Failure::Replayed) => {
            // A second use of a code: revoke everything it issued.
            let grant = OauthCode::find(conn, &hash)?.map(|c| c.grant_id);
            let why = "authorization code used twice; its tokens were revoked";
            revoke_replayed(conn, audit_ctx, client, grant.as_deref(), (AuditAction::OauthCodeReused, why))?;
            Err(OAuthError::invalid_grant("The code was already used."))
        }
        Err(Failure::Refused(e)) => {
            if e.error == OAuthErrorCode::InvalidGrant {
                audit_failure(conn, audit_ctx, client, AuditAction::OauthTokenFailed, &e.description)?;
            }
            Err(e)
        }
    }
}

/// Inside the exchange's transaction: marks the code used and issues.
fn redeem(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    (x, hash): (&CodeExchange, &str),
) -> Result<TokenResponse, Failure> {
    let c = OauthCode::find(conn, hash)?.ok_or_else(|| OAuthError::invalid_grant("The code is not valid."))?;
    if c.client_id != client.id {
        return Err(OAuthError::invalid_grant("The code was issued to another client.").into());
    }
    if c.used_at.is_some() {
        return Err(Failure::Replayed);
    }
    check_code(&c, x, audit_ctx.clock.now())?;
    if OauthCode::mark_used(conn, hash, audit_ctx.clock.now())? != 1 {
        return Err(Failure::Replayed);
    }
    let g = Grant {
        user_id: Some(&c.user_id),
        team_id: &c.team_id,
        scopes: &c.scopes,
        grant_id: &c.grant_id,
        grant_type: GrantType::AuthorizationCode,
        not_after: None,
    };
    Ok(issue(conn, hasher, audit_ctx, client, (g, true), None)?)
}

/// The code's own conditions: alive, the same redirect URI, the verifier.
fn check_code(c: &OauthCode, x: &CodeExchange, now: i64) -> Result<(), OAuthError> {
    if c.expires_at <= now {
        return Err(OAuthError::invalid_grant("The code has expired."));
    }
    // RFC 6749 §4.1.3: required (and identical) only if the authorization request had one.
    let redirect_ok = match x.redirect_uri.as_deref() {
        Some(given) => given == c.redirect_uri,
        None => !c.redirect_uri_given,
    };
    if !redirect_ok {
        return Err(OAuthError::invalid_grant("The redirect_uri does not match the authorization request."));
    }
    let verifier = x.verifier.as_deref();
    if verifier.is_some_and(|v| !verifier_well_formed(v)) {
        return Err(OAuthError::invalid_grant(
            "The code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1).",
        ));
    }
    match (c.code_challenge.as_deref(), verifier) {
        (Some(challenge), Some(v)) if crypto::ct_eq(&s256(v), challenge) => Ok(()),
        (Some(_), _) => Err(OAuthError::invalid_grant("The code_verifier does not match the code_challenge.")),
        (None, Some(_)) => Err(OAuthError::invalid_grant("A code_verifier was sent but no code_challenge was.")),
        (None, None) => Ok(()),
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn verifier_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
