//! The OAuth 2.0 authorization server's rules (RFC 6749, 7636, 7009, 7662,
//! 9700): client registration, authorization requests, codes, tokens.
//!
//! Rules: redirect URIs match exactly (a loopback URI's port may vary); a bad
//! client or redirect URI is never redirected to; PKCE is S256 only, required
//! for public clients, and a verifier without a challenge is refused; codes are
//! single use, live 60 s, and their reuse revokes what they issued; refresh
//! tokens rotate, a retry within a 2 s grace gets the same successor (never a
//! second branch), and any other reuse of a rotated one revokes its whole grant;
//! every issuance and revocation is audited in the same transaction;
//! granted scopes never exceed the app's nor the user's role; secrets and
//! tokens are stored only as keyed hashes. No HTTP types here.

use crate::domain::AuditAction;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::accounts::Role;
use super::audit::{self, Actor, Event};
use super::audit_gate::{Admission, AuditGate, PendingEvent};
use super::crypto::{self, Keys};
use super::keys::{codec, scopes};
use super::policy;
use super::redirect_uri;
use super::{Error, FieldErrors, Result};
use crate::store::models::{OauthClient, OauthCode, OauthConsent, OauthToken, Team};
use crate::store::{DbConn, now};

pub const CODE_TTL: i64 = 60;
pub const ACCESS_TTL: i64 = 3600;
pub const REFRESH_TTL: i64 = 30 * 24 * 3600;
/// A rotated refresh token presented again this soon is taken for a client's
/// concurrent retry (it gets the same successor again) rather than a theft.
pub const REFRESH_RETRY_GRACE: i64 = 2;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::Error::msg(e.to_string()))
}

