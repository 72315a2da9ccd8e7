//! The OAuth back channel: `POST /oauth/token`, `POST /oauth/revoke` and the
//! RFC 8414 metadata, with their JSON shapes (the OpenAPI document's too).
//!
//! Rules: errors follow RFC 6749 §5.2, never the API envelope nor a page (a
//! body that cannot be read is `invalid_request`); every answer that holds
//! a token, and every error, is `no-store`.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;

use crate::domain::OAuthErrorCode;
use crate::service::oauth::{self, ClientCredentials, TokenCall, TokenError, TokenResponse};
use crate::web::auth::client_ip;
use crate::web::{AppState, State};

fn oauth_json(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(body)
}

/// RFC 6749 §5.1: the tokens leave as plain strings here, and only here.
fn token_json(t: &TokenResponse) -> HttpResponse {
    let body = TokenJson {
        access_token: t.access_token.expose(),
        token_type: t.token_type,
        expires_in: t.expires_in,
        scope: &t.scope,
        refresh_token: t.refresh_token.as_ref().map(|r| r.expose()),
    };
    oauth_json(StatusCode::OK, &body)
}

fn oauth_error(e: TokenError) -> HttpResponse {
    let e = match e {
        TokenError::Refused(e) => e,
        TokenError::SlowDown { retry_after, description } => return slow_down(retry_after, description),
    };
    if let Some(cause) = e.cause() {
        tracing::error!(error = %format!("{cause:#}"), "OAuth endpoint failed");
    }
    let status = match e.error {
        OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = OAuthErrorJson { error: e.error, error_description: &e.description, retry_after: None };
    let mut res = oauth_json(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
    }
    res
}

/// 429 in RFC 6749 form (`slow_down`, as RFC 8628 names it) with `Retry-After`.
fn slow_down(retry_after: i64, description: &str) -> HttpResponse {
    let body = OAuthErrorJson {
        error: OAuthErrorCode::SlowDown,
        error_description: description,
        retry_after: Some(retry_after),
    };
    let mut res = oauth_json(StatusCode::TOO_MANY_REQUESTS, &body);
    res.headers_mut().insert(RETRY_AFTER, retry_after.into());
    res
}

/// A token or revocation request: the form, the caller's address and user agent, and the
/// client's credentials if it sent them with HTTP Basic (each part
/// form-urlencoded, RFC 6749 §2.3.1).
fn token_call(req: &HttpRequest, state: &AppState, form: Vec<(String, String)>) -> TokenCall {
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    TokenCall { basic: client_basic(req), form, ip: client_ip(req, state), agent }
}

fn client_basic(req: &HttpRequest) -> Option<ClientCredentials> {
    if let Some(basic) =
        req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((id, secret)) = text.split_once(':')
    {
        let dec = |s: &str| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                .ok()
                .and_then(|mut v| v.pop())
                .map(|(_, v)| v)
        };
        return Some(ClientCredentials { client_id: dec(id), client_secret: dec(secret) });
    }
    None
}

/// A form body as sent, or the RFC 6749 `invalid_request` for one that
/// cannot be read (not form-encoded, too large): an OAuth client always
/// gets an OAuth error, never an HTML page.
type FormBody = Result<web::Form<Vec<(String, String)>>, actix_web::Error>;

/// The answer to a body that cannot be read: too large, or not a form.
fn unreadable(cause: &actix_web::Error) -> HttpResponse {
    let too_large = matches!(
        cause.as_error::<actix_web::error::UrlencodedError>(),
        Some(actix_web::error::UrlencodedError::Overflow { .. })
    );
    let e = oauth::OAuthError::invalid_request(if too_large {
        "The request body is too large."
    } else {
        "Send the parameters form-encoded (application/x-www-form-urlencoded)."
    });
    oauth_error(e.into())
}

