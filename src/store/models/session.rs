use diesel::prelude::*;

use crate::store::schema::sessions;
use crate::store::{Db, DbConn, StoreError};

/// A server-side session; `id` is the SHA-256 of the cookie's session key.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub user_id: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Database methods
impl SessionRow {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(sessions::table).values(self).execute(conn).map(|_| ())
    }

    pub fn find_live(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<Option<SessionRow>> {
        sessions::table
            .find(id)
            .filter(sessions::expires_at.gt(now))
            .select(SessionRow::as_select())
            .first(conn)
            .optional()
    }

    /// Replaces state and expiry; returns the number of rows changed.
    pub fn update_state(conn: &mut DbConn, row: &SessionRow) -> QueryResult<usize> {
        diesel::update(sessions::table.find(&row.id))
            .set((
                sessions::user_id.eq(&row.user_id),
                sessions::state.eq(&row.state),
                sessions::last_seen_at.eq(row.last_seen_at),
                sessions::expires_at.eq(row.expires_at),
                sessions::user_agent.eq(&row.user_agent),
                sessions::ip.eq(&row.ip),
            ))
            .execute(conn)
    }

    pub fn touch(conn: &mut DbConn, id: &str, now: i64, expires_at: i64) -> QueryResult<usize> {
        diesel::update(sessions::table.find(id))
            .set((sessions::last_seen_at.eq(now), sessions::expires_at.eq(expires_at)))
            .execute(conn)
    }

    pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.find(id)).execute(conn)
    }

    /// Ends every session of a user (membership removed, password changed).
    pub fn delete_for_user(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
    }

    /// A user's live sessions, most recently seen first.
    pub fn list_for_user(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<Vec<SessionRow>> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::expires_at.gt(now))
            .order(sessions::last_seen_at.desc())
            .select(SessionRow::as_select())
            .load(conn)
    }

    pub fn delete_one_of_user(conn: &mut DbConn, user_id: &str, id: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.find(id).filter(sessions::user_id.eq(user_id))).execute(conn)
    }

    pub fn delete_for_user_except(conn: &mut DbConn, user_id: &str, keep: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::id.ne(keep)))
            .execute(conn)
    }

    pub fn delete_expired(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)
    }
}

/// The session store's access (actix-session's storage backend): each call
/// one query on the blocking pool.
impl SessionRow {
    pub async fn load_live(db: &Db, id: String, now: i64) -> Result<Option<SessionRow>, StoreError> {
        db.run(move |conn| Self::find_live(conn, &id, now).map_err(StoreError::from)).await
    }

    pub async fn store(self, db: &Db) -> Result<(), StoreError> {
        db.run(move |conn| self.insert(conn).map_err(StoreError::from)).await
    }

    /// [`SessionRow::update_state`]; never re-creates a row that is gone.
    pub async fn store_state(self, db: &Db) -> Result<usize, StoreError> {
        db.run(move |conn| Self::update_state(conn, &self).map_err(StoreError::from)).await
    }

    pub async fn keep_alive(db: &Db, id: String, now: i64, expires_at: i64) -> Result<usize, StoreError> {
        db.run(move |conn| Self::touch(conn, &id, now, expires_at).map_err(StoreError::from)).await
    }

    pub async fn end(db: &Db, id: String) -> Result<usize, StoreError> {
        db.run(move |conn| Self::delete(conn, &id).map_err(StoreError::from)).await
    }
}
