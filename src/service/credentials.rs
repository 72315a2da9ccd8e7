//! The credential use cases of the request path: verify a presented
//! credential, read it again once a request's body has arrived, introspect a
//! token for another server (RFC 7662), and forward auth.
//!
//! Rules: times compared with stored expiries come from the service clock;
//! a database failure is an internal error, never "unauthorized" or
//! "inactive"; introspection answers only a service key holding `introspect`
//! (any other caller is unauthorized), and says what the token is by its
//! prefix — the `token_type_hint` changes nothing; forward auth never admits
//! a service key (they are the operator's, not a user's).

use std::net::IpAddr;
use std::sync::Arc;

use super::clock::Clock;
use super::crypto::Keys;
use super::keys::scopes;
use super::principal::Principal;
use super::verify::{Refusal, Verified, Verifier};
use super::{oauth, policy};
use crate::domain::{ClientId, TeamId, TokenKind, UserId};
use crate::store::Db;

/// The scope a service key needs to introspect.
pub const INTROSPECT_SCOPE: &str = "introspect";

/// The verifier with what it reads: the database, the hash keys, the clock.
pub struct CredentialService<'a> {
    pub db: &'a Db,
    pub hasher: &'a Keys,
    pub verifier: &'a Verifier,
    pub clock: &'a Clock,
}

/// What introspection says about a token.
#[derive(Debug)]
pub enum Introspection {
    Inactive,
    Token(ActiveToken),
    Key(Arc<Principal>),
}

/// An active OAuth token, with the scopes its holder's role allows now.
#[derive(Debug)]
pub struct ActiveToken {
    pub kind: TokenKind,
    pub scope: String,
    pub client_id: ClientId,
    pub user_id: Option<UserId>,
    pub team_id: TeamId,
    pub expires_at: i64,
    pub issued_at: i64,
}

impl CredentialService<'_> {
    /// Verifies a presented credential for a request from `client` with the
    /// user agent `agent`.
    pub async fn verify(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        agent: Option<&str>,
    ) -> Result<Verified, Refusal> {
        self.verifier.verify(self.db, self.hasher, presented, client, agent, self.clock.now_ms()).await
    }

    /// The credential read again (its role, its revocation): refused unless
    /// it still authenticates now.
    pub async fn revalidate(&self, presented: &str) -> Result<Arc<Principal>, Refusal> {
        let found = self.verifier.lookup(self.db, self.hasher, presented).await?;
        found.filter(|p| p.is_usable(self.clock.now())).ok_or(Refusal::Unauthorized)
    }

    /// RFC 7662 for `caller` (a presented service key) about `token`.
    pub async fn introspect(&self, caller: &str, token: &str) -> Result<Introspection, Refusal> {
        let caller = self.verifier.lookup(self.db, self.hasher, caller).await?;
        let caller = caller.filter(|k| k.is_service_key() && !k.is_revoked()).ok_or(Refusal::Unauthorized)?;
        if !policy::may_call_platform(caller.is_service_key(), caller.scopes(), INTROSPECT_SCOPE) {
            return Err(Refusal::MissingScope(INTROSPECT_SCOPE.to_owned()));
        }
        let token = token.trim();
        match token.split_once('_').and_then(|(prefix, _)| TokenKind::of_prefix(prefix)) {
            // Refresh tokens are never presented to an API: read each time.
            Some(TokenKind::Refresh) => return self.introspect_refresh_token(token).await,
            Some(TokenKind::Access) | None => {}
        }
        // Keys and access tokens: the verifier's cache, as for any API call.
        let found = self.verifier.lookup(self.db, self.hasher, token).await?;
        let Some(found) = found.filter(|k| k.is_usable(self.clock.now())) else { return Ok(Introspection::Inactive) };
        Ok(match ActiveToken::of(&found) {
            Some(active) => Introspection::Token(active),
            None if found.is_access_token() => Introspection::Inactive,
            None => Introspection::Key(found),
        })
    }

    async fn introspect_refresh_token(&self, token: &str) -> Result<Introspection, Refusal> {
        let (hasher, token, at) = (self.hasher.clone(), token.to_owned(), self.clock.now());
        let found = self
            .db
            .run(move |conn| oauth::active_token(conn, &hasher, &token, at))
            .await
            .map_err(|e| Refusal::Internal(anyhow::Error::new(e).context("introspecting an OAuth token")))?;
        let Some((t, client)) = found else { return Ok(Introspection::Inactive) };
        Ok(Introspection::Token(ActiveToken {
            kind: t.kind,
            scope: t.scopes,
            client_id: client.id.into(),
            user_id: t.user_id.map(UserId::from),
            team_id: t.team_id.into(),
            expires_at: t.expires_at,
            issued_at: t.created_at,
        }))
    }
}

impl ActiveToken {
    /// A verified access token as introspection shows it; `None` for a key,
    /// or a token that may do nothing now (its holder's role allows none of
    /// its scopes).
    fn of(principal: &Principal) -> Option<Self> {
        let Principal::AccessToken { client_id, user_id, issued_at, grant, .. } = principal else { return None };
        if grant.scopes.is_empty() {
            return None;
        }
        Some(Self {
            kind: TokenKind::Access,
            scope: grant.scopes.join(" "),
            client_id: client_id.clone(),
            user_id: user_id.clone(),
            team_id: grant.team_id.clone()?,
            expires_at: grant.expires_at?,
            issued_at: *issued_at,
        })
    }
}

impl CredentialService<'_> {
    /// Forward auth for a verified credential ([`forwardable`]); a key's
    /// usage notes the scope it exercised (one of `catalog`), or moves its
    /// request to `scope_denied`.
    pub fn forward(&self, verified: &Verified, scope: Option<&str>, catalog: &[String]) -> Result<(), Refusal> {
        let answer = forwardable(&verified.key, scope);
        match (&answer, scope, verified.key.key_id()) {
            (Err(Refusal::MissingScope(_)), _, _) => self.verifier.refused_for_scope(&verified.key, verified.at),
            (Ok(()), Some(s), Some(id)) if catalog.iter().any(|c| c == s) => {
                self.verifier.exercised(id.as_str(), s, verified.at)
            }
            _ => {}
        }
        answer
    }
}

/// Forward auth's rule for a verified credential: never a service key, and
/// the location's scope when it names one.
pub fn forwardable(principal: &Principal, scope: Option<&str>) -> Result<(), Refusal> {
    if principal.is_service_key() {
        return Err(Refusal::Unauthorized);
    }
    match scope.filter(|s| !s.is_empty()) {
        Some(needed) if !scopes::satisfies(principal.scopes(), needed) => Err(Refusal::MissingScope(needed.to_owned())),
        _ => Ok(()),
    }
}
