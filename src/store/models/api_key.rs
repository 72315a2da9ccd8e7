use diesel::prelude::*;

use crate::domain::{KeyKind, KeyStatus};
use crate::store::DbConn;
use crate::store::schema::api_keys;

diesel::define_sql_function! {
    /// SQL `lower()`, on SQLite and PostgreSQL alike.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A team's API key ([`KeyKind::Team`]) or an operator's service key
/// ([`KeyKind::Service`]). Only the keyed hash of the secret is stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub kind: KeyKind,
    pub team_id: Option<String>,
    pub created_by: Option<String>,
    pub name: String,
    pub description: String,
    pub key_hash: String,
    pub key_prefix: String,
    /// Space-separated.
    pub scopes: String,
    /// Comma-separated CIDRs; empty means any address.
    pub allowed_ips: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<i64>,
    pub rolled_from: Option<String>,
    pub replaced_by: Option<String>,
    /// Paused: refused like a revoked key until enabled again.
    pub disabled_at: Option<i64>,
    /// When the grace of a roll was extended (once per roll).
    pub grace_extended_at: Option<i64>,
}

/// Which keys a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Active,
    ExpiringSoon,
    Expired,
    Revoked,
    Disabled,
}

impl From<KeyStatus> for StatusFilter {
    /// The keys in that status.
    fn from(status: KeyStatus) -> Self {
        match status {
            KeyStatus::Active => Self::Active,
            KeyStatus::ExpiringSoon => Self::ExpiringSoon,
            KeyStatus::Expired => Self::Expired,
            KeyStatus::Revoked => Self::Revoked,
            KeyStatus::Disabled => Self::Disabled,
        }
    }
}

/// Keys expiring within this many seconds are "expiring soon".
pub const EXPIRING_SOON_SECS: i64 = 7 * 24 * 3600;

impl ApiKey {
    /// Where the key stands at `at`: revoked, expired, disabled (paused),
    /// expiring within [`EXPIRING_SOON_SECS`], or active. The one place a
    /// key's status is computed.
    pub fn status(&self, at: i64) -> KeyStatus {
        match (self.revoked_at, self.expires_at) {
            (Some(_), _) => KeyStatus::Revoked,
            (None, Some(exp)) if exp <= at => KeyStatus::Expired,
            _ if self.disabled_at.is_some() => KeyStatus::Disabled,
            (None, Some(exp)) if exp <= at + EXPIRING_SOON_SECS => KeyStatus::ExpiringSoon,
            _ => KeyStatus::Active,
        }
    }
}

/// Database methods
impl ApiKey {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(api_keys::table).values(self.clone()).execute(conn).map(|_| ())
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<ApiKey>> {
        api_keys::table.find(id).select(ApiKey::as_select()).first(conn).optional()
    }

    pub fn find_by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<ApiKey>> {
        api_keys::table.filter(api_keys::key_hash.eq(hash)).select(ApiKey::as_select()).first(conn).optional()
    }

