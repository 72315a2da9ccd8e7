//! The keys JSON API under `/api/v1` (DESIGN.md's table), and `auth/test`.
//!
//! Rules: each handler checks the credential's scope, parses, calls one
//! `KeyService` method and answers with the JSON envelope; a secret appears
//! only in the answer to the request that made it (`Cache-Control: no-store`).

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api_auth::{Acting, ApiPrincipal, Credential, key_json, key_json_judged};
use super::api_keys::key_id;
use super::format;
use super::{AppState, State};
use crate::domain::{KeyStatus, PlainSecret, TeamId};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::{Cursor, Expiry, KeyCaller, KeyRequest, ListQuery};
use crate::service::principal::Principal;
use crate::store::models::{ApiKey, StatusFilter};

mod edit;

pub use edit::update;

pub fn ok(data: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "success", "data": data}))
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Who<'a> {
    ApiKey {
        key_id: &'a str,
        name: &'a str,
        prefix: &'a str,
        team_id: Option<&'a str>,
        team: Option<&'a str>,
    },
    ServiceKey {
        key_id: &'a str,
        name: &'a str,
        prefix: &'a str,
    },
    AccessToken {
        token_id: &'a str,
        app: &'a str,
        client_id: &'a str,
        user_id: Option<&'a str>,
        team_id: Option<&'a str>,
        team: Option<&'a str>,
    },
    Session {
        user_id: &'a str,
        email: &'a str,
        team_id: Option<&'a str>,
        team: Option<&'a str>,
    },
}

/// What `auth/test` says of a credential whatever the request: all of its
/// answer but the rate limit.
#[derive(Serialize)]
struct AuthTestHead<'a> {
    authenticated: bool,
    principal: Who<'a>,
    scopes: &'a [String],
}

/// `GET /api/v1/auth/test`: who is calling, with what scopes and limits —
/// in the success envelope, with the fields also at the top level, as
/// DESIGN.md's table shows them for this endpoint. Integrations may call it
/// before every call, so the part that depends on the key alone is
/// serialised once per cached read of the key, and the whole object is
/// serialised once and written twice.
pub async fn auth_test(principal: ApiPrincipal) -> Result<HttpResponse, AppError> {
    let head =
        |credential| AuthTestHead { authenticated: true, principal: who(credential), scopes: principal.scopes() };
    let fresh;
    let head: &[u8] = match &principal.credential {
        Credential::ApiKey(k) => match k.grant().shown.get() {
            Some(shown) => shown,
            None => {
                let shown = serde_json::to_vec(&head(&principal.credential)).map_err(internal)?;
                k.grant().shown.get_or_init(|| shown.into_boxed_slice())
            }
        },
        Credential::Session(_) => {
            fresh = serde_json::to_vec(&head(&principal.credential)).map_err(internal)?;
            &fresh
        }
    };
    // `head` is `{…}` with members: the object is `head` without its `}`,
    // then the rate limit; its members then follow the envelope's own.
    let open = head.strip_suffix(b"}").unwrap_or(head);
    let mut object = Vec::with_capacity(head.len() + 80);
    object.extend_from_slice(open);
    object.extend_from_slice(br#","rate_limit":"#);
    serde_json::to_writer(&mut object, &principal.rate).map_err(internal)?;
    object.push(b'}');
    let members = object.get(1..).unwrap_or_default();
    let mut out = Vec::with_capacity(40 + 2 * object.len());
    out.extend_from_slice(br#"{"status":"success","data":"#);
    out.extend_from_slice(&object);
    out.push(b',');
    out.extend_from_slice(members);
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(out))
}

fn internal(e: serde_json::Error) -> AppError {
    AppError::Internal(e.into())
}

/// Who the credential is, as `auth/test` shows it.
fn who(credential: &Credential) -> Who<'_> {
    match credential {
        Credential::ApiKey(k) => match &**k {
            Principal::ServiceKey { id, name, prefix, .. } => Who::ServiceKey { key_id: id.as_str(), name, prefix },
            Principal::AccessToken { id, client_id, app, user_id, .. } => Who::AccessToken {
                token_id: id.as_str(),
                app,
                client_id: client_id.as_str(),
                user_id: user_id.as_ref().map(|u| u.as_str()),
                team_id: k.team_id().map(|t| t.as_str()),
                team: k.team_name(),
            },
            Principal::ApiKey { id, name, prefix, .. } => Who::ApiKey {
                key_id: id.as_str(),
                name,
                prefix,
                team_id: k.team_id().map(|t| t.as_str()),
                team: k.team_name(),
            },
        },
        Credential::Session(ctx) => Who::Session {
            user_id: &ctx.user.id,
            email: &ctx.user.email,
            team_id: ctx.team.as_ref().map(|(t, _)| t.id.as_str()),
            team: ctx.team.as_ref().map(|(t, _)| t.name.as_str()),
        },
    }
}

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
}

