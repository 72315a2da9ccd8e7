//! Audit events: the append-only rows and the team log's search.

use diesel::prelude::*;

use crate::domain::AuditAction;
use crate::store::DbConn;
use crate::store::schema::audit_events;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub created_at: i64,
    pub team_id: Option<String>,
    pub actor_id: Option<String>,
    pub actor_label: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    pub created_at: i64,
    pub team_id: Option<String>,
    pub actor_id: Option<String>,
    pub actor_label: String,
    #[diesel(serialize_as = String)]
    pub action: AuditAction,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: String,
}

/// Database methods. There is no update or delete: events are append-only
/// (and the database's triggers refuse both).
impl AuditEvent {
    pub fn append(conn: &mut DbConn, event: NewAuditEvent) -> QueryResult<()> {
        diesel::insert_into(audit_events::table).values(event).execute(conn).map(|_| ())
    }

    /// The newest events of a team, newest first.
    pub fn recent_for_team(conn: &mut DbConn, team_id: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::team_id.eq(team_id))
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }

    /// The newest events with a given action, newest first (all teams).
    pub fn recent_by_action(conn: &mut DbConn, action: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::action.eq(action))
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }
}

impl AuditEvent {
    /// The newest events about one object, newest first.
    pub fn for_object(conn: &mut DbConn, kind: &str, id: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::object_type.eq(kind))
            .filter(audit_events::object_id.eq(id))
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }
}

/// Which actions the team audit log shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// Exactly this action.
    Is(AuditAction),
    /// Every action starting with this text, which ends in `.` (`api_key.`).
    Prefix(String),
    /// An action that does not exist: nothing matches.
    Unknown,
}

impl ActionFilter {
    /// A filter as typed: a prefix when it ends in `.`, else an exact action.
    pub fn parse(text: &str) -> Self {
        if text.ends_with('.') {
            Self::Prefix(text.to_owned())
        } else {
            AuditAction::parse(text).map_or(Self::Unknown, Self::Is)
        }
    }
}

/// Filters of the team audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Substring of the actor's label (email).
    pub actor: Option<String>,
    pub action: Option<ActionFilter>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Cursor: only events with a smaller id.
    pub before_id: Option<i64>,
}

impl AuditEvent {
    /// A team's events matching `f`, newest first.
    pub fn search(conn: &mut DbConn, team_id: &str, f: &AuditFilter, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        let mut q = audit_events::table.filter(audit_events::team_id.eq(team_id)).into_boxed();
        if let Some(actor) = &f.actor {
            let pattern = format!("%{}%", crate::store::like_escape(&actor.to_lowercase()));
            q = q.filter(crate::store::lower(audit_events::actor_label).like(pattern).escape('\\'));
        }
        match &f.action {
            Some(ActionFilter::Is(action)) => q = q.filter(audit_events::action.eq(action.as_str())),
            Some(ActionFilter::Prefix(p)) => {
                q = q.filter(audit_events::action.like(format!("{}%", crate::store::like_escape(p))).escape('\\'));
            }
            Some(ActionFilter::Unknown) => return Ok(Vec::new()),
            None => {}
        }
        if let Some(from) = f.from {
            q = q.filter(audit_events::created_at.ge(from));
        }
        if let Some(to) = f.to {
            q = q.filter(audit_events::created_at.le(to));
        }
        if let Some(id) = f.before_id {
            q = q.filter(audit_events::id.lt(id));
        }
        q.order(audit_events::id.desc()).limit(limit).select(AuditEvent::as_select()).load(conn)
    }

    /// The newest events by one actor, newest first (all teams).
    pub fn by_actor(conn: &mut DbConn, actor_id: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::actor_id.eq(actor_id))
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }

    /// The objects a member acted on in a team with one of `actions`.
    pub fn objects_acted_on(
        conn: &mut DbConn,
        team_id: &str,
        actor_id: &str,
        actions: &[AuditAction],
    ) -> QueryResult<Vec<String>> {
        let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        let ids: Vec<Option<String>> = audit_events::table
            .filter(audit_events::team_id.eq(team_id))
            .filter(audit_events::actor_id.eq(actor_id))
            .filter(audit_events::action.eq_any(actions))
            .select(audit_events::object_id)
            .distinct()
            .load(conn)?;
        Ok(ids.into_iter().flatten().collect())
    }
}
