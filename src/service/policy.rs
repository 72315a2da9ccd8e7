//! The one authorization policy: "may this actor do this action to this
//! object", for keys, OAuth apps, members, invites and the audit log, and the
//! ceiling every credential is held to (DESIGN.md, "Who may do what").
//!
//! Rules: pages, the JSON API and every path that creates, copies or
//! re-issues a credential (create, roll, refresh, rotation, transfer) ask
//! here, never in a handler; a credential's effective scopes are those its
//! holder's *current* role allows (read where the credential is verified); an
//! issued credential never outlives the team's maximum key lifetime; admins
//! manage developers and viewers only, owners everyone.

use super::accounts::Role;
use super::keys::scopes;
use super::{Error, Result};

/// Whether `role` may read the team's audit trail (and its recent activity).
pub fn may_read_audit(role: Role) -> bool {
    role >= Role::Admin
}

/// Whether `role` may see and manage the team's webhook endpoints: owners
/// and admins (a webhook receives every event of the team).
pub fn may_manage_webhooks(role: Role) -> Result<()> {
    if role >= Role::Admin { Ok(()) } else { Err(Error::Forbidden("Only owners and admins can manage webhooks.")) }
}

/// Whether `role` may change the team's security settings (the two-factor
/// requirement): owners only.
pub fn set_team_security(role: Role) -> Result<()> {
    if role == Role::Owner {
        Ok(())
    } else {
        Err(Error::Forbidden("Only an owner can change the team's two-factor policy."))
    }
}

/// Whether a person may use the support console: the platform role
/// `support` only (everyone else is told it does not exist).
pub fn may_use_support_console(is_support: bool) -> bool {
    is_support
}

/// Whether a credential may call a platform endpoint (introspection, leak
/// reports): only an operator's service key holding the endpoint's scope.
pub fn may_call_platform(is_service_key: bool, granted: &[String], scope: &str) -> bool {
    is_service_key && scopes::satisfies(granted, scope)
}

/// Whether `role` may invite, change or remove members at all.
pub fn manages_members(role: Role) -> bool {
    role >= Role::Admin
}

/// Whether `actor` may give `target` to a member or an invitee: owners any
/// role; admins developer or viewer only.
pub fn may_grant_role(actor: Role, target: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => target <= Role::Developer,
        Role::Developer | Role::Viewer => false,
    }
}

/// Whether `actor` may change (or remove) a member whose role is now `current`.
pub fn may_manage_member(actor: Role, current: Role) -> bool {
    may_grant_role(actor, current)
}

pub fn invite(actor: Role, role: Role) -> Result<()> {
    if !manages_members(actor) {
        return Err(Error::Forbidden("Only owners and admins can invite members."));
    }
    if !may_grant_role(actor, role) {
        return Err(Error::Forbidden("Admins can invite developers and viewers only."));
    }
    Ok(())
}

pub fn change_member(actor: Role, current: Role, new_role: Option<Role>) -> Result<()> {
    if !manages_members(actor) {
        return Err(Error::Forbidden("Only owners and admins can manage members."));
    }
    if !may_manage_member(actor, current) || new_role.is_some_and(|r| !may_grant_role(actor, r)) {
        return Err(Error::Forbidden("Admins manage developers and viewers only; owners manage everyone."));
    }
    Ok(())
}

/// Who is acting on the team's credentials: their current role and, for a
/// credential-authenticated caller, the scopes it holds (a ceiling).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: Option<&'a str>,
    pub role: Role,
    pub ceiling: Option<&'a [String]>,
}

/// Creating a credential with `requested` scopes: known, allowed for the role,
/// within the caller's ceiling. Returns the scopes, deduplicated.
pub fn grant_scopes(caller: &Caller<'_>, catalog: &[String], requested: &[String]) -> Result<Vec<String>, String> {
    scopes::check(requested, catalog, caller.role, caller.ceiling)
}

/// Owners and admins manage every key of the team; developers the keys they
/// are answerable for; viewers none.
pub fn manage_key(caller: &Caller<'_>, key_holder: Option<&str>) -> Result<()> {
    let own = key_holder.is_some() && key_holder == caller.user_id;
    match caller.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Developer if own => Ok(()),
        Role::Developer => Err(Error::Forbidden("Developers can change only the keys they created.")),
        Role::Viewer => Err(Error::Forbidden("Viewers cannot change API keys.")),
    }
}

