//! An authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3) and the code it
//! ends with.
//!
//! Rules: the client and its redirect URI are checked first, and a bad one is
//! shown as a page, never redirected to; a request may omit its redirect URI
//! only when the app registered one; only `response_type=code`; scopes within
//! the app's; PKCE S256 only, with a well-formed challenge, and required of
//! public apps; the user grants only what their role allows; a remembered
//! consent covers the same or fewer scopes; a code lives [`CODE_TTL`] seconds
//! and is stored as a keyed hash.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{CODE_TTL, scopes_of};
use crate::domain::{AuditAction, ClientId, ClientType, OAuthErrorCode, Role};
use crate::service::audit::{self, Actor, Event};
use crate::service::crypto::{self, Keys};
use crate::service::keys::scopes;
use crate::service::{Error, Result, redirect_uri, validate};
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthCode, OauthConsent};

/// Raw query parameters of `/oauth/authorize`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A request whose client and redirect URI are valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidRequest {
    pub client_id: ClientId,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    /// The request had no `redirect_uri`, so the token request may omit it too.
    #[serde(default)]
    pub redirect_uri_omitted: bool,
}

/// Why a request is refused.
pub(super) enum Refusal {
    /// Bad client or redirect URI: shown as a page, never redirected.
    Page(&'static str),
    /// Sent back to the (valid) redirect URI.
    Redirect { redirect_uri: String, error: OAuthErrorCode, description: &'static str, state: Option<String> },
}

/// The request's client and redirect URI, then the rest of it.
pub(super) fn validate(conn: &mut DbConn, p: &AuthorizeParams) -> Result<Result<(ValidRequest, OauthClient), Refusal>> {
    let client_id = match p.client_id.as_deref().filter(|c| !c.is_empty()) {
        None => return Ok(Err(Refusal::Page("The request names no client_id."))),
        Some(c) if !validate::client_id(c) => {
            return Ok(Err(Refusal::Page("This app is not registered (unknown client_id).")));
        }
        Some(c) => c,
    };
    let texts = [&p.redirect_uri, &p.scope, &p.state, &p.code_challenge, &p.code_challenge_method, &p.response_type];
    if texts.iter().any(|t| t.as_deref().is_some_and(|v| v.chars().any(char::is_control))) {
        return Ok(Err(Refusal::Page("The request contains control characters.")));
    }
    let Some(client) = OauthClient::find(conn, client_id).map_err(|e| Error::internal(e, "finding the app"))? else {
        return Ok(Err(Refusal::Page("This app is not registered (unknown client_id).")));
    };
    let redirect_uri = match redirect_of(&client, p) {
        Ok(uri) => uri,
        Err(message) => return Ok(Err(Refusal::Page(message))),
    };
    let redirect = |error, description| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: p.state.clone(),
    };
    let requested = match check_request(p, &client) {
        Ok(requested) => requested,
        Err((error, description)) => return Ok(Err(redirect(error, description))),
    };
    let req = ValidRequest {
        client_id: ClientId::from(client.id.clone()),
        redirect_uri,
        scopes: requested,
        state: p.state.clone(),
        code_challenge: p.code_challenge.clone(),
        redirect_uri_omitted: p.redirect_uri.is_none(),
    };
    Ok(Ok((req, client)))
}

/// Where the answer goes: the request's redirect URI if the app registered
/// it, or the app's only one.
fn redirect_of(client: &OauthClient, p: &AuthorizeParams) -> Result<String, &'static str> {
    let registered: Vec<&str> = client.redirect_uris.lines().collect();
    match p.redirect_uri.as_deref() {
        Some(given) if registered.iter().any(|r| redirect_uri::matches(r, given)) => Ok(given.to_owned()),
        Some(_) => Err("The redirect_uri is not one this app registered."),
        None if registered.len() == 1 => Ok(registered[0].to_owned()),
        None => Err("The request needs a redirect_uri."),
    }
}

