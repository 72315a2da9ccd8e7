//! Who is calling the API: an API key (`X-API-Key` or `Authorization: Bearer`),
//! or a signed-in browser session (which must send the CSRF header on every
//! state-changing request).
//!
//! Rules: every refusal of a credential is the same 401; a missing scope is a
//! 403 naming the scope; with `require_https`, a request that did not arrive
//! over TLS (as told by a trusted proxy) is refused before anything else; the
//! rate-limit state is left in the request extensions for the headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_session::SessionExt;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::auth::{actor_from, client_ip};
use super::{AppState, State, csrf};
use crate::error::AppError;
use crate::service::accounts::{Role, UserContext};
use crate::service::audit::Actor;
use crate::service::credentials::CredentialService;
use crate::service::keys::scopes;
use crate::service::principal::Principal;
use crate::service::ratelimit::RateState;
use crate::service::verify::{Refusal, Verified};
use crate::service::{crypto, keys as key_service};

impl AppState {
    /// Verification, revalidation and introspection of presented credentials.
    pub fn credentials(&self) -> CredentialService<'_> {
        CredentialService { db: &self.db, hasher: &self.keys, verifier: &self.verifier, clock: &self.clock }
    }
}

pub enum Credential {
    /// An API key, a service key or an OAuth access token.
    ApiKey(Arc<Principal>),
    Session(Box<UserContext>),
}

/// An API caller as the policy sees it, owned so that it can travel to the
/// blocking pool; [`Acting::creator`] lends it to the key service.
pub struct Acting {
    pub actor: Actor,
    pub team_id: String,
    pub role: Role,
    pub ceiling: Option<Vec<String>>,
    pub ip_ceiling: Option<Vec<ipnet::IpNet>>,
    pub not_after: Option<i64>,
}

impl Acting {
    pub fn creator(&self) -> key_service::Creator<'_> {
        key_service::Creator {
            actor: &self.actor,
            team_id: &self.team_id,
            role: self.role,
            ceiling: self.ceiling.as_deref(),
            ip_ceiling: self.ip_ceiling.as_deref(),
            not_after: self.not_after,
        }
    }
}

pub struct ApiPrincipal {
    pub credential: Credential,
    /// Set for sessions (the role's scopes); keys carry their own.
    session_scopes: Vec<String>,
    pub rate: Option<RateState>,
    /// Where the request came from, kept as read: the audit's actor is made
    /// from it only when an action is recorded.
    origin: Origin,
    /// For a key: where its request's usage is counted.
    usage: Option<UsageMark>,
}

/// Where a key's request is counted, and when it was verified.
struct UsageMark {
    verifier: Arc<crate::service::verify::Verifier>,
    at: i64,
}

struct Origin {
    ip: Option<std::net::IpAddr>,
    user_agent: Option<HeaderValue>,
}

impl Origin {
    fn of(req: &HttpRequest, ip: Option<std::net::IpAddr>) -> Self {
        Self { ip, user_agent: req.headers().get(actix_web::http::header::USER_AGENT).cloned() }
    }
}

impl ApiPrincipal {
    pub fn scopes(&self) -> &[String] {
        match &self.credential {
            Credential::ApiKey(k) => k.scopes(),
            Credential::Session(_) => &self.session_scopes,
        }
    }

    /// Who acts, for the audit: the key (as its holder) or the signed-in
    /// user, from the request's address and user agent.
    pub fn actor(&self) -> Actor {
        let (user_id, label) = match &self.credential {
            Credential::ApiKey(k) => (k.holder().map(|h| h.as_str().to_owned()), k.label()),
            Credential::Session(ctx) => (Some(ctx.user.id.clone()), ctx.user.email.clone()),
        };
        Actor { user_id, label, ..actor_from(self.origin.ip, self.origin.user_agent.as_ref()) }
    }

    /// Refuses a credential without `scope` (a scope of the catalog, which
    /// the route requires); a key's usage notes the scope it exercised, or
    /// counts the request as `scope_denied`.
    pub fn require(&self, scope: &str) -> Result<(), AppError> {
        let granted = scopes::satisfies(self.scopes(), scope);
        if let (Credential::ApiKey(k), Some(mark)) = (&self.credential, &self.usage) {
            match (granted, k.key_id()) {
                (true, Some(id)) => mark.verifier.exercised(id.as_str(), scope, mark.at),
                (true, None) => {}
                (false, _) => mark.verifier.refused_for_scope(k, mark.at),
            }
        }
        if granted { Ok(()) } else { Err(lacks(scope)) }
    }

