//! For the SaaS's other servers: `POST /oauth/introspect` (RFC 7662) and
//! `GET /auth/verify` (forward auth for nginx `auth_request` / Traefik).

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::State;
use super::api_auth::{is_tls, presented_credential, verify_key};
use crate::error::AppError;
use crate::service::keys::scopes;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IntrospectForm {
    token: String,
    token_type_hint: Option<String>,
}

fn inactive() -> HttpResponse {
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(json!({"active": false}))
}

/// RFC 7662: the caller authenticates with a service key holding `introspect`.
pub async fn introspect(
    state: State,
    req: HttpRequest,
    form: web::Form<IntrospectForm>,
) -> Result<HttpResponse, AppError> {
    if state.config.require_https && !is_tls(&req, &state) {
        return Err(AppError::InsecureConnection);
    }
    let caller = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let caller = state.verifier.lookup(&state.db, &state.keys, &caller).await.map_err(|_| AppError::Unauthorized)?;
    let caller = caller.filter(|k| k.kind == "service" && !k.revoked).ok_or(AppError::Unauthorized)?;
    if !scopes::satisfies(&caller.scopes, "introspect") {
        return Err(AppError::Forbidden("This credential lacks the scope introspect.".into()));
    }
    let _ = &form.token_type_hint; // The token's prefix says what it is; the hint changes nothing.
    let now = crate::store::now();
    let token = form.token.trim().to_owned();
    if token.starts_with("lkat_") || token.starts_with("lkrt_") {
        let keys = state.keys.clone();
        let found = state.db.run(move |conn| crate::service::oauth::active_token(conn, &keys, &token)).await?;
        let Some((t, client)) = found else { return Ok(inactive()) };
        let body = json!({
            "active": true,
            "token_type": t.kind.hint(),
            "scope": t.scopes,
            "client_id": client.id,
            "sub": t.user_id,
            "team_id": t.team_id,
            "exp": t.expires_at,
            "iat": t.created_at,
            "iss": state.config.public_url,
        });
        return Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(body));
    }
    let found =
        state.verifier.lookup(&state.db, &state.keys, form.token.trim()).await.map_err(|_| AppError::Unauthorized)?;
    let Some(key) = found.filter(|k| !k.revoked && k.expires_at.is_none_or(|e| e > now)) else {
        return Ok(inactive());
    };
    let mut body = json!({
        "active": true,
        "token_type": if key.kind == "service" { "service_key" } else { "api_key" },
        "scope": key.scopes.join(" "),
        "key_id": key.id,
        "name": key.name,
        "team_id": key.team_id,
        "sub": key.created_by,
        "iss": state.config.public_url,
    });
    if let Some(exp) = key.expires_at {
        body["exp"] = json!(exp);
    }
    // An extension member (RFC 7662 §2.2): the key works only from these
    // ranges, which the resource server must enforce on the caller's address.
    if !key.allowed.is_empty() {
        body["allowed_ips"] = json!(key.allowed.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(body))
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
    if state.config.require_https && !is_tls(&req, &state) {
        return Err(AppError::InsecureConnection);
    }
    let presented = presented_credential(&req).ok_or(AppError::Unauthorized)?;
    let key = verify_key(&req, &state, &presented).await?;
    if key.kind == "service" {
        return Err(AppError::Unauthorized);
    }
    if let Some(needed) = query.scope.as_deref().filter(|s| !s.is_empty())
        && !scopes::satisfies(&key.scopes, needed)
    {
        return Err(AppError::Forbidden(format!("This credential lacks the scope {needed}.")));
    }
    Ok(HttpResponse::Ok()
        .insert_header(("X-Latchkey-Principal", key.id.clone()))
        .insert_header(("X-Latchkey-Team", key.team_id.clone().unwrap_or_default()))
        .insert_header(("X-Latchkey-Scopes", key.scopes.join(" ")))
        .finish())
}
