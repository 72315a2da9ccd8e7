//! One message on its way to one endpoint: its attempts and where it stands.
//!
//! Rules: an endpoint's deliveries go out in `id` order — only the oldest
//! pending one (its head) is ever attempted, so a later delivery waits while
//! an earlier one waits for its retry.

use diesel::prelude::*;

use super::webhook::WebhookMessage;
use crate::domain::DeliveryStatus;
use crate::store::DbConn;
use crate::store::schema::{webhook_deliveries, webhook_endpoints, webhook_messages};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint_id: String,
    pub message_id: String,
    #[diesel(deserialize_as = String)]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: Option<i64>,
    pub first_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    /// The HTTP status of the last answer (none when there was no answer).
    pub last_status: Option<i64>,
    /// Why the last attempt failed, in a few words (never a secret).
    pub last_error: Option<String>,
}

/// How one attempt went, as stored.
pub struct Attempt<'a> {
    pub status: DeliveryStatus,
    pub at: i64,
    pub next_attempt_at: Option<i64>,
    pub http_status: Option<i64>,
    pub error: Option<&'a str>,
}

/// Database methods
impl WebhookDelivery {
    /// Queues `message_id` for each endpoint, due at `at`.
    pub fn queue(conn: &mut DbConn, endpoint_ids: &[String], message_id: &str, at: i64) -> QueryResult<usize> {
        // One row per statement: the multi-backend connection has no batch
        // insert (a team has at most a few endpoints).
        let mut inserted = 0;
        for e in endpoint_ids {
            let row = (
                webhook_deliveries::endpoint_id.eq(e),
                webhook_deliveries::message_id.eq(message_id),
                webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                webhook_deliveries::attempts.eq(0_i64),
                webhook_deliveries::created_at.eq(at),
                webhook_deliveries::next_attempt_at.eq(Some(at)),
            );
            inserted += diesel::insert_into(webhook_deliveries::table).values(row).execute(conn)?;
        }
        Ok(inserted)
    }

    /// Whether `message_id` waits (pending) for `endpoint_id` already.
    pub fn is_pending(conn: &mut DbConn, endpoint_id: &str, message_id: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            webhook_deliveries::table
                .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
                .filter(webhook_deliveries::message_id.eq(message_id))
                .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str())),
        ))
        .get_result(conn)
    }

    pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        webhook_deliveries::table.find(id).select(Self::as_select()).first(conn).optional()
    }

    /// The endpoints whose oldest pending delivery is due at `at`, enabled
    /// and not leased by anyone at `real_now`: each team's longest-overdue
    /// endpoint first (every team with a delivery due gets a slot before any
    /// team gets a second), at most `per_team` of one team, at most `limit`
    /// in all — so neither one team's backlog nor several teams' together
    /// hold another team's deliveries back.
    pub fn due_endpoints(
        conn: &mut DbConn,
        at: i64,
        real_now: i64,
        limit: usize,
        per_team: usize,
    ) -> QueryResult<Vec<String>> {
        let free = webhook_endpoints::lease_until.is_null().or(webhook_endpoints::lease_until.lt(real_now));
        let heads: Vec<(String, Option<i64>)> = webhook_deliveries::table
            .inner_join(webhook_endpoints::table)
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
            .filter(webhook_endpoints::disabled_at.is_null())
            .filter(free)
            .group_by(webhook_deliveries::endpoint_id)
            .select((webhook_deliveries::endpoint_id, diesel::dsl::min(webhook_deliveries::id)))
            .load(conn)?;
        let ids: Vec<i64> = heads.into_iter().filter_map(|(_, id)| id).collect();
        let mut due: Vec<(String, String, Option<i64>)> = Vec::new();
        for chunk in ids.chunks(500) {
            due.extend(
                webhook_deliveries::table
                    .inner_join(webhook_endpoints::table)
                    .filter(webhook_deliveries::id.eq_any(chunk))
                    .filter(webhook_deliveries::next_attempt_at.le(at))
                    .select((
                        webhook_deliveries::endpoint_id,
                        webhook_endpoints::team_id,
                        webhook_deliveries::next_attempt_at,
                    ))
                    .load::<(String, String, Option<i64>)>(conn)?,
            );
        }
        // Each endpoint's rank within its team (its most overdue first);
        // then every team's first before any team's second, and so on.
        due.sort_by_key(|(_, _, next)| *next);
        let mut taken: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut ranked: Vec<(usize, Option<i64>, String)> = due
            .into_iter()
            .filter_map(|(endpoint, team, next)| {
                let n = taken.entry(team).or_default();
                *n += 1;
                (*n <= per_team).then_some((*n, next, endpoint))
            })
            .collect();
        ranked.sort_by_key(|(rank, next, _)| (*rank, *next));
        Ok(ranked.into_iter().map(|(_, _, endpoint)| endpoint).take(limit).collect())
    }

    /// The endpoint's oldest pending delivery, with its message.
    pub fn head(conn: &mut DbConn, endpoint_id: &str) -> QueryResult<Option<(Self, WebhookMessage)>> {
        webhook_deliveries::table
            .inner_join(webhook_messages::table)
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
            .order(webhook_deliveries::id)
            .select((Self::as_select(), WebhookMessage::as_select()))
            .first(conn)
            .optional()
    }

    /// Records an attempt (the first one also sets `first_attempt_at`).
    pub fn record(conn: &mut DbConn, id: i64, a: &Attempt<'_>) -> QueryResult<usize> {
        diesel::update(webhook_deliveries::table.find(id))
            .set((
                webhook_deliveries::status.eq(a.status.as_str()),
                webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
                webhook_deliveries::last_attempt_at.eq(a.at),
                webhook_deliveries::next_attempt_at.eq(a.next_attempt_at),
                webhook_deliveries::last_status.eq(a.http_status),
                webhook_deliveries::last_error.eq(a.error),
            ))
            .execute(conn)?;
        diesel::update(webhook_deliveries::table.find(id).filter(webhook_deliveries::first_attempt_at.is_null()))
            .set(webhook_deliveries::first_attempt_at.eq(a.at))
            .execute(conn)
    }

    /// The endpoint's latest deliveries with their event types, newest first.
    pub fn recent(conn: &mut DbConn, endpoint_id: &str, limit: i64) -> QueryResult<Vec<(Self, String)>> {
        webhook_deliveries::table
            .inner_join(webhook_messages::table)
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .order(webhook_deliveries::id.desc())
            .limit(limit)
            .select((Self::as_select(), webhook_messages::event_type))
            .load(conn)
    }

    /// Every delivery of the endpoint, oldest first (tests and exports).
    pub fn all_for(conn: &mut DbConn, endpoint_id: &str) -> QueryResult<Vec<Self>> {
        webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .order(webhook_deliveries::id)
            .select(Self::as_select())
            .load(conn)
    }
}
