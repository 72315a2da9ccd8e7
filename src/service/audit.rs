//! The append-only audit trail: who did what, to which object, from where;
//! and the team's log as owners, admins and support read it.
//!
//! Rules: events are only appended; the team's log is for owners and admins
//! (`policy::may_read_audit`) and for support, whose own actions the team
//! reads as [`SUPPORT_LABEL`] and support's views name by person; a filter
//! with errors matches nothing.

use super::accounts::Role;
use super::clock::Clock;
use super::{Error, FieldErrors, Result, policy};
use crate::domain::{AuditAction, TeamId};
use crate::store::models::{
    ApiKey, AuditCursor, AuditEvent, AuditFilter, Membership, NewAuditEvent, OauthClient, Team, User,
};
use crate::store::{Db, DbConn};

/// Who acted and from where; built by the web layer from the request.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    /// The email (or "operator", "anonymous") shown in the log.
    pub label: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn operator() -> Self {
        Self { label: "operator (command line)".into(), ..Self::default() }
    }

    /// Latchkey itself, for what it does on its own timer (expiry reminders).
    pub fn system() -> Self {
        Self { label: SYSTEM_LABEL.into(), ..Self::default() }
    }
}

/// What an audit event is about (its `object_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ApiKey,
    OauthApp,
    User,
    Team,
    Invite,
    Webhook,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 6] =
        [Self::ApiKey, Self::OauthApp, Self::User, Self::Team, Self::Invite, Self::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::OauthApp => "oauth_app",
            Self::User => "user",
            Self::Team => "team",
            Self::Invite => "invite",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl From<ObjectKind> for &'static str {
    fn from(kind: ObjectKind) -> Self {
        kind.as_str()
    }
}

/// One event about to be recorded.
pub struct Event<'a> {
    pub action: AuditAction,
    pub team_id: Option<&'a str>,
    pub object: Option<(&'a str, &'a str)>,
    pub details: serde_json::Value,
}

impl<'a> Event<'a> {
    pub fn new(action: AuditAction) -> Self {
        Self { action, team_id: None, object: None, details: serde_json::Value::Object(Default::default()) }
    }

    pub fn team(mut self, team_id: &'a str) -> Self {
        self.team_id = Some(team_id);
        self
    }

