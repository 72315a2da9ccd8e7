//! The token endpoint (RFC 6749 §3.2): client authentication, the failure
//! throttles, the issuance limit, and the grants.
//!
//! Rules: failures are throttled per client and address and per address
//! (checked before anything else, counted when a request fails: a client's
//! concurrent requests are not failures while in flight); tokens issued are
//! limited per client and address ([`ratelimit::TOKEN_ISSUANCE`]), reserved
//! before the grant runs and given back when it fails; a failed grant may have
//! revoked a replayed grant, so the verifier forgets its cached tokens; only
//! confidential apps use `client_credentials`, within the app's scopes; every
//! request whose client authenticated with a secret counts a use of the
//! secret it presented (current or previous: see `oauth::rotation`), whatever
//! the grant then answers.

use std::net::IpAddr;
use std::sync::Arc;

use super::client::{AuditCtx, ClientCredentials, Failures, authenticate_audited, field, presented_subject};
use super::code::{CodeExchange, exchange_code};
use super::issue::{Grant, issue};
use super::refresh::{Refresh, refresh};
use super::{OAuthError, TokenError, scopes_of};
use crate::domain::{ClientType, OAuthErrorCode};
use crate::service::attempts::{Throttle, address_key};
use crate::service::audit_gate::AuditGate;
use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::service::metrics::{self, Metrics};
use crate::service::ratelimit::{self, Limits, Plan};
use crate::service::usage::Seen;
use crate::service::verify::Verifier;
use crate::service::{Error, Result};
use crate::store::models::OauthClient;
use crate::store::{Db, DbConn};

pub use super::issue::TokenResponse;

/// The token and revocation endpoints, over what the application shares.
pub struct TokenService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub verifier: &'a Verifier,
    /// Failed requests per client and address, and per address.
    pub throttles: (&'a Throttle, &'a Throttle),
    /// Tokens issued per client and address.
    pub issuance: &'a Limits,
    pub audit_gate: &'a Arc<AuditGate>,
    pub clock: &'a Clock,
    /// The plan of a team that has none.
    pub default_plan: &'a str,
    /// Tokens issued by grant, and refusals by error code.
    pub metrics: &'a Metrics,
}

/// A request to the token or revocation endpoint, as it came.
pub struct TokenCall {
    /// The client's credentials from HTTP Basic, if it sent them.
    pub basic: Option<ClientCredentials>,
    pub form: Vec<(String, String)>,
    pub ip: Option<IpAddr>,
    /// The caller's `User-Agent`, as sent.
    pub agent: Option<String>,
}

/// The grants this server knows (`grant_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    fn counted(self) -> metrics::Grant {
        match self {
            Self::AuthorizationCode => metrics::Grant::AuthorizationCode,
            Self::RefreshToken => metrics::Grant::RefreshToken,
            Self::ClientCredentials => metrics::Grant::ClientCredentials,
        }
    }
}

/// What is needed inside the blocking call, owned.
#[derive(Clone)]
pub(super) struct Owned {
    pub keys: Keys,
    pub gate: Arc<AuditGate>,
    pub clock: Clock,
    pub ip: Option<String>,
}

impl Owned {
    pub fn audit(&self) -> AuditCtx<'_> {
        AuditCtx { gate: &self.gate, ip: self.ip.as_deref(), clock: &self.clock }
    }
}

