//! A user's own security: two-factor enrolment and recovery codes, password
//! change, their sessions, the apps they authorized, and the team's
//! two-factor policy.
//!
//! Rules: starting enrolment, new recovery codes and a password change need
//! the password; turning 2FA off needs the password and a current code. Every
//! password re-check is throttled per user like sign-in: the attempt is
//! reserved before the check, a wrong password (or code) keeps it, anything
//! else gives it back. A password change ends every session of the user; only
//! owners set the team policy; every change is audited. The current session
//! is told by its stored row's id (what the session store hands the page).
//! Turning 2FA off and changing the password are emailed to the user after
//! the commit (security email: it cannot be turned off).

use serde_json::json;

use super::accounts::{self, TeamRole, UserContext};
use super::attempts::{Attempt, Throttle};
use super::audit::{self, Actor, Event};
use super::clock::Clock;
use super::crypto::Keys;
use super::hashing::Hashing;
use super::notify::{Notice, Notifier, Recipient};
use super::verify::Verifier;
use super::{Error, FieldErrors, Result, oauth, policy, totp, validate};
use crate::domain::{AuditAction, ClientId, PlainSecret, SessionId, UserId};
use crate::store::models::{Membership, OauthClient, OauthConsent, SessionRow, Team, User};
use crate::store::{Db, DbConn};

const WRONG_PASSWORD: &str = "Your password is not right.";

pub struct SessionView {
    pub id: SessionId,
    pub user_agent: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub current: bool,
}

/// Why a form on the security page was turned down (the page shows it).
#[derive(Debug)]
pub enum Refusal {
    /// Field errors (422).
    Invalid(FieldErrors),
    /// Too many wrong passwords typed in `field`: wait `retry_after` seconds (429).
    Throttled { field: &'static str, retry_after: i64 },
}

/// A change made, or the refusal the page shows.
pub type Checked<T> = std::result::Result<T, Refusal>;

/// What the security page shows.
pub struct SecurityOverview {
    /// The user as they are now (after the change just made).
    pub ctx: UserContext,
    pub remaining_codes: i64,
    pub sessions: Vec<SessionView>,
    pub apps: Vec<(OauthConsent, OauthClient)>,
    /// What the team's members authorized (for those who manage members).
    pub team_apps: Vec<(String, OauthConsent, OauthClient)>,
    /// An enrolment in progress: the manual key and its QR code.
    pub pending: Option<(String, String)>,
    /// The email the user may turn off, and whether it is on.
    pub emails: Vec<super::email::EmailPreference>,
}

/// The security page's use cases, each authorized, audited, and throttled
/// where a password is re-checked.
pub struct SecurityService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    /// Password re-checks per user (shared with sign-in failures).
    pub by_account: &'a Throttle,
    pub verifier: &'a Verifier,
    pub hashing: &'a Hashing,
    pub clock: &'a Clock,
    /// Tells the user about changes to their account's security.
    pub notifier: &'a Notifier,
}