    /// The team the credential acts for (service keys have none).
    pub fn team_id(&self) -> Result<String, AppError> {
        let team = match &self.credential {
            Credential::ApiKey(k) => k.team_id().map(|t| t.as_str().to_owned()),
            Credential::Session(ctx) => ctx.team.as_ref().map(|(t, _)| t.id.clone()),
        };
        team.ok_or_else(|| AppError::Forbidden("This credential does not belong to a team.".into()))
    }

    /// What the policy needs to know about this caller: its team, its
    /// holder's current role, and — for a key or token — its ceilings (its own
    /// effective scopes, address ranges and, for an API key, expiry).
    pub fn acting(&self) -> Result<Acting, AppError> {
        let team_id = self.team_id()?;
        let actor = self.actor();
        Ok(match &self.credential {
            Credential::Session(ctx) => Acting {
                actor,
                team_id,
                role: ctx.team.as_ref().map_or(Role::Viewer, |(_, r)| *r),
                ceiling: None,
                ip_ceiling: None,
                not_after: None,
            },
            Credential::ApiKey(k) => Acting {
                actor,
                team_id,
                role: k.role().unwrap_or(Role::Viewer),
                ceiling: Some(k.scopes().to_vec()),
                ip_ceiling: (!k.allowed_ips().is_empty()).then(|| k.allowed_ips().to_vec()),
                // Access tokens are short-lived by design: an app acting for its
                // user may create lasting keys (within the role and the team's
                // maximum lifetime); an expiring API key may not.
                not_after: if k.is_access_token() { None } else { k.expires_at() },
            },
        })
    }

    /// The same principal, read again now that the request's body has arrived:
    /// a key or token revoked (or its holder demoted or removed) while the
    /// body was on its way no longer acts. Handlers that read a body and then
    /// write call this first.
    pub async fn revalidated(self, req: &HttpRequest, state: &AppState) -> Result<Self, AppError> {
        let Credential::ApiKey(_) = &self.credential else { return Ok(self) };
        let presented = presented_credential(req).ok_or(AppError::Unauthorized)?;
        let key = state.credentials().revalidate(&presented).await.map_err(|e| match e {
            Refusal::Internal(cause) => AppError::Internal(cause),
            _ => AppError::Unauthorized,
        })?;
        Ok(Self { credential: Credential::ApiKey(key), ..self })
    }
}

/// The credential in `X-API-Key` or `Authorization: Bearer`.
pub fn presented_credential(req: &HttpRequest) -> Option<String> {
    presented(req).map(str::to_owned)
}

/// [`presented_credential`], borrowed from the request's headers (empty
/// when a header is there but holds no credential).
fn presented(req: &HttpRequest) -> Option<&str> {
    if let Some(v) = req.headers().get("X-API-Key") {
        return Some(v.to_str().unwrap_or("").trim());
    }
    let auth = req.headers().get(AUTHORIZATION)?.to_str().unwrap_or("");
    let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
    Some(if scheme.eq_ignore_ascii_case("bearer") { value.trim() } else { "" })
}

