//! For the SaaS's other servers: `POST /oauth/introspect` (RFC 7662) and
//! `GET /auth/verify` (forward auth for nginx `auth_request` / Traefik).
//!
//! Rules: the rules live in `service::credentials`; here the answer is only
//! rendered — never cached (`no-store`), inactive as `{"active": false}`.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::State;
use super::api_auth::{presented_credential, refused, require_tls, verify_key};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::credentials::{ActiveToken, Introspection};
use crate::service::principal::Principal;

/// An introspection request (RFC 7662 §2.1).
#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
pub struct IntrospectForm {
    /// The access token or API key to look at.
    #[schema(required = true, nullable = false)]
    token: Option<String>,
    /// Accepted (RFC 7662) and ignored: the token's prefix says what it is.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
}

/// RFC 7662: the caller authenticates with a service key holding `introspect`.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "OAuth 2.0",
    operation_id = "introspect",
    summary = "What a token or API key is (RFC 7662).",
    description = "RFC 7662, for OAuth access tokens and API keys, called by the SaaS's API servers with a \
                   service key that holds `introspect`. Errors are the JSON envelope of `/api/v1`.",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "What the token is, or `{\"active\": false}`.", body = Answer),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 422, response = super::openapi::ValidationFailed),
    ),
)]
pub async fn introspect(
    state: State,
    req: HttpRequest,
    form: web::Form<IntrospectForm>,
) -> Result<HttpResponse, AppError> {
    require_tls(&req, &state)?;
    let caller = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let token = form.token.as_deref();
    let answer = state.credentials().introspect(&caller, token.unwrap_or("")).await.map_err(|r| refused(&req, r))?;
    // A request without a token is refused once its caller is known to
    // be allowed to ask (RFC 7662 §2.1: `token` is required).
    if token.is_none() {
        return Err(AppError::Validation(FieldErrors::single("token", "Give the token to introspect.")));
    }
    let iss = state.config.public_url.as_str();
    let body = match &answer {
        Introspection::Inactive => Answer::Inactive(Inactive { active: false }),
        Introspection::Token(t) => Answer::Token(TokenAnswer::of(t, iss)),
        Introspection::Key(k) => Answer::Key(KeyAnswer::of(k, iss)),
    };
    let body = serde_json::to_vec(&body).map_err(|e| AppError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

/// An introspection answer: inactive, an active OAuth token, or an active key.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Introspection)]
pub enum Answer<'a> {
    Inactive(Inactive),
    Token(TokenAnswer<'a>),
    Key(KeyAnswer<'a>),
}

/// Unknown, expired, revoked or malformed: nothing more is said.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IntrospectionInactive)]
pub struct Inactive {
    /// Always false.
    active: bool,
}

/// An active OAuth token (RFC 7662 §2.2).
#[derive(Serialize, ToSchema)]
#[schema(as = IntrospectionToken)]
pub struct TokenAnswer<'a> {
    active: bool,
    token_type: &'static str,
    scope: &'a str,
    client_id: &'a str,
    sub: Option<&'a str>,
    team_id: &'a str,
    exp: i64,
    iat: i64,
    iss: &'a str,
}

impl<'a> TokenAnswer<'a> {
    fn of(t: &'a ActiveToken, iss: &'a str) -> Self {
        Self {
            active: true,
            token_type: t.kind.hint(),
            scope: &t.scope,
            client_id: t.client_id.as_str(),
            sub: t.user_id.as_ref().map(|u| u.as_str()),
            team_id: t.team_id.as_str(),
            exp: t.expires_at,
            iat: t.issued_at,
            iss,
        }
    }
}

/// An active API key or service key.
#[derive(Serialize, ToSchema)]
#[schema(as = IntrospectionKey)]
pub struct KeyAnswer<'a> {
    active: bool,
    token_type: &'static str,
    scope: String,
    key_id: &'a str,
    name: &'a str,
    team_id: Option<&'a str>,
    sub: Option<&'a str>,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// An extension member (RFC 7662 §2.2): the key works only from these
    /// ranges, which the resource server must enforce on the caller's address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_ips: Vec<String>,
}

impl<'a> KeyAnswer<'a> {
    fn of(key: &'a Principal, iss: &'a str) -> Self {
        Self {
            active: true,
            token_type: key.token_type(),
            scope: key.scopes().join(" "),
            key_id: key.id(),
            name: key.name(),
            team_id: key.team_id().map(|t| t.as_str()),
            sub: key.holder().map(|h| h.as_str()),
            iss,
            exp: key.expires_at(),
            allowed_ips: key.allowed_ips().iter().map(ToString::to_string).collect(),
        }
    }
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A scope the protected location requires (optional).
    scope: Option<String>,
}

/// Forward auth: 200 with the principal headers, or the 401/403/429 JSON.
#[utoipa::path(
    get,
    path = "/auth/verify",
    tag = "Credentials",
    operation_id = "forward_auth",
    summary = "Checks a credential for a reverse proxy.",
    description = "For a reverse proxy's forward authentication (nginx `auth_request`, Traefik `forwardAuth`): \
                   200 with the principal in headers when the presented API key or access token is valid (and \
                   holds `scope` when given); otherwise the JSON envelope's refusal.",
    params(VerifyQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The credential is valid; no body.", headers(
            ("X-Latchkey-Principal" = String, description = "The key's or token's id."),
            ("X-Latchkey-Team" = String, description = "The team it acts for (empty for none)."),
            ("X-Latchkey-Scopes" = String, description = "Its effective scopes, space-separated."),
        )),
    ),
)]
pub async fn forward_auth(
    state: State,
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, AppError> {
    require_tls(&req, &state)?;
    let presented = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let verified = verify_key(&req, &state, &presented).await?;
    let scope = query.scope.as_deref();
    state.credentials().forward(&verified, scope, &state.config.scopes).map_err(|r| refused(&req, r))?;
    let key = verified.key;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Latchkey-Principal", key.id().to_owned()))
        .insert_header(("X-Latchkey-Team", key.team_id().map(|t| t.as_str().to_owned()).unwrap_or_default()))
        .insert_header(("X-Latchkey-Scopes", key.scopes().join(" ")))
        .finish())
}
