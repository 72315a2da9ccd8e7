//! What email needs to remember: the kinds a person turned off, and the
//! devices each person signed in from (by a keyed hash of the device cookie).

use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::schema::{email_opt_outs, known_devices};

/// A kind of email a person turned off (`api_key.expiring`).
pub struct EmailOptOut;

/// Database methods
impl EmailOptOut {
    /// Turns `kind` off for the user; turning it off twice changes nothing.
    pub fn add(conn: &mut DbConn, user_id: &str, kind: &str, at: i64) -> QueryResult<()> {
        let row =
            (email_opt_outs::user_id.eq(user_id), email_opt_outs::kind.eq(kind), email_opt_outs::created_at.eq(at));
        // Upserts differ per backend (MultiConnection has no ON CONFLICT).
        match conn {
            DbConn::Sqlite(c) => {
                diesel::insert_into(email_opt_outs::table).values(row).on_conflict_do_nothing().execute(c)
            }
            DbConn::Pg(c) => diesel::insert_into(email_opt_outs::table).values(row).on_conflict_do_nothing().execute(c),
        }
        .map(|_| ())
    }

    /// Turns `kind` on again for the user.
    pub fn remove(conn: &mut DbConn, user_id: &str, kind: &str) -> QueryResult<usize> {
        diesel::delete(
            email_opt_outs::table.filter(email_opt_outs::user_id.eq(user_id)).filter(email_opt_outs::kind.eq(kind)),
        )
        .execute(conn)
    }

    /// The kinds the user turned off.
    pub fn of_user(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<String>> {
        email_opt_outs::table.filter(email_opt_outs::user_id.eq(user_id)).select(email_opt_outs::kind).load(conn)
    }

    /// Which of `users` turned `kind` off.
    pub fn among(conn: &mut DbConn, users: &[&str], kind: &str) -> QueryResult<Vec<String>> {
        email_opt_outs::table
            .filter(email_opt_outs::user_id.eq_any(users))
            .filter(email_opt_outs::kind.eq(kind))
            .select(email_opt_outs::user_id)
            .load(conn)
    }
}

/// A device a person signed in from.
pub struct KnownDevice;

/// Database methods
impl KnownDevice {
    /// Marks the device seen at `at`; `false` if the user never signed in from it.
    pub fn touch(conn: &mut DbConn, user_id: &str, device_hash: &str, at: i64) -> QueryResult<bool> {
        let found = known_devices::table
            .filter(known_devices::user_id.eq(user_id))
            .filter(known_devices::device_hash.eq(device_hash));
        Ok(diesel::update(found).set(known_devices::last_seen_at.eq(at)).execute(conn)? == 1)
    }

    /// Whether the user signed in from any device before.
    pub fn any(conn: &mut DbConn, user_id: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(known_devices::table.filter(known_devices::user_id.eq(user_id))))
            .get_result(conn)
    }

    /// Remembers a device (a concurrent first sign-in from it is not an error).
    pub fn add(conn: &mut DbConn, user_id: &str, device_hash: &str, at: i64) -> QueryResult<()> {
        let row = (
            known_devices::user_id.eq(user_id),
            known_devices::device_hash.eq(device_hash),
            known_devices::first_seen_at.eq(at),
            known_devices::last_seen_at.eq(at),
        );
        // Upserts differ per backend (MultiConnection has no ON CONFLICT).
        match conn {
            DbConn::Sqlite(c) => {
                diesel::insert_into(known_devices::table).values(row).on_conflict_do_nothing().execute(c)
            }
            DbConn::Pg(c) => diesel::insert_into(known_devices::table).values(row).on_conflict_do_nothing().execute(c),
        }
        .map(|_| ())
    }

    /// Forgets all but the user's `keep` most recently seen devices.
    pub fn keep_recent(conn: &mut DbConn, user_id: &str, keep: i64) -> QueryResult<usize> {
        let recent: Vec<String> = known_devices::table
            .filter(known_devices::user_id.eq(user_id))
            .order(known_devices::last_seen_at.desc())
            .limit(keep)
            .select(known_devices::device_hash)
            .load(conn)?;
        diesel::delete(
            known_devices::table
                .filter(known_devices::user_id.eq(user_id))
                .filter(known_devices::device_hash.ne_all(recent)),
        )
        .execute(conn)
    }
}