pub fn scopes_of(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// What a developer submits to register or edit an app.
#[derive(Debug, Clone, Default)]
pub struct AppInput {
    pub name: String,
    pub redirect_uris: String,
    pub client_type: String,
    pub scopes: Vec<String>,
    pub logo_url: String,
    pub homepage: String,
}

fn validate_app(input: &AppInput, catalog: &[String], role: Role) -> Result<(Vec<String>, Vec<String>)> {
    let mut errors = FieldErrors::default();
    if let Err(m) = super::validate::name(&input.name, 100) {
        errors.add("name", m);
    }
    let uris: Vec<String> =
        input.redirect_uris.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if uris.is_empty() || uris.len() > 20 {
        errors.add("redirect_uris", "Give between 1 and 20 redirect URIs, one per line.");
    }
    for u in &uris {
        if let Err(m) = redirect_uri::check(u) {
            errors.add("redirect_uris", format!("{u:?}: {m}"));
        }
    }
    if !matches!(input.client_type.as_str(), "confidential" | "public") {
        errors.add("client_type", "Choose confidential or public.");
    }
    let granted =
        scopes::check(&input.scopes, catalog, role, None).map_err(|m| errors.add("scopes", m)).unwrap_or_default();
    for (field, value) in [("logo_url", &input.logo_url), ("homepage", &input.homepage)] {
        if let Err(m) = super::validate::https_url(value) {
            errors.add(field, m);
        }
    }
    errors.into_result()?;
    Ok((uris, granted))
}

/// Registers an app; a confidential one gets its secret (shown once).
pub fn register(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    (team_id, role): (&str, Role),
    catalog: &[String],
    input: &AppInput,
) -> Result<(OauthClient, Option<String>)> {
    policy::register_app(role)?;
    let (uris, granted) = validate_app(input, catalog, role)?;
    crate::store::transaction(conn, |conn| {
        let secret = match input.client_type.as_str() {
            "confidential" => Some(codec::generate("lkcs").map_err(internal)?),
            _ => None,
        };
        let client = OauthClient {
            id: format!("lkc_{}", crypto::random_base62(24).map_err(internal)?),
            team_id: team_id.to_owned(),
            created_by: actor.user_id.clone(),
            name: input.name.trim().to_owned(),
            client_type: input.client_type.clone(),
            redirect_uris: uris.join("\n"),
            allowed_scopes: granted.join(" "),
            logo_url: input.logo_url.trim().to_owned(),
            homepage: input.homepage.trim().to_owned(),
            secret_hash: secret.as_deref().map(|s| hasher.token_hash(s)),
            old_secret_hash: None,
            old_secret_expires_at: None,
            created_at: now(),
        };
        client.insert(conn)?;
        let e = Event::new(AuditAction::OauthAppRegistered).team(team_id).object("oauth_app", &client.id);
        audit::record(conn, actor, e.details(json!({"name": client.name, "type": client.client_type})))?;
        Ok((client, secret))
    })
}

pub fn app(conn: &mut DbConn, team_id: &str, id: &str) -> Result<OauthClient> {
    OauthClient::find(conn, id)?.filter(|c| c.team_id == team_id).ok_or(Error::NotFound)
}

/// An app of the team that `actor` (with `role`) may manage, per the policy.
fn managed_app(conn: &mut DbConn, actor: &Actor, (team_id, role): (&str, Role), id: &str) -> Result<OauthClient> {
    let c = app(conn, team_id, id)?;
    // The role the request started with may be stale: read it again, held
    // until this transaction ends, so a removal or demotion cannot cross it.
    let role = match actor.user_id.as_deref() {
        Some(u) => super::accounts::locked_role(conn, team_id, Some(u))?.ok_or(Error::NotFound)?.min(role),
        None => role,
    };
    let caller = policy::Caller { user_id: actor.user_id.as_deref(), role, ceiling: None };
    policy::manage_app(&caller, c.created_by.as_deref(), &scopes_of(&c.allowed_scopes))?;
    Ok(c)
}

pub fn apps(conn: &mut DbConn, team_id: &str) -> Result<Vec<OauthClient>> {
    Ok(OauthClient::for_team(conn, team_id)?)
}

pub fn update(
    conn: &mut DbConn,
    actor: &Actor,
    (team_id, role): (&str, Role),
    catalog: &[String],
    id: &str,
    input: &AppInput,
) -> Result<OauthClient> {
    crate::store::transaction(conn, |conn| {
        let mut c = managed_app(conn, actor, (team_id, role), id)?;
        let mut input = input.clone();
        input.client_type = c.client_type.clone();
        let (uris, granted) = validate_app(&input, catalog, role)?;
        c.name = input.name.trim().to_owned();
        c.redirect_uris = uris.join("\n");
        c.allowed_scopes = granted.join(" ");
        c.logo_url = input.logo_url.trim().to_owned();
        c.homepage = input.homepage.trim().to_owned();
        OauthClient::update_settings(conn, &c)?;
        audit::record(conn, actor, Event::new(AuditAction::OauthAppUpdated).team(team_id).object("oauth_app", &c.id))?;
        Ok(c)
    })
}

pub fn rotate_secret(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    (team_id, role): (&str, Role),
    id: &str,
    grace: i64,
) -> Result<String> {
    if !(0..=7 * 86_400).contains(&grace) {
        return Err(Error::Invalid(FieldErrors::single("grace", "Choose a grace period between 0 and 7 days.")));
    }
    crate::store::transaction(conn, |conn| {
        let c = managed_app(conn, actor, (team_id, role), id)?;
        let Some(current) = c.secret_hash.as_deref() else {
            return Err(Error::Invalid(FieldErrors::single("grace", "Public apps have no secret.")));
        };
        let secret = codec::generate("lkcs").map_err(internal)?;
        let old = (grace > 0).then_some(current);
        OauthClient::rotate_secret(conn, id, &hasher.token_hash(&secret), old, now() + grace)?;
        let e = Event::new(AuditAction::OauthSecretRotated)
            .team(team_id)
            .object("oauth_app", id)
            .details(json!({"grace_seconds": grace}));
        audit::record(conn, actor, e)?;
        Ok(secret)
    })
}

pub fn delete(conn: &mut DbConn, actor: &Actor, (team_id, role): (&str, Role), id: &str) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        let c = managed_app(conn, actor, (team_id, role), id)?;
        let revoked = OauthToken::revoke_for(conn, &c.id, None, now())?;
        OauthClient::delete(conn, &c.id)?;
        let e = Event::new(AuditAction::OauthAppDeleted)
            .team(team_id)
            .object("oauth_app", id)
            .details(json!({"name": c.name, "tokens_revoked": revoked}));
        audit::record(conn, actor, e)
    })
}

// ---- Authorization requests ----

/// Raw query parameters of `/oauth/authorize`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ValidRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    /// The request had no `redirect_uri`, so the token request may omit it too.
    #[serde(default)]
    pub redirect_uri_omitted: bool,
}

