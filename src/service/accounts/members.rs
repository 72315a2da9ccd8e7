//! Membership changes: invites and their acceptance, role changes and
//! removals, with what each ends (invites a member could no longer send, apps
//! they may no longer manage, a leaving member's keys).

use serde_json::json;

use crate::domain::{AuditAction, PlainSecret};
use crate::store::DbConn;
use crate::store::models::{
    ApiKey, AuditEvent, Invite, Membership, OauthClient, OauthCode, OauthConsent, OauthToken, SessionRow, Team, User,
};

use crate::service::audit::{self, Actor, Event};
use crate::service::crypto::Keys;
use crate::service::policy;
use crate::service::{Error, FieldErrors, Result};

use super::{Role, TeamRole, current_role, new_id, random};

pub const INVITE_TTL_SECS: i64 = 7 * 24 * 3600;
/// Each invitation is an email through the operator's SMTP server: a team
/// sends at most this many in any rolling hour (re-invites count, and so do
/// invitations since revoked or accepted).
pub const INVITES_PER_HOUR: usize = 20;
const HOUR_SECS: i64 = 3600;
/// The same address is invited again at most once in this many seconds.
pub const REINVITE_AFTER_SECS: i64 = 10 * 60;

/// Invites `email` with `role`; returns the invite and its one-time token.
pub fn invite(
    conn: &mut DbConn,
    keys: &Keys,
    actor: &Actor,
    member: &TeamRole,
    email: &str,
    role: Role,
    at: i64,
) -> Result<(Invite, PlainSecret)> {
    let (team_id, actor_role) = (member.team_id.as_str(), member.role);
    if !actor_role.manages_members() {
        return Err(Error::Forbidden("Only owners and admins can invite members."));
    }
    if policy::invite(actor_role, role).is_err() {
        return Err(Error::Invalid(FieldErrors::single("role", "Admins can invite developers and viewers only.")));
    }
    // Whether `email` already has an account is not checked here: the answer
    // would tell the inviter about an account in another team. Accepting such
    // an invite fails like an expired link (`accept_invite`).
    crate::store::transaction(conn, |conn| {
        within_invite_limits(conn, team_id, email, at)?;
        let token = PlainSecret::new(random(32)?);
        let invite = Invite {
            id: new_id("inv")?,
            team_id: team_id.to_owned(),
            email: email.to_owned(),
            role,
            token_hash: keys.token_hash(token.expose()),
            invited_by: actor.user_id.clone().unwrap_or_default(),
            created_at: at,
            expires_at: at + INVITE_TTL_SECS,
            accepted_at: None,
        };
        invite.insert(conn)?;
        audit::record(
            conn,
            actor,
            Event::new(AuditAction::MemberInvited)
                .team(team_id)
                .object("invite", &invite.id)
                .details(json!({"email": email, "role": role.as_str()})),
        )?;
        Ok((invite, token))
    })
}

/// Refuses an invitation beyond [`INVITES_PER_HOUR`] for the team or within
/// [`REINVITE_AFTER_SECS`] of the last one to `email`. Runs inside the write
/// transaction, the team's row held, so parallel invites are counted one
/// after the other.
fn within_invite_limits(conn: &mut DbConn, team_id: &str, email: &str, at: i64) -> Result<()> {
    Team::lock(conn, team_id)?;
    let sent = Invite::sent_since(conn, team_id, at - HOUR_SECS)?;
    if sent.iter().any(|(to, when)| to.eq_ignore_ascii_case(email) && *when > at - REINVITE_AFTER_SECS) {
        let message = format!(
            "An invitation was sent to this address a few minutes ago: wait {} minutes before sending another.",
            REINVITE_AFTER_SECS / 60
        );
        return Err(Error::Invalid(FieldErrors::single("email", message)));
    }
    if sent.len() >= INVITES_PER_HOUR {
        let message = format!("This team has sent {INVITES_PER_HOUR} invitations in the last hour: try again later.");
        return Err(Error::Invalid(FieldErrors::single("email", message)));
    }
    Ok(())
}

/// The pending, unexpired invite for a token, with its team.
pub fn open_invite(conn: &mut DbConn, keys: &Keys, token: &str, at: i64) -> Result<(Invite, Team)> {
    let invite = Invite::find_by_token_hash(conn, &keys.token_hash(token))?.ok_or(Error::NotFound)?;
    if invite.accepted_at.is_some() || invite.expires_at <= at {
        return Err(Error::NotFound);
    }
    let team = Team::find(conn, &invite.team_id)?.ok_or(Error::NotFound)?;
    Ok((invite, team))
}

