//! Signing in and out: the password step, the second factor, and who a
//! session is signed in as.
//!
//! Rules: one neutral refusal for every failure; an unknown email costs the
//! same argon2 work as a known one; failures are throttled per account and per
//! client address, the attempt reserved before the password (or code) is
//! checked so concurrent guesses cannot race past the limit, and given back
//! when the check could not be made (the hashing threads stayed taken: that
//! answer, [`PasswordOutcome::Busy`], is neither counted nor audited); a stored hash that cannot be read is an
//! internal error, never a refusal; every outcome is audited (failures for
//! unknown accounts at most once a minute, then a count). The half-signed-in
//! state lives [`PENDING_TTL_SECS`] and grants nothing but the second step.
//! A completed sign-in records its device (`email::devices`); one from a
//! device the account never used is emailed to the user.

use std::net::IpAddr;

use serde_json::json;

use super::accounts::{self, UserContext};
use super::attempts::{Attempt, Throttle, address_key, reserve_all};
use super::audit::{self, Actor, Event};
use super::audit_gate::{Admission, AuditGate, PendingEvent};
use super::clock::Clock;
use super::crypto::Keys;
use super::email::devices::{self, Seen};
use super::hashing::Hashing;
use super::metrics::{LoginOutcome, Metrics};
use super::notify::{Notice, Notifier};
use super::totp::{self, Factor};
use super::{Error, Result, validate};
use crate::domain::{AuditAction, PlainSecret, SessionId, UserId};
use crate::store::models::{SessionRow, User};
use crate::store::{Db, StoreError};

/// How long a password accepted waits for its second factor (seconds).
pub const PENDING_TTL_SECS: i64 = 5 * 60;
/// What `login.failed` records when the email field held something else.
const NOT_AN_EMAIL: &str = "(not an email)";

/// A sign-in granted: the session may now name this user.
#[derive(Debug, Clone)]
pub struct Granted {
    pub user_id: UserId,
    pub at: i64,
}

/// What the password step decided.
#[derive(Debug)]
pub enum PasswordOutcome {
    Granted(Granted),
    /// The password is right; the account's second factor comes next.
    SecondFactor {
        user_id: UserId,
        at: i64,
    },
    /// Wrong email or password (which one is not told).
    Refused,
    Throttled {
        retry_after: i64,
    },
    /// Every password hashing thread stayed taken: nothing was checked,
    /// counted or audited; try again in `retry_after` seconds.
    Busy {
        retry_after: i64,
    },
}

/// What the second step decided.
#[derive(Debug)]
pub enum SecondFactorOutcome {
    Granted {
        granted: Granted,
        factor: Factor,
    },
    /// The account is gone: start again.
    Expired,
    /// Not a code at all (the message, if any, says why).
    Invalid(Option<String>),
    /// A wrong, used or refused code.
    Wrong(&'static str),
    Throttled {
        retry_after: i64,
    },
}

/// Sign-in, its throttles and its audit trail.
pub struct LoginService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    /// Failed sign-ins per account (and TOTP codes per user).
    pub by_account: &'a Throttle,
    pub by_ip: &'a Throttle,
    pub audit_gate: &'a AuditGate,
    pub hashing: &'a Hashing,
    pub clock: &'a Clock,
    /// How long a sign-in lasts, however active (seconds).
    pub absolute_secs: i64,
    /// Each step's outcome is counted here.
    pub metrics: &'a Metrics,
    /// Tells users about sign-ins from new devices.
    pub notifier: &'a Notifier,
}

impl PasswordOutcome {
    fn counted(outcome: &Result<Self>) -> LoginOutcome {
        match outcome {
            Ok(Self::Granted(_)) => LoginOutcome::Succeeded,
            Ok(Self::SecondFactor { .. }) => LoginOutcome::TotpRequired,
            Ok(Self::Refused) => LoginOutcome::Failed,
            Ok(Self::Throttled { .. }) => LoginOutcome::Throttled,
            Ok(Self::Busy { .. }) => LoginOutcome::Busy,
            Err(_) => LoginOutcome::Error,
        }
    }
}

impl SecondFactorOutcome {
    fn counted(outcome: &Result<Self>) -> LoginOutcome {
        match outcome {
            Ok(Self::Granted { .. }) => LoginOutcome::Succeeded,
            Ok(Self::Expired) => LoginOutcome::Expired,
            Ok(Self::Invalid(_)) => LoginOutcome::TotpInvalid,
            Ok(Self::Wrong(_)) => LoginOutcome::TotpFailed,
            Ok(Self::Throttled { .. }) => LoginOutcome::Throttled,
            Err(_) => LoginOutcome::Error,
        }
    }
}

