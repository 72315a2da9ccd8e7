//! Users, teams, memberships and invites.
//!
//! Rules: only owners and admins manage members; only an owner grants or takes
//! away the owner role; a team always keeps at least one owner; a removed
//! member's sessions end at once; every change is audited in the same
//! transaction as the change itself. Pages reach these rules through
//! [`AccountService`], which also makes the verifier forget cached roles after
//! a role change or a removal.

mod members;
mod service;

use serde_json::json;

use crate::domain::AuditAction;
use crate::store::models::{ApiKey, Invite, Membership, Team, User};
use crate::store::{DbConn, now};

use super::audit::{self, Actor, Event};
use super::crypto;
use super::{Error, FieldErrors, Result};

pub use members::*;
pub use service::*;

pub use crate::domain::Role;

impl Role {
    pub fn manages_members(self) -> bool {
        super::policy::manages_members(self)
    }

    /// Whether this role may give `target` to someone (or take it away).
    pub fn may_assign(self, target: Role) -> bool {
        super::policy::may_grant_role(self, target)
    }
}

fn random(len: usize) -> Result<String> {
    crypto::random_base62(len).map_err(|e| Error::internal(e, "drawing random bytes"))
}

fn new_id(kind: &str) -> Result<String> {
    crypto::new_id(kind).map_err(|e| Error::internal(e, "drawing random bytes"))
}

/// A signed-in user with their team, if any.
#[derive(Debug, Clone)]
pub struct UserContext {
    pub user: User,
    pub team: Option<(Team, Role)>,
}

pub fn context(conn: &mut DbConn, user_id: &str) -> Result<Option<UserContext>> {
    let Some(user) = User::find(conn, user_id)? else { return Ok(None) };
    let team = Membership::of_user(conn, user_id)?.map(|(m, t)| (t, m.role));
    Ok(Some(UserContext { user, team }))
}

/// The role `user` holds in the team *now* (`None`: not a member, or no user).
pub fn current_role(
    conn: &mut DbConn,
    team_id: &str,
    user: Option<&str>,
) -> Result<Option<Role>, crate::store::StoreError> {
    let Some(user) = user else { return Ok(None) };
    Ok(Membership::find(conn, team_id, user)?.map(|m| m.role))
}

/// [`current_role`] inside a write transaction, holding the membership until
/// the transaction ends: a removal or demotion racing with a write that relies
/// on this role waits for it (and then sees what it did), or wins and is seen.
pub fn locked_role(
    conn: &mut DbConn,
    team_id: &str,
    user: Option<&str>,
) -> Result<Option<Role>, crate::store::StoreError> {
    let Some(user) = user else { return Ok(None) };
    Ok(Membership::find_for_share(conn, team_id, user)?.map(|m| m.role))
}

pub fn user_by_email(conn: &mut DbConn, email: &str) -> Result<Option<User>> {
    Ok(User::find_by_email(conn, email)?)
}

pub fn setup_open(conn: &mut DbConn) -> Result<bool> {
    Ok(!User::any_exists(conn)?)
}

/// First run: creates the first team and its owner. Refused once any user exists.
pub fn setup(
    conn: &mut DbConn,
    actor: &Actor,
    team_name: &str,
    email: &str,
    password_hash: String,
    at: i64,
) -> Result<User> {
    crate::store::transaction(conn, |conn| {
        if User::any_exists(conn)? {
            return Err(Error::NotFound);
        }
        let user = User::new(new_id("usr")?, email.to_owned(), password_hash, false, at);
        user.insert(conn)?;
        let team = found_team(conn, team_name, &user.id, at)?;
        let actor = Actor { user_id: Some(user.id.clone()), label: user.email.clone(), ..actor.clone() };
        audit::record(conn, &actor, Event::new(AuditAction::SetupCompleted).team(&team.id).object("team", &team.id))?;
        Ok(user)
    })
}

/// A new team named `name`, owned by `owner`.
fn found_team(conn: &mut DbConn, name: &str, owner: &str, at: i64) -> Result<Team> {
    let team = Team {
        id: new_id("team")?,
        name: name.to_owned(),
        require_totp: false,
        created_at: at,
        plan: None,
        max_key_lifetime_days: None,
    };
    team.insert(conn)?;
    Membership { team_id: team.id.clone(), user_id: owner.to_owned(), role: Role::Owner, created_at: at }
        .insert(conn)?;
    Ok(team)
}

/// Operator command: a user, optionally owning a new team.
pub fn create_user(
    conn: &mut DbConn,
    email: &str,
    password_hash: String,
    is_support: bool,
    team_name: Option<&str>,
) -> Result<User> {
    crate::store::transaction(conn, |conn| {
        if User::find_by_email(conn, email)?.is_some() {
            return Err(Error::Invalid(FieldErrors::single("email", "An account with this email already exists.")));
        }
        let at = now();
        let user = User::new(new_id("usr")?, email.to_owned(), password_hash, is_support, at);
        user.insert(conn)?;
        let mut team_id = None;
        if let Some(name) = team_name {
            team_id = Some(found_team(conn, name, &user.id, at)?.id);
        }
        let mut event =
            Event::new(AuditAction::UserCreated).object("user", &user.id).details(json!({"support": is_support}));
        if let Some(t) = team_id.as_deref() {
            event = event.team(t);
        }
        audit::record(conn, &Actor::operator(), event)?;
        Ok(user)
    })
}

/// Operator command: puts every team with this name on a rate-limit plan.
pub fn set_plan(conn: &mut DbConn, team_name: &str, plan: &str) -> Result<usize> {
    if crate::service::ratelimit::plan(plan).is_none() {
        return Err(Error::Invalid(FieldErrors::single("plan", "Use free, starter, standard, pro or unlimited.")));
    }
    crate::store::transaction(conn, |conn| {
        let ids = Team::ids_named(conn, team_name)?;
        if ids.is_empty() {
            return Err(Error::Invalid(FieldErrors::single("team", format!("No team is named {team_name:?}."))));
        }
        for id in &ids {
            Team::set_plan(conn, id, plan)?;
            let event =
                Event::new(AuditAction::TeamPlanChanged).team(id).object("team", id).details(json!({"plan": plan}));
            audit::record(conn, &Actor::operator(), event)?;
        }
        Ok(ids.len())
    })
}

pub fn members(conn: &mut DbConn, team_id: &str) -> Result<Vec<(Membership, User)>> {
    Ok(Membership::list(conn, team_id)?)
}

/// The team's members, each with the number of working keys they answer for.
pub fn members_with_keys(conn: &mut DbConn, team_id: &str, at: i64) -> Result<Vec<(Membership, User, usize)>> {
    let holders = ApiKey::active_holders(conn, team_id, at)?;
    let held = |user: &str| holders.iter().filter(|h| h.as_deref() == Some(user)).count();
    Ok(Membership::list(conn, team_id)?
        .into_iter()
        .map(|(m, u)| {
            let n = held(&u.id);
            (m, u, n)
        })
        .collect())
}

pub fn pending_invites(conn: &mut DbConn, team_id: &str, at: i64) -> Result<Vec<Invite>> {
    Ok(Invite::pending(conn, team_id, at)?)
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn only_owners_touch_the_owner_role() {
        assert!(Role::Owner.may_assign(Role::Owner));
        assert!(!Role::Admin.may_assign(Role::Owner));
        assert!(Role::Admin.may_assign(Role::Developer));
        assert!(!Role::Developer.may_assign(Role::Viewer));
        assert!(!Role::Viewer.manages_members());
    }
}
