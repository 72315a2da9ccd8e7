//! The keys JSON API under `/api/v1` (DESIGN.md's table), and `auth/test`.
//!
//! Rules: each handler checks the credential's scope, parses, calls one
//! `KeyService` method and answers with the JSON envelope; a secret appears
//! only in the answer to the request that made it (`Cache-Control: no-store`).
//! Each handler's `#[utoipa::path]` states what it answers: the OpenAPI
//! document is made from them (`web::openapi`), and the statuses that every
//! credential-authenticated route shares are added there.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::api_auth::{Acting, ApiPrincipal};
use super::api_keys::key_id;
use super::envelope::{Page, Success, SuccessStatus};
use super::format;
use super::{AppState, State};
use crate::domain::{KeyStatus, PlainSecret, TeamId};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::{Cursor, Expiry, KeyCaller, KeyRequest, ListQuery};
use crate::store::models::{ApiKey, StatusFilter};

pub mod auth_test;
pub mod edit;
pub mod roll;
pub mod view;

pub use auth_test::auth_test;
pub use edit::update;
pub use roll::roll;
pub use view::{KeyView, NewKey};

/// A list's query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Keys per page.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only keys in this state (`expiring` is short for `expiring_soon`).
    #[param(inline, value_type = Option<StatusParam>)]
    status: Option<String>,
}

/// The values of a list's `status` filter.
#[derive(ToSchema)]
#[schema(as = KeyStatusFilter, rename_all = "snake_case")]
pub enum StatusParam {
    All,
    Active,
    Expiring,
    ExpiringSoon,
    Expired,
    Revoked,
    Disabled,
}

/// The `status` filter of a list: a key status, `expiring` for short, or all.
/// An empty value is "all" (the page's filter form sends one).
pub fn parse_filter(s: Option<&str>) -> Result<StatusFilter, AppError> {
    match s.unwrap_or("all") {
        "" | "all" => Ok(StatusFilter::All),
        "expiring" => Ok(StatusFilter::ExpiringSoon),
        other => KeyStatus::parse(other).map(StatusFilter::from).ok_or_else(bad_status),
    }
}

/// The API's `status` filter: as [`parse_filter`], but a value that is
/// present must be one of the documented ones (`status=` is refused).
fn api_filter(s: Option<&str>) -> Result<StatusFilter, AppError> {
    if s == Some("") {
        return Err(bad_status());
    }
    parse_filter(s)
}

fn bad_status() -> AppError {
    AppError::Validation(FieldErrors::single(
        "status",
        "Use all, active, expiring (or expiring_soon), expired, revoked or disabled.",
    ))
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

/// The team's keys, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "API keys",
    operation_id = "list_api_keys",
    description = "Scope `api_keys:read`. Never shows a secret.",
    params(ListParams),
    security(("api_key" = []), ("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "A page of keys.", body = Page<KeyView>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 422, response = super::openapi::ValidationFailed),
    ),
)]
pub async fn list(
    state: State,
    principal: ApiPrincipal,
    query: web::Query<ListParams>,
) -> Result<HttpResponse, AppError> {
    principal.require("api_keys:read")?;
    let team_id = TeamId::from(principal.team_id()?);
    let limit = limit_of(&query)?;
    let filter = api_filter(query.status.as_deref())?;
    let after = parse_cursor(query.cursor.as_deref())?;
    let service = state.key_service();
    let listing = service.list(&team_id, ListQuery { filter, after, limit, search: None }).await?;
    let at = service.now();
    let prefix = &state.config.api_key_prefix;
    let data: Vec<_> =
        listing.keys.iter().map(|k| KeyView::judged(k, prefix, at, listing.privileges.get(&k.id))).collect();
    Ok(Page::ok(data, listing.next.map(|c| c.to_string())))
}

/// A new key's settings; an optional field sent as `null` is as if left out.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateApiKey)]
pub struct CreateBody {
    #[schema(min_length = 1, max_length = 100, required = true, value_type = String)]
    name: Option<String>,
    #[schema(max_length = 500)]
    description: Option<String>,
    /// Scopes of the catalog, within the caller's own.
    #[schema(min_items = 1, required = true, value_type = Vec<String>)]
    scopes: Option<Vec<String>>,
    /// When the key stops working (within the team's maximum lifetime); or give `expires_in_days`.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Days until the key stops working; or give `expires_at`.
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<i64>,
    /// CIDR ranges (or single addresses) the key will work from; none means any.
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
    let data = NewKey::of(key, &state.config.api_key_prefix, state.key_service().now(), secret);
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(Success { status: SuccessStatus::Success, data })
}

/// Creates a key; its secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "API keys",
    operation_id = "create_api_key",
    description = "Scope `api_keys:write`. The key's scopes never exceed the caller's own, nor what its holder's \
                   role may grant; its expiry never exceeds the team's maximum lifetime.",
    request_body = CreateBody,
    security(("api_key" = []), ("bearer" = []), ("session" = [], "csrf" = [])),
    responses(
        (status = 201, description = "Created; `data.key` is the secret, shown this once.", body = Success<NewKey>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 422, response = super::openapi::ValidationFailed),
    ),
)]
pub async fn create(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let caller = body_writer(&state, &req, principal).await?;
    let request = key_request(body.into_inner())?;
    let created = state.key_service().create(&caller, Ok(request)).await?;
    Ok(revealed(StatusCode::CREATED, &state, &created.key, &created.secret))
}

/// One key.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys/{id}",
    tag = "API keys",
    operation_id = "get_api_key",
    description = "Scope `api_keys:read`. A key of another team is not found.",
    params(("id" = String, Path, description = "The key's id.")),
    security(("api_key" = []), ("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The key.", body = Success<KeyView>),
        (status = 404, response = super::openapi::NotFound),
    ),
)]
pub async fn get(state: State, principal: ApiPrincipal, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    principal.require("api_keys:read")?;
    let (team_id, id) = (TeamId::from(principal.team_id()?), key_id(path.into_inner())?);
    let service = state.key_service();
    let (key, privilege) = service.get_judged(&team_id, &id).await?;
    Ok(Success::ok(KeyView::judged(&key, &state.config.api_key_prefix, service.now(), Some(&privilege))))
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

/// The writer of a request that sent a body: its credential read again now
/// that the body has arrived ([`ApiPrincipal::revalidated`]), then its scope.
async fn body_writer(state: &State, req: &HttpRequest, principal: ApiPrincipal) -> Result<KeyCaller, AppError> {
    writer(&principal.revalidated(req, state).await?)
}

/// Revokes a key, at once and for good.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "API keys",
    operation_id = "revoke_api_key",
    description = "Scope `api_keys:write`; a developer may revoke only the keys they created.",
    params(("id" = String, Path, description = "The key's id.")),
    security(("api_key" = []), ("bearer" = []), ("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "Revoked; the key as it is now.", body = Success<KeyView>),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
    ),
)]
pub async fn revoke(state: State, principal: ApiPrincipal, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let caller = writer(&principal)?;
    let id = key_id(path.into_inner())?;
    let service = state.key_service();
    let key = service.revoke(&caller, &id).await?;
    Ok(Success::ok(KeyView::of(&key, &state.config.api_key_prefix, service.now())))
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