pub enum AuthorizeError {
    /// Bad client or redirect URI: shown as a page, never redirected.
    Page(String),
    /// Sent back to the (valid) redirect URI.
    Redirect { redirect_uri: String, error: &'static str, description: String, state: Option<String> },
}

pub fn validate_authorize(
    conn: &mut DbConn,
    p: &AuthorizeParams,
) -> Result<(ValidRequest, OauthClient), AuthorizeError> {
    let page = |m: &str| AuthorizeError::Page(m.to_owned());
    let client_id =
        p.client_id.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| page("The request names no client_id."))?;
    if !super::validate::client_id(client_id) {
        return Err(page("This app is not registered (unknown client_id)."));
    }
    let texts = [&p.redirect_uri, &p.scope, &p.state, &p.code_challenge, &p.code_challenge_method, &p.response_type];
    if texts.iter().any(|t| t.as_deref().is_some_and(|v| v.chars().any(char::is_control))) {
        return Err(page("The request contains control characters."));
    }
    let client = OauthClient::find(conn, client_id)
        .map_err(|_| page("Something went wrong; try again."))?
        .ok_or_else(|| page("This app is not registered (unknown client_id)."))?;
    let registered: Vec<&str> = client.redirect_uris.lines().collect();
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(given) if registered.iter().any(|r| redirect_uri::matches(r, given)) => given.to_owned(),
        Some(_) => return Err(page("The redirect_uri is not one this app registered.")),
        None if registered.len() == 1 => registered[0].to_owned(),
        None => return Err(page("The request needs a redirect_uri.")),
    };
    let redirect = |error, description: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_owned(),
        state: p.state.clone(),
    };
    if p.response_type.as_deref() != Some("code") {
        return Err(redirect("unsupported_response_type", "Only response_type=code is supported."));
    }
    let allowed = scopes_of(&client.allowed_scopes);
    let requested = match p.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => scopes_of(s),
        None => allowed.clone(),
    };
    if requested.iter().any(|s| !allowed.contains(s)) {
        return Err(redirect("invalid_scope", "The app may not request one of these scopes."));
    }
    match (p.code_challenge.as_deref(), p.code_challenge_method.as_deref()) {
        (Some(_), Some(m)) if m != "S256" => {
            return Err(redirect("invalid_request", "Only the S256 code_challenge_method is supported."));
        }
        (Some(_), None) => return Err(redirect("invalid_request", "code_challenge_method=S256 is required.")),
        (Some(c), _)
            if !(43..=128).contains(&c.len())
                || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            return Err(redirect("invalid_request", "The code_challenge is malformed."));
        }
        (None, _) if client.client_type == "public" => {
            return Err(redirect("invalid_request", "Public apps must use PKCE (S256)."));
        }
        _ => {}
    }
    let req = ValidRequest {
        client_id: client.id.clone(),
        redirect_uri,
        scopes: requested,
        state: p.state.clone(),
        code_challenge: p.code_challenge.clone(),
        redirect_uri_omitted: p.redirect_uri.is_none(),
    };
    Ok((req, client))
}

/// The scopes the user may grant: the request within the user's role.
pub fn grantable(req: &ValidRequest, role: Role) -> Vec<String> {
    req.scopes.iter().filter(|s| scopes::role_allows(role, s)).cloned().collect()
}

/// Whether the user already approved these (or more) scopes for the app.
pub fn consented(conn: &mut DbConn, user_id: &str, client_id: &str, wanted: &[String]) -> Result<bool> {
    Ok(OauthConsent::find(conn, user_id, client_id)?.is_some_and(|c| {
        let had = scopes_of(&c.scopes);
        wanted.iter().all(|s| had.contains(s))
    }))
}

/// Records consent (if new) and issues a code for the request.
pub fn approve(
    conn: &mut DbConn,
    hasher: &Keys,
    actor: &Actor,
    (user_id, team_id): (&str, &str),
    req: &ValidRequest,
    granted: &[String],
    remember: bool,
) -> Result<String> {
    crate::store::transaction(conn, |conn| {
        let at = now();
        if remember {
            let mut all =
                OauthConsent::find(conn, user_id, &req.client_id)?.map(|c| scopes_of(&c.scopes)).unwrap_or_default();
            for s in granted {
                if !all.contains(s) {
                    all.push(s.clone());
                }
            }
            OauthConsent {
                user_id: user_id.to_owned(),
                client_id: req.client_id.clone(),
                scopes: all.join(" "),
                created_at: at,
            }
            .save(conn)?;
            let e = Event::new(AuditAction::OauthConsentGranted)
                .team(team_id)
                .object("oauth_app", &req.client_id)
                .details(json!({"scopes": granted}));
            audit::record(conn, actor, e)?;
        }
        let code = crypto::random_base62(43).map_err(internal)?;
        OauthCode {
            code_hash: hasher.token_hash(&format!("code:{code}")),
            client_id: req.client_id.clone(),
            user_id: user_id.to_owned(),
            team_id: team_id.to_owned(),
            redirect_uri: req.redirect_uri.clone(),
            scopes: granted.join(" "),
            code_challenge: req.code_challenge.clone(),
            grant_id: crypto::new_id("grant").map_err(internal)?,
            expires_at: at + CODE_TTL,
            used_at: None,
            redirect_uri_given: !req.redirect_uri_omitted,
        }
        .insert(conn)?;
        Ok(code)
    })
}

