//! A team's webhook endpoints and the messages its changes produce.
//!
//! Rules: an endpoint's signing secrets are stored sealed (`secret_enc`,
//! `old_secret_enc`), never plain; an endpoint is claimed for delivery by a
//! conditional UPDATE of its lease, which exactly one instance wins on SQLite
//! and PostgreSQL alike.

use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::schema::{webhook_endpoints, webhook_messages};

/// Where a team's events are sent.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookEndpoint {
    pub id: String,
    pub team_id: String,
    pub url: String,
    pub description: String,
    /// Space-separated event types, or `*` for every type.
    pub events: String,
    pub secret_enc: String,
    pub old_secret_enc: Option<String>,
    pub old_secret_until: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub lease_until: Option<i64>,
    pub lease_by: Option<String>,
}

/// One event, as every endpoint of the team that wants it receives it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_messages)]
pub struct WebhookMessage {
    pub id: String,
    pub team_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
}

/// What an edit of an endpoint changes.
pub struct EndpointSettings<'a> {
    pub url: &'a str,
    pub description: &'a str,
    pub events: &'a str,
}

/// Database methods
impl WebhookEndpoint {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<usize> {
        diesel::insert_into(webhook_endpoints::table).values(self).execute(conn)
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<Self>> {
        webhook_endpoints::table.find(id).select(Self::as_select()).first(conn).optional()
    }

    /// [`WebhookEndpoint::find`] inside a write transaction, holding the row
    /// until it ends on PostgreSQL (a check-then-queue on the endpoint waits
    /// for the one under way); SQLite's `BEGIN IMMEDIATE` already serializes
    /// every writer.
    pub fn find_for_update(conn: &mut DbConn, id: &str) -> QueryResult<Option<Self>> {
        match conn {
            DbConn::Pg(pg) => {
                webhook_endpoints::table.find(id).select(Self::as_select()).for_update().first(pg).optional()
            }
            DbConn::Sqlite(_) => Self::find(conn, id),
        }
    }

    /// The team's endpoints, newest first.
    pub fn for_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<Self>> {
        webhook_endpoints::table
            .filter(webhook_endpoints::team_id.eq(team_id))
            .order((webhook_endpoints::created_at.desc(), webhook_endpoints::id))
            .select(Self::as_select())
            .load(conn)
    }

    /// The team's endpoints that are not disabled: (id, events).
    pub fn enabled_for_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<(String, String)>> {
        webhook_endpoints::table
            .filter(webhook_endpoints::team_id.eq(team_id))
            .filter(webhook_endpoints::disabled_at.is_null())
            .order(webhook_endpoints::id)
            .select((webhook_endpoints::id, webhook_endpoints::events))
            .load(conn)
    }

    pub fn update_settings(conn: &mut DbConn, id: &str, s: &EndpointSettings<'_>) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::url.eq(s.url),
                webhook_endpoints::description.eq(s.description),
                webhook_endpoints::events.eq(s.events),
            ))
            .execute(conn)
    }

    /// Replaces the secrets: the current one, and the previous one with the
    /// end of its grace (or none).
    pub fn set_secrets(
        conn: &mut DbConn,
        id: &str,
        secret_enc: &str,
        old: (Option<&str>, Option<i64>),
    ) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret_enc.eq(secret_enc),
                webhook_endpoints::old_secret_enc.eq(old.0),
                webhook_endpoints::old_secret_until.eq(old.1),
            ))
            .execute(conn)
    }

    /// Disables an enabled endpoint; 0 when it already was.
    pub fn disable(conn: &mut DbConn, id: &str, reason: &str, at: i64) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::disabled_at.is_null()))
            .set((webhook_endpoints::disabled_at.eq(at), webhook_endpoints::disabled_reason.eq(reason)))
            .execute(conn)
    }

    /// Enables a disabled endpoint; 0 when it was not disabled.
    pub fn enable(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::disabled_at.is_not_null()))
            .set((
                webhook_endpoints::disabled_at.eq(None::<i64>),
                webhook_endpoints::disabled_reason.eq(None::<String>),
            ))
            .execute(conn)
    }

    pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::delete(webhook_endpoints::table.find(id)).execute(conn)
    }

    /// Takes the endpoint for delivery until `until` (real time), unless
    /// another instance holds an unexpired lease or it is disabled: `true`
    /// for the one caller that won.
    pub fn claim(conn: &mut DbConn, id: &str, me: &str, now: i64, until: i64) -> QueryResult<bool> {
        let free = webhook_endpoints::lease_until.is_null().or(webhook_endpoints::lease_until.lt(now));
        let won = diesel::update(
            webhook_endpoints::table.find(id).filter(webhook_endpoints::disabled_at.is_null()).filter(free),
        )
        .set((webhook_endpoints::lease_until.eq(until), webhook_endpoints::lease_by.eq(me)))
        .execute(conn)?;
        Ok(won == 1)
    }

    /// Gives back a lease this instance holds.
    pub fn release(conn: &mut DbConn, id: &str, me: &str) -> QueryResult<usize> {
        diesel::update(webhook_endpoints::table.find(id).filter(webhook_endpoints::lease_by.eq(me)))
            .set((webhook_endpoints::lease_until.eq(None::<i64>), webhook_endpoints::lease_by.eq(None::<String>)))
            .execute(conn)
    }
}

/// Database methods
impl WebhookMessage {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<usize> {
        diesel::insert_into(webhook_messages::table).values(self).execute(conn)
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<Self>> {
        webhook_messages::table.find(id).select(Self::as_select()).first(conn).optional()
    }
}
