use diesel::prelude::*;

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

#[derive(Debug, Clone, Default, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
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

/// Database methods. There is no update or delete: events are append-only
/// (and the database's triggers refuse both).
impl AuditEvent {
    pub fn append(conn: &mut DbConn, event: &NewAuditEvent) -> QueryResult<()> {
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