// ---- Token endpoint ----

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

fn oerr(error: &'static str, description: &str) -> OAuthError {
    OAuthError { error, description: description.to_owned() }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "token endpoint failed");
        oerr("server_error", "Something went wrong.")
    }
}

impl From<diesel::result::Error> for OAuthError {
    fn from(e: diesel::result::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Error::from(e).into()
    }
}

/// How the client authenticated at the token, revocation or introspection endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The authenticated client, or `invalid_client`.
pub fn authenticate_client(
    conn: &mut DbConn,
    hasher: &Keys,
    creds: &ClientCredentials,
) -> Result<OauthClient, OAuthError> {
    let invalid = || oerr("invalid_client", "Client authentication failed.");
    let id = creds.client_id.as_deref().ok_or_else(invalid)?;
    if !super::validate::client_id(id) {
        return Err(oerr("invalid_request", "The client_id is malformed."));
    }
    let client = OauthClient::find(conn, id)?.ok_or_else(invalid)?;
    match (client.client_type.as_str(), creds.client_secret.as_deref()) {
        ("public", None) => Ok(client),
        ("public", Some(_)) => Err(invalid()),
        (_, Some(secret)) => {
            let hash = hasher.token_hash(secret);
            let current = client.secret_hash.as_deref().is_some_and(|h| crypto::ct_eq(h, &hash));
            let old = client.old_secret_hash.as_deref().is_some_and(|h| crypto::ct_eq(h, &hash))
                && client.old_secret_expires_at.is_some_and(|t| t > now());
            if current || old { Ok(client) } else { Err(invalid()) }
        }
        (_, None) => Err(invalid()),
    }
}

/// Audits a failed authentication of a known confidential app (a wrong or
/// missing secret): someone may be guessing it. Gated like other anonymous
/// failures: one event per app and minute, then a count.
pub fn audit_failed_client_auth(
    conn: &mut DbConn,
    audit_ctx: AuditCtx<'_>,
    creds: &ClientCredentials,
) -> Result<(), OAuthError> {
    let Some(id) = creds.client_id.as_deref().filter(|id| super::validate::client_id(id)) else { return Ok(()) };
    let Some(client) = OauthClient::find(conn, id)?.filter(|c| c.client_type == "confidential") else {
        return Ok(());
    };
    let actor = app_actor(&client, audit_ctx.ip);
    let action = AuditAction::OauthClientAuthFailed;
    let e = PendingEvent::new(action, actor).team(Some(&client.team_id)).object("oauth_app", &client.id);
    let e = e.details(json!({"reason": "wrong or missing client secret"}));
    if audit_ctx.gate.admit(&format!("{action}:{}", client.id), &e, now()) == Admission::Record {
        e.record(conn)?;
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Who a token acts for, with what, in which grant, by which grant type.
struct Grant<'a> {
    user_id: Option<&'a str>,
    team_id: &'a str,
    scopes: &'a str,
    grant_id: &'a str,
    grant_type: &'static str,
    /// A refresh's predecessor expiry: under a team maximum lifetime, the
    /// grant as a whole ends then (rotation never extends it).
    not_after: Option<i64>,
}

/// The pair a refresh yields. It is derived from the presented refresh token
/// under a server key of its own, so that a retry within the grace gets the
/// very same pair (the database holds only hashes) instead of a second branch
/// of the grant; nobody without the server secret can compute it.
struct Successor {
    access: String,
    refresh: String,
}

impl Successor {
    fn of(hasher: &Keys, refresh_token: &str) -> Self {
        let derive = |role: &str| hasher.derived_base62(&format!("{role}:{refresh_token}"), codec::RANDOM_LEN);
        Self { access: codec::encode("lkat", &derive("access")), refresh: codec::encode("lkrt", &derive("refresh")) }
    }
}

/// How the audit trail names a kind of token.
pub fn credential_label(kind: &str) -> &'static str {
    if kind == "refresh" { "refresh_token" } else { "access_token" }
}

/// How the token and revocation endpoints audit: anonymous failures through
/// the gate, and every event with the caller's address.
#[derive(Clone, Copy)]
pub struct AuditCtx<'a> {
    pub gate: &'a AuditGate,
    pub ip: Option<&'a str>,
}