impl SecurityService<'_> {
    pub async fn overview(&self, user: &UserContext, current: Option<&SessionId>) -> Result<SecurityOverview> {
        let (uid, current, at) = (user.user.id.clone(), current.cloned(), self.clock.now());
        let fallback = user.clone();
        let (ctx, remaining_codes, sessions, apps, (team_apps, emails)) = self
            .db
            .run(move |conn| {
                let ctx = accounts::context(conn, &uid)?.unwrap_or(fallback);
                let team_apps = match &ctx.team {
                    Some((t, r)) => oauth::team_authorized_apps(conn, &t.id, *r)?,
                    None => Vec::new(),
                };
                let sessions = sessions(conn, &uid, current.as_ref(), at)?;
                let (remaining, apps) = (totp::remaining_codes(conn, &uid)?, oauth::authorized_apps(conn, &uid)?);
                let emails = super::email::unsubscribe::preferences(conn, &uid)?;
                Ok::<_, Error>((ctx, remaining, sessions, apps, (team_apps, emails)))
            })
            .await?;
        let u = &ctx.user;
        let pending = match totp::pending(self.keys, u).filter(|_| !u.has_totp()) {
            Some(key) => Some((key.clone(), totp::qr_data_url(&totp::otpauth_uri(&u.email, &key))?)),
            None => None,
        };
        Ok(SecurityOverview { ctx, remaining_codes, sessions, apps, team_apps, pending, emails })
    }

    /// Starts (or restarts) enrolment: a stolen session must not bind the
    /// account to the thief's device, so the password comes first.
    pub async fn start_totp(&self, user: &User, given: &str) -> Result<Checked<()>> {
        if let Err(refusal) = self.require_password(user, given, "start_password").await? {
            return Ok(Err(refusal));
        }
        let (keys, uid) = (self.keys.clone(), user.id.clone());
        refused_if_invalid(self.db.run(move |conn| totp::start(conn, &keys, &uid)).await.map(|_| ()))
    }

    /// Confirms enrolment; returns the recovery codes (shown once).
    pub async fn confirm_totp(&self, actor: &Actor, user_id: &UserId, code: &str) -> Result<Checked<Vec<PlainSecret>>> {
        let (keys, actor, uid, code, at) =
            (self.keys.clone(), actor.clone(), user_id.clone(), code.to_owned(), self.clock.now());
        refused_if_invalid(self.db.run(move |conn| totp::confirm(conn, &keys, &actor, uid.as_str(), &code, at)).await)
    }

    /// Turns 2FA off with the password and a current code.
    pub async fn disable_totp(&self, actor: &Actor, user: &User, given: &str, code: &str) -> Result<Checked<()>> {
        let attempt = match self.recheck_password(user, given, "disable_password").await? {
            Ok(attempt) => attempt,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (keys, by, uid, code, at) =
            (self.keys.clone(), actor.clone(), user.id.clone(), code.to_owned(), self.clock.now());
        let field = |m: &str| Ok(Err(Refusal::Invalid(FieldErrors::single("disable_code", m))));
        match self.db.run(move |conn| totp::disable(conn, &keys, &by, &uid, &code, at)).await {
            Ok(()) => {
                self.by_account.release(&attempt).await;
                self.notifier.send(&Notice::totp_disabled(Recipient::user(&user.id, &user.email), actor, at, false));
                Ok(Ok(()))
            }
            Err(Error::Invalid(f)) => {
                self.by_account.release(&attempt).await;
                field(f.get("code").unwrap_or("Enter a code."))
            }
            // A wrong code keeps the attempt.
            Err(Error::Forbidden(m)) => field(m),
            Err(e) => {
                self.by_account.release(&attempt).await;
                Err(e)
            }
        }
    }

    /// New recovery codes (the old ones stop working), shown once.
    pub async fn regenerate_codes(&self, actor: &Actor, user: &User, given: &str) -> Result<Checked<Vec<PlainSecret>>> {
        if let Err(refusal) = self.require_password(user, given, "regenerate_password").await? {
            return Ok(Err(refusal));
        }
        let (keys, actor, uid, at) = (self.keys.clone(), actor.clone(), user.id.clone(), self.clock.now());
        self.db.run(move |conn| totp::regenerate(conn, &keys, &actor, &uid, at)).await.map(Ok)
    }

    /// Sets a new password and ends every session of the user. Returns
    /// whether the caller's session (`current`) was still live: only then may
    /// the caller keep its browser signed in.
    pub async fn change_password(
        &self,
        actor: &Actor,
        user: &User,
        given: &str,
        new: &str,
        current: Option<&SessionId>,
    ) -> Result<Checked<bool>> {
        if let Err(refusal) = self.require_password(user, given, "current_password").await? {
            return Ok(Err(refusal));
        }
        if let Err(m) = validate::new_password(new, &user.email) {
            return Ok(Err(Refusal::Invalid(FieldErrors::single("new_password", m))));
        }
        let hash = self.hashing.hash(new.to_owned()).await?;
        let (by, uid, current, at) = (actor.clone(), user.id.clone(), current.cloned(), self.clock.now());
        let live = self.db.run(move |conn| change_password(conn, &by, &uid, &hash, current.as_ref(), at)).await?;
        self.notifier.send(&Notice::password_changed(&user.id, &user.email, actor, at));
        Ok(Ok(live))
    }

    pub async fn revoke_session(&self, actor: &Actor, user_id: &UserId, id: &SessionId) -> Result<()> {
        let (actor, uid, id) = (actor.clone(), user_id.clone(), id.clone());
        self.db.run(move |conn| revoke_session(conn, &actor, uid.as_str(), id.as_str())).await
    }

    /// Ends every other session of the user; returns how many.
    pub async fn revoke_other_sessions(
        &self,
        actor: &Actor,
        user_id: &UserId,
        current: Option<&SessionId>,
    ) -> Result<usize> {
        let (actor, uid, current, at) = (actor.clone(), user_id.clone(), current.cloned(), self.clock.now());
        self.db.run(move |conn| revoke_other_sessions(conn, &actor, uid.as_str(), current.as_ref(), at)).await
    }

    /// Withdraws the user's consent to an app; the app's tokens stop working at once.
    pub async fn revoke_app(&self, actor: &Actor, user: &UserContext, client: &ClientId) -> Result<()> {
        let (actor, uid, client, at) = (actor.clone(), user.user.id.clone(), client.clone(), self.clock.now());
        let team = user.team.as_ref().map(|(t, _)| t.id.clone());
        self.db
            .run(move |conn| oauth::revoke_consent(conn, &actor, &uid, team.as_deref(), client.as_str(), at))
            .await?;
        self.verifier.invalidate_all();
        Ok(())
    }

    pub async fn set_team_policy(&self, actor: &Actor, member: &TeamRole, require_totp: bool) -> Result<()> {
        let (actor, member) = (actor.clone(), member.clone());
        self.db.run(move |conn| set_team_policy(conn, &actor, &member, require_totp)).await
    }

    /// A password re-check: the reserved attempt when right (to give back or
    /// keep), else the refusal; an attempt is kept for a wrong password.
    async fn recheck_password(&self, user: &User, given: &str, field: &'static str) -> Result<Checked<Attempt>> {
        let attempt = match self.by_account.reserve(&format!("password:{}", user.id), self.clock.now()).await {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(Err(Refusal::Throttled { field, retry_after })),
        };
        match self.hashing.check(Some(user.password_hash.clone()), given.to_owned()).await {
            Ok(true) => Ok(Ok(attempt)),
            Ok(false) => Ok(Err(Refusal::Invalid(FieldErrors::single(field, WRONG_PASSWORD)))),
            Err(e) => {
                self.by_account.release(&attempt).await;
                Err(e)
            }
        }
    }

    /// A re-check that needs nothing after it: a right password gives its attempt back.
    async fn require_password(&self, user: &User, given: &str, field: &'static str) -> Result<Checked<()>> {
        match self.recheck_password(user, given, field).await? {
            Ok(attempt) => {
                self.by_account.release(&attempt).await;
                Ok(Ok(()))
            }
            Err(refusal) => Ok(Err(refusal)),
        }
    }
}

