//! The OAuth 2.0 endpoints: `/oauth/authorize` (login, consent), `/oauth/token`,
//! `/oauth/revoke`, and the RFC 8414 metadata. Errors follow RFC 6749, not the
//! API envelope; token responses are `no-store`.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, PRAGMA};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::State;
use super::auth::{CurrentUser, client_ip, url_encode};
use super::page::{Layout, Nav, render};
use crate::error::AppError;
use crate::service::attempts::address_key;
use crate::service::crypto;
use crate::service::oauth::{
    self, AuditCtx, AuthorizeError, AuthorizeParams, ClientCredentials, OAuthError, ValidRequest,
};
use crate::service::ratelimit;
use crate::store::models::OauthClient;

const PENDING: &str = "oauth_pending";

#[derive(Template)]
#[template(path = "pages/oauth_error.html")]
struct ErrorPage<'a> {
    asset_v: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "pages/oauth_consent.html")]
struct ConsentPage {
    layout: Layout,
    app_name: String,
    logo_url: String,
    homepage: String,
    team_name: String,
    scopes: Vec<(String, String)>,
    consent_token: String,
    redirect_host: String,
}

/// Plain words for a scope.
fn describe(scope: &str) -> String {
    if scope == "admin" {
        return "Full access to everything in your team".into();
    }
    let (resource, action) = scope.split_once(':').unwrap_or((scope, ""));
    let resource = resource.replace('_', " ");
    match action {
        "read" => format!("Read your {resource}"),
        "write" => format!("Create and change your {resource}"),
        "send" => format!("Send {resource}"),
        other => format!("{other} {resource}"),
    }
}

fn error_page(message: &str) -> Result<HttpResponse, AppError> {
    let page = ErrorPage { asset_v: super::assets::version(), message };
    let body = page.render()?;
    Ok(HttpResponse::BadRequest().content_type("text/html; charset=utf-8").body(body))
}

fn redirect_back(state: &State, redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    pairs.push(("iss", &state.config.public_url));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    HttpResponse::SeeOther().insert_header((LOCATION, format!("{redirect_uri}{sep}{query}"))).finish()
}

fn authorize_error(state: &State, e: AuthorizeError) -> Result<HttpResponse, AppError> {
    match e {
        AuthorizeError::Page(m) => error_page(&m),
        AuthorizeError::Redirect { redirect_uri, error, description, state: st } => {
            let mut params = vec![("error", error), ("error_description", description.as_str())];
            if let Some(s) = st.as_deref() {
                params.push(("state", s));
            }
            Ok(redirect_back(state, &redirect_uri, &params))
        }
    }
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    state: State,
    req: HttpRequest,
    user: Result<CurrentUser, AppError>,
    query: web::Query<AuthorizeParams>,
) -> Result<HttpResponse, AppError> {
    let user = match user {
        Ok(u) => Some(u),
        Err(AppError::LoginRequired) => None,
        // Signed in but held back (2FA enrolment the team requires): that
        // page, with a way back here — not the login page, which would
        // send a signed-in user straight back.
        Err(e) => return Err(e),
    };
    let params = query.into_inner();
    let p = params.clone();
    let validated =
        state.db.run(move |conn| Ok::<_, crate::store::StoreError>(oauth::validate_authorize(conn, &p))).await?;
    let (valid, client) = match validated {
        Ok(v) => v,
        Err(e) => return authorize_error(&state, e),
    };
    let Some(user) = user else {
        let here = req.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
        return Ok(HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/login?next={}", url_encode(&here))))
            .finish());
    };
    let Some((team, role)) = user.ctx.team.clone() else {
        let st = valid.state.clone().unwrap_or_default();
        let mut p = vec![("error", "access_denied"), ("error_description", "You are not a member of any team.")];
        if valid.state.is_some() {
            p.push(("state", st.as_str()));
        }
        return Ok(redirect_back(&state, &valid.redirect_uri, &p));
    };
    let granted = oauth::grantable(&valid, role);
    if granted.is_empty() {
        return authorize_error(
            &state,
            AuthorizeError::Redirect {
                redirect_uri: valid.redirect_uri.clone(),
                error: "invalid_scope",
                description: "Your role cannot grant any of the requested scopes.".into(),
                state: valid.state.clone(),
            },
        );
    }
    let (uid, cid, wanted) = (user.ctx.user.id.clone(), client.id.clone(), granted.clone());
    let remembered = state.db.run(move |conn| oauth::consented(conn, &uid, &cid, &wanted)).await?;
    if remembered {
        return finish(&state, &user, &team.id, &valid, &granted, false).await;
    }
    consent_page(&state, &user, &client, &team.name, &valid, &granted)
}

