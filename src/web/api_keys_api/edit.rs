//! `PATCH /api/v1/api-keys/{id}`: a key changed in place.
//!
//! Rules: the body is an object of editable fields, each of its JSON type;
//! an unknown field or a wrong type is a 422 naming it, never ignored (an
//! attacker's field name is not echoed); the credential is read again once
//! the body has arrived; the rules of the change are the service's.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::{key_id, ok, writer};
use crate::domain::KeyId;
use crate::error::AppError;
use crate::service::FieldErrors;
use crate::service::keys::KeyEdit;
use crate::web::api_auth::{ApiPrincipal, key_json_judged};
use crate::web::{State, format};

/// `PATCH /api/v1/api-keys/{id}`: any of `name`, `description`,
/// `allowed_ips`, `expires_at` (RFC 3339, or `null` for never), `scopes`
/// (fewer only) and `disabled`; `{}` changes nothing. Answers the key as it is now.
pub async fn update(
    state: State,
    req: HttpRequest,
    principal: ApiPrincipal,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let principal = principal.revalidated(&req, &state).await?;
    let caller = writer(&principal)?;
    let id = key_id(path.into_inner())?;
    let edit = key_edit(body.into_inner())?;
    let service = state.key_service();
    let key = service.edit(&caller, &id, edit).await?;
    // Read again with its least-privilege judgement, as `GET` answers it.
    let (key, privilege) = service.get_judged(&caller.team_id, &KeyId::from(key.id.as_str())).await?;
    Ok(ok(key_json_judged(&key, &state.config.api_key_prefix, service.now(), Some(&privilege))))
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
