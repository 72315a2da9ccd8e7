//! The OAuth 2.0 endpoints: `/oauth/authorize` (login, consent), `/oauth/token`,
//! `/oauth/revoke`, and the RFC 8414 metadata. Errors follow RFC 6749, not the
//! API envelope; token responses are `no-store`.
//!
//! Rules: handlers read the request (the session, HTTP Basic, the form) and
//! call one method of [`AuthorizeService`] or [`TokenService`]; the pending
//! consent lives in the session under [`PENDING`] as a [`PendingConsent`];
//! the consent page lets its form post to the app's origin, and nowhere else.

use actix_web::http::StatusCode;
use actix_web::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue, LOCATION, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::auth::{CurrentUser, client_ip, url_encode};
use super::format::When;
use super::page::render;
use super::{AppState, State};
use crate::domain::{OAuthErrorCode, TeamId, UserId};
use crate::error::AppError;
use crate::service::oauth::{
    self, Authorization, AuthorizeParams, AuthorizeService, ClientCredentials, ConsentPrompt, PendingConsent, TeamSeat,
    TokenCall, TokenError, TokenResponse, TokenService, Visitor,
};

/// The session key of the consent form waiting for an answer.
const PENDING: &str = "oauth_pending";

impl AppState {
    pub fn oauth_authorize_service(&self) -> AuthorizeService<'_> {
        AuthorizeService { db: &self.db, keys: &self.keys, clock: &self.clock, issuer: &self.config.public_url }
    }

    pub fn oauth_token_service(&self) -> TokenService<'_> {
        TokenService {
            db: &self.db,
            keys: &self.keys,
            verifier: &self.verifier,
            throttles: (&self.token_by_client, &self.token_by_ip),
            issuance: &self.issuance,
            audit_gate: &self.audit_gate,
            clock: &self.clock,
            default_plan: &self.config.default_plan,
            metrics: &self.metrics,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/oauth_error.html")]
struct ErrorPage<'a> {
    asset_v: &'a str,
    message: &'a str,
}

/// The consent screen: its own centred layout (no app navigation), like the
/// sign-in pages but wider.
#[derive(Template)]
#[template(path = "pages/oauth_consent.html")]
struct ConsentPage {
    csrf: String,
    asset_v: &'static str,
    email: String,
    app_name: String,
    logo_url: String,
    homepage: String,
    /// The user's team, which the app will reach.
    team_name: String,
    /// The team that registered the app.
    app_team: String,
    registered: When,
    scopes: Vec<(String, String)>,
    consent_token: String,
    redirect_host: String,
    /// This authorization request, to come back to after "Not you?".
    again: Option<String>,
}

/// Plain words for a scope (shared with the key form's scope picker).
fn describe(scope: &str) -> String {
    crate::service::keys::scopes::describe(scope)
}

/// The signed-in user as the authorization endpoint sees them.
fn visitor(user: &CurrentUser) -> Visitor<'_> {
    Visitor {
        actor: &user.actor,
        user_id: UserId::from(user.ctx.user.id.as_str()),
        team: user.ctx.team.as_ref().map(|(t, role)| TeamSeat {
            id: TeamId::from(t.id.as_str()),
            name: t.name.clone(),
            role: *role,
        }),
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
    let visitor = user.as_ref().map(visitor);
    let outcome = state.oauth_authorize_service().start(visitor.as_ref(), query.into_inner()).await?;
    respond((&req, state.clock.now()), user.as_ref(), outcome)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    consent_token: String,
    decision: String,
}

/// `POST /oauth/authorize`: the consent form's answer.
pub async fn decide(
    state: State,
    req: HttpRequest,
    user: CurrentUser,
    form: web::Form<ConsentForm>,
) -> Result<HttpResponse, AppError> {
    // One that cannot be read is an internal error.
    let pending = user.session.take::<PendingConsent>(PENDING)?;
    let approve = form.decision == "approve";
    let outcome =
        state.oauth_authorize_service().decide(&visitor(&user), pending, &form.consent_token, approve).await?;
    respond((&req, state.clock.now()), Some(&user), outcome)
}