/// Creates the invitee's account and membership; the token works once.
pub fn accept_invite(
    conn: &mut DbConn,
    keys: &Keys,
    actor: &Actor,
    token: &str,
    password_hash: String,
    at: i64,
) -> Result<User> {
    crate::store::transaction(conn, |conn| {
        let (invite, team) = open_invite(conn, keys, token, at)?;
        // The inviter must still be allowed to give this role (they may have
        // been removed or demoted since).
        let inviter_role = current_role(conn, &team.id, Some(&invite.invited_by))?;
        if inviter_role.is_none_or(|r| policy::invite(r, invite.role).is_err()) {
            return Err(Error::NotFound);
        }
        if Invite::mark_accepted(conn, &invite.id, at)? != 1 || User::find_by_email(conn, &invite.email)?.is_some() {
            return Err(Error::NotFound);
        }
        let user = User::new(new_id("usr")?, invite.email.clone(), password_hash, false, at);
        user.insert(conn)?;
        Membership { team_id: team.id.clone(), user_id: user.id.clone(), role: invite.role, created_at: at }
            .insert(conn)?;
        let actor = Actor { user_id: Some(user.id.clone()), label: user.email.clone(), ..actor.clone() };
        audit::record(
            conn,
            &actor,
            Event::new(AuditAction::InviteAccepted)
                .team(&team.id)
                .object("user", &user.id)
                .details(json!({"role": invite.role.as_str()})),
        )?;
        Ok(user)
    })
}

pub fn revoke_invite(conn: &mut DbConn, actor: &Actor, member: &TeamRole, invite_id: &str, at: i64) -> Result<()> {
    let team_id = member.team_id.as_str();
    if !member.role.manages_members() {
        return Err(Error::Forbidden("Only owners and admins can manage invites."));
    }
    crate::store::transaction(conn, |conn| {
        if Invite::revoke(conn, team_id, invite_id, at)? == 0 {
            return Err(Error::NotFound);
        }
        audit::record(conn, actor, Event::new(AuditAction::InviteRevoked).team(team_id).object("invite", invite_id))
    })
}

/// Checks that `actor_role` may act on `target`'s current role (and give
/// `new_role`), and loads it.
fn target_role(conn: &mut DbConn, member: &TeamRole, user_id: &str, new_role: Option<Role>) -> Result<Role> {
    if !member.role.manages_members() {
        return Err(Error::Forbidden("Only owners and admins can manage members."));
    }
    let current = current_role(conn, member.team_id.as_str(), Some(user_id))?.ok_or(Error::NotFound)?;
    policy::change_member(member.role, current, new_role)?;
    Ok(current)
}

/// Revokes the pending invites `user_id` sent that `role` (their role now,
/// `None` once removed) could not send.
fn revoke_invites_beyond(
    conn: &mut DbConn,
    team_id: &str,
    user_id: &str,
    role: Option<Role>,
    at: i64,
) -> Result<usize> {
    let mut revoked = 0;
    for invite in Invite::pending_from(conn, team_id, user_id, at)? {
        let allowed = role.is_some_and(|r| policy::invite(r, invite.role).is_ok());
        if !allowed {
            revoked += Invite::revoke(conn, team_id, &invite.id, at)?;
        }
    }
    Ok(revoked)
}

fn ensure_not_last_owner(conn: &mut DbConn, team_id: &str, current: Role, message: &'static str) -> Result<()> {
    if current == Role::Owner && Membership::count_owners(conn, team_id)? <= 1 {
        return Err(Error::Invalid(FieldErrors::single("role", message)));
    }
    Ok(())
}