/// The `status` filter of a list: a key status, `expiring` for short, or all.
pub fn parse_filter(s: Option<&str>) -> Result<StatusFilter, AppError> {
    match s.unwrap_or("all") {
        "" | "all" => Ok(StatusFilter::All),
        "expiring" => Ok(StatusFilter::ExpiringSoon),
        other => KeyStatus::parse(other).map(StatusFilter::from).ok_or_else(|| {
            AppError::Validation(FieldErrors::single(
                "status",
                "Use all, active, expiring (or expiring_soon), expired or revoked.",
            ))
        }),
    }
}

/// Cursors are `created_at.id` of the last row of the previous page.
pub fn parse_cursor(c: Option<&str>) -> Result<Option<Cursor>, AppError> {
    let Some(c) = c.filter(|c| !c.is_empty()) else { return Ok(None) };
    let bad = || AppError::Validation(FieldErrors::single("cursor", "This cursor is not valid."));
    Cursor::parse(c).map(Some).ok_or_else(bad)
}

/// The page size the caller asked for: 1 to 100, 50 if not said.
fn limit_of(query: &ListParams) -> Result<i64, AppError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::Validation(FieldErrors::single("limit", "Use a limit between 1 and 100.")));
    }
    Ok(limit)
}

pub async fn list(
    state: State,
    principal: ApiPrincipal,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, AppError> {
    principal.require("api_keys:read")?;
    let team_id = TeamId::from(principal.team_id()?);
    let limit = limit_of(&query)?;
    let filter = parse_filter(query.status.as_deref())?;
    let after = parse_cursor(query.cursor.as_deref())?;
    let service = state.key_service();
    let listing = service.list(&team_id, ListQuery { filter, after, limit, search: None }).await?;
    let at = service.now();
    let prefix = &state.config.api_key_prefix;
    let data: Vec<_> =
        listing.keys.iter().map(|k| key_json_judged(k, prefix, at, listing.privileges.get(&k.id))).collect();
    let next = listing.next.map(|c| c.to_string());
    Ok(HttpResponse::Ok().json(json!({"status": "success", "data": data, "next_cursor": next})))
}

#[derive(Deserialize)]
pub struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
    expires_in_days: Option<i64>,
    allowed_ips: Option<Vec<String>>,
}

fn key_request(body: CreateBody) -> Result<KeyRequest, AppError> {
    let expiry = match (body.expires_at.as_deref(), body.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(AppError::Validation(FieldErrors::single(
                "expires_at",
                "Give expires_at or expires_in_days, not both.",
            )));
        }
        (Some(s), None) => Expiry::At(format::parse_rfc3339(s).ok_or_else(|| {
            AppError::Validation(FieldErrors::single("expires_at", "Use an RFC 3339 time, e.g. 2027-01-31T00:00:00Z."))
        })?),
        (None, Some(d)) => Expiry::InDays(d),
        (None, None) => Expiry::Never,
    };
    Ok(KeyRequest {
        name: body.name.unwrap_or_default(),
        description: body.description.unwrap_or_default(),
        scopes: body.scopes.unwrap_or_default(),
        expiry,
        allowed_ips: body.allowed_ips.unwrap_or_default(),
    })
}

/// The answer that shows a new key's secret, once.
fn revealed(status: StatusCode, state: &AppState, key: &ApiKey, secret: &PlainSecret) -> HttpResponse {
    let mut data = key_json(key, &state.config.api_key_prefix, state.key_service().now());
    data["key"] = json!(secret.expose());
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({"status": "success", "data": data}))
}

pub async fn create(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let principal = principal.revalidated(&req, &state).await?;
    let caller = writer(&principal)?;
    let request = key_request(body.into_inner())?;
    let created = state.key_service().create(&caller, Ok(request)).await?;
    Ok(revealed(StatusCode::CREATED, &state, &created.key, &created.secret))
}

