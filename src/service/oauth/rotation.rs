//! An app's previous client secret in its grace period, watched: the
//! previous and the current secret side by side (their uses at the token and
//! revocation endpoints, counted under `usage::secret_subject` of each
//! hash), ending the grace early once the previous secret is quiet,
//! extending it once, and warning about busy rotations.
//!
//! Rules (the shared ones are `service::rotation`'s):
//! - A rotation is in grace while the app keeps an `old_secret_hash` whose
//!   `old_secret_expires_at` is in the future; it began at the latest
//!   `oauth.secret_rotated` of the app's audit trail.
//! - Who may finish or extend: `policy::manage_app`; anyone else, and every
//!   other team, is told the app does not exist.
//! - Finishing forgets the previous secret now (`oauth.secret_grace_finished`):
//!   the token endpoint refuses it at once (client authentication reads the
//!   app's row on every request; nothing is cached). Extending moves its end
//!   once per rotation, never past now + 7 days (`oauth.secret_grace_extended`
//!   with `until`); a new rotation may be extended again.
//! - A busy rotation is warned about once (reminder `rotation_busy` on the
//!   previous secret's subject), with `oauth.secret_rotation_busy` recorded by
//!   Latchkey itself.

use serde_json::json;

use super::apps::{Acting, AppService, Member, app, managed_app};
use super::scopes_of;
use crate::domain::{AuditAction, ClientId};
use crate::service::audit::{self, Event};
use crate::service::rotation::{self, Subject, Watch};
use crate::service::usage::secret_subject;
use crate::service::{Error, FieldErrors, Result, policy};
use crate::store::models::{OauthClient, Reminder};
use crate::store::{DbConn, transaction};

const DAY: i64 = 86_400;
const AUDIT_OBJECT: &str = "oauth_app";

/// A rotation of an app's client secret in its grace period.
#[derive(Debug, Clone)]
pub struct SecretRotation {
    /// `old` is the previous secret, `new` the current one.
    pub watch: Watch,
    /// The latest end an extension could give the grace now (`None`: it was
    /// extended already, or there is no room left).
    pub extend_until: Option<i64>,
    /// Whether the member may finish or extend it.
    pub may_act: bool,
}

/// The previous secret's hash and end, while it is in grace at `at`.
fn grace(c: &OauthClient, at: i64) -> Option<(&str, i64)> {
    let (hash, ends) = (c.old_secret_hash.as_deref()?, c.old_secret_expires_at?);
    (ends > at).then_some((hash, ends))
}

/// When the rotation began: the latest recorded rotation (else the registration).
fn started(conn: &mut DbConn, c: &OauthClient) -> Result<i64> {
    Ok(OauthClient::secret_rotated_at(conn, &c.id)?.unwrap_or(c.created_at))
}

fn old_subject(conn: &mut DbConn, c: &OauthClient, at: i64) -> Result<Option<(String, i64, Option<i64>)>> {
    let Some((hash, ends)) = grace(c, at) else { return Ok(None) };
    let subject = secret_subject(hash);
    let last = rotation::last_presented(conn, Subject { id: &subject, last_used: None }, at)?;
    Ok(Some((subject, ends, last)))
}

/// The app's rotation in grace at `at`, if any.
fn secret_rotation(conn: &mut DbConn, c: &OauthClient, may_act: bool, at: i64) -> Result<Option<SecretRotation>> {
    let Some((old_hash, ends)) = grace(c, at) else { return Ok(None) };
    let (old, new) = (secret_subject(old_hash), secret_subject(c.secret_hash.as_deref().unwrap_or_default()));
    let subjects = (Subject { id: &old, last_used: None }, Subject { id: &new, last_used: None });
    let began = started(conn, c)?;
    let watch = rotation::watch(conn, subjects, (began, ends), at)?;
    let limit = at.saturating_add(rotation::MAX_EXTENSION_SECS);
    let extend_until = Some(limit).filter(|l| c.old_secret_extended_at.is_none() && *l > ends);
    Ok(Some(SecretRotation { watch, extend_until, may_act }))
}

/// An app of the member's team that they may manage, with its previous
/// secret in grace; any other app is not found; `field` names the refusal
/// of an app with no rotation in grace.
fn acting_app(conn: &mut DbConn, m: &Acting, id: &ClientId, at: i64, field: &str) -> Result<OauthClient> {
    let c = managed_app(conn, m, id).map_err(|e| match e {
        Error::Forbidden(_) => Error::NotFound,
        other => other,
    })?;
    if grace(&c, at).is_none() {
        return Err(Error::Invalid(FieldErrors::single(field, "This app has no previous secret in its grace period.")));
    }
    Ok(c)
}

fn event<'a>(action: AuditAction, c: &'a OauthClient) -> Event<'a> {
    Event::new(action).team(&c.team_id).object(AUDIT_OBJECT, &c.id)
}

