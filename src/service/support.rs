//! The support console: find keys, teams and users; read a key's history;
//! revoke a key with a reason; take leaked-credential reports from a
//! scanning partner ([`leaks`]).
//!
//! Rules: only the platform role `support` uses the console and only a
//! service key holding `leaks:report` reports leaks (`service::policy`); a
//! pasted whole key is looked up by its hash only; support never sees a
//! secret and cannot create keys; support acts on team keys only (the
//! operator's service keys answer not found); every revocation is audited
//! under the key's team, where support reads as "Latchkey support", never as
//! a person, and the verifier forgets the revoked credential at once. The
//! key's creator is emailed about a revocation by support (with the reason),
//! and also the team's owners about a leak, after the commit.

mod leaks;

use serde_json::json;

pub use leaks::{LeakReport, MAX_LEAK_BATCH, Outcome};

use super::audit::{self, Actor, Event, ObjectKind};
use super::clock::Clock;
use super::crypto::Keys;
use super::keys::{self, codec};
use super::notify::{Notice, Notifier};
use super::principal::Principal;
use super::verify::Verifier;
use super::{Error, FieldErrors, Result, oauth, policy};
use crate::domain::{AuditAction, KeyId, KeyKind, KeyStatus, TeamId, UserId};
use crate::store::models::{ApiKey, AuditEvent, Membership, StatusFilter, Team, User};
use crate::store::{Db, DbConn};

pub const MAX_QUERY: usize = 200;
pub const MAX_REASON: usize = 500;

/// Who revoked a key, as stored, when it was not a member: support (with a
/// reason) or a leak report (automatically).
pub const REVOKED_BY_SUPPORT: &str = "support";
pub const REVOKED_BY_LEAK_REPORT: &str = "leak-report";

/// The scope a service key needs to report leaks.
pub const LEAKS_SCOPE: &str = "leaks:report";

#[derive(Default)]
pub struct SearchResults {
    pub keys: Vec<ApiKey>,
    pub teams: Vec<Team>,
    pub users: Vec<User>,
    /// The query was a whole, well-formed key.
    pub whole_key: bool,
}

/// How a search arrived: typed into the console's form (a `POST` body), or
/// in an address (`/support?q=…`), which browsers keep in history,
/// autocomplete and bookmarks, and servers in their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Form,
    Address,
}

/// What the console says when a whole key comes in an address.
pub const WHOLE_KEY_IN_ADDRESS: &str = "Paste whole keys into the search form: it sends them in the request body, never in the address. This search was not run.";

pub fn search(conn: &mut DbConn, hasher: &Keys, prefix: &str, raw: &str, via: Via) -> Result<SearchResults> {
    let q = raw.trim();
    if q.is_empty() {
        return Err(Error::Invalid(FieldErrors::single(
            "q",
            "Enter a key prefix, a whole key, a team name or an email.",
        )));
    }
    if q.chars().count() > MAX_QUERY || q.chars().any(char::is_control) {
        return Err(Error::Invalid(FieldErrors::single(
            "q",
            "Use at most 200 characters, without control characters.",
        )));
    }
    let mut out = SearchResults::default();
    // A whole key, alone or with words and punctuation around it (pasted from
    // an email or a chat), is looked up by its hash and never searched as text.
    if codec::looks_like_a_whole_key(q) {
        if via == Via::Address {
            return Err(Error::Invalid(FieldErrors::single("q", WHOLE_KEY_IN_ADDRESS)));
        }
        out.whole_key = true;
        if let Some(key) = codec::embedded(q) {
            out.keys = ApiKey::find_by_hash(conn, &hasher.token_hash(&key))?.into_iter().filter(visible).collect();
        }
        return Ok(out);
    }
    let display = q.trim_end_matches(['…', '.']);
    if let Some(body) = display.strip_prefix(&format!("{prefix}_"))
        && body.len() == codec::DISPLAY_LEN
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        out.keys = ApiKey::find_by_prefix(conn, body)?.into_iter().filter(visible).collect();
    }
    out.teams = Team::search(conn, q, 20)?;
    out.users = User::search(conn, &q.to_lowercase(), 20)?;
    Ok(out)
}

