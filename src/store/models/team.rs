use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::schema::{memberships, teams, users};

use super::User;
use crate::domain::Role;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = teams)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub require_totp: bool,
    pub created_at: i64,
    pub plan: Option<String>,
    pub max_key_lifetime_days: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub team_id: String,
    pub user_id: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub role: Role,
    pub created_at: i64,
}

/// Database methods
impl Team {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(teams::table).values(self).execute(conn).map(|_| ())
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<Team>> {
        teams::table.find(id).select(Team::as_select()).first(conn).optional()
    }

    /// Holds the team's row until the transaction ends, so that writes that
    /// first count the team's rows (invitations) take turns. Branches per
    /// backend: PostgreSQL locks the row (`FOR NO KEY UPDATE`, which rows
    /// referring to the team do not wait for); SQLite's `BEGIN IMMEDIATE`
    /// already serializes every writer.
    pub fn lock(conn: &mut DbConn, id: &str) -> QueryResult<()> {
        match conn {
            DbConn::Pg(pg) => {
                teams::table.find(id).select(teams::id).for_no_key_update().first::<String>(pg).optional().map(|_| ())
            }
            DbConn::Sqlite(_) => Ok(()),
        }
    }

    /// Teams whose name contains `q` (case-insensitive), by name.
    pub fn search(conn: &mut DbConn, q: &str, limit: i64) -> QueryResult<Vec<Team>> {
        let pattern = format!("%{}%", crate::store::like_escape(&q.to_lowercase()));
        teams::table
            .filter(crate::store::lower(teams::name).like(pattern).escape('\\'))
            .order(teams::name.asc())
            .limit(limit)
            .select(Team::as_select())
            .load(conn)
    }

    pub fn ids_named(conn: &mut DbConn, name: &str) -> QueryResult<Vec<String>> {
        teams::table.filter(teams::name.eq(name)).select(teams::id).load(conn)
    }

    pub fn set_require_totp(conn: &mut DbConn, id: &str, on: bool) -> QueryResult<usize> {
        diesel::update(teams::table.find(id)).set(teams::require_totp.eq(on)).execute(conn)
    }

    pub fn set_plan(conn: &mut DbConn, id: &str, plan: &str) -> QueryResult<usize> {
        diesel::update(teams::table.find(id)).set(teams::plan.eq(plan)).execute(conn)
    }

    pub fn set_max_key_lifetime(conn: &mut DbConn, id: &str, days: Option<i64>) -> QueryResult<usize> {
        diesel::update(teams::table.find(id)).set(teams::max_key_lifetime_days.eq(days)).execute(conn)
    }
}

/// Database methods
impl Membership {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(memberships::table).values(self.clone()).execute(conn).map(|_| ())
    }

    /// The user's team membership (the oldest, if there were ever several).
    pub fn of_user(conn: &mut DbConn, user_id: &str) -> QueryResult<Option<(Membership, Team)>> {
        memberships::table
            .inner_join(teams::table)
            .filter(memberships::user_id.eq(user_id))
            .order(memberships::created_at.asc())
            .select((Membership::as_select(), Team::as_select()))
            .first(conn)
            .optional()
    }

    pub fn find(conn: &mut DbConn, team_id: &str, user_id: &str) -> QueryResult<Option<Membership>> {
        memberships::table.find((team_id, user_id)).select(Membership::as_select()).first(conn).optional()
    }

    /// [`Membership::find`] inside a write transaction, holding the row until
    /// it ends, so that a removal or role change waits for the write that
    /// relied on this role. Branches per backend: PostgreSQL takes a share
    /// lock; SQLite's `BEGIN IMMEDIATE` already serializes every writer.
    pub fn find_for_share(conn: &mut DbConn, team_id: &str, user_id: &str) -> QueryResult<Option<Membership>> {
        match conn {
            DbConn::Pg(pg) => memberships::table
                .find((team_id, user_id))
                .select(Membership::as_select())
                .for_share()
                .first(pg)
                .optional(),
            DbConn::Sqlite(_) => Self::find(conn, team_id, user_id),
        }
    }

    /// Members of a team with their accounts, owners first then by join date.
    pub fn list(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<(Membership, User)>> {
        memberships::table
            .inner_join(users::table)
            .filter(memberships::team_id.eq(team_id))
            .order(memberships::created_at.asc())
            .select((Membership::as_select(), User::as_select()))
            .load(conn)
    }

    pub fn count_owners(conn: &mut DbConn, team_id: &str) -> QueryResult<i64> {
        memberships::table
            .filter(memberships::team_id.eq(team_id))
            .filter(memberships::role.eq(Role::Owner.as_str()))
            .count()
            .get_result(conn)
    }

    pub fn set_role(conn: &mut DbConn, team_id: &str, user_id: &str, role: Role) -> QueryResult<usize> {
        diesel::update(memberships::table.find((team_id, user_id)))
            .set(memberships::role.eq(role.as_str()))
            .execute(conn)
    }

    pub fn delete(conn: &mut DbConn, team_id: &str, user_id: &str) -> QueryResult<usize> {
        diesel::delete(memberships::table.find((team_id, user_id))).execute(conn)
    }
}