    /// A page of a team's keys, newest first, after the `(created_at, id)` cursor;
    /// with `search`, only those whose name contains it or whose display prefix
    /// starts with it (both case-insensitive).
    pub fn list_for_team(
        conn: &mut DbConn,
        team_id: &str,
        filter: StatusFilter,
        after: Option<(i64, String)>,
        limit: i64,
        now: i64,
        search: Option<&str>,
    ) -> QueryResult<Vec<ApiKey>> {
        let mut q = api_keys::table.filter(api_keys::team_id.eq(team_id)).into_boxed();
        if let Some(term) = search.map(str::trim).filter(|t| !t.is_empty()) {
            let escaped = term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            // A display prefix is `{prefix}_{key_prefix}`: match its random part.
            let random = term.rsplit_once('_').map_or(term, |(_, r)| r).to_lowercase();
            let random = random.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            q = q.filter(
                lower(api_keys::name)
                    .like(format!("%{escaped}%"))
                    .escape('\\')
                    .or(lower(api_keys::key_prefix).like(format!("{random}%")).escape('\\')),
            );
        }
        let live = api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now));
        q = match filter {
            StatusFilter::All => q,
            StatusFilter::Active => {
                q.filter(api_keys::revoked_at.is_null()).filter(api_keys::disabled_at.is_null()).filter(live)
            }
            StatusFilter::Disabled => {
                q.filter(api_keys::revoked_at.is_null()).filter(api_keys::disabled_at.is_not_null()).filter(live)
            }
            StatusFilter::ExpiringSoon => q
                .filter(api_keys::revoked_at.is_null())
                .filter(api_keys::disabled_at.is_null())
                .filter(api_keys::expires_at.gt(now))
                .filter(api_keys::expires_at.le(now + EXPIRING_SOON_SECS)),
            StatusFilter::Expired => q.filter(api_keys::revoked_at.is_null()).filter(api_keys::expires_at.le(now)),
            StatusFilter::Revoked => q.filter(api_keys::revoked_at.is_not_null()),
        };
        if let Some((at, id)) = after {
            // The first condition bounds the range of the index `api_keys_team`
            // (team_id, created_at, id), whose order the page follows; the second is the cursor.
            q = q.filter(api_keys::created_at.le(at)).filter(api_keys::created_at.lt(at).or(api_keys::id.lt(id)));
        }
        q.order((api_keys::created_at.desc(), api_keys::id.desc())).limit(limit).select(ApiKey::as_select()).load(conn)
    }

    /// How many keys the team has, whatever their status.
    pub fn count_for_team(conn: &mut DbConn, team_id: &str) -> QueryResult<i64> {
        api_keys::table.filter(api_keys::team_id.eq(team_id)).count().get_result(conn)
    }

    /// A key, locked until the transaction ends on PostgreSQL (a revoke, a
    /// roll or another edit of it waits); SQLite's writers never overlap.
    pub fn find_for_update(conn: &mut DbConn, id: &str) -> QueryResult<Option<ApiKey>> {
        match conn {
            DbConn::Pg(pg) => api_keys::table.find(id).select(ApiKey::as_select()).for_update().first(pg).optional(),
            DbConn::Sqlite(_) => Self::find(conn, id),
        }
    }

    /// Writes what an edit may change (name, description, scopes, allowed
    /// addresses, expiry, paused since) to a key that is not revoked; 0 rows
    /// means it was revoked meanwhile.
    pub fn save_settings(conn: &mut DbConn, key: &ApiKey) -> QueryResult<usize> {
        diesel::update(api_keys::table.find(&key.id).filter(api_keys::revoked_at.is_null()))
            .set((
                api_keys::name.eq(&key.name),
                api_keys::description.eq(&key.description),
                api_keys::scopes.eq(&key.scopes),
                api_keys::allowed_ips.eq(&key.allowed_ips),
                api_keys::expires_at.eq(key.expires_at),
                api_keys::disabled_at.eq(key.disabled_at),
            ))
            .execute(conn)
    }

    /// Renames a key that is not revoked; 0 rows means it was revoked meanwhile.
    pub fn rename(conn: &mut DbConn, id: &str, name: &str, description: &str) -> QueryResult<usize> {
        diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
            .set((api_keys::name.eq(name), api_keys::description.eq(description)))
            .execute(conn)
    }

    /// Whether the team has an active key with this name (other than `except`).
    pub fn active_name_taken(conn: &mut DbConn, team_id: &str, name: &str, now: i64) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            api_keys::table
                .filter(api_keys::team_id.eq(team_id))
                .filter(api_keys::name.eq(name))
                .filter(api_keys::revoked_at.is_null())
                .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now))),
        ))
        .get_result(conn)
    }

    /// Keys created by a user (any team), newest first.
    pub fn created_by(conn: &mut DbConn, user_id: &str, limit: i64) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::created_by.eq(user_id))
            .order(api_keys::created_at.desc())
            .limit(limit)
            .select(ApiKey::as_select())
            .load(conn)
    }

    pub fn find_by_prefix(conn: &mut DbConn, prefix: &str) -> QueryResult<Vec<ApiKey>> {
        api_keys::table.filter(api_keys::key_prefix.eq(prefix)).select(ApiKey::as_select()).load(conn)
    }

    /// The team's keys a member is answerable for that still work (not
    /// revoked, not expired at `now`).
    pub fn active_held_by(conn: &mut DbConn, team_id: &str, user_id: &str, now: i64) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::team_id.eq(team_id))
            .filter(api_keys::created_by.eq(user_id))
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now)))
            .select(ApiKey::as_select())
            .load(conn)
    }

    /// Who answers for each working key of the team (one row per key).
    pub fn active_holders(conn: &mut DbConn, team_id: &str, now: i64) -> QueryResult<Vec<Option<String>>> {
        api_keys::table
            .filter(api_keys::team_id.eq(team_id))
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now)))
            .select(api_keys::created_by)
            .load(conn)
    }

    /// Makes `holder` answerable for a key, with `scopes` (never wider).
    pub fn transfer(conn: &mut DbConn, id: &str, holder: Option<&str>, scopes: &str) -> QueryResult<usize> {
        diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
            .set((api_keys::created_by.eq(holder), api_keys::scopes.eq(scopes)))
            .execute(conn)
    }

    /// Revokes an active key; 0 rows means it was already revoked.
    pub fn revoke(conn: &mut DbConn, id: &str, by: &str, reason: Option<&str>, now: i64) -> QueryResult<usize> {
        diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
            .set((api_keys::revoked_at.eq(now), api_keys::revoked_by.eq(by), api_keys::revoked_reason.eq(reason)))
            .execute(conn)
    }

    /// Marks a key as replaced, expiring at `expires_at`; 0 rows means it was
    /// already rolled or revoked.
    pub fn mark_rolled(conn: &mut DbConn, id: &str, replaced_by: &str, expires_at: i64) -> QueryResult<usize> {
        diesel::update(
            api_keys::table.find(id).filter(api_keys::replaced_by.is_null()).filter(api_keys::revoked_at.is_null()),
        )
        .set((api_keys::replaced_by.eq(replaced_by), api_keys::expires_at.eq(expires_at)))
        .execute(conn)
    }

    /// Team keys that still work and expire in `(after, until]`, soonest
    /// first: not revoked, not paused, not rolled away (a range of the index
    /// `api_keys_expiry`).
    pub fn expiring_between(conn: &mut DbConn, after: i64, until: i64) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::expires_at.gt(after))
            .filter(api_keys::expires_at.le(until))
            .filter(api_keys::team_id.is_not_null())
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::disabled_at.is_null())
            .filter(api_keys::replaced_by.is_null())
            .order((api_keys::expires_at.asc(), api_keys::id.asc()))
            .select(ApiKey::as_select())
            .load(conn)
    }

    /// [`expiring_between`](Self::expiring_between) for one team (only the
    /// keys `creator` made, when given): `(id, name, expires_at)`, soonest
    /// first, at most `limit` (a range of the index `api_keys_team_expiry`).
    pub fn team_expiring_between(
        conn: &mut DbConn,
        team_id: &str,
        creator: Option<&str>,
        (after, until): (i64, i64),
        limit: i64,
    ) -> QueryResult<Vec<(String, String, Option<i64>)>> {
        let mut q = api_keys::table
            .filter(api_keys::team_id.eq(team_id))
            .filter(api_keys::expires_at.gt(after))
            .filter(api_keys::expires_at.le(until))
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::disabled_at.is_null())
            .filter(api_keys::replaced_by.is_null())
            .into_boxed();
        if let Some(user) = creator {
            q = q.filter(api_keys::created_by.eq(user));
        }
        q.order((api_keys::expires_at.asc(), api_keys::id.asc()))
            .limit(limit)
            .select((api_keys::id, api_keys::name, api_keys::expires_at))
            .load(conn)
    }

    /// Which of `ids` name a key that exists (the others were deleted).
    pub fn existing(conn: &mut DbConn, ids: &[&str]) -> QueryResult<Vec<String>> {
        api_keys::table.filter(api_keys::id.eq_any(ids)).select(api_keys::id).load(conn)
    }

    pub fn set_last_used(conn: &mut DbConn, id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            api_keys::table.find(id).filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.lt(at))),
        )
        .set(api_keys::last_used_at.eq(at))
        .execute(conn)
    }
}