fn app_actor(client: &OauthClient, ip: Option<&str>) -> Actor {
    Actor { label: format!("OAuth app {}", client.name), ip: ip.map(str::to_owned), ..Actor::default() }
}

/// Records a revocation of OAuth credentials: `revoked` is `access_token`,
/// `refresh_token` or `grant`; `presented` the kind of token that caused it.
pub fn audit_revoked(
    conn: &mut DbConn,
    actor: &Actor,
    t: &OauthToken,
    revoked: &str,
    count: usize,
    why: &str,
) -> Result<()> {
    let e =
        Event::new(AuditAction::OauthTokenRevoked).team(&t.team_id).object("oauth_app", &t.client_id).details(json!({
            "revoked": revoked,
            "presented": credential_label(&t.kind),
            "grant_id": t.grant_id,
            "tokens_revoked": count,
            "reason": why,
        }));
    audit::record(conn, actor, e)
}

fn insert_token(
    conn: &mut DbConn,
    hasher: &Keys,
    client: &OauthClient,
    g: &Grant<'_>,
    (kind, token, at, ttl): (&str, &str, i64, i64),
) -> Result<(), OAuthError> {
    OauthToken {
        id: crypto::new_id("tok").map_err(internal)?,
        token_hash: hasher.token_hash(token),
        kind: kind.to_owned(),
        client_id: client.id.clone(),
        user_id: g.user_id.map(str::to_owned),
        team_id: g.team_id.to_owned(),
        scopes: g.scopes.to_owned(),
        grant_id: g.grant_id.to_owned(),
        created_at: at,
        expires_at: at + ttl,
        revoked_at: None,
        used_at: None,
    }
    .insert(conn)?;
    Ok(())
}

/// Stores a new access token (and refresh token) and audits the issuance, in
/// one transaction; a refresh passes its derived successor.
fn issue(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    g: Grant<'_>,
    refresh: bool,
    successor: Option<Successor>,
) -> Result<TokenResponse, OAuthError> {
    // Whatever the grant says, a token carries only what its holder's
    // current role allows.
    let capped = holder_scopes(conn, client, g.user_id, g.team_id, g.scopes)?;
    let g = Grant { scopes: &capped, ..g };
    let (access_token, refresh_token) = match successor {
        Some(s) => (s.access, Some(s.refresh)),
        None => {
            let refresh_token = if refresh { Some(codec::generate("lkrt").map_err(internal)?) } else { None };
            (codec::generate("lkat").map_err(internal)?, refresh_token)
        }
    };
    crate::store::transaction(conn, |conn| {
        // The app as it is now, held until this issuance commits: if it was
        // rotated or disarmed since the client authenticated, nothing is issued.
        let unchanged = OauthClient::find_for_share(conn, &client.id)?
            .is_some_and(|now| now.secret_hash == client.secret_hash && now.redirect_uris == client.redirect_uris);
        if !unchanged {
            return Err(oerr("invalid_grant", "The app changed while this request ran; try again."));
        }
        let at = now();
        let (access_ttl, refresh_ttl) = lifetimes(conn, &g, at)?;
        insert_token(conn, hasher, client, &g, ("access", &access_token, at, access_ttl))?;
        if let Some(r) = &refresh_token {
            insert_token(conn, hasher, client, &g, ("refresh", r, at, refresh_ttl))?;
        }
        let e =
            Event::new(AuditAction::OauthTokenIssued).team(g.team_id).object("oauth_app", &client.id).details(json!({
                "grant_type": g.grant_type,
                "scopes": scopes_of(g.scopes),
                "user_id": g.user_id,
                "grant_id": g.grant_id,
                "refresh_token": refresh_token.is_some(),
            }));
        audit::record(conn, &app_actor(client, audit_ctx.ip), e)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: access_ttl,
            refresh_token,
            scope: g.scopes.to_owned(),
        })
    })
}

/// Seconds the access and refresh tokens of an issuance live: never beyond
/// the team's maximum key lifetime, and under one, never beyond the grant's
/// first refresh token (a rotation does not extend the grant).
fn lifetimes(conn: &mut DbConn, g: &Grant<'_>, at: i64) -> Result<(i64, i64), OAuthError> {
    let max_days = Team::find(conn, g.team_id)?.and_then(|t| t.max_key_lifetime_days);
    let end = |ttl: i64| {
        let capped = policy::cap_expiry(Some(at + ttl), max_days, at).unwrap_or(at + ttl);
        let capped = match (max_days, g.not_after) {
            (Some(_), Some(limit)) => capped.min(limit),
            _ => capped,
        };
        (capped - at).max(1)
    };
    Ok((end(ACCESS_TTL), end(REFRESH_TTL)))
}

