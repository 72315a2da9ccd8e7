use diesel::prelude::*;

use crate::domain::Role;
use crate::store::DbConn;
use crate::store::schema::invites;

/// The `expires_at` of a revoked invite: before any time a clock can read.
pub const REVOKED: i64 = 0;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invites)]
pub struct Invite {
    pub id: String,
    pub team_id: String,
    pub email: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub role: Role,
    pub token_hash: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

/// Database methods
impl Invite {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(invites::table).values(self.clone()).execute(conn).map(|_| ())
    }

    pub fn find_by_token_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<Invite>> {
        invites::table.filter(invites::token_hash.eq(hash)).select(Invite::as_select()).first(conn).optional()
    }

    /// Invites of a team not yet accepted nor expired.
    pub fn pending(conn: &mut DbConn, team_id: &str, now: i64) -> QueryResult<Vec<Invite>> {
        invites::table
            .filter(invites::team_id.eq(team_id))
            .filter(invites::accepted_at.is_null())
            .filter(invites::expires_at.gt(now))
            .order(invites::created_at.desc())
            .select(Invite::as_select())
            .load(conn)
    }

    /// Marks the invite used if it is still pending; 0 rows means someone
    /// else used it first, or it was revoked or expired meanwhile (the
    /// condition is checked again once a concurrent revoke has committed).
    pub fn mark_accepted(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<usize> {
        let pending = invites::accepted_at.is_null().and(invites::expires_at.gt(now));
        diesel::update(invites::table.find(id).filter(pending)).set(invites::accepted_at.eq(now)).execute(conn)
    }

    /// Ends a pending invite for good: it is marked expired since the epoch
    /// ([`REVOKED`]), not "now" — a clock a little behind (another instance,
    /// a clock stepped back) must never see it pending again. The row stays,
    /// so that it still counts towards the team's invitation limit (a revoke
    /// and re-invite sends another email); 0 rows means it was not pending.
    pub fn revoke(conn: &mut DbConn, team_id: &str, id: &str, now: i64) -> QueryResult<usize> {
        diesel::update(
            invites::table
                .find(id)
                .filter(invites::team_id.eq(team_id))
                .filter(invites::accepted_at.is_null())
                .filter(invites::expires_at.gt(now)),
        )
        .set(invites::expires_at.eq(REVOKED))
        .execute(conn)
    }

    /// The pending invites a member sent in a team.
    pub fn pending_from(conn: &mut DbConn, team_id: &str, inviter: &str, now: i64) -> QueryResult<Vec<Invite>> {
        invites::table
            .filter(invites::team_id.eq(team_id))
            .filter(invites::invited_by.eq(inviter))
            .filter(invites::accepted_at.is_null())
            .filter(invites::expires_at.gt(now))
            .select(Invite::as_select())
            .load(conn)
    }

    /// To whom and when the team sent invitations after `since`, whatever
    /// became of them (accepted, revoked, expired).
    pub fn sent_since(conn: &mut DbConn, team_id: &str, since: i64) -> QueryResult<Vec<(String, i64)>> {
        invites::table
            .filter(invites::team_id.eq(team_id))
            .filter(invites::created_at.gt(since))
            .select((invites::email, invites::created_at))
            .load(conn)
    }
}