fn consent_page(
    state: &State,
    user: &CurrentUser,
    client: &OauthClient,
    team_name: &str,
    valid: &ValidRequest,
    granted: &[String],
) -> Result<HttpResponse, AppError> {
    // A signed, single-use token: the pending request lives in the session
    // under a nonce, and the form must return the nonce with our signature.
    let nonce = crypto::random_base62(24).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let pending = json!({"nonce": nonce, "request": valid, "granted": granted, "at": crate::store::now()});
    user.session.insert(PENDING, pending).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let token = format!("{nonce}.{}", state.keys.sign(&format!("consent:{}:{nonce}", user.ctx.user.id)));
    let origin = crate::service::redirect_uri::origin(&valid.redirect_uri).unwrap_or_default();
    let page = ConsentPage {
        layout: Layout::new(user, Nav::Security)?,
        app_name: client.name.clone(),
        logo_url: client.logo_url.clone(),
        homepage: client.homepage.clone(),
        team_name: team_name.to_owned(),
        scopes: granted.iter().map(|s| (s.clone(), describe(s))).collect(),
        consent_token: token,
        redirect_host: origin.clone(),
    };
    let mut res = render(StatusCode::OK, &page)?;
    // The approve form redirects to the app: allow that one origin as a form target.
    let csp = super::middleware::CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&csp) {
        res.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

async fn finish(
    state: &State,
    user: &CurrentUser,
    team_id: &str,
    valid: &ValidRequest,
    granted: &[String],
    remember: bool,
) -> Result<HttpResponse, AppError> {
    let (keys, actor, uid, tid, v, g) = (
        state.keys.clone(),
        user.actor.clone(),
        user.ctx.user.id.clone(),
        team_id.to_owned(),
        valid.clone(),
        granted.to_vec(),
    );
    let code = state.db.run(move |conn| oauth::approve(conn, &keys, &actor, (&uid, &tid), &v, &g, remember)).await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = valid.state.as_deref() {
        params.push(("state", s));
    }
    Ok(redirect_back(state, &valid.redirect_uri, &params))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    consent_token: String,
    decision: String,
}

/// `POST /oauth/authorize`: the consent form's answer.
pub async fn decide(state: State, user: CurrentUser, form: web::Form<ConsentForm>) -> Result<HttpResponse, AppError> {
    let pending: Option<serde_json::Value> = user.session.take(PENDING).ok().flatten();
    let (nonce, sig) = form.consent_token.split_once('.').unwrap_or(("", ""));
    let expected = state.keys.sign(&format!("consent:{}:{nonce}", user.ctx.user.id));
    let valid_token = !nonce.is_empty() && crypto::ct_eq(&expected, sig);
    let Some(pending) = pending.filter(|p| valid_token && p["nonce"] == nonce) else {
        return error_page("This consent form has expired or was already used. Start again from the app.");
    };
    if crate::store::now() - pending["at"].as_i64().unwrap_or(0) > 600 {
        return error_page("This consent form has expired. Start again from the app.");
    }
    let valid: ValidRequest =
        serde_json::from_value(pending["request"].clone()).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let granted: Vec<String> =
        serde_json::from_value(pending["granted"].clone()).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let Some((team, _)) = user.ctx.team.clone() else {
        return Err(AppError::Forbidden("You are not a member of any team.".into()));
    };
    if form.decision != "approve" {
        let mut p = vec![("error", "access_denied"), ("error_description", "The user denied the request.")];
        if let Some(s) = valid.state.as_deref() {
            p.push(("state", s));
        }
        return Ok(redirect_back(&state, &valid.redirect_uri, &p));
    }
    finish(&state, &user, &team.id, &valid, &granted, true).await
}

fn oauth_json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(body)
}

fn oauth_error(e: OAuthError) -> HttpResponse {
    let status = match e.error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut res = oauth_json(status, json!({"error": e.error, "error_description": e.description}));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str("Basic realm=\"latchkey\"")
    {
        res.headers_mut().insert(actix_web::http::header::WWW_AUTHENTICATE, v);
    }
    res
}

