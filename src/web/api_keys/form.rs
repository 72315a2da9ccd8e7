//! The create form: what the browser sent, and the service request it stands for.
//!
//! Rules: the server decides what a preset plus the ticked boxes mean — no
//! preset (or Custom): the ticked boxes; a preset with nothing ticked: the
//! preset's scopes; a preset whose ticked boxes differ from its scopes: refused
//! with a field error, never silently changed. Full access never includes
//! `admin`, which is only granted by ticking it. A field that cannot be read
//! becomes a field error the service reports after its authorization.

use crate::service::FieldErrors;
use crate::service::accounts::Role;
use crate::service::keys::{Draft, Expiry, KeyRequest, scopes};
use crate::web::format;

pub struct ScopeOption {
    pub value: String,
    /// Plain words: "Read your templates".
    pub description: String,
    pub checked: bool,
    /// Part of the Read-only / Full access preset (for the page's script).
    pub in_read_only: bool,
    pub in_full: bool,
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
    /// `preview`: fill the boxes from the preset and say what the key would get; create nothing.
    pub intent: String,
    /// A random token naming this filled-in form: a second submission of the
    /// same form (a reload of the reveal, which browsers send again) lands on
    /// the key it created, whose secret was shown once, instead of a new key.
    pub submission: String,
}

impl CreateForm {
    pub fn is_preview(&self) -> bool {
        self.intent == "preview"
    }
}

/// The scope picker's boxes, grouped by resource; `admin` is apart (see [`admin_option`]).
pub fn groups(catalog: &[String], role: Role, checked: &[String]) -> Vec<ScopeGroup> {
    let grantable = scopes::grantable(catalog, role);
    let (read, full) = (scopes::read_only(&grantable), scopes::full_access(&grantable));
    let mut out: Vec<ScopeGroup> = Vec::new();
    for scope in grantable.iter().copied().filter(|s| *s != scopes::ADMIN) {
        let resource = scope.split_once(':').map_or(scope, |(r, _)| r);
        let option = ScopeOption {
            value: scope.to_owned(),
            description: scopes::describe(scope),
            checked: checked.iter().any(|c| c == scope),
            in_read_only: read.contains(&scope),
            in_full: full.contains(&scope),
        };
        let label = resource_label(resource);
        match out.iter_mut().find(|g| g.resource == label) {
            Some(g) => g.options.push(option),
            None => out.push(ScopeGroup { resource: label, options: vec![option] }),
        }
    }
    out
}

/// A resource as a heading: "Templates", "API keys".
fn resource_label(resource: &str) -> String {
    let words = resource.replace('_', " ").replace("api ", "API ");
    let mut chars = words.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// The `admin` box, when the role may grant it.
pub fn admin_option(catalog: &[String], role: Role, checked: &[String]) -> Option<ScopeOption> {
    scopes::grantable(catalog, role).contains(&scopes::ADMIN).then(|| ScopeOption {
        value: scopes::ADMIN.to_owned(),
        description: scopes::describe(scopes::ADMIN),
        checked: checked.iter().any(|c| c == scopes::ADMIN),
        in_read_only: false,
        in_full: false,
    })
}

/// "This key will be able to: …" for the ticked scopes, in catalog order.
pub fn summary(catalog: &[String], chosen: &[String]) -> Vec<String> {
    catalog.iter().filter(|c| chosen.contains(c)).map(|s| scopes::describe(s)).collect()
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
            "intent" => form.intent = v,
            "submission" => form.submission = v,
            _ => {}
        }
    }
    form
}

fn preset_name(preset: &str) -> &'static str {
    if preset == "read_only" { "Read-only" } else { "Full access" }
}

/// The scopes the form asks for: the ticked boxes, or the preset's set; a
/// preset contradicted by the boxes is refused with the reason.
pub fn resolve(form: &CreateForm, catalog: &[String], role: Role) -> Result<Vec<String>, String> {
    let grantable = scopes::grantable(catalog, role);
    let set = match form.preset.as_str() {
        "read_only" => scopes::read_only(&grantable),
        "full" => scopes::full_access(&grantable),
        "" | "custom" => return Ok(form.scopes.clone()),
        _ => return Err("Choose Read-only, Full access or Custom.".into()),
    };
    if form.scopes.is_empty() {
        return Ok(set.iter().map(|s| (*s).to_owned()).collect());
    }
    let name = preset_name(&form.preset);
    if let Some(extra) = form.scopes.iter().find(|s| !set.contains(&s.as_str())) {
        return Err(format!("{name} cannot include {extra} — untick it or choose Custom."));
    }
    if let Some(missing) = set.iter().find(|s| !form.scopes.iter().any(|c| c == *s)) {
        return Err(format!("{name} includes {missing}, which is not ticked — tick it or choose Custom."));
    }
    Ok(form.scopes.clone())
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

/// The form as a service request, with the scopes [`resolve`] decided.
pub fn key_request(form: &CreateForm, catalog: &[String], role: Role) -> Draft {
    let scopes = resolve(form, catalog, role).map_err(|m| FieldErrors::single("scopes", m))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<String> {
        ["templates:read", "templates:write", "contacts:read", "admin"].iter().map(|s| (*s).to_owned()).collect()
    }

    fn form(preset: &str, ticked: &[&str]) -> CreateForm {
        CreateForm {
            preset: preset.into(),
            scopes: ticked.iter().map(|s| (*s).to_owned()).collect(),
            ..CreateForm::default()
        }
    }

    #[test]
    fn the_server_decides_what_a_preset_and_boxes_mean() {
        let c = catalog();
        assert_eq!(resolve(&form("", &["templates:write"]), &c, Role::Owner).unwrap(), ["templates:write"]);
        assert_eq!(resolve(&form("custom", &[]), &c, Role::Owner).unwrap(), Vec::<String>::new());
        assert_eq!(resolve(&form("read_only", &[]), &c, Role::Owner).unwrap(), ["templates:read", "contacts:read"]);
        assert_eq!(
            resolve(&form("full", &[]), &c, Role::Owner).unwrap(),
            ["templates:read", "templates:write", "contacts:read"],
            "full access never includes admin"
        );
        let refused = resolve(&form("read_only", &["templates:read", "templates:write"]), &c, Role::Owner);
        assert_eq!(refused.unwrap_err(), "Read-only cannot include templates:write — untick it or choose Custom.");
        assert!(resolve(&form("full", &["templates:read"]), &c, Role::Owner).unwrap_err().contains("not ticked"));
        assert!(
            resolve(&form("full", &["templates:read", "templates:write", "contacts:read", "admin"]), &c, Role::Owner)
                .is_err()
        );
        assert_eq!(
            resolve(&form("read_only", &["contacts:read", "templates:read"]), &c, Role::Owner).unwrap().len(),
            2
        );
    }
}
