//! The apps a user authorized, and taking an authorization back.
//!
//! Rules: owners and admins see what the team's members authorized; taking an
//! authorization back revokes every token the app holds for that user, in one
//! transaction with its audit event.

use serde_json::json;

use crate::domain::{AuditAction, Role};
use crate::service::audit::{self, Actor, Event};
use crate::service::{Error, Result, policy};
use crate::store::DbConn;
use crate::store::models::{OauthClient, OauthConsent, OauthToken};

pub fn authorized_apps(conn: &mut DbConn, user_id: &str) -> Result<Vec<(OauthConsent, OauthClient)>> {
    Ok(OauthConsent::for_user(conn, user_id)?)
}

/// What the team's members have authorized (for owners and admins).
pub fn team_authorized_apps(
    conn: &mut DbConn,
    team_id: &str,
    role: Role,
) -> Result<Vec<(String, OauthConsent, OauthClient)>> {
    if !policy::manages_members(role) {
        return Ok(Vec::new());
    }
    Ok(OauthConsent::for_team(conn, team_id)?)
}

pub fn revoke_consent(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    team_id: Option<&str>,
    client_id: &str,
    at: i64,
) -> Result<()> {
    crate::store::transaction(conn, |conn| {
        if OauthConsent::delete(conn, user_id, client_id)? == 0 {
            return Err(Error::NotFound);
        }
        let revoked = OauthToken::revoke_for(conn, client_id, Some(user_id), at)?;
        let mut e = Event::new(AuditAction::OauthConsentRevoked)
            .object("oauth_app", client_id)
            .details(json!({"tokens_revoked": revoked}));
        if let Some(t) = team_id {
            e = e.team(t);
        }
        audit::record(conn, actor, e)
    })
}