impl TokenService<'_> {
    pub(super) fn owned(&self, ip: Option<IpAddr>) -> Owned {
        Owned {
            keys: self.keys.clone(),
            gate: self.audit_gate.clone(),
            clock: self.clock.clone(),
            ip: ip.map(|ip| ip.to_string()),
        }
    }

    pub(super) fn failures(&self, creds: &ClientCredentials, ip: Option<IpAddr>) -> Failures<'_> {
        Failures::new(self.throttles, creds.client_id.as_deref(), &address_key(ip), self.clock.now())
    }

    /// `POST /oauth/token`: a token for an authenticated client, by any grant.
    pub async fn token(&self, call: TokenCall) -> Result<TokenResponse, TokenError> {
        let grant = field(&call.form, "grant_type").and_then(|g| GrantType::parse(&g));
        let answer = self.issue_tokens(call).await;
        match (&answer, grant) {
            (Ok(_), Some(grant)) => self.metrics.token_issued(grant.counted()),
            (Ok(_), None) => {}
            (Err(TokenError::Refused(e)), _) => self.metrics.token_refused(e.error),
            (Err(TokenError::SlowDown { .. }), _) => self.metrics.token_refused(OAuthErrorCode::SlowDown),
        }
        answer
    }

    async fn issue_tokens(&self, call: TokenCall) -> Result<TokenResponse, TokenError> {
        let creds = ClientCredentials::of_request(call.basic, &call.form)?;
        let failures = self.failures(&creds, call.ip);
        failures.check().await.map_err(|retry_after| TokenError::SlowDown {
            retry_after,
            description: "Too many failed token requests: wait before trying again.",
        })?;
        let presented = presented_subject(self.keys, &creds);
        let form = Arc::new(call.form);
        // A team whose plan sets no issuance limit is served by one task on
        // one pooled connection: authentication and the grant together.
        let authenticated = self.authenticate_then_grant(creds, call.ip, form.clone()).await;
        if authenticated.is_ok() {
            self.count_secret(presented.as_deref(), call.ip, call.agent.as_deref());
        }
        let (client, plan) = match authenticated {
            Ok(Authenticated::Served(issued)) => return Ok(issued),
            Ok(Authenticated::Limited(client, plan)) => (client, plan),
            Ok(Authenticated::Failed(e)) | Err(e) => return Err(self.refused(&failures, e, None).await),
        };
        // Per client and address: one user of a public app cannot use up the
        // allowance of everyone else (a server-side app calls from its own address).
        let (at_ms, issuance_key) = (self.clock.now_ms(), format!("{}|{}", client.id, address_key(call.ip)));
        if let Err((_, retry_after)) = self.issuance.hit(&issuance_key, plan, at_ms).await {
            let description = "This client was issued too many tokens: wait before asking for more.";
            return Err(TokenError::SlowDown { retry_after, description });
        }
        let owned = self.owned(call.ip);
        let result = self.db.run(move |conn| run_grant(conn, &owned, &client, &form)).await;
        match result {
            Ok(issued) => Ok(issued),
            Err(e) => Err(self.refused(&failures, e, Some((&issuance_key, at_ms))).await),
        }
    }

    /// Counts a use of the client secret a request authenticated with (`subject`), if any.
    pub(super) fn count_secret(&self, subject: Option<&str>, ip: Option<IpAddr>, agent: Option<&str>) {
        if let Some(subject) = subject {
            self.verifier.record_secret_use(subject, &Seen { at: self.clock.now(), ip, agent });
        }
    }

    /// A request that issued nothing: the issuance it counted is given
    /// back, the failure counted against the throttles, and cached tokens
    /// forgotten if a grant may have been revoked.
    async fn refused(&self, failures: &Failures<'_>, e: OAuthError, counted: Option<(&str, i64)>) -> TokenError {
        if let Some((key, at_ms)) = counted {
            self.issuance.release(key, at_ms).await;
        }
        failed(failures, &e).await;
        if e.error == OAuthErrorCode::InvalidGrant {
            // A reused code or refresh token may have revoked a grant here.
            self.verifier.invalidate_tokens();
        }
        e.into()
    }

    /// Authenticates the client (auditing a wrong secret); runs the grant at
    /// once unless the team's plan limits issuance, which is counted first.
    /// `Err` only when the client did not authenticate.
    async fn authenticate_then_grant(
        &self,
        creds: ClientCredentials,
        ip: Option<IpAddr>,
        form: Arc<Vec<(String, String)>>,
    ) -> Result<Authenticated, OAuthError> {
        let (owned, default_plan) = (self.owned(ip), self.default_plan.to_owned());
        self.db
            .run(move |conn| {
                let client = authenticate_audited(conn, &owned.keys, &creds, owned.audit())?;
                Ok(match ratelimit::issuance_limit(conn, &client.team_id, &default_plan) {
                    Ok(Some(plan)) => Authenticated::Limited(Box::new(client), plan),
                    Ok(None) => run_grant(conn, &owned, &client, &form)
                        .map_or_else(Authenticated::Failed, Authenticated::Served),
                    Err(e) => Authenticated::Failed(e.into()),
                })
            })
            .await
    }
}

/// What authenticating a token request led to.
enum Authenticated {
    /// No issuance limit: the grant ran.
    Served(TokenResponse),
    /// The grant waits for the issuance limit of this plan.
    Limited(Box<OauthClient>, Plan),
    /// The client authenticated; the grant failed.
    Failed(OAuthError),
}

/// Counts a failed request against the throttles (not our own failures).
pub(super) async fn failed(failures: &Failures<'_>, e: &OAuthError) {
    if e.error != OAuthErrorCode::ServerError {
        failures.record().await;
    }
}

/// Runs the requested grant for an authenticated client.
fn run_grant(
    conn: &mut DbConn,
    owned: &Owned,
    client: &OauthClient,
    form: &[(String, String)],
) -> Result<TokenResponse, OAuthError> {
    let required =
        |name: &str| field(form, name).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required.")));
    let (keys, audit) = (&owned.keys, owned.audit());
    let grant_type = field(form, "grant_type").unwrap_or_default();
    match GrantType::parse(&grant_type) {
        Some(GrantType::AuthorizationCode) => {
            let x = CodeExchange {
                code: required("code")?,
                redirect_uri: field(form, "redirect_uri"),
                verifier: field(form, "code_verifier"),
            };
            exchange_code(conn, keys, audit, client, &x)
        }
        Some(GrantType::RefreshToken) => {
            let r = Refresh { token: required("refresh_token")?, scope: field(form, "scope") };
            refresh(conn, keys, audit, client, &r)
        }
        Some(GrantType::ClientCredentials) => client_credentials(conn, keys, audit, client, field(form, "scope")),
        None if grant_type.is_empty() => Err(OAuthError::invalid_request("grant_type is required.")),
        None => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "Use authorization_code, refresh_token or client_credentials.",
        )),
    }
}

/// The `client_credentials` grant (RFC 6749 §4.4): an app acting for itself.
fn client_credentials(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    scope: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    if client.client_type != ClientType::Confidential {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "Only confidential apps may use client_credentials.",
        ));
    }
    let scopes = requested_scopes(client, scope.as_deref())?.join(" ");
    let grant = crypto::new_id("grant").map_err(|e| Error::internal(e, "generating a grant id"))?;
    let g = Grant {
        user_id: None,
        team_id: &client.team_id,
        scopes: &scopes,
        grant_id: &grant,
        grant_type: GrantType::ClientCredentials,
        not_after: None,
    };
    issue(conn, hasher, audit_ctx, client, (g, false), None)
}

/// The scopes an app asks for itself: within its own, all of them by default.
fn requested_scopes(client: &OauthClient, scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let allowed = scopes_of(&client.allowed_scopes);
    let Some(asked) = scope.map(str::trim).filter(|s| !s.is_empty()).map(scopes_of) else { return Ok(allowed) };
    if asked.iter().any(|a| !allowed.contains(a)) {
        return Err(OAuthError::new(OAuthErrorCode::InvalidScope, "The app may not request one of these scopes."));
    }
    Ok(asked)
}
