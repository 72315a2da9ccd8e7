//! [`AccountService`]: the async facade pages use for setup, invites and
//! membership changes.

use std::sync::{Mutex, PoisonError};

use crate::domain::{InviteId, PlainSecret, TeamId, UserId};
use crate::service::audit::{self, Actor};
use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::service::hashing::Hashing;
use crate::service::notify::{Notice, Notifier};
use crate::service::verify::Verifier;
use crate::service::{Error, FieldErrors, Result, policy, validate};
use crate::store::Db;
use crate::store::models::{AuditEvent, Invite, Membership, Team, User};

use super::{
    KeyDisposal, RemovalPreview, Role, accept_invite, change_role, invite, members_with_keys, open_invite,
    pending_invites, removal_preview, remove_member, revocable_invite, revoke_invite, setup, setup_open,
};
/// The team and role of the member who acts.
#[derive(Debug, Clone)]
pub struct TeamRole {
    pub team_id: TeamId,
    pub role: Role,
}

const BAD_SETUP_LINK: &str = "This setup link is not valid. Use the full URL printed in the server log at start.";
const INVALID_INVITE: &str = "This invite link is not valid: it may have expired or been used already.";

/// What first-run setup was given.
pub struct NewTeam {
    pub token: String,
    pub team_name: String,
    pub email: String,
    pub password: String,
}

/// What the team page shows.
pub struct TeamOverview {
    pub members: Vec<(Membership, User, usize)>,
    pub invites: Vec<Invite>,
    /// Recent activity, for those who may read the audit trail.
    pub events: Vec<AuditEvent>,
}

/// An invite made: who, and the one-time token of its link (shown once).
pub struct Invited {
    pub email: String,
    pub token: PlainSecret,
}

/// The outcome of accepting an invite with a password.
pub enum Acceptance {
    Joined {
        team_name: String,
        /// The new account's email (the sign-in page fills it in).
        email: String,
    },
    /// The password is not acceptable; the invite (to `role` in `team_name`,
    /// for `email`) is still open.
    Refused { team_name: String, email: String, role: Role, errors: FieldErrors },
}

/// Setup, invites and membership changes, each authorized, in one
/// transaction, audited, and (for role changes and removals) followed by the
/// verifier forgetting what it cached about roles.
pub struct AccountService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub verifier: &'a Verifier,
    pub hashing: &'a Hashing,
    pub clock: &'a Clock,
    /// The first-run token, while no user exists.
    pub setup_token: &'a Mutex<Option<String>>,
    /// Emails the invitee their link.
    pub notifier: &'a Notifier,
}