/// Whether support may see and act on a key: team keys only. The operator's
/// service keys carry the SaaS's own verification; support cannot touch them.
pub fn visible(key: &ApiKey) -> bool {
    key.kind != KeyKind::Service && key.team_id.is_some()
}

/// Revokes any team key with a reason the team will see.
pub fn revoke_with_reason(conn: &mut DbConn, actor: &Actor, key_id: &str, reason: &str, at: i64) -> Result<ApiKey> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(FieldErrors::single("reason", "Give the reason the team will read.")));
    }
    if let Err(m) = super::validate::text(reason, MAX_REASON) {
        return Err(Error::Invalid(FieldErrors::single("reason", m)));
    }
    crate::store::transaction(conn, |conn| {
        let key = ApiKey::find(conn, key_id)?.filter(visible).ok_or(Error::NotFound)?;
        if ApiKey::revoke(conn, &key.id, REVOKED_BY_SUPPORT, Some(reason), at)? != 1 {
            return Err(Error::Invalid(FieldErrors::single("reason", "This key was already revoked.")));
        }
        let mut event = Event::new(AuditAction::ApiKeyRevokedBySupport)
            .object(ObjectKind::ApiKey, &key.id)
            .details(json!({"reason": reason}));
        if let Some(t) = key.team_id.as_deref() {
            event = event.team(t);
        }
        // The team reads "Latchkey support"; support's own views name the person (by actor id).
        audit::record(conn, &Actor { label: audit::SUPPORT_LABEL.to_owned(), ..actor.clone() }, event)?;
        Ok(key)
    })
}

/// How a revocation reads on the team's key list.
pub fn revocation_note(key: &ApiKey) -> Option<String> {
    let reason = key.revoked_reason.as_deref()?;
    Some(match key.revoked_by.as_deref() {
        Some(REVOKED_BY_SUPPORT) => format!("Revoked by Latchkey support: {reason}"),
        Some(REVOKED_BY_LEAK_REPORT) => format!("Revoked automatically: {reason}"),
        _ => format!("Revoked: {reason}"),
    })
}

/// A key as support lists it.
pub struct KeyHit {
    pub id: String,
    pub prefix: String,
    pub name: String,
    /// Its team's name ("(service key)" for none; empty when not at hand).
    pub team: String,
    pub status: KeyStatus,
}

/// What a search found; the pasted key itself is never part of it.
pub struct Found {
    pub keys: Vec<KeyHit>,
    pub teams: Vec<(String, String)>,
    pub users: Vec<(String, String)>,
    pub whole_key: bool,
}

/// A key with everything its support page shows.
pub struct KeyDossier {
    pub key: ApiKey,
    pub status: KeyStatus,
    pub team: Option<Team>,
    pub creator: Option<User>,
    pub events: Vec<AuditEvent>,
    /// The last 30 days by outcome, who called, the scopes exercised.
    pub usage: super::usage::report::Report,
    /// The key it replaces and the key that replaced it: (id, display prefix).
    pub rolled_from: Option<(String, String)>,
    pub replaced_by: Option<(String, String)>,
    /// What the events' objects are called.
    pub names: audit::ObjectNames,
    pub at: i64,
}

pub struct TeamDossier {
    pub team: Team,
    /// (user id, email, role)
    pub members: Vec<(String, String, String)>,
    pub keys: Vec<KeyHit>,
    /// (client id, name, client type)
    pub apps: Vec<(String, String, String)>,
    pub events: Vec<AuditEvent>,
    pub names: audit::ObjectNames,
}

pub struct UserDossier {
    pub user: User,
    /// (team id, team name, role)
    pub team: Option<(String, String, String)>,
    pub keys: Vec<KeyHit>,
    /// (app name, scopes)
    pub authorized: Vec<(String, String)>,
    pub events: Vec<AuditEvent>,
    pub names: audit::ObjectNames,
}

/// The support console's use cases, for a signed-in support person.
pub struct SupportService<'a> {
    pub db: &'a Db,
    pub hasher: &'a Keys,
    pub verifier: &'a Verifier,
    pub clock: &'a Clock,
    /// The API key prefix (`lk`).
    pub prefix: &'a str,
    /// Tells the people whose key was taken away.
    pub notifier: &'a Notifier,
}

