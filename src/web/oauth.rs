//! The OAuth 2.0 endpoints: `/oauth/authorize` (login, consent), `/oauth/token`,
//! `/oauth/revoke`, and the RFC 8414 metadata. Errors follow RFC 6749, not the
//! API envelope; token responses are `no-store`.
//!
//! Rules: handlers read the request (the session, HTTP Basic, the form) and
//! call one method of [`AuthorizeService`] or [`TokenService`]; the pending
//! consent lives in the session under [`PENDING`] as a [`PendingConsent`];
//! the consent page lets its form post to the app's origin, and nowhere else.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_SECURITY_POLICY, HeaderValue, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::auth::{CurrentUser, url_encode};
use super::format::When;
use super::page::render;
use super::{AppState, State};
use crate::domain::{TeamId, UserId};
use crate::error::AppError;
use crate::service::oauth::{
    Authorization, AuthorizeParams, AuthorizeService, ConsentPrompt, PendingConsent, TeamSeat, TokenService, Visitor,
};

pub mod back_channel;

pub use back_channel::{GrantType, OAuthErrorJson, RevokeRequest, TokenJson, TokenRequest, metadata, revoke, token};

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
