//! For the SaaS's other servers: `POST /oauth/introspect` (RFC 7662) and
//! `GET /auth/verify` (forward auth for nginx `auth_request` / Traefik).
//!
//! Rules: the rules live in `service::credentials`; here the answer is only
//! rendered — never cached (`no-store`), inactive as `{"active": false}`.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::State;
use super::api_auth::{presented_credential, refused, require_tls, verify_key};
use crate::error::AppError;
use crate::service::credentials::{self, ActiveToken, Introspection};
use crate::service::principal::Principal;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IntrospectForm {
    token: String,
    /// Accepted (RFC 7662) and ignored: the token's prefix says what it is.
    token_type_hint: Option<String>,
}

/// RFC 7662: the caller authenticates with a service key holding `introspect`.
pub async fn introspect(
    state: State,
    req: HttpRequest,
    form: web::Form<IntrospectForm>,
) -> Result<HttpResponse, AppError> {
    require_tls(&req, &state)?;
    let caller = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let answer = state.credentials().introspect(&caller, &form.token).await.map_err(|r| refused(&req, r))?;
    let iss = state.config.public_url.as_str();
    let body = match answer {
        Introspection::Inactive => json!({"active": false}),
        Introspection::Token(t) => token_body(&t, iss),
        Introspection::Key(k) => key_body(&k, iss),
    };
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(body))
}

fn token_body(t: &ActiveToken, iss: &str) -> Value {
    json!({
        "active": true,
        "token_type": t.kind.hint(),
        "scope": t.scope,
        "client_id": t.client_id,
        "sub": t.user_id,
        "team_id": t.team_id,
        "exp": t.expires_at,
        "iat": t.issued_at,
        "iss": iss,
    })
}

fn key_body(key: &Principal, iss: &str) -> Value {
    let mut body = json!({
        "active": true,
        "token_type": key.token_type(),
        "scope": key.scopes().join(" "),
        "key_id": key.id(),
        "name": key.name(),
        "team_id": key.team_id(),
        "sub": key.holder(),
        "iss": iss,
    });
    if let Some(exp) = key.expires_at() {
        body["exp"] = json!(exp);
    }
    // An extension member (RFC 7662 §2.2): the key works only from these
    // ranges, which the resource server must enforce on the caller's address.
    if !key.allowed_ips().is_empty() {
        body["allowed_ips"] = json!(key.allowed_ips().iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    body
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VerifyQuery {
    /// A scope the protected location requires (optional).
    scope: Option<String>,
}

/// Forward auth: 200 with the principal headers, or the 401/403/429 JSON.
pub async fn forward_auth(
    state: State,
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, AppError> {
    require_tls(&req, &state)?;
    let presented = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let key = verify_key(&req, &state, &presented).await?;
    credentials::forwardable(&key, query.scope.as_deref()).map_err(|r| refused(&req, r))?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Latchkey-Principal", key.id().to_owned()))
        .insert_header(("X-Latchkey-Team", key.team_id().map(|t| t.as_str().to_owned()).unwrap_or_default()))
        .insert_header(("X-Latchkey-Scopes", key.scopes().join(" ")))
        .finish())
}