    /// The object, by its kind ([`ObjectKind`], or its text) and id.
    pub fn object(mut self, kind: impl Into<&'static str>, id: &'a str) -> Self {
        self.object = Some((kind.into(), id));
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Text as stored: no control characters (PostgreSQL refuses NUL), bounded length.
fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

pub fn record(conn: &mut DbConn, actor: &Actor, event: Event<'_>) -> Result<()> {
    record_at(conn, actor, event, crate::store::now())
}

/// [`record`] with the time it happened at `at` (unix seconds), for history
/// written after the fact: the bench seeder spreads a year of events with it.
pub fn record_at(conn: &mut DbConn, actor: &Actor, event: Event<'_>, at: i64) -> Result<()> {
    let row = NewAuditEvent {
        created_at: at,
        team_id: event.team_id.map(str::to_owned),
        actor_id: actor.user_id.clone(),
        actor_label: clean(&actor.label, 254),
        action: event.action,
        object_type: event.object.map(|(k, _)| k.to_owned()),
        object_id: event.object.map(|(_, id)| id.to_owned()),
        ip: actor.ip.clone(),
        user_agent: actor.user_agent.as_deref().map(|ua| clean(ua, 300)),
        details: event.details.to_string(),
    };
    let team_id = row.team_id.clone();
    let (action, object_type, object_id) = (row.action, row.object_type.clone(), row.object_id.clone());
    let (actor_label, details) = (row.actor_label.clone(), event.details);
    AuditEvent::append(conn, row)?;
    // The webhook outbox: a message for the team's endpoints that want this
    // event, committed (or rolled back) with the change it announces.
    if let (Some(team_id), Some(event_type)) = (team_id, crate::domain::WebhookEvent::of_action(action)) {
        let object = object_type.zip(object_id);
        let announced =
            super::webhooks::Announced { team_id: &team_id, event_type, action, object, actor: &actor_label };
        super::webhooks::enqueue(conn, &announced, details, at)?;
    }
    Ok(())
}

/// How Latchkey's own actions read (no person, no address).
pub const SYSTEM_LABEL: &str = "Latchkey";

/// How a support person's actions read in a team's history and log: the team
/// sees the role, never the person (their email stays out of the stored label).
pub const SUPPORT_LABEL: &str = "Latchkey support";

/// For support's own views: names the support person behind each
/// [`SUPPORT_LABEL`] event, from its actor id.
pub fn name_support_staff(conn: &mut DbConn, events: &mut [AuditEvent]) -> Result<()> {
    for e in events.iter_mut().filter(|e| e.actor_label == SUPPORT_LABEL) {
        if let Some(u) =
            e.actor_id.as_deref().map(|id| crate::store::models::User::find(conn, id)).transpose()?.flatten()
        {
            e.actor_label = format!("{SUPPORT_LABEL} ({})", u.email);
        }
    }
    Ok(())
}

/// What an event's object is called now, for the log's sentences: a key's
/// name and display prefix, a person's email, an app's or a team's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    pub name: String,
    /// A key's display prefix (`lk_a1b2c3d4…`).
    pub code: Option<String>,
    /// For a person: the team they belong to now (a link to the members
    /// page only makes sense while they are in the event's team).
    pub team_id: Option<String>,
}

/// Names by (object kind, id); an object missing here no longer exists.
pub type ObjectNames = std::collections::HashMap<(String, String), ObjectName>;

/// The objects a batch of events mentions, as they are called now: each
/// event's object, and a rolled key's successor (`details.new_key_id`).
/// Invites are named from their event's details, never looked up.
pub fn name_objects(conn: &mut DbConn, events: &[AuditEvent], key_prefix: &str) -> Result<ObjectNames> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for e in events {
        if let (Some(k), Some(id)) = (&e.object_type, &e.object_id) {
            wanted.push((k.clone(), id.clone()));
        }
        if let Some(new) = serde_json::from_str::<serde_json::Value>(&e.details)
            .ok()
            .and_then(|d| d.get("new_key_id").and_then(|v| v.as_str()).map(str::to_owned))
        {
            wanted.push((ObjectKind::ApiKey.as_str().to_owned(), new));
        }
    }
    wanted.sort();
    wanted.dedup();
    let mut names = ObjectNames::new();
    for (kind, id) in wanted {
        let name = match ObjectKind::parse(&kind) {
            Some(ObjectKind::ApiKey) => ApiKey::find(conn, &id)?.map(|k| ObjectName {
                code: Some(format!("{}…", super::keys::codec::display(key_prefix, &k.key_prefix))),
                name: k.name,
                team_id: k.team_id,
            }),
            Some(ObjectKind::User) => match User::find(conn, &id)? {
                Some(u) => Some(ObjectName {
                    team_id: Membership::of_user(conn, &u.id)?.map(|(m, _)| m.team_id),
                    name: u.email,
                    code: None,
                }),
                None => None,
            },
            Some(ObjectKind::OauthApp) => {
                OauthClient::find(conn, &id)?.map(|c| ObjectName { name: c.name, code: None, team_id: Some(c.team_id) })
            }
            Some(ObjectKind::Team) => {
                Team::find(conn, &id)?.map(|t| ObjectName { name: t.name, code: None, team_id: Some(t.id) })
            }
            Some(ObjectKind::Webhook) => crate::store::models::WebhookEndpoint::find(conn, &id)?.map(|w| ObjectName {
                name: w.url,
                code: None,
                team_id: Some(w.team_id),
            }),
            Some(ObjectKind::Invite) | None => None,
        };
        if let Some(name) = name {
            names.insert((kind, id), name);
        }
    }
    Ok(names)
}

pub fn recent_for_team(conn: &mut DbConn, team_id: &str, limit: i64) -> Result<Vec<AuditEvent>> {
    Ok(AuditEvent::recent_for_team(conn, team_id, limit)?)
}

