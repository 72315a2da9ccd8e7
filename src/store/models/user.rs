use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::schema::users;

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub is_support: bool,
    pub created_at: i64,
    /// AEAD-encrypted TOTP secret (nonce ‖ ciphertext, hex), when 2FA is on.
    pub totp_secret_enc: Option<String>,
    /// The secret of an enrolment not yet confirmed.
    pub totp_pending_enc: Option<String>,
    pub totp_enabled_at: Option<i64>,
    /// The last accepted time step: each step is accepted once.
    pub totp_last_step: Option<i64>,
}

impl User {
    pub fn new(id: String, email: String, password_hash: String, is_support: bool, created_at: i64) -> Self {
        Self {
            id,
            email,
            password_hash,
            is_support,
            created_at,
            totp_secret_enc: None,
            totp_pending_enc: None,
            totp_enabled_at: None,
            totp_last_step: None,
        }
    }

    pub fn has_totp(&self) -> bool {
        self.totp_enabled_at.is_some()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("email", &self.email).finish_non_exhaustive()
    }
}

/// Database methods
impl User {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(users::table).values(self).execute(conn).map(|_| ())
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<User>> {
        users::table.find(id).select(User::as_select()).first(conn).optional()
    }

    /// Users holding a TOTP secret sealed before secrets were bound to their
    /// user (no `v2:` tag).
    pub fn with_unbound_totp(conn: &mut DbConn) -> QueryResult<Vec<User>> {
        users::table
            .filter(users::totp_secret_enc.not_like("v2:%").or(users::totp_pending_enc.not_like("v2:%")))
            .select(User::as_select())
            .load(conn)
    }

    pub fn find_by_email(conn: &mut DbConn, email: &str) -> QueryResult<Option<User>> {
        users::table.filter(users::email.eq(email)).select(User::as_select()).first(conn).optional()
    }

    pub fn set_password(conn: &mut DbConn, id: &str, hash: &str) -> QueryResult<usize> {
        diesel::update(users::table.find(id)).set(users::password_hash.eq(hash)).execute(conn)
    }

    pub fn set_totp_pending(conn: &mut DbConn, id: &str, enc: Option<&str>) -> QueryResult<usize> {
        diesel::update(users::table.find(id)).set(users::totp_pending_enc.eq(enc)).execute(conn)
    }

    /// Turns 2FA on with the confirmed secret; `step` is the step just used.
    pub fn enable_totp(conn: &mut DbConn, id: &str, enc: &str, at: i64, step: i64) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((
                users::totp_secret_enc.eq(enc),
                users::totp_pending_enc.eq(None::<String>),
                users::totp_enabled_at.eq(at),
                users::totp_last_step.eq(step),
            ))
            .execute(conn)
    }

    /// Replaces the sealed secret of an enabled 2FA (re-sealed with its context).
    pub fn set_totp_secret(conn: &mut DbConn, id: &str, enc: &str) -> QueryResult<usize> {
        diesel::update(users::table.find(id).filter(users::totp_secret_enc.is_not_null()))
            .set(users::totp_secret_enc.eq(enc))
            .execute(conn)
    }

    pub fn disable_totp(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::update(users::table.find(id))
            .set((
                users::totp_secret_enc.eq(None::<String>),
                users::totp_pending_enc.eq(None::<String>),
                users::totp_enabled_at.eq(None::<i64>),
                users::totp_last_step.eq(None::<i64>),
            ))
            .execute(conn)
    }

    /// Records `step` as used; 0 rows means it (or a later one) was used already.
    pub fn claim_totp_step(conn: &mut DbConn, id: &str, step: i64) -> QueryResult<usize> {
        diesel::update(users::table.find(id).filter(users::totp_last_step.is_null().or(users::totp_last_step.lt(step))))
            .set(users::totp_last_step.eq(step))
            .execute(conn)
    }

    /// Users whose email contains `q` (emails are stored lower-case).
    pub fn search(conn: &mut DbConn, q: &str, limit: i64) -> QueryResult<Vec<User>> {
        let pattern = format!("%{}%", crate::store::like_escape(q));
        users::table
            .filter(users::email.like(pattern).escape('\\'))
            .order(users::email.asc())
            .limit(limit)
            .select(User::as_select())
            .load(conn)
    }

    pub fn any_exists(conn: &mut DbConn) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(users::table.select(users::id))).get_result(conn)
    }
}