/// Client credentials from HTTP Basic (form-urlencoded parts) or the body.
/// The client's credentials from HTTP Basic or the form; both at once is
/// refused (RFC 6749 §2.3: one authentication method per request).
fn client_credentials(req: &HttpRequest, form: &[(String, String)]) -> Result<ClientCredentials, OAuthError> {
    // RFC 6749 §3.1–3.2: a parameter appears at most once (no "first one wins").
    if let Some((name, _)) =
        form.iter().enumerate().find(|(i, (k, _))| form[..*i].iter().any(|(f, _)| f == k)).map(|(_, p)| p)
    {
        return Err(OAuthError { error: "invalid_request", description: format!("The parameter {name} is repeated.") });
    }
    let field = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    let basic = client_basic(req);
    match basic {
        Some(b) if field("client_secret").is_some() || field("client_id").is_some_and(|id| Some(id) != b.client_id) => {
            Err(OAuthError {
                error: "invalid_request",
                description: "Authenticate the client one way: HTTP Basic or the form, not both.".into(),
            })
        }
        Some(b) => Ok(b),
        None => Ok(ClientCredentials { client_id: field("client_id"), client_secret: field("client_secret") }),
    }
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

/// 429 in RFC 6749 form (`slow_down`, as RFC 8628 names it) with `Retry-After`.
fn slow_down(retry_after: i64, description: &str) -> HttpResponse {
    let mut res = oauth_json(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": "slow_down", "error_description": description, "retry_after": retry_after}),
    );
    res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, retry_after.into());
    res
}

/// `POST /oauth/token`.
///
/// Failures are throttled per client and address and per address (checked
/// before anything else, counted when a request fails: a client's concurrent
/// requests are not failures while in flight); tokens issued are limited per
/// client and address ([`ratelimit::TOKEN_ISSUANCE`]), reserved before the
/// grant runs and given back when it fails; a wrong secret of a known
/// confidential app is audited (gated).
pub async fn token(state: State, req: HttpRequest, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
    let form = form.into_inner();
    let creds = match client_credentials(&req, &form) {
        Ok(creds) => creds,
        Err(e) => return oauth_error(e),
    };
    let address = address_key(client_ip(&req, &state));
    let by_client = format!("{}|{address}", creds.client_id.as_deref().unwrap_or_default());
    let throttles = [(&state.token_by_client, by_client.as_str()), (&state.token_by_ip, address.as_str())];
    let at = crate::store::now();
    if let Err(retry) = throttles.iter().try_for_each(|(t, key)| t.check(key, at)) {
        return slow_down(retry, "Too many failed token requests: wait before trying again.");
    }
    let failed = || {
        for (throttle, key) in &throttles {
            throttle.record_failure(key, at);
        }
    };
    let (keys, default_plan) = (state.keys.clone(), state.config.default_plan.clone());
    let (gate, ip) = (state.audit_gate.clone(), client_ip(&req, &state).map(|ip| ip.to_string()));
    let authenticated = state
        .db
        .run(move |conn| {
            let client = match oauth::authenticate_client(conn, &keys, &creds) {
                Err(e) if e.error == "invalid_client" => {
                    oauth::audit_failed_client_auth(conn, AuditCtx { gate: &gate, ip: ip.as_deref() }, &creds)?;
                    return Err(e);
                }
                other => other?,
            };
            let limit = ratelimit::issuance_limit(conn, &client.team_id, &default_plan)?;
            Ok::<_, OAuthError>((client, limit))
        })
        .await;
    let (client, limit) = match authenticated {
        Ok(found) => found,
        Err(e) => {
            if e.error != "server_error" {
                failed();
            }
            return oauth_error(e);
        }
    };
    // Per client and address: one user of a public app cannot use up the
    // allowance of everyone else (a server-side app calls from its own address).
    let at_ms = super::api_auth::now_ms();
    let issuance_key = format!("{}|{address}", client.id);
    if let Some(plan) = limit
        && let Err((_, retry)) = state.issuance.hit(&issuance_key, plan, at_ms)
    {
        return slow_down(retry, "This client was issued too many tokens: wait before asking for more.");
    }
    let ip = client_ip(&req, &state).map(|ip| ip.to_string());
    let result = grant(&state, client.clone(), &form, ip).await;
    match result {
        Ok(t) => oauth_json(StatusCode::OK, serde_json::to_value(t).unwrap_or_default()),
        Err(e) => {
            if limit.is_some() {
                state.issuance.release(&issuance_key, at_ms);
            }
            if e.error != "server_error" {
                failed();
            }
            if e.error == "invalid_grant" {
                // A reused code or refresh token may have revoked a grant here.
                state.verifier.invalidate_tokens();
            }
            oauth_error(e)
        }
    }
}

