//! A user's own security: password change, their sessions, and the team's
//! two-factor policy.
//!
//! Rules: a password change ends every other session; only owners set the
//! team policy; every change is audited.

use crate::domain::AuditAction;
use serde_json::json;

use super::accounts::Role;
use super::audit::{self, Actor, Event};
use super::{Error, Result};
use crate::store::models::{Membership, SessionRow, Team, User};
use crate::store::{DbConn, now};

pub struct SessionView {
    pub id: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub current: bool,
}

/// The `sid` stored in a session row's state (values are JSON strings).
fn sid_of(row: &SessionRow) -> Option<String> {
    let state: std::collections::HashMap<String, String> = serde_json::from_str(&row.state).ok()?;
    state.get("sid").and_then(|v| serde_json::from_str::<String>(v).ok())
}

fn event<'a>(
    conn: &mut DbConn,
    action: AuditAction,
    user_id: &'a str,
    team: &'a mut Option<String>,
) -> Result<Event<'a>> {
    *team = Membership::of_user(conn, user_id)?.map(|(_, t)| t.id);
    let e = Event::new(action).object("user", user_id);
    Ok(match team.as_deref() {
        Some(t) => e.team(t),
        None => e,
    })
}

pub fn sessions(conn: &mut DbConn, user_id: &str, current_sid: &str) -> Result<Vec<SessionView>> {
    let rows = SessionRow::list_for_user(conn, user_id, now())?;
    Ok(rows
        .into_iter()
        .map(|r| SessionView {
            current: sid_of(&r).is_some_and(|s| s == current_sid),
            user_agent: r.user_agent.clone().unwrap_or_else(|| "Unknown device".into()),
            ip: r.ip.clone().unwrap_or_else(|| "—".into()),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            id: r.id,
        })
        .collect())
}

pub fn revoke_session(conn: &mut DbConn, actor: &Actor, user_id: &str, id: &str) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        if SessionRow::delete_one_of_user(conn, user_id, id)? == 0 {
            return Err(Error::NotFound);
        }
        let mut team = None;
        let e = event(conn, AuditAction::SessionRevoked, user_id, &mut team)?.details(json!({"sessions": 1}));
        audit::record(conn, actor, e)
    })
}

pub fn revoke_other_sessions(conn: &mut DbConn, actor: &Actor, user_id: &str, current_sid: &str) -> Result<usize> {
    crate::store::transaction(conn, |conn| {
        let rows = SessionRow::list_for_user(conn, user_id, now())?;
        let keep = rows.iter().find(|r| sid_of(r).is_some_and(|s| s == current_sid)).map(|r| r.id.clone());
        let ended = SessionRow::delete_for_user_except(conn, user_id, keep.as_deref().unwrap_or(""))?;
        let mut team = None;
        let e = event(conn, AuditAction::SessionRevoked, user_id, &mut team)?
            .details(json!({"sessions": ended, "others": true}));
        audit::record(conn, actor, e)?;
        Ok(ended)
    })
}

/// Stores the new password hash and ends every session of the user. Returns
/// whether the caller's own session (`current_sid`) was still live: only then
/// may the caller renew it; one that ended meanwhile stays ended.
pub fn change_password(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    new_hash: &str,
    current_sid: &str,
) -> Result<bool> {
    crate::store::transaction(conn, |conn| {
        User::set_password(conn, user_id, new_hash)?;
        let rows = SessionRow::list_for_user(conn, user_id, now())?;
        let live = rows.iter().any(|r| sid_of(r).is_some_and(|s| s == current_sid));
        let ended = SessionRow::delete_for_user(conn, user_id)?;
        let mut team = None;
        let e =
            event(conn, AuditAction::PasswordChanged, user_id, &mut team)?.details(json!({"sessions_ended": ended}));
        audit::record(conn, actor, e)?;
        Ok(live)
    })
}

pub fn set_team_policy(
    conn: &mut DbConn,
    actor: &Actor,
    (team_id, role): (&str, Role),
    require_totp: bool,
) -> Result<()> {
    if role != Role::Owner {
        return Err(Error::Forbidden("Only an owner can change the team's two-factor policy."));
    }
    crate::store::transaction(conn, |conn| {
        Team::set_require_totp(conn, team_id, require_totp)?;
        let e = Event::new(AuditAction::TeamTotpPolicyChanged).team(team_id).object("team", team_id);
        audit::record(conn, actor, e.details(json!({"require_totp": require_totp})))
    })
}
