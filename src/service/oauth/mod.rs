//! The OAuth 2.0 authorization server (RFC 6749, 7636, 7009, 7662, 8414,
//! 9700): client registration, authorization requests, codes, tokens. One
//! file per use case, each behind an async facade that the handlers call once:
//! [`AppService`] (an app's settings page), [`AuthorizeService`] (the
//! authorization request and the consent form), [`TokenService`] (the token
//! and revocation endpoints).
//!
//! Rules: redirect URIs match exactly (a loopback URI's port may vary); a bad
//! client or redirect URI is never redirected to; PKCE is S256 only, required
//! for public clients, and a verifier without a challenge is refused; codes are
//! single use, live 60 s, and their reuse revokes what they issued; refresh
//! tokens rotate, a retry within a 2 s grace gets the same successor (never a
//! second branch), and any other reuse of a rotated one revokes its whole grant;
//! every issuance and revocation is audited in the same transaction;
//! granted scopes never exceed the app's nor the user's role; secrets and
//! tokens are stored only as keyed hashes, and travel in the clear only as
//! [`PlainSecret`](crate::domain::PlainSecret) up to the response that shows
//! them; every time comes from the services' [`Clock`](super::clock::Clock).
//! No HTTP types here.

mod apps;
mod authorize;
mod client;
mod code;
mod consents;
mod error;
mod introspect;
mod issue;
mod metadata;
mod refresh;
mod request;
mod revoke;
mod rotation;
mod token;

pub use apps::{AppFacts, AppInput, AppList, AppService, ManagedApp, Member, Rotated, Submitted, apps};
pub use authorize::{Authorization, AuthorizeService, CONSENT_TTL, ConsentPrompt, PendingConsent, TeamSeat, Visitor};
pub use client::ClientCredentials;
pub use consents::{authorized_apps, revoke_consent, team_authorized_apps};
pub use error::{OAuthError, TokenError};
pub use introspect::active_token;
pub use metadata::{Metadata, metadata};
pub use request::{AuthorizeParams, ValidRequest};
pub use revoke::audit_revoked;
pub use rotation::SecretRotation;
pub use token::{TokenCall, TokenResponse, TokenService};

use crate::store::models::OauthClient;

use super::audit::Actor;

pub const CODE_TTL: i64 = 60;
pub const ACCESS_TTL: i64 = 3600;
pub const REFRESH_TTL: i64 = 30 * 24 * 3600;
/// A rotated refresh token presented again this soon is taken for a client's
/// concurrent retry (it gets the same successor again) rather than a theft.
pub const REFRESH_RETRY_GRACE: i64 = 2;

/// The scopes of a space-separated list (one definition, shared with keys).
pub use crate::service::keys::scopes::scopes_of;

/// How the audit trail names an app acting for itself.
fn app_actor(client: &OauthClient, ip: Option<&str>) -> Actor {
    Actor { label: format!("OAuth app {}", client.name), ip: ip.map(str::to_owned), ..Actor::default() }
}