/// Whose expiring keys a member is told about (reminders and the banner):
/// owners and admins every key of the team, as they manage them all; anyone
/// else the keys they created (a viewer demoted from developer included, as
/// they still answer for them).
pub fn reminded_of_every_key(role: Role) -> bool {
    role >= Role::Admin
}

/// Who is told, besides its creator, that a key of the team was reported
/// leaked (and revoked): the owners.
pub fn told_of_leaked_keys(role: Role) -> bool {
    role == Role::Owner
}

/// Creating an API key: anyone but a viewer (scopes are checked apart).
pub fn create_key(role: Role) -> Result<()> {
    if role == Role::Viewer {
        return Err(Error::Forbidden("Viewers cannot create API keys."));
    }
    Ok(())
}

/// Copying a credential (a roll): the copy's scopes must be ones the caller
/// could grant now; refused, never silently narrowed.
pub fn copy_scopes(caller: &Caller<'_>, catalog: &[String], scopes_of_old: &[String]) -> Result<()> {
    for s in scopes_of_old {
        let known = catalog.iter().any(|c| c == s);
        let allowed = scopes::role_allows(caller.role, s) && caller.ceiling.is_none_or(|c| scopes::satisfies(c, s));
        if !known || !allowed {
            return Err(Error::Forbidden(
                "This key holds a scope you could not grant now; create a new key with the scopes you may grant.",
            ));
        }
    }
    Ok(())
}