pub fn change_role(
    conn: &mut DbConn,
    actor: &Actor,
    member: &TeamRole,
    user_id: &str,
    new_role: Role,
    at: i64,
) -> Result<()> {
    let team_id = member.team_id.as_str();
    crate::store::transaction(conn, |conn| {
        let current = target_role(conn, member, user_id, Some(new_role))?;
        if current == new_role {
            return Ok(());
        }
        ensure_not_last_owner(
            conn,
            team_id,
            current,
            "A team needs at least one owner: make someone else owner first.",
        )?;
        Membership::set_role(conn, team_id, user_id, new_role)?;
        // Their keys and tokens are capped to the new role where they are
        // verified; invites they could no longer send are withdrawn; apps
        // whose secret or settings they registered, rotated or edited are
        // disarmed once they may no longer manage them.
        let invites = revoke_invites_beyond(conn, team_id, user_id, Some(new_role), at)?;
        let mut lost: Vec<OauthClient> = Vec::new();
        for app in apps_touched_by(conn, team_id, user_id)? {
            let caller = policy::Caller { user_id: Some(user_id), role: new_role, ceiling: None };
            let scopes = crate::service::oauth::scopes_of(&app.allowed_scopes);
            if policy::manage_app(&caller, app.created_by.as_deref(), &scopes).is_err() {
                lost.push(app);
            }
        }
        disarm_apps(conn, &lost, at)?;
        audit::record(
            conn,
            actor,
            Event::new(AuditAction::MemberRoleChanged).team(team_id).object("user", user_id).details(json!({
                "from": current.as_str(),
                "to": new_role.as_str(),
                "invites_revoked": invites,
                "apps_disarmed": lost.len(),
            })),
        )
    })
}

/// What happens to the working API keys of a member who is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDisposal {
    /// Revoke them at once.
    Revoke,
    /// The remover becomes answerable for them, narrowed to the scopes the
    /// remover's role allows (a key left with none is revoked).
    Transfer,
}

impl KeyDisposal {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "revoke" => Some(Self::Revoke),
            "transfer" => Some(Self::Transfer),
            _ => None,
        }
    }
}

/// Removes a member: their sessions end, their OAuth grants and consents in
/// the team are revoked, their pending invites withdrawn, the apps they
/// registered pass to the remover, and their working keys are revoked or
/// transferred as `keys` says.
pub fn remove_member(
    conn: &mut DbConn,
    actor: &Actor,
    member: &TeamRole,
    user_id: &str,
    keys: KeyDisposal,
    at: i64,
) -> Result<()> {
    let team_id = member.team_id.as_str();
    crate::store::transaction(conn, |conn| {
        let current = removable_role(conn, member, user_id)?;
        Membership::delete(conn, team_id, user_id)?;
        let ended = SessionRow::delete_for_user(conn, user_id)?;
        let tokens = OauthToken::revoke_for_member(conn, team_id, user_id, at)?;
        OauthConsent::delete_for_member(conn, team_id, user_id)?;
        let invites = revoke_invites_beyond(conn, team_id, user_id, None, at)?;
        let touched = apps_touched_by(conn, team_id, user_id)?;
        let apps = disarm_apps(conn, &touched, at)?;
        let remover = actor.user_id.as_deref().filter(|u| *u != user_id);
        OauthClient::transfer(conn, team_id, user_id, remover)?;
        let leaving = Leaving { user_id, role: current, keys };
        let (revoked, transferred) = dispose_keys(conn, actor, member, &leaving, at)?;
        audit::record(
            conn,
            actor,
            Event::new(AuditAction::MemberRemoved).team(team_id).object("user", user_id).details(json!({
                "role": current.as_str(),
                "sessions_ended": ended,
                "oauth_tokens_revoked": tokens,
                "invites_revoked": invites,
                "keys_revoked": revoked,
                "keys_transferred": transferred,
                "apps_disarmed": apps,
            })),
        )
    })
}

/// The team's apps a member may know a secret of or chose settings for: the
/// apps they registered, and those whose secret they rotated or whose
/// settings (redirect URIs) they changed, as the audit trail records.
fn apps_touched_by(conn: &mut DbConn, team_id: &str, user_id: &str) -> Result<Vec<OauthClient>> {
    const ACTIONS: [AuditAction; 3] =
        [AuditAction::OauthAppRegistered, AuditAction::OauthAppUpdated, AuditAction::OauthSecretRotated];
    let touched = AuditEvent::objects_acted_on(conn, team_id, user_id, &ACTIONS)?;
    let apps = OauthClient::for_team(conn, team_id)?;
    Ok(apps.into_iter().filter(|c| c.created_by.as_deref() == Some(user_id) || touched.contains(&c.id)).collect())
}