/// The page or redirect an authorization step ends with.
fn respond(
    (req, now): (&HttpRequest, i64),
    user: Option<&CurrentUser>,
    outcome: Authorization,
) -> Result<HttpResponse, AppError> {
    match (outcome, user) {
        (Authorization::Refused(message), _) => error_page(message),
        (Authorization::Redirect(location), _) => {
            Ok(HttpResponse::SeeOther().insert_header((LOCATION, location)).finish())
        }
        (Authorization::Consent(prompt), Some(user)) => {
            // "Not you?" signs out and comes back to this same request.
            let again = (req.method() == actix_web::http::Method::GET)
                .then(|| req.uri().path_and_query().map(|pq| pq.as_str().to_owned()))
                .flatten();
            consent_page(user, *prompt, now, again)
        }
        (Authorization::SignIn | Authorization::Consent(_), _) => {
            let here = req.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, format!("/login?next={}", url_encode(&here))))
                .finish())
        }
    }
}

fn error_page(message: &str) -> Result<HttpResponse, AppError> {
    let page = ErrorPage { asset_v: super::assets::version(), message };
    let body = page.render()?;
    Ok(HttpResponse::BadRequest().content_type("text/html; charset=utf-8").body(body))
}

/// The consent page; its request waits in the session.
fn consent_page(
    user: &CurrentUser,
    prompt: ConsentPrompt,
    now: i64,
    again: Option<String>,
) -> Result<HttpResponse, AppError> {
    user.session.insert(PENDING, &prompt.pending)?;
    let origin = prompt.redirect_origin;
    let redirect_host = origin.split_once("://").map_or(origin.as_str(), |(_, host)| host).to_owned();
    let page = ConsentPage {
        csrf: super::csrf::token(&user.session)?,
        asset_v: super::assets::version(),
        email: user.ctx.user.email.clone(),
        registered: When::at(prompt.app.created_at, now),
        app_name: prompt.app.name,
        logo_url: prompt.app.logo_url,
        homepage: prompt.app.homepage,
        team_name: prompt.team_name,
        app_team: prompt.app_team_name,
        scopes: prompt.scopes.iter().map(|s| (s.clone(), describe(s))).collect(),
        consent_token: prompt.token,
        redirect_host,
        again,
    };
    let mut res = render(StatusCode::OK, &page)?;
    // The approve form redirects to the app: allow that one origin as a form target.
    let csp = super::middleware::CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

fn oauth_json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(body)
}

/// RFC 6749 §5.1: the tokens leave as plain strings here, and only here.
fn token_json(t: &TokenResponse) -> HttpResponse {
    let mut body = json!({
        "access_token": t.access_token.expose(),
        "token_type": t.token_type,
        "expires_in": t.expires_in,
        "scope": t.scope,
    });
    if let Some(r) = &t.refresh_token {
        body["refresh_token"] = json!(r.expose());
    }
    oauth_json(StatusCode::OK, body)
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
    let mut res = oauth_json(status, json!({"error": e.error, "error_description": e.description}));
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
    let mut res = oauth_json(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": OAuthErrorCode::SlowDown, "error_description": description, "retry_after": retry_after}),
    );
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

/// `POST /oauth/token`.
pub async fn token(state: State, req: HttpRequest, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
    match state.oauth_token_service().token(token_call(&req, &state, form.into_inner())).await {
        Ok(t) => token_json(&t),
        Err(e) => oauth_error(e),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token existed.
pub async fn revoke(state: State, req: HttpRequest, form: web::Form<Vec<(String, String)>>) -> HttpResponse {
    match state.oauth_token_service().revoke(token_call(&req, &state, form.into_inner())).await {
        Ok(()) => HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).finish(),
        Err(e) => oauth_error(e),
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(state: State) -> HttpResponse {
    HttpResponse::Ok().json(oauth::metadata(&state.config.public_url, &state.config.scopes))
}