/// The response type, the scopes (returned) and PKCE of a request whose
/// client and redirect URI are valid.
fn check_request(p: &AuthorizeParams, client: &OauthClient) -> Result<Vec<String>, (OAuthErrorCode, &'static str)> {
    use OAuthErrorCode::{InvalidRequest, InvalidScope, UnsupportedResponseType};
    if p.response_type.as_deref() != Some("code") {
        return Err((UnsupportedResponseType, "Only response_type=code is supported."));
    }
    let allowed = scopes_of(&client.allowed_scopes);
    let requested = match p.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => scopes_of(s),
        None => allowed.clone(),
    };
    if requested.iter().any(|s| !allowed.contains(s)) {
        return Err((InvalidScope, "The app may not request one of these scopes."));
    }
    match (p.code_challenge.as_deref(), p.code_challenge_method.as_deref()) {
        (Some(_), Some(m)) if m != "S256" => Err((InvalidRequest, "Only the S256 code_challenge_method is supported.")),
        (Some(_), None) => Err((InvalidRequest, "code_challenge_method=S256 is required.")),
        (Some(c), _)
            if !(43..=128).contains(&c.len())
                || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Err((InvalidRequest, "The code_challenge is malformed."))
        }
        (None, _) if client.client_type == ClientType::Public => {
            Err((InvalidRequest, "Public apps must use PKCE (S256)."))
        }
        _ => Ok(requested),
    }
}

/// The scopes the user may grant: the request within the user's role.
pub(super) fn grantable(req: &ValidRequest, role: Role) -> Vec<String> {
    req.scopes.iter().filter(|s| scopes::role_allows(role, s)).cloned().collect()
}

/// Whether the user already approved these (or more) scopes for the app.
pub(super) fn consented(conn: &mut DbConn, user_id: &str, client_id: &str, wanted: &[String]) -> Result<bool> {
    Ok(OauthConsent::find(conn, user_id, client_id)?.is_some_and(|c| {
        let had = scopes_of(&c.scopes);
        wanted.iter().all(|s| had.contains(s))
    }))
}

/// Who approves a request, for which team, at what time.
pub(super) struct Approval<'a> {
    pub actor: &'a Actor,
    pub user_id: &'a str,
    pub team_id: &'a str,
    pub at: i64,
}

/// Issues a code for the request. For an approved consent form (`form_grant`:
/// the grant id derived from the form's nonce) it also records the consent,
/// adding to what the user granted the app before — once: a form approved
/// again (say, by concurrent submissions) finds its grant taken and gets
/// `None`, and the unique index on the grant id settles a race on PostgreSQL.
pub(super) fn approve(
    conn: &mut DbConn,
    hasher: &Keys,
    who: &Approval<'_>,
    (req, granted): (&ValidRequest, &[String]),
    form_grant: Option<&str>,
) -> Result<Option<String>> {
    let result = crate::store::transaction(conn, |conn| {
        if let Some(grant) = form_grant {
            if OauthCode::grant_taken(conn, grant)? {
                return Ok(None);
            }
            remember_consent(conn, who, req.client_id.as_str(), granted)?;
        }
        let code = crypto::random_base62(43).map_err(|e| Error::internal(e, "generating a code"))?;
        let grant_id = match form_grant {
            Some(grant) => grant.to_owned(),
            None => crypto::new_id("grant").map_err(|e| Error::internal(e, "generating a grant id"))?,
        };
        OauthCode {
            code_hash: hasher.token_hash(&format!("code:{code}")),
            client_id: req.client_id.as_str().to_owned(),
            user_id: who.user_id.to_owned(),
            team_id: who.team_id.to_owned(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: granted.join(" "),
            code_challenge: req.code_challenge.clone(),
            grant_id,
            expires_at: who.at + CODE_TTL,
            used_at: None,
            redirect_uri_given: !req.redirect_uri_omitted,
        }
        .insert(conn)?;
        Ok(Some(code))
    });
    match result {
        Err(Error::Store(crate::store::StoreError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )))) if form_grant.is_some() => Ok(None),
        other => other,
    }
}

fn remember_consent(conn: &mut DbConn, who: &Approval<'_>, client_id: &str, granted: &[String]) -> Result<()> {
    let mut all = OauthConsent::find(conn, who.user_id, client_id)?.map(|c| scopes_of(&c.scopes)).unwrap_or_default();
    for s in granted {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    OauthConsent {
        user_id: who.user_id.to_owned(),
        client_id: client_id.to_owned(),
        scopes: all.join(" "),
        created_at: who.at,
    }
    .save(conn)?;
    let e = Event::new(AuditAction::OauthConsentGranted)
        .team(who.team_id)
        .object("oauth_app", client_id)
        .details(json!({"scopes": granted}));
    audit::record(conn, who.actor, e)
}