/// The scopes a token issued now may carry: those of `scopes` that its
/// holder's current role allows (the user it acts for, or the member who
/// registered a client_credentials app). A holder who left the team, or a
/// role that allows none of them, gets no token.
fn holder_scopes(
    conn: &mut DbConn,
    client: &OauthClient,
    user_id: Option<&str>,
    team_id: &str,
    scopes: &str,
) -> Result<String, OAuthError> {
    let role = super::accounts::current_role(conn, team_id, user_id.or(client.created_by.as_deref()))?;
    let effective = policy::effective_scopes(role, &scopes_of(scopes));
    if effective.is_empty() {
        return Err(oerr("invalid_grant", "The grant is no longer valid for this account."));
    }
    Ok(effective.join(" "))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn verifier_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Audits a failed token request: anyone holding a public client id can cause
/// one, so at most one per app, action and minute is recorded, then a count.
fn audit_failure(
    conn: &mut DbConn,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    action: AuditAction,
    why: &str,
) -> Result<(), OAuthError> {
    let e = PendingEvent::new(action, app_actor(client, audit_ctx.ip))
        .team(Some(&client.team_id))
        .object("oauth_app", &client.id);
    let e = e.details(json!({"reason": why}));
    if audit_ctx.gate.admit(&format!("{action}:{}", client.id), &e, now()) == Admission::Record {
        e.record(conn)?;
    }
    Ok(())
}

/// A presented credential was used again: its whole grant ends, in one
/// transaction with the event that says so.
/// (Replays can be repeated by whoever holds the copy: the event goes
/// through the audit gate like other failures.)
fn revoke_reused(
    conn: &mut DbConn,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    grant_id: &str,
    (action, why): (AuditAction, &str),
) -> Result<(), OAuthError> {
    crate::store::transaction(conn, |conn| {
        let revoked = OauthToken::revoke_grant(conn, grant_id, now())?;
        let e = PendingEvent::new(action, app_actor(client, audit_ctx.ip))
            .team(Some(&client.team_id))
            .object("oauth_app", &client.id);
        let e = e.details(json!({"reason": why, "revoked": "grant", "grant_id": grant_id, "tokens_revoked": revoked}));
        if audit_ctx.gate.admit(&format!("{action}:{}", client.id), &e, now()) == Admission::Record {
            e.record(conn)?;
        }
        Ok(())
    })
}

pub fn exchange_code(
    conn: &mut DbConn,
    hasher: &Keys,
    client: &OauthClient,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    audit_ctx: AuditCtx<'_>,
) -> Result<TokenResponse, OAuthError> {
    let hash = hasher.token_hash(&format!("code:{code}"));
    let result = crate::store::transaction(conn, |conn| {
        let invalid = |d: &str| oerr("invalid_grant", d);
        let c = OauthCode::find(conn, &hash)?.ok_or_else(|| invalid("The code is not valid."))?;
        if c.client_id != client.id {
            return Err(invalid("The code was issued to another client."));
        }
        if c.used_at.is_some() {
            return Err(oerr("invalid_grant", "reuse"));
        }
        if c.expires_at <= now() {
            return Err(invalid("The code has expired."));
        }
        // RFC 6749 §4.1.3: required (and identical) only if the authorization request had one.
        let redirect_ok = match redirect_uri {
            Some(given) => given == c.redirect_uri,
            None => !c.redirect_uri_given,
        };
        if !redirect_ok {
            return Err(invalid("The redirect_uri does not match the authorization request."));
        }
        if verifier.is_some_and(|v| !verifier_well_formed(v)) {
            return Err(invalid("The code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)."));
        }
        match (c.code_challenge.as_deref(), verifier) {
            (Some(challenge), Some(v)) if crypto::ct_eq(&s256(v), challenge) => {}
            (Some(_), _) => return Err(invalid("The code_verifier does not match the code_challenge.")),
            (None, Some(_)) => return Err(invalid("A code_verifier was sent but no code_challenge was.")),
            (None, None) => {}
        }
        if OauthCode::mark_used(conn, &hash, now())? != 1 {
            return Err(oerr("invalid_grant", "reuse"));
        }
        let g = Grant {
            user_id: Some(&c.user_id),
            team_id: &c.team_id,
            scopes: &c.scopes,
            grant_id: &c.grant_id,
            grant_type: "authorization_code",
            not_after: None,
        };
        issue(conn, hasher, audit_ctx, client, g, true, None)
    });
    match result {
        Err(e) if e.description == "reuse" => {
            // A second use of a code: revoke everything it issued.
            if let Some(c) = OauthCode::find(conn, &hash)? {
                let why = "authorization code used twice; its tokens were revoked";
                revoke_reused(conn, audit_ctx, client, &c.grant_id, (AuditAction::OauthCodeReused, why))?;
            }
            Err(oerr("invalid_grant", "The code was already used."))
        }
        Err(e) if e.error == "invalid_grant" => {
            audit_failure(conn, audit_ctx, client, AuditAction::OauthTokenFailed, &e.description)?;
            Err(e)
        }
        other => other,
    }
}

fn narrowed(had: &str, scope: Option<&str>) -> Result<String, OAuthError> {
    match scope.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let had = scopes_of(had);
            let asked = scopes_of(s);
            if asked.iter().any(|a| !had.contains(a)) {
                return Err(oerr("invalid_scope", "A refresh cannot widen the scopes."));
            }
            Ok(asked.join(" "))
        }
        None => Ok(had.to_owned()),
    }
}