/// Narrowing a key's scopes (an edit): every scope asked for must be in the
/// catalog and already held by the key (`admin` holds every team scope), and
/// at least one must remain. Anything wider is refused with the reason, never
/// silently dropped: a wider key is a new key. Returns the scopes, deduplicated.
pub fn narrow_scopes(held: &[String], catalog: &[String], requested: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in requested.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if s.chars().any(char::is_control) {
            return Err("Scopes cannot contain control characters.".into());
        }
        if !catalog.iter().any(|c| c == s) {
            return Err(format!("Unknown scope: {s}."));
        }
        if !scopes::satisfies(held, s) {
            return Err(format!(
                "This key does not hold {s}: an edit can only remove scopes. To add one, create a new key."
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.is_empty() {
        return Err("Keep at least one scope.".into());
    }
    Ok(out)
}

/// Loosening a key — a later expiry, wider addresses, enabling it again —
/// hands it out anew: allowed only while the caller could grant every scope
/// it will hold now (as for a copy). Narrowing needs no such ceiling.
pub fn may_loosen(caller: &Caller<'_>, catalog: &[String], scopes_after: &[String]) -> bool {
    copy_scopes(caller, catalog, scopes_after).is_ok()
}

/// Registering or changing an OAuth app: owners and admins any app of the
/// team; developers only apps they registered, and only while every scope
/// the app holds is one their role could grant.
pub fn manage_app(caller: &Caller<'_>, app_creator: Option<&str>, app_scopes: &[String]) -> Result<()> {
    let own = app_creator.is_some() && app_creator == caller.user_id;
    match caller.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Developer if own && app_scopes.iter().all(|s| scopes::role_allows(Role::Developer, s)) => Ok(()),
        Role::Developer if own => Err(Error::Forbidden("This app holds scopes your role cannot grant.")),
        Role::Developer => Err(Error::Forbidden("Developers can change only the apps they registered.")),
        Role::Viewer => Err(Error::Forbidden("Viewers cannot change apps.")),
    }
}

pub fn register_app(role: Role) -> Result<()> {
    if role == Role::Viewer {
        return Err(Error::Forbidden("Viewers cannot register apps."));
    }
    Ok(())
}

/// What a credential may do now: the scopes it was given that its holder's
/// current role still allows. `None` (the holder left the team) allows nothing.
pub fn effective_scopes(holder_role: Option<Role>, granted: &[String]) -> Vec<String> {
    let Some(role) = holder_role else { return Vec::new() };
    granted.iter().filter(|s| scopes::PLATFORM.contains(&s.as_str()) || scopes::role_allows(role, s)).cloned().collect()
}

/// The latest expiry a credential issued now may have under the team's
/// maximum key lifetime; `wanted` is kept when it is sooner.
pub fn cap_expiry(wanted: Option<i64>, max_days: Option<i64>, now: i64) -> Option<i64> {
    match max_days {
        Some(days) => {
            let limit = now + days * 86_400;
            Some(wanted.map_or(limit, |w| w.min(limit)))
        }
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn admins_manage_developers_and_viewers_only() {
        assert!(may_grant_role(Role::Owner, Role::Owner));
        assert!(may_grant_role(Role::Owner, Role::Admin));
        assert!(!may_grant_role(Role::Admin, Role::Admin));
        assert!(!may_grant_role(Role::Admin, Role::Owner));
        assert!(may_grant_role(Role::Admin, Role::Developer));
        assert!(may_grant_role(Role::Admin, Role::Viewer));
        assert!(change_member(Role::Admin, Role::Admin, Some(Role::Developer)).is_err());
        assert!(change_member(Role::Admin, Role::Developer, Some(Role::Admin)).is_err());
        assert!(change_member(Role::Admin, Role::Developer, Some(Role::Viewer)).is_ok());
        assert!(change_member(Role::Developer, Role::Viewer, None).is_err());
        assert!(invite(Role::Admin, Role::Admin).is_err());
    }

    #[test]
    fn a_copy_never_exceeds_the_callers_ceiling() {
        let catalog = v(&["templates:read", "api_keys:write", "admin"]);
        let narrow = v(&["api_keys:write"]);
        let caller = Caller { user_id: Some("u"), role: Role::Owner, ceiling: Some(&narrow) };
        assert!(copy_scopes(&caller, &catalog, &v(&["admin"])).is_err());
        assert!(copy_scopes(&caller, &catalog, &v(&["api_keys:write"])).is_ok());
        let developer = Caller { user_id: Some("u"), role: Role::Developer, ceiling: None };
        assert!(copy_scopes(&developer, &catalog, &v(&["admin"])).is_err());
    }

    #[test]
    fn an_edit_only_narrows_scopes() {
        let catalog = v(&["templates:read", "templates:write", "contacts:read", "admin"]);
        let held = v(&["templates:read", "templates:write"]);
        assert_eq!(
            narrow_scopes(&held, &catalog, &v(&["templates:read", " templates:read"])).unwrap(),
            ["templates:read"]
        );
        assert!(narrow_scopes(&held, &catalog, &v(&["contacts:read"])).unwrap_err().contains("create a new key"));
        assert!(narrow_scopes(&held, &catalog, &v(&["admin"])).is_err());
        assert!(narrow_scopes(&held, &catalog, &v(&["nope:read"])).unwrap_err().contains("Unknown scope"));
        assert!(narrow_scopes(&held, &catalog, &v(&["templates:read\u{0}"])).unwrap_err().contains("control"));
        assert!(narrow_scopes(&held, &catalog, &v(&[" "])).unwrap_err().contains("at least one"));
        // `admin` holds every team scope: an admin key may be narrowed to any of them.
        assert_eq!(narrow_scopes(&v(&["admin"]), &catalog, &v(&["contacts:read"])).unwrap(), ["contacts:read"]);
    }

    #[test]
    fn loosening_a_key_needs_its_scopes_within_the_callers_ceiling() {
        let catalog = v(&["templates:read", "api_keys:write", "admin"]);
        let narrow = v(&["api_keys:write"]);
        let caller = Caller { user_id: Some("u"), role: Role::Owner, ceiling: Some(&narrow) };
        assert!(!may_loosen(&caller, &catalog, &v(&["admin"])));
        assert!(may_loosen(&caller, &catalog, &v(&["api_keys:write"])));
        let developer = Caller { user_id: Some("u"), role: Role::Developer, ceiling: None };
        assert!(!may_loosen(&developer, &catalog, &v(&["admin"])));
    }

    #[test]
    fn effective_scopes_follow_the_current_role() {
        let granted = v(&["admin", "templates:write", "templates:read"]);
        assert_eq!(effective_scopes(Some(Role::Developer), &granted), v(&["templates:write", "templates:read"]));
        assert_eq!(effective_scopes(Some(Role::Viewer), &granted), v(&["templates:read"]));
        assert!(effective_scopes(None, &granted).is_empty());
    }

    #[test]
    fn lifetimes_are_capped_by_the_team_maximum() {
        assert_eq!(cap_expiry(None, Some(30), 0), Some(30 * 86_400));
        assert_eq!(cap_expiry(Some(10), Some(30), 0), Some(10));
        assert_eq!(cap_expiry(None, None, 0), None);
    }
}
