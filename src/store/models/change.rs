//! The change feed (`changes`): rows appended by database triggers whenever
//! something a cached verification depends on changes (see the migration
//! `change_feed`). Read by every instance from its last sequence number.

use diesel::prelude::*;

use crate::store::schema::changes;
use crate::store::{DbConn, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = changes)]
pub struct Change {
    pub seq: i64,
    /// `key`, `user` (a membership of the user), `team`, `token` or `client`.
    pub kind: String,
    pub object_id: String,
    pub at: i64,
}

/// Database methods
impl Change {
    /// The last sequence number written (0 when the feed is empty).
    pub fn latest(conn: &mut DbConn) -> Result<i64, StoreError> {
        let max: Option<i64> = changes::table.select(diesel::dsl::max(changes::seq)).first(conn)?;
        Ok(max.unwrap_or(0))
    }

    /// Up to `limit` changes after `seq`, oldest first (one indexed read).
    pub fn after(conn: &mut DbConn, seq: i64, limit: i64) -> Result<Vec<Change>, StoreError> {
        Ok(changes::table
            .filter(changes::seq.gt(seq))
            .order(changes::seq.asc())
            .limit(limit)
            .select((changes::seq, changes::kind, changes::object_id, changes::at))
            .load(conn)?)
    }

    /// PostgreSQL: the oldest transaction id still running and the next one
    /// to be assigned (`None` on SQLite, where writers never overlap, so a
    /// sequence number cannot commit after a later one).
    pub fn running_transactions(conn: &mut DbConn) -> Result<Option<(i64, i64)>, StoreError> {
        #[derive(QueryableByName)]
        struct Snapshot {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            xmin: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            xmax: i64,
        }
        match conn {
            DbConn::Sqlite(_) => Ok(None),
            DbConn::Pg(c) => {
                let s: Snapshot = diesel::sql_query(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
                     pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax",
                )
                .get_result(c)?;
                Ok(Some((s.xmin, s.xmax)))
            }
        }
    }

    /// Forgets changes older than `before` (Unix seconds): every instance has
    /// read them long ago.
    pub fn prune(conn: &mut DbConn, before: i64) -> Result<usize, StoreError> {
        Ok(diesel::delete(changes::table.filter(changes::at.lt(before))).execute(conn)?)
    }
}