pub async fn get(state: State, principal: ApiPrincipal, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    principal.require("api_keys:read")?;
    let (team_id, id) = (TeamId::from(principal.team_id()?), key_id(path.into_inner())?);
    let service = state.key_service();
    let (key, privilege) = service.get_judged(&team_id, &id).await?;
    Ok(ok(key_json_judged(&key, &state.config.api_key_prefix, service.now(), Some(&privilege))))
}

/// What a roll asks for: the grace, and whether the new key carries only
/// the scopes the old one used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RollBody {
    grace: i64,
    only_used_scopes: bool,
}

/// A roll's body: no body (or no field) is a grace of 0 and the same
/// scopes; anything but a JSON integer grace or a JSON boolean
/// `only_used_scopes` is refused, never read as 0 or false (a grace of 0
/// would end the old key at once; false would keep scopes asked to go), and
/// so is any other field (a misspelt `only_used_scopes`, or `scopes`, must
/// not roll a key with every scope).
fn roll_body(body: &[u8]) -> Result<RollBody, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RollBody { grace: 0, only_used_scopes: false });
    }
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AppError::BadRequest(format!("Malformed JSON: {e}")))?;
    let serde_json::Value::Object(fields) = body else {
        return Err(AppError::BadRequest("Send a JSON object, e.g. {\"grace_seconds\": 3600}.".into()));
    };
    let mut errors = FieldErrors::default();
    for unknown in fields.keys().filter(|k| !["grace_seconds", "only_used_scopes"].contains(&k.as_str())) {
        errors.add(edit::field_name(unknown), "Unknown field: a roll takes only grace_seconds and only_used_scopes.");
    }
    let grace = match fields.get("grace_seconds") {
        None => Some(0),
        Some(v) => v.as_i64(),
    };
    if grace.is_none() {
        errors.add("grace_seconds", "Give the grace as a whole number of seconds between 0 and 604800.");
    }
    let only_used_scopes = match fields.get("only_used_scopes") {
        None => Some(false),
        Some(v) => v.as_bool(),
    };
    if only_used_scopes.is_none() {
        errors.add("only_used_scopes", "Give true or false.");
    }
    match (grace, only_used_scopes) {
        (Some(grace), Some(only_used_scopes)) if errors.is_empty() => Ok(RollBody { grace, only_used_scopes }),
        _ => Err(AppError::Validation(errors)),
    }
}

impl From<Acting> for KeyCaller {
    fn from(a: Acting) -> Self {
        Self {
            actor: a.actor,
            team_id: TeamId::from(a.team_id),
            role: a.role,
            ceiling: a.ceiling,
            ip_ceiling: a.ip_ceiling,
            not_after: a.not_after,
        }
    }
}

/// A caller that may change the team's keys (`api_keys:write`), as the policy sees it.
fn writer(principal: &ApiPrincipal) -> Result<KeyCaller, AppError> {
    principal.require("api_keys:write")?;
    principal.acting().map(KeyCaller::from)
}

pub async fn roll(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let principal = principal.revalidated(&req, &state).await?;
    let caller = writer(&principal)?;
    let id = key_id(path.into_inner())?;
    let body = roll_body(&body)?;
    let service = state.key_service();
    let rolled = match body.only_used_scopes {
        true => service.roll_with_used_scopes(&caller, &id, body.grace).await?,
        false => service.roll(&caller, &id, body.grace).await?,
    };
    Ok(revealed(StatusCode::OK, &state, &rolled.key, &rolled.secret))
}

pub async fn revoke(state: State, principal: ApiPrincipal, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let caller = writer(&principal)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let key = service.revoke(&caller, &id).await?;
    Ok(ok(key_json(&key, &state.config.api_key_prefix, service.now())))
}

/// JSON bodies: 64 KiB at most; malformed ones get the 400 envelope.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(64 * 1024).error_handler(|err, _| {
        use actix_web::error::JsonPayloadError as E;
        match err {
            E::Overflow { .. } | E::OverflowKnownLength { .. } => AppError::PayloadTooLarge.into(),
            E::ContentType => {
                AppError::BadRequest("Send a JSON body with Content-Type: application/json.".into()).into()
            }
            other => AppError::BadRequest(format!("Malformed JSON: {other}")).into(),
        }
    })
}
