//! Scopes: the catalog, what each role may grant, and what a scope implies.

use crate::service::accounts::Role;

/// The scope that implies every team scope; only admins and owners grant it.
pub const ADMIN: &str = "admin";

/// Scopes of the operator's service keys; never granted to team keys.
pub const PLATFORM: &[&str] = &["introspect", "leaks:report"];

/// The scopes of a stored space-separated list (a key's, an app's, a grant's).
pub fn scopes_of(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

/// Whether a role may put `scope` on a key.
pub fn role_allows(role: Role, scope: &str) -> bool {
    match role {
        Role::Owner | Role::Admin => true,
        Role::Developer => scope != ADMIN,
        Role::Viewer => scope.ends_with(":read"),
    }
}

/// The catalog scopes a role may grant, in catalog order.
pub fn grantable(catalog: &[String], role: Role) -> Vec<&str> {
    catalog.iter().map(String::as_str).filter(|s| role_allows(role, s)).collect()
}

/// Plain words for a scope ("Read your templates"), for people choosing or approving it.
pub fn describe(scope: &str) -> String {
    if scope == ADMIN {
        return "Full access to everything in your team".into();
    }
    let (resource, action) = scope.split_once(':').unwrap_or((scope, ""));
    let resource = resource.replace('_', " ").replace("api ", "API ");
    match action {
        "read" => format!("Read your {resource}"),
        "write" => format!("Create and change your {resource}"),
        "send" => format!("Send {resource}"),
        other => format!("{other} {resource}"),
    }
}

/// The "Read-only" preset: every grantable scope that only reads.
pub fn read_only<'a>(grantable: &[&'a str]) -> Vec<&'a str> {
    grantable.iter().copied().filter(|s| s.ends_with(":read")).collect()
}

/// The "Full access" preset: every grantable scope except `admin`, which is
/// only ever granted by ticking it.
pub fn full_access<'a>(grantable: &[&'a str]) -> Vec<&'a str> {
    grantable.iter().copied().filter(|s| *s != ADMIN).collect()
}

/// Whether `granted` satisfies `needed` (`admin` implies every team scope).
pub fn satisfies(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|g| g == needed || (g == ADMIN && !PLATFORM.contains(&needed)))
}

/// Validates requested scopes: known, allowed for the role, within the ceiling.
pub fn check(
    requested: &[String],
    catalog: &[String],
    role: Role,
    ceiling: Option<&[String]>,
) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in requested.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !catalog.iter().any(|c| c == s) {
            return Err(format!("Unknown scope: {s}."));
        }
        if !role_allows(role, s) {
            return Err(format!("Your role ({}) cannot grant {s}.", role.as_str()));
        }
        if ceiling.is_some_and(|c| !satisfies(c, s)) {
            return Err(format!("The credential you used does not hold {s}, so it cannot grant it."));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err("Choose at least one scope.".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn roles_limit_scopes() {
        let catalog = v(&["templates:read", "templates:write", "admin"]);
        assert!(check(&v(&["admin"]), &catalog, Role::Developer, None).is_err());
        assert!(check(&v(&["admin"]), &catalog, Role::Admin, None).is_ok());
        assert!(check(&v(&["nope:read"]), &catalog, Role::Owner, None).unwrap_err().contains("Unknown scope"));
        assert!(check(&v(&[]), &catalog, Role::Owner, None).is_err());
        let ceiling = v(&["templates:read"]);
        assert!(check(&v(&["templates:write"]), &catalog, Role::Owner, Some(&ceiling)).is_err());
    }

    #[test]
    fn presets_never_include_admin_and_scopes_read_as_words() {
        let catalog = v(&["templates:read", "templates:write", "admin"]);
        let grantable = grantable(&catalog, Role::Owner);
        assert_eq!(full_access(&grantable), ["templates:read", "templates:write"]);
        assert_eq!(read_only(&grantable), ["templates:read"]);
        assert_eq!(describe("api_keys:write"), "Create and change your API keys");
        assert_eq!(describe("admin"), "Full access to everything in your team");
    }

    #[test]
    fn admin_implies_team_scopes_but_not_platform_ones() {
        assert!(satisfies(&v(&["admin"]), "templates:write"));
        assert!(!satisfies(&v(&["admin"]), "introspect"));
        assert!(!satisfies(&v(&["templates:read"]), "templates:write"));
    }
}