fn key_hit(k: &ApiKey, prefix: &str, team_names: &[(String, String)], at: i64) -> KeyHit {
    KeyHit {
        id: k.id.clone(),
        prefix: codec::display(prefix, &k.key_prefix),
        name: k.name.clone(),
        team: match &k.team_id {
            Some(t) => team_names.iter().find(|(id, _)| id == t).map(|(_, n)| n.clone()).unwrap_or_default(),
            None => "(service key)".into(),
        },
        status: k.status(at),
    }
}

fn link(k: ApiKey, prefix: &str) -> (String, String) {
    let display = codec::display(prefix, &k.key_prefix);
    (k.id, display)
}

impl SupportService<'_> {
    /// Keys by prefix or whole key, teams by name, people by email; a whole
    /// key only from the form (`via`), never from an address.
    pub async fn search(&self, q: &str, via: Via) -> Result<Found> {
        let (hasher, prefix, q) = (self.hasher.clone(), self.prefix.to_owned(), q.to_owned());
        let (found, names) = self
            .db
            .run(move |conn| {
                let found = search(conn, &hasher, &prefix, &q, via)?;
                let mut names = Vec::new();
                for k in &found.keys {
                    if let Some(t) = k.team_id.as_deref().map(|t| Team::find(conn, t)).transpose()?.flatten() {
                        names.push((t.id, t.name));
                    }
                }
                Ok::<_, Error>((found, names))
            })
            .await?;
        let at = self.clock.now();
        Ok(Found {
            keys: found.keys.iter().map(|k| key_hit(k, self.prefix, &names, at)).collect(),
            teams: found.teams.into_iter().map(|t| (t.id, t.name)).collect(),
            users: found.users.into_iter().map(|u| (u.id, u.email)).collect(),
            whole_key: found.whole_key,
        })
    }

    /// A team key with its team, creator, history (naming support staff),
    /// 30 days of usage by outcome (with who called and the scopes it
    /// exercised) and the keys it was rolled from and into.
    pub async fn key(&self, id: &KeyId) -> Result<KeyDossier> {
        let (id, prefix, at) = (id.as_str().to_owned(), self.prefix.to_owned(), self.clock.now());
        self.db
            .run(move |conn| {
                let key = ApiKey::find(conn, &id)?.filter(visible).ok_or(Error::NotFound)?;
                let find_key = |conn: &mut DbConn, id: Option<&str>| {
                    Ok::<_, Error>(id.map(|i| ApiKey::find(conn, i)).transpose()?.flatten().map(|k| link(k, &prefix)))
                };
                let mut events = keys::history(conn, &key.id)?;
                audit::name_support_staff(conn, &mut events)?;
                Ok(KeyDossier {
                    names: audit::name_objects(conn, &events, &prefix)?,
                    team: key.team_id.as_deref().map(|t| Team::find(conn, t)).transpose()?.flatten(),
                    creator: key.created_by.as_deref().map(|u| User::find(conn, u)).transpose()?.flatten(),
                    usage: keys::usage::recent(conn, &key, at)?,
                    rolled_from: find_key(conn, key.rolled_from.as_deref())?,
                    replaced_by: find_key(conn, key.replaced_by.as_deref())?,
                    status: key.status(at),
                    events,
                    key,
                    at,
                })
            })
            .await
    }

    /// Revokes a team key with a reason the team will read; the verifier
    /// forgets it at once.
    pub async fn revoke(&self, staff: &Actor, id: &KeyId, reason: &str) -> Result<()> {
        let (actor, key_id, reason, at) = (staff.clone(), id.clone(), reason.to_owned(), self.clock.now());
        let prefix = self.prefix.to_owned();
        let notice = self
            .db
            .run(move |conn| {
                let key = revoke_with_reason(conn, &actor, key_id.as_str(), &reason, at)?;
                let people = super::email::key_people(conn, &key, false)?;
                Ok::<_, Error>(Notice::key_revoked_by_support(&key, &prefix, people, reason.trim()))
            })
            .await?;
        self.verifier.invalidate(id.as_str());
        self.notifier.send(&notice);
        Ok(())
    }

    /// A team with its members, keys, apps and recent activity.
    pub async fn team(&self, id: &TeamId) -> Result<TeamDossier> {
        let (id, at, prefix) = (id.as_str().to_owned(), self.clock.now(), self.prefix.to_owned());
        let (team, members, keys, apps, events) = self
            .db
            .run(move |conn| {
                let team = Team::find(conn, &id)?.ok_or(Error::NotFound)?;
                let members = Membership::list(conn, &id)?;
                let keys = keys::list(conn, &id, StatusFilter::All, None, 200, at)?;
                let apps = oauth::apps(conn, &id)?;
                let mut events = audit::recent_for_team(conn, &id, 20)?;
                audit::name_support_staff(conn, &mut events)?;
                let objects = audit::name_objects(conn, &events, &prefix)?;
                Ok::<_, Error>((team, members, keys, apps, (events, objects)))
            })
            .await?;
        let (events, objects) = events;
        let names = [(team.id.clone(), team.name.clone())];
        Ok(TeamDossier {
            members: members.into_iter().map(|(m, u)| (u.id, u.email, String::from(m.role))).collect(),
            keys: keys.iter().map(|k| key_hit(k, self.prefix, &names, at)).collect(),
            apps: apps.into_iter().map(|a| (a.id, a.name, a.client_type.to_string())).collect(),
            team,
            events,
            names: objects,
        })
    }

    /// A person with their team, the keys they created, the apps they
    /// authorized and what they did lately.
    pub async fn user(&self, id: &UserId) -> Result<UserDossier> {
        let (id, prefix) = (id.as_str().to_owned(), self.prefix.to_owned());
        let (user, team, keys, authorized, events) = self
            .db
            .run(move |conn| {
                let u = User::find(conn, &id)?.ok_or(Error::NotFound)?;
                let team = Membership::of_user(conn, &id)?;
                let keys = ApiKey::created_by(conn, &id, 100)?;
                let authorized = oauth::authorized_apps(conn, &id)?;
                let mut events = AuditEvent::by_actor(conn, &id, 20)?;
                audit::name_support_staff(conn, &mut events)?;
                let objects = audit::name_objects(conn, &events, &prefix)?;
                Ok::<_, Error>((u, team, keys, authorized, (events, objects)))
            })
            .await?;
        let (events, objects) = events;
        let names: Vec<(String, String)> = team.iter().map(|(_, t)| (t.id.clone(), t.name.clone())).collect();
        let at = self.clock.now();
        Ok(UserDossier {
            team: team.map(|(m, t)| (t.id, t.name, String::from(m.role))),
            keys: keys.iter().map(|k| key_hit(k, self.prefix, &names, at)).collect(),
            authorized: authorized.into_iter().map(|(c, a)| (a.name, c.scopes)).collect(),
            user,
            events,
            names: objects,
        })
    }

    /// A scanning partner's report (`caller` is the credential it came with,
    /// none for a browser session): revokes every real active credential
    /// among the candidates; the verifier forgets what changed.
    pub async fn report_leaks(
        &self,
        caller: Option<&Principal>,
        actor: &Actor,
        candidates: Option<Vec<String>>,
        url: Option<String>,
    ) -> Result<LeakReport> {
        let allowed = caller.is_some_and(|c| policy::may_call_platform(c.is_service_key(), c.scopes(), LEAKS_SCOPE));
        if !allowed {
            return Err(Error::Forbidden("This credential lacks the scope leaks:report."));
        }
        let candidates = candidates
            .ok_or_else(|| Error::Invalid(FieldErrors::single("keys", "Send a list of candidate strings.")))?;
        let (hasher, actor, prefix) = (self.hasher.clone(), actor.clone(), self.prefix.to_owned());
        let (url, at) = (url.unwrap_or_default(), self.clock.now());
        let report = self
            .db
            .run(move |conn| leaks::report_leaks(conn, &hasher, &actor, (&prefix, at), &candidates, &url))
            .await?;
        for id in &report.revoked_keys {
            self.verifier.invalidate(id);
        }
        if report.oauth_changed {
            self.verifier.invalidate_all();
        }
        let (ids, prefix) = (report.revoked_keys.clone(), self.prefix.to_owned());
        match self.db.run(move |conn| leaks::notices(conn, &ids, &prefix)).await {
            Ok(notices) => notices.iter().for_each(|n| self.notifier.send(n)),
            // The keys are revoked: the report stands even if nobody could be told.
            Err(e) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::new(e)), "telling people about leaked keys failed")
            }
        }
        Ok(report)
    }
}