impl AccountService<'_> {
    /// 404 once a user exists; 403 for a wrong token.
    pub async fn check_setup_token(&self, presented: &str) -> Result<()> {
        let open = self.db.run(setup_open).await?;
        let expected = self.setup_token.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match expected {
            Some(t) if open && crypto::ct_eq(&t, presented) => Ok(()),
            Some(_) if open => Err(Error::Forbidden(BAD_SETUP_LINK)),
            _ => Err(Error::NotFound),
        }
    }

    /// First run: the first team and its owner; the setup token is spent.
    pub async fn setup(&self, actor: &Actor, form: &NewTeam) -> Result<()> {
        self.check_setup_token(&form.token).await?;
        let mut errors = FieldErrors::default();
        let team_name = validate::team_name(&form.team_name).map_err(|m| errors.add("team_name", m)).ok();
        let email = validate::account(&form.email, &form.password).map_err(|e| errors.0.extend(e.0)).ok();
        let (Some(team_name), Some(email)) = (team_name, email) else { return Err(Error::Invalid(errors)) };
        let hash = self.hashing.hash(form.password.clone()).await?;
        let (actor, at) = (actor.clone(), self.clock.now());
        self.db.run(move |conn| setup(conn, &actor, &team_name, &email, hash, at)).await?;
        *self.setup_token.lock().unwrap_or_else(PoisonError::into_inner) = None;
        tracing::info!("first-run setup completed; the setup page is now gone");
        Ok(())
    }

    /// The open invite behind a link, with its team; any other link is refused alike.
    pub async fn open_invite(&self, token: &str) -> Result<(Invite, Team)> {
        if token.len() > 64 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Forbidden("This invite link is not valid."));
        }
        let (keys, token, at) = (self.keys.clone(), token.to_owned(), self.clock.now());
        self.db.run(move |conn| open_invite(conn, &keys, &token, at)).await.map_err(invalid_invite)
    }

    /// The invitee sets a password and joins. An invite to an email that has
    /// an account by now fails like a used link.
    pub async fn accept_invite(&self, actor: &Actor, token: &str, password: &str) -> Result<Acceptance> {
        let (invite, team) = self.open_invite(token).await?;
        if let Err(m) = validate::new_password(password, &invite.email) {
            let errors = FieldErrors::single("password", m);
            return Ok(Acceptance::Refused { team_name: team.name, email: invite.email, role: invite.role, errors });
        }
        let hash = self.hashing.hash(password.to_owned()).await?;
        let (keys, actor, token, at) = (self.keys.clone(), actor.clone(), token.to_owned(), self.clock.now());
        self.db.run(move |conn| accept_invite(conn, &keys, &actor, &token, hash, at)).await.map_err(invalid_invite)?;
        Ok(Acceptance::Joined { team_name: team.name, email: invite.email })
    }

    pub async fn team_overview(&self, member: &TeamRole) -> Result<TeamOverview> {
        let (team_id, at) = (member.team_id.clone(), self.clock.now());
        let can_read_audit = policy::may_read_audit(member.role);
        self.db
            .run(move |conn| {
                let t = team_id.as_str();
                let events = if can_read_audit { audit::recent_for_team(conn, t, 10)? } else { Vec::new() };
                let (members, invites) = (members_with_keys(conn, t, at)?, pending_invites(conn, t, at)?);
                Ok(TeamOverview { members, invites, events })
            })
            .await
    }

    /// Invites `email` as `role` (both as typed in the form) and emails the
    /// invitee the link (which the inviter is shown too, in case email fails).
    pub async fn invite(&self, actor: &Actor, member: &TeamRole, email: &str, role: &str) -> Result<Invited> {
        if !policy::manages_members(member.role) {
            return Err(Error::Forbidden("Only owners and admins can invite members."));
        }
        let mut errors = FieldErrors::default();
        let email = validate::email(email).map_err(|m| errors.add("email", m)).ok();
        let role = Role::parse(role);
        if role.is_none() {
            errors.add("role", "Choose a role.");
        }
        let (Some(email), Some(role)) = (email, role) else { return Err(Error::Invalid(errors)) };
        let (keys, by, member, at) = (self.keys.clone(), actor.clone(), member.clone(), self.clock.now());
        let (invite, token, team) = self
            .db
            .run(move |conn| {
                let (invite, token) = invite(conn, &keys, &by, &member, &email, role, at)?;
                let team = Team::find(conn, &invite.team_id)?.map(|t| t.name).unwrap_or_default();
                Ok::<_, Error>((invite, token, team))
            })
            .await?;
        self.notifier.send(&Notice::invitation(&invite, &token, &team, &actor.label));
        Ok(Invited { email: invite.email, token })
    }

    pub async fn revoke_invite(&self, actor: &Actor, member: &TeamRole, id: &InviteId) -> Result<()> {
        let (actor, member, id, at) = (actor.clone(), member.clone(), id.clone(), self.clock.now());
        self.db.run(move |conn| revoke_invite(conn, &actor, &member, id.as_str(), at)).await
    }

    /// Changes a member's role; what their keys and tokens may do changes at once.
    pub async fn change_role(&self, actor: &Actor, member: &TeamRole, target: &UserId, role: Role) -> Result<()> {
        let (actor, member, target, at) = (actor.clone(), member.clone(), target.clone(), self.clock.now());
        self.db.run(move |conn| change_role(conn, &actor, &member, target.as_str(), role, at)).await?;
        self.verifier.invalidate_all();
        Ok(())
    }

    /// What removing `target` would end, if the member may remove them.
    pub async fn removal_preview(&self, member: &TeamRole, target: &UserId) -> Result<RemovalPreview> {
        let (member, target, at) = (member.clone(), target.clone(), self.clock.now());
        self.db.run(move |conn| removal_preview(conn, &member, target.as_str(), at)).await
    }

    /// A pending invite the member may revoke.
    pub async fn revocable_invite(&self, member: &TeamRole, id: &InviteId) -> Result<Invite> {
        let (member, id, at) = (member.clone(), id.clone(), self.clock.now());
        self.db.run(move |conn| revocable_invite(conn, &member, id.as_str(), at)).await
    }

    /// Removes a member; their keys and tokens end at once here (elsewhere
    /// within the cache's bound).
    pub async fn remove_member(
        &self,
        actor: &Actor,
        member: &TeamRole,
        target: &UserId,
        keys: KeyDisposal,
    ) -> Result<()> {
        let (actor, member, target, at) = (actor.clone(), member.clone(), target.clone(), self.clock.now());
        self.db.run(move |conn| remove_member(conn, &actor, &member, target.as_str(), keys, at)).await?;
        self.verifier.invalidate_all();
        Ok(())
    }
}

/// A link that opens no invite is refused like an expired one.
fn invalid_invite(e: Error) -> Error {
    match e {
        Error::NotFound => Error::Forbidden(INVALID_INVITE),
        other => other,
    }
}