/// Field errors become the page's refusal; anything else stays an error.
fn refused_if_invalid<T>(result: Result<T>) -> Result<Checked<T>> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Invalid(f)) => Ok(Err(Refusal::Invalid(f))),
        Err(e) => Err(e),
    }
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

pub fn sessions(conn: &mut DbConn, user_id: &str, current: Option<&SessionId>, at: i64) -> Result<Vec<SessionView>> {
    let rows = SessionRow::list_for_user(conn, user_id, at)?;
    Ok(rows
        .into_iter()
        .map(|r| SessionView {
            current: current.is_some_and(|c| c.as_str() == r.id),
            user_agent: r.user_agent.clone().unwrap_or_default(),
            ip: r.ip.clone().unwrap_or_else(|| "—".into()),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            id: SessionId::from(r.id),
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

/// The id of the caller's session among the user's live ones, if it is one.
fn live_current(conn: &mut DbConn, user_id: &str, current: Option<&SessionId>, at: i64) -> Result<Option<String>> {
    let rows = SessionRow::list_for_user(conn, user_id, at)?;
    Ok(current.and_then(|c| rows.into_iter().find(|r| r.id == c.as_str())).map(|r| r.id))
}

pub fn revoke_other_sessions(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    current: Option<&SessionId>,
    at: i64,
) -> Result<usize> {
    crate::store::transaction(conn, |conn| {
        let keep = live_current(conn, user_id, current, at)?;
        let ended = SessionRow::delete_for_user_except(conn, user_id, keep.as_deref().unwrap_or(""))?;
        let mut team = None;
        let e = event(conn, AuditAction::SessionRevoked, user_id, &mut team)?
            .details(json!({"sessions": ended, "others": true}));
        audit::record(conn, actor, e)?;
        Ok(ended)
    })
}

/// Stores the new password hash and ends every session of the user. Returns
/// whether the caller's own session (`current`) was still live: only then
/// may the caller renew it; one that ended meanwhile stays ended.
pub fn change_password(
    conn: &mut DbConn,
    actor: &Actor,
    user_id: &str,
    new_hash: &str,
    current: Option<&SessionId>,
    at: i64,
) -> Result<bool> {
    crate::store::transaction(conn, |conn| {
        User::set_password(conn, user_id, new_hash)?;
        let live = live_current(conn, user_id, current, at)?.is_some();
        let ended = SessionRow::delete_for_user(conn, user_id)?;
        let mut team = None;
        let e =
            event(conn, AuditAction::PasswordChanged, user_id, &mut team)?.details(json!({"sessions_ended": ended}));
        audit::record(conn, actor, e)?;
        Ok(live)
    })
}

pub fn set_team_policy(conn: &mut DbConn, actor: &Actor, member: &TeamRole, require_totp: bool) -> Result<()> {
    policy::set_team_security(member.role)?;
    let team_id = member.team_id.as_str();
    crate::store::transaction(conn, |conn| {
        Team::set_require_totp(conn, team_id, require_totp)?;
        let e = Event::new(AuditAction::TeamTotpPolicyChanged).team(team_id).object("team", team_id);
        audit::record(conn, actor, e.details(json!({"require_totp": require_totp})))
    })
}
