//! `POST /api/v1/api-keys/{id}/roll`: a new key with the same settings; the
//! old one keeps working for the grace asked for.
//!
//! Rules: the body is read strictly (see [`roll_body`]); the new key never
//! exceeds the caller's ceiling (refused, never silently narrowed); its
//! secret is in this answer only.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{body_writer, edit, revealed};
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::web::State;
use crate::web::api_auth::ApiPrincipal;
use crate::web::api_keys::key_id;
use crate::web::envelope::Success;
use crate::web::openapi;

/// A roll's body, as the document shows it (read by [`roll_body`]); it may
/// be left out (a grace of 0, the same scopes).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RollApiKey)]
pub struct RollRequest {
    /// How long the old key keeps working: 0 (it stops at once) to 604800 (7 days).
    #[schema(minimum = 0, maximum = 604_800, default = 0, nullable = false)]
    pub grace_seconds: Option<i64>,
    /// Give the new key only the scopes the old one used lately.
    #[schema(default = false, nullable = false)]
    pub only_used_scopes: Option<bool>,
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

/// Rolls a key: a new secret with the same settings.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys/{id}/roll",
    tag = "API keys",
    operation_id = "roll_api_key",
    description = "Scope `api_keys:write`. The new key keeps the old one's name, scopes, addresses and expiry \
                   (within the caller's ceiling and the team's maximum lifetime, or refused); the old key keeps \
                   working for `grace_seconds`.",
    params(("id" = String, Path, description = "The key's id.")),
    request_body(content = Option<RollRequest>, description = "Optional; no body means a grace of 0."),
    security(("api_key" = []), ("bearer" = []), ("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "Rolled; `data` is the new key with its secret, shown this once.",
         body = Success<super::NewKey>),
        openapi::ChangeRefusals,
    ),
)]
pub async fn roll(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let caller = body_writer(&state, &req, principal).await?;
    let id = key_id(path.into_inner())?;
    let body = roll_body(&body)?;
    let service = state.key_service();
    let rolled = match body.only_used_scopes {
        true => service.roll_with_used_scopes(&caller, &id, body.grace).await?,
        false => service.roll(&caller, &id, body.grace).await?,
    };
    Ok(revealed(StatusCode::OK, &state, &rolled.key, &rolled.secret))
}