/// Events a page of the log shows.
pub const PAGE: i64 = 50;
/// Events a CSV export holds at most.
pub const CSV_MAX: i64 = 10_000;

/// Who reads a team's log: a member (owners and admins may), or support
/// (through the console, which only support reaches), about a team by id.
pub enum LogReader<'a> {
    Member { team: &'a Team, role: Role },
    Support { team_id: &'a TeamId },
}

/// A page of the log, or an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Page,
    Csv,
}

/// What the log shows: the team, its matching events (newest first), the
/// cursor of the next page, and the filter's errors (then nothing matches).
pub struct TeamLog {
    pub team_id: String,
    pub team_name: String,
    pub events: Vec<AuditEvent>,
    pub next: Option<AuditCursor>,
    pub errors: FieldErrors,
    /// What the events' objects are called (a page only; empty for an export).
    pub names: ObjectNames,
    /// When it was read (the export's date).
    pub at: i64,
}

/// The team audit log: reading, filtering, exporting.
pub struct AuditService<'a> {
    pub db: &'a Db,
    pub clock: &'a Clock,
    /// The API key prefix (`lk`), for keys' display prefixes.
    pub prefix: &'a str,
}

impl AuditService<'_> {
    /// The team's events matching `filter`; a filter with errors shows a page
    /// of nothing with the errors, and refuses an export.
    pub async fn team_log(
        &self,
        reader: LogReader<'_>,
        filter: std::result::Result<AuditFilter, FieldErrors>,
        format: LogFormat,
    ) -> Result<TeamLog> {
        let (team_id, team_name, support) = self.readable(reader).await?;
        let (filter, errors) = match filter {
            Ok(f) => (Some(f), FieldErrors::default()),
            Err(errors) if format == LogFormat::Csv => return Err(Error::Invalid(errors)),
            Err(errors) => (None, errors),
        };
        let limit = if format == LogFormat::Csv { CSV_MAX } else { PAGE + 1 };
        let (tid, prefix) = (team_id.clone(), self.prefix.to_owned());
        let (events, next, names) = self
            .db
            .run(move |conn| {
                let Some(f) = filter else { return Ok((Vec::new(), None, ObjectNames::new())) };
                let mut events = AuditEvent::search(conn, &tid, &f, limit)?;
                if support {
                    name_support_staff(conn, &mut events)?;
                }
                let mut next = None;
                if format == LogFormat::Page && events.len() as i64 > PAGE {
                    events.truncate(PAGE as usize);
                    next = events.last().map(AuditCursor::of);
                }
                let names =
                    if format == LogFormat::Page { name_objects(conn, &events, &prefix)? } else { ObjectNames::new() };
                Ok::<_, Error>((events, next, names))
            })
            .await?;
        Ok(TeamLog { team_id, team_name, events, next, errors, names, at: self.clock.now() })
    }

    /// What a batch of events' objects are called now (for pages that show
    /// a few events: a team's or a key's recent activity).
    pub async fn names(&self, events: &[AuditEvent]) -> Result<ObjectNames> {
        let (events, prefix) = (events.to_vec(), self.prefix.to_owned());
        self.db.run(move |conn| name_objects(conn, &events, &prefix)).await
    }

    /// The team a reader may read: (id, name, read by support).
    async fn readable(&self, reader: LogReader<'_>) -> Result<(String, String, bool)> {
        match reader {
            LogReader::Member { team, role } => {
                if !policy::may_read_audit(role) {
                    return Err(Error::Forbidden("Only owners and admins can read the audit log."));
                }
                Ok((team.id.clone(), team.name.clone(), false))
            }
            LogReader::Support { team_id } => {
                let id = team_id.as_str().to_owned();
                let team = self.db.run(move |conn| Ok::<_, Error>(Team::find(conn, &id)?)).await?;
                let team = team.ok_or(Error::NotFound)?;
                Ok((team.id, team.name, true))
            }
        }
    }
}