impl LoginService<'_> {
    /// The password step for `email` from `client`.
    pub async fn password(
        &self,
        actor: &Actor,
        client: Option<IpAddr>,
        email: &str,
        password: String,
    ) -> Result<PasswordOutcome> {
        let outcome = self.password_step(actor, client, email, password).await;
        self.metrics.login(PasswordOutcome::counted(&outcome));
        outcome
    }

    async fn password_step(
        &self,
        actor: &Actor,
        client: Option<IpAddr>,
        email: &str,
        password: String,
    ) -> Result<PasswordOutcome> {
        let (email_key, ip_key, at) = (email.trim().to_lowercase(), address_key(client), self.clock.now());
        // The account throttle's keys are namespaced (`email:`, `totp:`,
        // `password:`): whatever is typed as an email never names another
        // user's second-factor or re-check counter.
        let account_key = format!("email:{email_key}");
        let throttles = [(self.by_account, account_key.as_str()), (self.by_ip, ip_key.as_str())];
        let attempts = match reserve_all(&throttles, at).await {
            Ok(attempts) => attempts,
            Err(retry_after) => return Ok(PasswordOutcome::Throttled { retry_after }),
        };
        let release = || async {
            for ((t, _), a) in throttles.iter().zip(&attempts) {
                t.release(a).await;
            }
        };
        let (user, ok) = match self.check_password(&email_key, password).await {
            Ok(checked) => checked,
            Err(e) => {
                release().await;
                return match e {
                    Error::Busy { retry_after } => Ok(PasswordOutcome::Busy { retry_after }),
                    e => Err(e),
                };
            }
        };
        let known = user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            // The reserved attempts stay: they were failures.
            self.record_failure(actor, &email_key, known, at).await?;
            return Ok(PasswordOutcome::Refused);
        };
        release().await;
        self.by_account.clear(&account_key).await;
        let user_id = UserId::from(user.id.clone());
        if user.has_totp() {
            return Ok(PasswordOutcome::SecondFactor { user_id, at });
        }
        self.record_success(actor, &user, "password").await?;
        Ok(PasswordOutcome::Granted(Granted { user_id, at: self.clock.now() }))
    }

    /// Whether a password accepted at `at` may still take its second factor.
    pub fn pending_is_fresh(&self, at: i64) -> bool {
        self.clock.now() - at <= PENDING_TTL_SECS
    }

    /// The second step for the user whose password was accepted.
    pub async fn second_factor(&self, actor: &Actor, user_id: &UserId, code: String) -> Result<SecondFactorOutcome> {
        let outcome = self.second_factor_step(actor, user_id, code).await;
        self.metrics.login(SecondFactorOutcome::counted(&outcome));
        outcome
    }

    async fn second_factor_step(&self, actor: &Actor, user_id: &UserId, code: String) -> Result<SecondFactorOutcome> {
        let (at, throttle_key) = (self.clock.now(), format!("totp:{user_id}"));
        let attempt = match self.by_account.reserve(&throttle_key, at).await {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(SecondFactorOutcome::Throttled { retry_after }),
        };
        let lookup = user_id.clone();
        let found = self.db.run(move |conn| accounts::context(conn, lookup.as_str())).await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                self.by_account.release(&attempt).await;
                return Err(e);
            }
        };
        let Some(ctx) = found else {
            self.by_account.release(&attempt).await;
            return Ok(SecondFactorOutcome::Expired);
        };
        let actor = Actor { user_id: Some(user_id.to_string()), label: ctx.user.email.clone(), ..actor.clone() };
        let (keys, a, uid) = (self.keys.clone(), actor.clone(), user_id.clone());
        let checked = self.db.run(move |conn| totp::verify(conn, &keys, &a, uid.as_str(), &code, at)).await;
        self.after_second_factor(&actor, &ctx.user, checked, &throttle_key, &attempt).await
    }

    async fn after_second_factor(
        &self,
        actor: &Actor,
        user: &User,
        checked: Result<Factor>,
        throttle_key: &str,
        attempt: &Attempt,
    ) -> Result<SecondFactorOutcome> {
        match checked {
            Ok(factor) => {
                self.by_account.clear(throttle_key).await;
                let method = if factor == Factor::Totp { "password+totp" } else { "password+recovery_code" };
                self.record_success(actor, user, method).await?;
                let granted = Granted { user_id: UserId::from(user.id.clone()), at: self.clock.now() };
                Ok(SecondFactorOutcome::Granted { granted, factor })
            }
            Err(Error::Invalid(fields)) => {
                self.by_account.release(attempt).await;
                Ok(SecondFactorOutcome::Invalid(fields.get("code").map(str::to_owned)))
            }
            Err(Error::Forbidden(message)) => {
                // The reserved attempt stays: a wrong code.
                let uid = Some(user.id.clone());
                self.record(actor.clone(), AuditAction::LoginTotpFailed, uid, json!({})).await?;
                Ok(SecondFactorOutcome::Wrong(message))
            }
            Err(e) => {
                self.by_account.release(attempt).await;
                Err(e)
            }
        }
    }

    /// The user a session signed in at `signed_in_at` is signed in as: `None`
    /// when the sign-in is past its lifetime, its stored session (`row`) has
    /// ended, or the user is gone. (A state without a row was signed in by
    /// the very request asking.)
    pub async fn session_user(
        &self,
        user_id: &UserId,
        signed_in_at: i64,
        row: Option<SessionId>,
    ) -> Result<Option<UserContext>> {
        let at = self.clock.now();
        if at - signed_in_at > self.absolute_secs {
            return Ok(None);
        }
        let uid = user_id.clone();
        self.db
            .run(move |conn| {
                let live = match row {
                    Some(id) => SessionRow::find_live(conn, id.as_str(), at).map_err(StoreError::from)?.is_some(),
                    None => true,
                };
                if !live {
                    return Ok(None);
                }
                accounts::context(conn, uid.as_str())
            })
            .await
    }

    /// Records the device a completed sign-in came from (`presented`: the
    /// browser's device cookie, if any) and emails the user when it is new
    /// to them; returns the device cookie the browser keeps.
    pub async fn device(&self, actor: &Actor, user_id: &UserId, presented: Option<&str>) -> Result<PlainSecret> {
        let device = devices::cookie_or_new(presented)?;
        let (keys, uid, d, at) = (self.keys.clone(), user_id.clone(), device.clone(), self.clock.now());
        let (seen, user) = self
            .db
            .run(move |conn| {
                let seen = devices::seen(conn, &keys, uid.as_str(), &d, at)?;
                Ok::<_, Error>((seen, User::find(conn, uid.as_str())?))
            })
            .await?;
        if let (Seen::New, Some(user)) = (seen, user) {
            self.notifier.send(&Notice::new_device(&user.id, &user.email, actor, at));
        }
        Ok(device)
    }

    /// Audits a sign-out.
    pub async fn logout(&self, actor: &Actor, user: &UserContext) -> Result<()> {
        let team = user.team.as_ref().map(|(t, _)| t.id.clone());
        let (actor, uid) = (actor.clone(), user.user.id.clone());
        self.db
            .run(move |conn| {
                let mut event = Event::new(AuditAction::Logout).object("user", &uid);
                if let Some(t) = team.as_deref() {
                    event = event.team(t);
                }
                audit::record(conn, &actor, event)
            })
            .await
    }

    /// The account behind `email_key` and whether `password` is its password
    /// (an unknown account costs the same argon2 work).
    async fn check_password(&self, email_key: &str, password: String) -> Result<(Option<User>, bool)> {
        let user = match validate::email(email_key) {
            Ok(lookup) => self.db.run(move |conn| accounts::user_by_email(conn, &lookup)).await?,
            Err(_) => None,
        };
        let ok = self.hashing.check(user.as_ref().map(|u| u.password_hash.clone()), password).await?;
        Ok((user, ok))
    }

    async fn record_success(&self, actor: &Actor, user: &User, method: &str) -> Result<()> {
        let actor = Actor { user_id: Some(user.id.clone()), label: user.email.clone(), ..actor.clone() };
        self.record(actor, AuditAction::LoginSucceeded, Some(user.id.clone()), json!({"method": method})).await
    }

    async fn record_failure(&self, actor: &Actor, email_key: &str, known: bool, at: i64) -> Result<()> {
        // Only a plausible email is kept: people type passwords into the email field.
        let attempted = validate::email(email_key).unwrap_or_else(|_| NOT_AN_EMAIL.to_owned());
        let unknown =
            PendingEvent::new(AuditAction::LoginFailed, Actor { label: "unknown accounts".into(), ..Actor::default() });
        if known || self.audit_gate.admit("login.failed:unknown", &unknown, at) == Admission::Record {
            let actor = Actor { label: attempted.clone(), ..actor.clone() };
            self.record(actor, AuditAction::LoginFailed, None, json!({"email": attempted})).await?;
        }
        Ok(())
    }

    /// Audits a sign-in event under the user's team (if they have one); without
    /// a user id, the account is looked up by the actor's label (an email).
    async fn record(
        &self,
        actor: Actor,
        action: AuditAction,
        user_id: Option<String>,
        details: serde_json::Value,
    ) -> Result<()> {
        self.db
            .run(move |conn| {
                let user = match user_id {
                    Some(id) => accounts::context(conn, &id)?,
                    None => match accounts::user_by_email(conn, &actor.label)? {
                        Some(u) => accounts::context(conn, &u.id)?,
                        None => None,
                    },
                };
                let team_id = user.as_ref().and_then(|c| c.team.as_ref().map(|(t, _)| t.id.clone()));
                let target = user.as_ref().map(|c| c.user.id.clone());
                let mut event = Event::new(action).details(details);
                if let Some(t) = team_id.as_deref() {
                    event = event.team(t);
                }
                if let Some(id) = target.as_deref() {
                    event = event.object("user", id);
                }
                audit::record(conn, &actor, event)
            })
            .await
    }
}