const REUSE: &str = "reuse";

/// Rotates a refresh token. The first refresh stores the derived successor;
/// a retry with the same token within [`REFRESH_RETRY_GRACE`] gets that same
/// successor back (while it is unused); any other use of a rotated token is
/// reuse, and revokes the whole grant.
pub fn refresh(
    conn: &mut DbConn,
    hasher: &Keys,
    client: &OauthClient,
    token: &str,
    scope: Option<&str>,
    audit_ctx: AuditCtx<'_>,
) -> Result<TokenResponse, OAuthError> {
    let invalid = || oerr("invalid_grant", "The refresh token is not valid.");
    let hash = hasher.token_hash(token);
    let result = crate::store::transaction(conn, |conn| {
        let t = OauthToken::find_by_hash(conn, &hash)?
            .filter(|t| t.kind == "refresh" && t.client_id == client.id)
            .ok_or_else(invalid)?;
        if t.revoked_at.is_some() {
            return Err(invalid());
        }
        if t.used_at.is_none() {
            if t.expires_at <= now() {
                return Err(invalid());
            }
            let scopes = narrowed(&t.scopes, scope)?;
            if OauthToken::mark_used(conn, &t.id, now())? == 1 {
                let g = Grant {
                    user_id: t.user_id.as_deref(),
                    team_id: &t.team_id,
                    scopes: &scopes,
                    grant_id: &t.grant_id,
                    grant_type: "refresh_token",
                    not_after: Some(t.expires_at),
                };
                return issue(conn, hasher, audit_ctx, client, g, true, Some(Successor::of(hasher, token)));
            }
        }
        // Rotated already (perhaps by a concurrent request that just committed).
        same_successor(conn, hasher, &hash, Successor::of(hasher, token))
    });
    match result {
        Err(e) if e.description == REUSE => {
            // A rotated refresh token came back: someone holds a copy. End the grant.
            if let Some(t) = OauthToken::find_by_hash(conn, &hash)? {
                let why = "a rotated refresh token was reused; the grant was revoked";
                revoke_reused(conn, audit_ctx, client, &t.grant_id, (AuditAction::OauthRefreshReuse, why))?;
            }
            Err(invalid())
        }
        other => other,
    }
}

/// The answer to a retry of a rotated refresh token: the successor it already
/// got, if the retry comes within the grace and the successor is unused and
/// live; otherwise reuse.
fn same_successor(
    conn: &mut DbConn,
    hasher: &Keys,
    hash: &str,
    successor: Successor,
) -> Result<TokenResponse, OAuthError> {
    let invalid = || oerr("invalid_grant", "The refresh token is not valid.");
    let reuse = || oerr("invalid_grant", REUSE);
    let at = now();
    let t = OauthToken::find_by_hash(conn, hash)?.ok_or_else(invalid)?;
    if t.revoked_at.is_some() {
        return Err(invalid());
    }
    if t.used_at.is_none_or(|u| at - u > REFRESH_RETRY_GRACE) {
        return Err(reuse());
    }
    let next_refresh = OauthToken::find_by_hash(conn, &hasher.token_hash(&successor.refresh))?;
    let next_access = OauthToken::find_by_hash(conn, &hasher.token_hash(&successor.access))?;
    let (Some(r), Some(a)) = (next_refresh, next_access) else { return Err(reuse()) };
    if r.grant_id != t.grant_id || a.grant_id != t.grant_id || r.used_at.is_some() {
        return Err(reuse());
    }
    if r.revoked_at.is_some() || a.revoked_at.is_some() || r.expires_at <= at {
        return Err(invalid());
    }
    Ok(TokenResponse {
        access_token: successor.access,
        token_type: "Bearer",
        expires_in: (a.expires_at - at).max(0),
        refresh_token: Some(successor.refresh),
        scope: a.scopes,
    })
}

