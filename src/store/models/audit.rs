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

    /// The newest events of a team, newest first (by time, then by id: the
    /// order of the index `audit_events_team`).
    pub fn recent_for_team(conn: &mut DbConn, team_id: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::team_id.eq(team_id))
            .order((audit_events::created_at.desc(), audit_events::id.desc()))
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

/// Where a page of the team log starts: after the event at `created_at`
/// with `id` (the last one of the previous page). Written `created_at.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub created_at: i64,
    pub id: i64,
}

impl AuditCursor {
    /// `None` for anything that is not `created_at.id`.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        Some(Self { created_at: at.parse().ok()?, id: id.parse().ok()? })
    }

    pub fn of(event: &AuditEvent) -> Self {
        Self { created_at: event.created_at, id: event.id }
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
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
    /// Only events older than this one (in the log's order).
    pub before: Option<AuditCursor>,
}

/// Distinct actors a team's log is searched through by name before the
/// actor filter falls back to reading the team's events one by one.
const MAX_ACTORS_LISTED: usize = 200;

/// Index ranges one search reads at most (actions of a prefix × actors
/// whose label contains the text) before matching the text row by row.
const MAX_RANGES: usize = 32;

impl AuditEvent {
    /// A team's events matching `f`, newest first (by time, then by id).
    /// Every filter is a range of an index, `(team_id, created_at, id)` for
    /// the dates and the cursor, led by the action or the actor's label when
    /// those are filtered: an action prefix reads one range per action, and
    /// an actor's text one range per actor whose label contains it (found in
    /// the index of labels, once), merged — at most [`MAX_RANGES`] ranges;
    /// past that, or in a team with more than [`MAX_ACTORS_LISTED`] actors,
    /// the text is matched row by row within each action's range. What is
    /// merged never holds more than twice `limit` events.
    pub fn search(conn: &mut DbConn, team_id: &str, f: &AuditFilter, limit: i64) -> QueryResult<Vec<AuditEvent>> {
        let actions: Vec<Option<AuditAction>> = match &f.action {
            Some(ActionFilter::Prefix(p)) => {
                let prefix = p.to_ascii_lowercase();
                AuditAction::ALL.iter().filter(|a| a.as_str().starts_with(&prefix)).map(|a| Some(*a)).collect()
            }
            Some(ActionFilter::Unknown) => return Ok(Vec::new()),
            Some(ActionFilter::Is(action)) => vec![Some(*action)],
            None => vec![None],
        };
        let labels = match &f.actor {
            Some(actor) if !actions.is_empty() => Self::labels_containing(conn, team_id, actor)?,
            _ => None,
        };
        let labels = labels.filter(|l| l.len().saturating_mul(actions.len()) <= MAX_RANGES);
        let keep = usize::try_from(limit).unwrap_or(0);
        let mut events = Vec::new();
        for action in actions {
            let one = AuditFilter { action: action.map(ActionFilter::Is), ..f.clone() };
            match &labels {
                Some(labels) => {
                    for label in labels {
                        events.extend(Self::search_one(conn, team_id, &one, Some(label), limit)?);
                        if events.len() > keep {
                            events = newest(events, limit);
                        }
                    }
                }
                None => events.extend(Self::search_one(conn, team_id, &one, None, limit)?),
            }
            if events.len() > keep {
                events = newest(events, limit);
            }
        }
        Ok(newest(events, limit))
    }

    /// One index range: the actor's exact `label` when given, else `f`'s
    /// actor text matched row by row; one action at most.
    fn search_one(
        conn: &mut DbConn,
        team_id: &str,
        f: &AuditFilter,
        label: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<AuditEvent>> {
        let mut q = audit_events::table.filter(audit_events::team_id.eq(team_id)).into_boxed();
        match (label, &f.actor) {
            (Some(label), _) => q = q.filter(audit_events::actor_label.eq(label.to_owned())),
            (None, Some(actor)) => {
                let pattern = format!("%{}%", crate::store::like_escape(&actor.to_lowercase()));
                q = q.filter(crate::store::lower(audit_events::actor_label).like(pattern).escape('\\'));
            }
            (None, None) => {}
        }
        if let Some(ActionFilter::Is(action)) = &f.action {
            q = q.filter(audit_events::action.eq(action.as_str()));
        }
        if let Some(from) = f.from {
            q = q.filter(audit_events::created_at.ge(from));
        }
        if let Some(to) = f.to {
            q = q.filter(audit_events::created_at.le(to));
        }
        if let Some(c) = f.before {
            // The first condition bounds the index range; the second is the cursor.
            q = q
                .filter(audit_events::created_at.le(c.created_at))
                .filter(audit_events::created_at.lt(c.created_at).or(audit_events::id.lt(c.id)));
        }
        q.order((audit_events::created_at.desc(), audit_events::id.desc()))
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }

    /// The team's actor labels that contain `text` (case aside, as
    /// `lower(label) LIKE '%text%'`), read one distinct label at a time from
    /// the index `(team_id, actor_label, …)`; `None` past [`MAX_ACTORS_LISTED`].
    fn labels_containing(conn: &mut DbConn, team_id: &str, text: &str) -> QueryResult<Option<Vec<String>>> {
        let (needle, mut found, mut last) = (text.to_lowercase(), Vec::new(), None::<String>);
        for _ in 0..MAX_ACTORS_LISTED {
            let mut q = audit_events::table.filter(audit_events::team_id.eq(team_id)).into_boxed();
            if let Some(after) = last.take() {
                q = q.filter(audit_events::actor_label.gt(after));
            }
            let next = q.order(audit_events::actor_label.asc()).select(audit_events::actor_label).first::<String>(conn);
            let Some(label) = next.optional()? else { return Ok(Some(found)) };
            if label.to_lowercase().contains(&needle) {
                found.push(label.clone());
            }
            last = Some(label);
        }
        Ok(None)
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

/// The newest `limit` of events gathered from several ranges, newest first.
fn newest(mut events: Vec<AuditEvent>, limit: i64) -> Vec<AuditEvent> {
    events.sort_unstable_by_key(|e| std::cmp::Reverse((e.created_at, e.id)));
    events.truncate(usize::try_from(limit).unwrap_or(0));
    events
}