/// Forgets the previous secret now, if it was quiet for `quiet` seconds.
/// `buffered`: the last presentation of each credential still in this
/// instance's usage buffer (not yet in the database).
fn finish(
    conn: &mut DbConn,
    m: &Acting,
    (id, quiet): (&ClientId, Option<i64>),
    buffered: &std::collections::HashMap<String, i64>,
    at: i64,
) -> Result<OauthClient> {
    transaction(conn, |conn| {
        let c = acting_app(conn, m, id, at, "quiet")?;
        let quiet = rotation::quiet_choice(quiet)?;
        let Some((subject, _, last)) = old_subject(conn, &c, at)? else {
            return Err(Error::Invalid(FieldErrors::single("quiet", "The grace of this rotation ended meanwhile.")));
        };
        let last = last.max(buffered.get(&subject).copied());
        rotation::refuse_unless_quiet(last, quiet, at, "secret")?;
        let old_hash = c.old_secret_hash.clone().unwrap_or_default();
        if OauthClient::end_secret_grace(conn, &c.id, &old_hash, at)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("quiet", "The grace of this rotation ended meanwhile.")));
        }
        let details = json!({"quiet_seconds": quiet, "last_presented": last});
        audit::record(conn, &m.actor, event(AuditAction::OauthSecretGraceFinished, &c).details(details))?;
        app(conn, &m.team_id, id)
    })
}

/// Extends the previous secret's grace by `by` seconds, once per rotation.
fn extend(conn: &mut DbConn, m: &Acting, id: &ClientId, by: Option<i64>, at: i64) -> Result<OauthClient> {
    transaction(conn, |conn| {
        let c = acting_app(conn, m, id, at, "extend")?;
        let by = rotation::extend_choice(by)?;
        if c.old_secret_extended_at.is_some() {
            return Err(Error::Invalid(FieldErrors::single(
                "extend",
                "The grace of this rotation was extended already: it can be extended once.",
            )));
        }
        let (old_hash, ends) = grace(&c, at).map(|(h, e)| (h.to_owned(), e)).unwrap_or_default();
        let until = rotation::extended_end(ends, by, at.saturating_add(rotation::MAX_EXTENSION_SECS))?;
        if OauthClient::extend_secret_grace(conn, &c.id, &old_hash, (ends, until), at)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("extend", "The grace of this rotation changed meanwhile.")));
        }
        let details = json!({"until": until, "previous_until": ends, "by_seconds": by});
        audit::record(conn, &m.actor, event(AuditAction::OauthSecretGraceExtended, &c).details(details))?;
        app(conn, &m.team_id, id)
    })
}

/// Warns, once per rotation, about every previous secret busy near the end
/// of its grace at `at`; returns how many were warned now.
fn warn_busy(conn: &mut DbConn, at: i64) -> Result<usize> {
    let mut warned = 0;
    for c in OauthClient::secret_grace_ending_between(conn, at, at + DAY)? {
        let Some((subject, ends, last)) = old_subject(conn, &c, at)? else { continue };
        if !rotation::busy(started(conn, &c)?, ends, last, at) {
            continue;
        }
        let claimed = transaction(conn, |conn| {
            if !Reminder::claim(conn, &subject, rotation::BUSY_REMINDER, at)? {
                return Ok(false);
            }
            let e = event(AuditAction::OauthSecretRotationBusy, &c).details(json!({"until": ends}));
            audit::record(conn, &rotation::system_actor(), e)?;
            Ok::<_, Error>(true)
        })?;
        if claimed {
            let what = format!("the previous client secret of app {}", c.id);
            rotation::notify_busy(conn, &c.team_id, c.created_by.as_deref(), &what)?;
            warned += 1;
        }
    }
    Ok(warned)
}

impl AppService<'_> {
    /// The app's secret rotation in grace, if any (any member may look).
    pub async fn secret_rotation(&self, member: &Member<'_>, app: &OauthClient) -> Result<Option<SecretRotation>> {
        let may_act = policy::manage_app(&member.caller(), app.created_by.as_deref(), &scopes_of(&app.allowed_scopes));
        let (app, may_act, at) = (app.clone(), may_act.is_ok(), self.clock.now());
        self.db.run(move |conn| secret_rotation(conn, &app, may_act, at)).await
    }

    /// What a confirmation asks about: an app the member may manage and its
    /// rotation in grace (`None`: none); any other app is not found.
    pub async fn secret_rotation_to_confirm(
        &self,
        member: &Member<'_>,
        id: ClientId,
    ) -> Result<(OauthClient, Option<SecretRotation>)> {
        let app = self.manageable(member, id).await.map_err(|e| match e {
            Error::Forbidden(_) => Error::NotFound,
            other => other,
        })?;
        let rotation = self.secret_rotation(member, &app).await?;
        Ok((app, rotation))
    }

    /// Ends the previous secret's grace now, if it was quiet for `quiet` seconds.
    pub async fn finish_secret_grace(
        &self,
        member: &Member<'_>,
        id: ClientId,
        quiet: Option<i64>,
    ) -> Result<OauthClient> {
        let (m, at) = (member.acting(), self.clock.now());
        // Uses this instance served and has not written yet count too.
        let buffered = self.verifier.buffered_presentations(at);
        self.db.run(move |conn| finish(conn, &m, (&id, quiet), &buffered, at)).await
    }

    /// Extends the previous secret's grace once by `by` seconds (at most 7 days from now).
    pub async fn extend_secret_grace(&self, member: &Member<'_>, id: ClientId, by: Option<i64>) -> Result<OauthClient> {
        let (m, at) = (member.acting(), self.clock.now());
        self.db.run(move |conn| extend(conn, &m, &id, by, at)).await
    }

    /// Warns once about each secret rotation busy near its deadline at `at`
    /// (for the periodic task); returns how many were warned now.
    pub async fn warn_busy_secret_rotations(&self, at: i64) -> Result<usize> {
        self.db.run(move |conn| warn_busy(conn, at)).await
    }
}