/// Whether the request came over TLS, as told by a trusted proxy.
pub fn is_tls(req: &HttpRequest, state: &AppState) -> bool {
    let trusted =
        req.peer_addr().is_some_and(|a| crate::service::forwarded::is_trusted(a.ip(), &state.config.trusted_proxies));
    trusted && req.headers().get("X-Forwarded-Proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// With `require_https`, refuses a request that did not arrive over TLS.
pub fn require_tls(req: &HttpRequest, state: &AppState) -> Result<(), AppError> {
    if state.config.require_https && !is_tls(req, state) {
        return Err(AppError::InsecureConnection);
    }
    Ok(())
}

/// The refusal for a missing scope: it names the scope when it looks like
/// one (a caller's `?scope=` may be anything: it is not echoed at length).
fn lacks(scope: &str) -> AppError {
    let named = scope.len() <= 64
        && !scope.is_empty()
        && scope.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'));
    AppError::Forbidden(if named {
        format!("This credential lacks the scope {scope}.")
    } else {
        "This credential lacks the scope asked for.".to_owned()
    })
}

/// The answer to a refused credential; a rate refusal leaves its state in
/// the extensions for the headers, an internal one keeps its cause.
pub fn refused(req: &HttpRequest, refusal: Refusal) -> AppError {
    match refusal {
        Refusal::Unauthorized => AppError::Unauthorized,
        Refusal::AddressNotAllowed => AppError::Forbidden("This key may not be used from your address.".into()),
        Refusal::MissingScope(scope) => lacks(&scope),
        Refusal::RateLimited { rate, retry_after } => {
            req.extensions_mut().insert(rate);
            AppError::TooManyRequests { retry_after }
        }
        Refusal::Internal(cause) => AppError::Internal(cause),
    }
}

/// Verifies an API key for this request; rate state goes to the extensions.
pub async fn verify_key(req: &HttpRequest, state: &AppState, presented: &str) -> Result<Verified, AppError> {
    verify_key_from(req, state, presented, client_ip(req, state)).await
}

/// [`verify_key`] for a request from `ip`.
async fn verify_key_from(
    req: &HttpRequest,
    state: &AppState,
    presented: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Verified, AppError> {
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let verified = state.credentials().verify(presented, ip, agent).await.map_err(|r| refused(req, r))?;
    req.extensions_mut().insert(verified.rate);
    Ok(verified)
}

async fn from_key(req: &HttpRequest, state: &State, presented: &str) -> Result<ApiPrincipal, AppError> {
    let ip = client_ip(req, state);
    let verified = verify_key_from(req, state, presented, ip).await?;
    let origin = Origin::of(req, ip);
    let usage = Some(UsageMark { verifier: state.verifier.clone(), at: verified.at });
    Ok(ApiPrincipal {
        session_scopes: Vec::new(),
        credential: Credential::ApiKey(verified.key),
        rate: Some(verified.rate),
        origin,
        usage,
    })
}

async fn from_session(req: &HttpRequest, state: &State) -> Result<ApiPrincipal, AppError> {
    let session = req.get_session();
    let typed = super::session::TypedSession::new(session.clone());
    if typed.user_id()?.is_none() {
        return Err(AppError::Unauthorized);
    }
    let expected = typed.csrf_token()?.unwrap_or_default();
    let header = req.headers().get(csrf::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let safe = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    if !safe && (expected.is_empty() || !crypto::ct_eq(&expected, header)) {
        return Err(AppError::Forbidden("Session use of the API needs the X-CSRF-Token header.".into()));
    }
    let (_, ctx) = super::auth::signed_in(state, &session).await?.ok_or(AppError::Unauthorized)?;
    if ctx.team.as_ref().is_some_and(|(t, _)| t.require_totp) && !ctx.user.has_totp() {
        return Err(AppError::Forbidden("Your team requires two-factor authentication: set it up first.".into()));
    }
    let role = ctx.team.as_ref().map_or(Role::Viewer, |(_, r)| *r);
    let scopes = scopes::grantable(&state.config.scopes, role).into_iter().map(str::to_owned).collect();
    let origin = Origin::of(req, client_ip(req, state));
    Ok(ApiPrincipal {
        credential: Credential::Session(Box::new(ctx)),
        session_scopes: scopes,
        rate: None,
        origin,
        usage: None,
    })
}

impl FromRequest for ApiPrincipal {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = super::auth::state(&req)?;
            require_tls(&req, &state)?;
            match presented(&req) {
                Some(key) => from_key(&req, &state, key).await,
                None => from_session(&req, &state).await,
            }
        })
    }
}

/// Adds `X-RateLimit-*` to responses of credential-authenticated requests.
pub async fn rate_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let rate = res.request().extensions().get::<RateState>().copied();
    if let Some(rate) = rate {
        let headers = res.headers_mut();
        let name = actix_web::http::header::HeaderName::from_static;
        headers.insert(name("x-ratelimit-limit"), HeaderValue::from(rate.limit));
        headers.insert(name("x-ratelimit-remaining"), HeaderValue::from(rate.remaining));
        headers.insert(name("x-ratelimit-reset"), HeaderValue::from(rate.reset));
    }
    Ok(res)
}
