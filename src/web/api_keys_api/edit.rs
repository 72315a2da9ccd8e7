//! `PATCH /api/v1/api-keys/{id}`: a key changed in place.
//!
//! Rules: the body is an object of editable fields, each of its JSON type;
//! an unknown field or a wrong type is a 422 naming it, never ignored (an
//! attacker's field name is not echoed); the credential is read again once
//! the body has arrived; the rules of the change are the service's.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::{KeyView, body_writer, key_id};
use crate::domain::KeyId;
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::KeyEdit;
use crate::web::api_auth::ApiPrincipal;
use crate::web::envelope::Success;
use crate::web::{State, format, openapi};

/// A `PATCH` body as the document shows it; [`key_edit`] reads it field by
/// field, to name each field that is wrong.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateApiKey)]
pub struct KeyEditBody {
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: Option<String>,
    #[schema(max_length = 500, nullable = false)]
    pub description: Option<String>,
    /// CIDR ranges (or single addresses); an empty list means any address.
    #[schema(nullable = false)]
    pub allowed_ips: Option<Vec<String>>,
    /// RFC 3339, within the team's maximum lifetime; `null` for never (where the team allows it).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Fewer scopes than the key has (never more).
    #[schema(nullable = false)]
    pub scopes: Option<Vec<String>>,
    /// Pause (`true`) or resume (`false`) the key.
    #[schema(nullable = false)]
    pub disabled: Option<bool>,
}

/// `PATCH /api/v1/api-keys/{id}`: any of `name`, `description`,
/// `allowed_ips`, `expires_at` (RFC 3339, or `null` for never), `scopes`
/// (fewer only) and `disabled`; `{}` changes nothing. Answers the key as it is now.
#[utoipa::path(
    patch,
    path = "/api/v1/api-keys/{id}",
    tag = "API keys",
    operation_id = "update_api_key",
    summary = "Changes a key in place.",
    description = "Scope `api_keys:write`. Changes the key in place; `{}` changes nothing. An unknown field or a \
                   wrong type is refused, never ignored.",
    params(("id" = String, Path, description = "The key's id.")),
    request_body = KeyEditBody,
    security(("api_key" = []), ("bearer" = []), ("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "The key as it is now.", body = Success<KeyView>),
        openapi::ChangeRefusals,
    ),
)]
pub async fn update(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let caller = body_writer(&state, &req, principal).await?;
    let id = key_id(path.into_inner())?;
    let edit = key_edit(body.into_inner())?;
    let service = state.key_service();
    let key = service.edit(&caller, &id, edit).await?;
    // Read again with its least-privilege judgement, as `GET` answers it.
    let (key, privilege) = service.get_judged(&caller.team_id, &KeyId::from(key.id.as_str())).await?;
    Ok(Success::ok(KeyView::judged(&key, &state.config.api_key_prefix, service.now(), Some(&privilege))))
}

/// The fields a `PATCH` may send.
const EDITABLE: &str = "name, description, allowed_ips, expires_at, scopes or disabled";

/// A `PATCH` body as an edit: an object of editable fields, each of its type;
/// an unknown field or a wrong type is refused, never ignored.
fn key_edit(body: Value) -> Result<KeyEdit, AppError> {
    let Value::Object(fields) = body else {
        return Err(AppError::Validation(FieldErrors::single("body", format!("Send a JSON object of {EDITABLE}."))));
    };
    let mut edit = KeyEdit::default();
    let mut errors = FieldErrors::default();
    for (field, value) in fields {
        let read = match field.as_str() {
            "name" => text(value).map(|v| edit.name = Some(v)),
            "description" => text(value).map(|v| edit.description = Some(v)),
            "allowed_ips" => texts(value).map(|v| edit.allowed_ips = Some(v)),
            "scopes" => texts(value).map(|v| edit.scopes = Some(v)),
            "expires_at" => expiry(&value).map(|v| edit.expires_at = Some(v)),
            "disabled" => value.as_bool().map(|v| edit.disabled = Some(v)).ok_or("Give true or false."),
            _ => {
                errors.add(field_name(&field), format!("This field cannot be changed: send only {EDITABLE}."));
                continue;
            }
        };
        if let Err(m) = read {
            errors.add(&field, m);
        }
    }
    errors.into_result().map_err(AppError::from)?;
    Ok(edit)
}

/// An unknown field's name as a key of `fields`: itself when it is a short
/// plain word, else `body` (an attacker's name is not echoed).
pub(super) fn field_name(field: &str) -> &str {
    let plain = !field.is_empty() && field.len() <= 64 && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain { field } else { "body" }
}

fn text(v: Value) -> Result<String, &'static str> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err("Give a string."),
    }
}

fn texts(v: Value) -> Result<Vec<String>, &'static str> {
    let Value::Array(items) = v else { return Err("Give an array of strings.") };
    items.into_iter().map(|i| text(i).map_err(|_| "Give an array of strings.")).collect()
}

/// `null` (never) or an RFC 3339 time.
fn expiry(v: &Value) -> Result<Option<i64>, &'static str> {
    const HOW: &str = "Give an RFC 3339 time, e.g. 2027-01-31T00:00:00Z, or null for never.";
    match v {
        Value::Null => Ok(None),
        Value::String(s) => format::parse_rfc3339(s).map(Some).ok_or(HOW),
        _ => Err(HOW),
    }
}
