use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::schema::recovery_codes;

/// A single-use recovery code, stored as a keyed hash.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = recovery_codes)]
pub struct RecoveryCode {
    pub id: String,
    pub user_id: String,
    pub code_hash: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
}

/// Database methods
impl RecoveryCode {
    pub fn insert_all(conn: &mut DbConn, codes: &[RecoveryCode]) -> QueryResult<()> {
        for code in codes {
            diesel::insert_into(recovery_codes::table).values(code).execute(conn)?;
        }
        Ok(())
    }

    pub fn delete_for_user(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)
    }

    pub fn remaining(conn: &mut DbConn, user_id: &str) -> QueryResult<i64> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .count()
            .get_result(conn)
    }

    /// Uses the unused code with this hash; 0 rows means no such code.
    pub fn consume(conn: &mut DbConn, user_id: &str, hash: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            recovery_codes::table
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::code_hash.eq(hash))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(at))
        .execute(conn)
    }
}