pub fn client_credentials(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    scope: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    if client.client_type != "confidential" {
        return Err(oerr("unauthorized_client", "Only confidential apps may use client_credentials."));
    }
    let allowed = scopes_of(&client.allowed_scopes);
    let scopes = match scope.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => {
            let asked = scopes_of(s);
            if asked.iter().any(|a| !allowed.contains(a)) {
                return Err(oerr("invalid_scope", "The app may not request one of these scopes."));
            }
            asked
        }
        None => allowed,
    };
    let grant = crypto::new_id("grant").map_err(internal)?;
    let scopes = scopes.join(" ");
    let g = Grant {
        user_id: None,
        team_id: &client.team_id,
        scopes: &scopes,
        grant_id: &grant,
        grant_type: "client_credentials",
        not_after: None,
    };
    issue(conn, hasher, audit_ctx, client, g, false, None)
}

/// RFC 7009: revokes a token of this client (a refresh token takes its grant).
/// Returns the revoked grant, if any.
pub fn revoke(
    conn: &mut DbConn,
    hasher: &Keys,
    audit_ctx: AuditCtx<'_>,
    client: &OauthClient,
    token: &str,
) -> Result<Option<String>, OAuthError> {
    let Some(t) = OauthToken::find_by_hash(conn, &hasher.token_hash(token))? else { return Ok(None) };
    if t.client_id != client.id {
        return Ok(None);
    }
    // RFC 7009 §2.1 lets either kind take the rest of its grant with it.
    crate::store::transaction(conn, |conn| {
        let revoked = OauthToken::revoke_grant(conn, &t.grant_id, now())?;
        if revoked > 0 {
            audit_revoked(
                conn,
                &app_actor(client, audit_ctx.ip),
                &t,
                "grant",
                revoked,
                "revoked by the client (RFC 7009)",
            )?;
        }
        Ok::<_, OAuthError>(())
    })?;
    Ok(Some(t.grant_id))
}

/// An active token, for introspection and API use.
pub fn active_token(conn: &mut DbConn, hasher: &Keys, token: &str) -> Result<Option<(OauthToken, OauthClient)>> {
    let Some(t) = OauthToken::find_by_hash(conn, &hasher.token_hash(token))? else { return Ok(None) };
    let live = t.revoked_at.is_none() && t.expires_at > now() && (t.kind == "access" || t.used_at.is_none());
    if !live {
        return Ok(None);
    }
    let Some(client) = OauthClient::find(conn, &t.client_id)? else { return Ok(None) };
    // What the token may do now: its holder's current role decides.
    let role = super::accounts::current_role(conn, &t.team_id, t.user_id.as_deref().or(client.created_by.as_deref()))?;
    let effective = policy::effective_scopes(role, &scopes_of(&t.scopes));
    if effective.is_empty() {
        return Ok(None);
    }
    let t = OauthToken { scopes: effective.join(" "), ..t };
    Ok(Some((t, client)))
}

// ---- Authorized apps ----

pub fn authorized_apps(conn: &mut DbConn, user_id: &str) -> Result<Vec<(OauthConsent, OauthClient)>> {
    Ok(OauthConsent::for_user(conn, user_id)?)
}

/// What the team's members have authorized (for owners and admins).
pub fn team_authorized_apps(
    conn: &mut DbConn,
    team_id: &str,
    role: Role,
) -> Result<Vec<(String, OauthConsent, OauthClient)>> {
    if !role.manages_members() {
        return Ok(Vec::new());
    }
    Ok(OauthConsent::for_team(conn, team_id)?)
}

pub fn revoke_consent(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    team_id: Option<&str>,
    client_id: &str,
) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        if OauthConsent::delete(conn, user_id, client_id)? == 0 {
            return Err(Error::NotFound);
        }
        let revoked = OauthToken::revoke_for(conn, client_id, Some(user_id), now())?;
        let mut e = Event::new(AuditAction::OauthConsentRevoked)
            .object("oauth_app", client_id)
            .details(json!({"tokens_revoked": revoked}));
        if let Some(t) = team_id {
            e = e.team(t);
        }
        audit::record(conn, actor, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
