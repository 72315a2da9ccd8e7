//! The create form: what the browser sent, and the service request it stands for.
//!
//! Rules: presets expand to the scopes the role may grant; a field that cannot
//! be read becomes a field error the service reports after its authorization.

use crate::service::FieldErrors;
use crate::service::accounts::Role;
use crate::service::keys::{Draft, Expiry, KeyRequest, scopes};
use crate::web::format;

pub struct ScopeOption {
    pub value: String,
    pub action: String,
    pub checked: bool,
}

pub struct ScopeGroup {
    pub resource: String,
    pub options: Vec<ScopeOption>,
}

#[derive(Default)]
pub struct CreateForm {
    pub name: String,
    pub description: String,
    pub preset: String,
    pub scopes: Vec<String>,
    pub expires_in_days: String,
    pub expires_at: String,
    pub allowed_ips: String,
}

pub fn groups(catalog: &[String], role: Role, checked: &[String]) -> Vec<ScopeGroup> {
    let mut out: Vec<ScopeGroup> = Vec::new();
    for scope in scopes::grantable(catalog, role) {
        let (resource, action) = scope.split_once(':').unwrap_or((scope, "all"));
        let option = ScopeOption {
            value: scope.to_owned(),
            action: action.to_owned(),
            checked: checked.iter().any(|c| c == scope),
        };
        match out.iter_mut().find(|g| g.resource == resource) {
            Some(g) => g.options.push(option),
            None => out.push(ScopeGroup { resource: resource.to_owned(), options: vec![option] }),
        }
    }
    out
}

pub fn parse_form(pairs: Vec<(String, String)>) -> CreateForm {
    let mut form = CreateForm::default();
    for (k, v) in pairs {
        match k.as_str() {
            "name" => form.name = v,
            "description" => form.description = v,
            "preset" => form.preset = v,
            "scopes" => form.scopes.push(v),
            "expires_in_days" => form.expires_in_days = v,
            "expires_at" => form.expires_at = v,
            "allowed_ips" => form.allowed_ips = v,
            _ => {}
        }
    }
    form
}

/// The form's expiry: a date (or time) if given, else a number of days.
fn expiry(form: &CreateForm) -> Result<Expiry, FieldErrors> {
    if !form.expires_at.trim().is_empty() {
        let at = format::parse_date_end_of_day(&form.expires_at).or_else(|| format::parse_rfc3339(&form.expires_at));
        return Ok(Expiry::At(at.ok_or_else(|| FieldErrors::single("expires_at", "Use a date like 2027-01-31."))?));
    }
    Ok(match form.expires_in_days.trim() {
        "" | "never" => Expiry::Never,
        d => Expiry::InDays(d.parse().map_err(|_| FieldErrors::single("expires_at", "Choose an expiry."))?),
    })
}

/// The form as a service request; presets expand to the role's scopes.
pub fn key_request(form: &CreateForm, catalog: &[String], role: Role) -> Draft {
    let grantable = scopes::grantable(catalog, role);
    let scopes: Vec<String> = match form.preset.as_str() {
        "read_only" => grantable.iter().filter(|s| s.ends_with(":read")).map(|s| (*s).to_owned()).collect(),
        "full" => grantable.iter().map(|s| (*s).to_owned()).collect(),
        _ => form.scopes.clone(),
    };
    Ok(KeyRequest {
        name: form.name.clone(),
        description: form.description.clone(),
        scopes,
        expiry: expiry(form)?,
        allowed_ips: form
            .allowed_ips
            .split([',', '\n'])
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}