/// Apps a member can no longer be trusted with keep nothing that member
/// could still use: the secret they may know stops working, the redirect URIs
/// they may have chosen are forgotten (for a public app they are its only
/// credential), every token and unused code of the app is revoked, and every
/// consent to it is forgotten. A member who manages the app restores it by
/// entering its redirect URIs again and rotating its secret. Returns how many.
fn disarm_apps(conn: &mut DbConn, apps: &[OauthClient], at: i64) -> Result<usize> {
    for app in apps {
        // First, so that the row is held: an issuance or edit in flight waits.
        OauthClient::clear_redirect_uris(conn, &app.id)?;
        if app.secret_hash.is_some() {
            // Not a hash any presented secret can have.
            let unusable = format!("disabled:{}", random(32)?);
            OauthClient::set_secrets(conn, &app.id, Some(&unusable), (None, None))?;
        }
        OauthToken::revoke_for(conn, &app.id, None, at)?;
        OauthCode::delete_unused_for_client(conn, &app.id)?;
        OauthConsent::delete_for_client(conn, &app.id)?;
    }
    Ok(apps.len())
}

/// A member on their way out: who, the role they held, what becomes of their keys.
struct Leaving<'a> {
    user_id: &'a str,
    role: Role,
    keys: KeyDisposal,
}

/// Revokes or transfers a leaving member's working keys; returns (revoked, transferred).
/// A transferred key keeps at most what it could do before (the leaving
/// member's current role) and what the remover's role allows.
fn dispose_keys(
    conn: &mut DbConn,
    actor: &Actor,
    member: &TeamRole,
    leaving: &Leaving<'_>,
    at: i64,
) -> Result<(usize, usize)> {
    let (team_id, actor_role) = (member.team_id.as_str(), member.role);
    let Leaving { user_id, role: their_role, keys } = *leaving;
    let remover = actor.user_id.as_deref().filter(|u| *u != user_id);
    let (mut revoked, mut transferred) = (0, 0);
    for key in ApiKey::active_held_by(conn, team_id, user_id, at)? {
        let before = policy::effective_scopes(Some(their_role), &crate::service::keys::scopes_of(&key.scopes));
        let narrowed = policy::effective_scopes(Some(actor_role), &before);
        let event = Event::new(AuditAction::ApiKeyRevoked).team(team_id).object("api_key", &key.id);
        if keys == KeyDisposal::Transfer && remover.is_some() && !narrowed.is_empty() {
            transferred += ApiKey::transfer(conn, &key.id, remover, &narrowed.join(" "))?;
            let details = json!({"name": key.name, "from": user_id, "scopes": narrowed});
            audit::record(conn, actor, Event { action: AuditAction::ApiKeyTransferred, details, ..event })?;
        } else if ApiKey::revoke(conn, &key.id, &actor.label, Some("member removed"), at)? == 1 {
            revoked += 1;
            audit::record(conn, actor, event.details(json!({"name": key.name, "reason": "member removed"})))?;
        }
    }
    Ok((revoked, transferred))
}

/// What removing a member would end, for the confirmation that asks first.
#[derive(Debug, Clone)]
pub struct RemovalPreview {
    pub email: String,
    pub role: Role,
    /// Their working API keys in the team (revoked or passed on).
    pub working_keys: usize,
    /// Their sessions that are signed in now.
    pub sessions: usize,
}

/// The role of a member `member` may remove: who may remove whom, and never
/// the last owner (the rules of [`remove_member`] and [`removal_preview`]).
fn removable_role(conn: &mut DbConn, member: &TeamRole, user_id: &str) -> Result<Role> {
    let current = target_role(conn, member, user_id, None)?;
    ensure_not_last_owner(
        conn,
        member.team_id.as_str(),
        current,
        "A team needs at least one owner: the last owner cannot be removed.",
    )?;
    Ok(current)
}

/// The removal [`remove_member`] would make, checked by the same rules (who
/// may remove whom, never the last owner), without changing anything.
pub fn removal_preview(conn: &mut DbConn, member: &TeamRole, user_id: &str, at: i64) -> Result<RemovalPreview> {
    let team_id = member.team_id.as_str();
    let current = removable_role(conn, member, user_id)?;
    let user = User::find(conn, user_id)?.ok_or(Error::NotFound)?;
    Ok(RemovalPreview {
        email: user.email,
        role: current,
        working_keys: ApiKey::active_held_by(conn, team_id, user_id, at)?.len(),
        sessions: SessionRow::list_for_user(conn, user_id, at)?.len(),
    })
}

/// A pending invite of the team that the member may revoke (for the
/// confirmation that asks first).
pub fn revocable_invite(conn: &mut DbConn, member: &TeamRole, invite_id: &str, at: i64) -> Result<Invite> {
    if !member.role.manages_members() {
        return Err(Error::Forbidden("Only owners and admins can manage invites."));
    }
    Invite::pending(conn, member.team_id.as_str(), at)?.into_iter().find(|i| i.id == invite_id).ok_or(Error::NotFound)
}