/// `POST /oauth/token`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "OAuth 2.0",
    operation_id = "token",
    summary = "Issues tokens (RFC 6749).",
    description = "RFC 6749 §3.2: the grants `authorization_code` (with PKCE), `refresh_token` (rotating) and \
                   `client_credentials`. The client authenticates with HTTP Basic (`client_secret_basic`) or \
                   `client_id` and `client_secret` in the body (`client_secret_post`); a public client sends only \
                   its `client_id`. Errors are RFC 6749 §5.2 JSON.",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Tokens issued (`Cache-Control: no-store`).", body = TokenJson),
        (status = 400, response = crate::web::openapi::OAuthBadRequest),
        (status = 401, response = crate::web::openapi::OAuthInvalidClient),
        (status = 429, response = crate::web::openapi::OAuthSlowDown),
        (status = 500, response = crate::web::openapi::OAuthServerError),
        (status = 503, response = crate::web::openapi::OAuthUnavailable),
    ),
)]
pub async fn token(state: State, req: HttpRequest, form: FormBody) -> HttpResponse {
    let form = match form {
        Ok(form) => form,
        Err(e) => return unreadable(&e),
    };
    let form = form.into_inner();
    match state.oauth_token_service().token(token_call(&req, &state, form)).await {
        Ok(t) => token_json(&t),
        Err(e) => oauth_error(e),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token existed.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "OAuth 2.0",
    operation_id = "revoke_token",
    summary = "Revokes an access or refresh token (RFC 7009).",
    description = "RFC 7009: revokes an access or refresh token of the authenticated client (a refresh token with \
                   its whole grant). 200 whether or not the token existed.",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Revoked, or there was nothing to revoke. No body."),
        (status = 400, response = crate::web::openapi::OAuthBadRequest),
        (status = 401, response = crate::web::openapi::OAuthInvalidClient),
        (status = 429, response = crate::web::openapi::OAuthSlowDown),
        (status = 500, response = crate::web::openapi::OAuthServerError),
        (status = 503, response = crate::web::openapi::OAuthUnavailable),
    ),
)]
pub async fn revoke(state: State, req: HttpRequest, form: FormBody) -> HttpResponse {
    let form = match form {
        Ok(form) => form,
        Err(e) => return unreadable(&e),
    };
    let form = form.into_inner();
    match state.oauth_token_service().revoke(token_call(&req, &state, form)).await {
        Ok(()) => HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).finish(),
        Err(e) => oauth_error(e),
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "OAuth 2.0",
    operation_id = "authorization_server_metadata",
    summary = "The authorization server's metadata (RFC 8414).",
    description = "RFC 8414 metadata: the endpoints, grants, client authentication methods and scopes.",
    responses((status = 200, description = "The metadata.", body = oauth::Metadata)),
)]
pub async fn metadata(state: State) -> HttpResponse {
    HttpResponse::Ok().json(oauth::metadata(&state.config.public_url, &state.config.scopes))
}

/// A token request (RFC 6749 §4.1.3, §6, §4.4), form-encoded. Which
/// parameters it needs depends on `grant_type`; a repeated parameter is refused.
#[derive(utoipa::ToSchema)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    /// `authorization_code`: the code from the redirect.
    #[schema(nullable = false)]
    pub code: Option<String>,
    /// `authorization_code`: the same `redirect_uri` as the authorization request.
    #[schema(nullable = false)]
    pub redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier (RFC 7636), required for public clients.
    #[schema(nullable = false)]
    pub code_verifier: Option<String>,
    /// `refresh_token`: the refresh token (it is rotated: use the new one next time).
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// Space-separated; `refresh_token` and `client_credentials` may ask for fewer scopes.
    #[schema(nullable = false)]
    pub scope: Option<String>,
    /// `client_secret_post`, or a public client.
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// `client_secret_post`.
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// The grants this server issues tokens for.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// A revocation request (RFC 7009 §2.1), form-encoded.
#[derive(utoipa::ToSchema)]
pub struct RevokeRequest {
    /// The access or refresh token.
    pub token: String,
    /// `access_token` or `refresh_token` (a hint; the token's prefix decides).
    #[schema(nullable = false)]
    pub token_type_hint: Option<String>,
    /// `client_secret_post`, or a public client.
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// `client_secret_post`.
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
// No `Debug`: it holds the tokens.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenJson<'a> {
    pub access_token: &'a str,
    /// Always `Bearer`.
    pub token_type: &'a str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: &'a str,
    /// Given with `authorization_code` and `refresh_token` grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<&'a str>,
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthErrorJson<'a> {
    pub error: OAuthErrorCode,
    pub error_description: &'a str,
    /// With `slow_down`: seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after: Option<i64>,
}