/// Runs the requested grant for an authenticated client.
async fn grant(
    state: &State,
    client: crate::store::models::OauthClient,
    form: &[(String, String)],
    ip: Option<String>,
) -> Result<oauth::TokenResponse, OAuthError> {
    let field = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    let grant = field("grant_type").unwrap_or_default();
    let (code, redirect_uri, verifier, refresh, scope) =
        (field("code"), field("redirect_uri"), field("code_verifier"), field("refresh_token"), field("scope"));
    let (keys, gate) = (state.keys.clone(), state.audit_gate.clone());
    state
        .db
        .run(move |conn| {
            let audit = AuditCtx { gate: &gate, ip: ip.as_deref() };
            match grant.as_str() {
                "authorization_code" => {
                    let code =
                        code.ok_or(OAuthError { error: "invalid_request", description: "code is required.".into() })?;
                    let (uri, verifier) = (redirect_uri.as_deref(), verifier.as_deref());
                    oauth::exchange_code(conn, &keys, &client, &code, uri, verifier, audit)
                }
                "refresh_token" => {
                    let t = refresh.ok_or(OAuthError {
                        error: "invalid_request",
                        description: "refresh_token is required.".into(),
                    })?;
                    oauth::refresh(conn, &keys, &client, &t, scope.as_deref(), audit)
                }
                "client_credentials" => oauth::client_credentials(conn, &keys, audit, &client, scope.as_deref()),
                "" => Err(OAuthError { error: "invalid_request", description: "grant_type is required.".into() }),
                _ => Err(OAuthError {
                    error: "unsupported_grant_type",
                    description: "Use authorization_code, refresh_token or client_credentials.".into(),
                }),
            }
        })
        .await
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token existed.
pub async fn revoke(state: State, req: HttpRequest, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
    let form = form.into_inner();
    let creds = match client_credentials(&req, &form) {
        Ok(creds) => creds,
        Err(e) => return oauth_error(e),
    };
    let token = form.iter().find(|(f, _)| f == "token").map(|(_, v)| v.clone());
    // Client authentication here is throttled and audited as at the token endpoint.
    let address = address_key(client_ip(&req, &state));
    let by_client = format!("{}|{address}", creds.client_id.as_deref().unwrap_or_default());
    let throttles = [(&state.token_by_client, by_client.as_str()), (&state.token_by_ip, address.as_str())];
    let at = crate::store::now();
    if let Err(retry) = throttles.iter().try_for_each(|(t, key)| t.check(key, at)) {
        return slow_down(retry, "Too many failed requests: wait before trying again.");
    }
    let (keys, gate) = (state.keys.clone(), state.audit_gate.clone());
    let ip = client_ip(&req, &state).map(|ip| ip.to_string());
    let result = state
        .db
        .run(move |conn| {
            let audit = AuditCtx { gate: &gate, ip: ip.as_deref() };
            let client = match oauth::authenticate_client(conn, &keys, &creds) {
                Err(e) if e.error == "invalid_client" => {
                    oauth::audit_failed_client_auth(conn, audit, &creds)?;
                    return Err(e);
                }
                other => other?,
            };
            let token =
                token.ok_or(OAuthError { error: "invalid_request", description: "token is required.".into() })?;
            oauth::revoke(conn, &keys, audit, &client, &token)
        })
        .await;
    if result.as_ref().is_err_and(|e| e.error == "invalid_client") {
        for (throttle, key) in &throttles {
            throttle.record_failure(key, at);
        }
    }
    match result {
        Ok(revoked) => {
            if revoked.is_some() {
                state.verifier.invalidate_tokens();
            }
            HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).finish()
        }
        Err(e) => oauth_error(e),
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(state: State) -> HttpResponse {
    let base = &state.config.public_url;
    HttpResponse::Ok().json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": state.config.scopes,
        "authorization_response_iss_parameter_supported": true,
    }))
}
