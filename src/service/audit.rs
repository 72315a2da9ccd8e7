//! The append-only audit trail: who did what, to which object, from where.

use crate::domain::AuditAction;
use crate::store::DbConn;
use crate::store::models::{AuditEvent, NewAuditEvent};

use super::Result;

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
}

/// What an audit event is about (its `object_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ApiKey,
    OauthApp,
    User,
    Team,
    Invite,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [Self::ApiKey, Self::OauthApp, Self::User, Self::Team, Self::Invite];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::OauthApp => "oauth_app",
            Self::User => "user",
            Self::Team => "team",
            Self::Invite => "invite",
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
    let row = NewAuditEvent {
        created_at: crate::store::now(),
        team_id: event.team_id.map(str::to_owned),
        actor_id: actor.user_id.clone(),
        actor_label: clean(&actor.label, 254),
        action: event.action.as_str().to_owned(),
        object_type: event.object.map(|(k, _)| k.to_owned()),
        object_id: event.object.map(|(_, id)| id.to_owned()),
        ip: actor.ip.clone(),
        user_agent: actor.user_agent.as_deref().map(|ua| clean(ua, 300)),
        details: event.details.to_string(),
    };
    AuditEvent::append(conn, &row)?;
    Ok(())
}

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

pub fn recent_for_team(conn: &mut DbConn, team_id: &str, limit: i64) -> Result<Vec<AuditEvent>> {
    Ok(AuditEvent::recent_for_team(conn, team_id, limit)?)
}
