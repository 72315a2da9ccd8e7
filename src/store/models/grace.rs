//! Rotations in their grace period: an API key that was rolled (its
//! `replaced_by` is set) and still works until `expires_at`, and an OAuth
//! app's previous client secret that still works until
//! `old_secret_expires_at`.
//!
//! Rules: every change here is conditional on the grace still running (and,
//! for an extension, on none having been made for this rotation), so two
//! requests racing end or extend a grace once; 0 rows means it changed
//! meanwhile.

use diesel::prelude::*;

use crate::store::DbConn;
use crate::store::models::{ApiKey, OauthClient};
use crate::store::schema::{api_keys, oauth_clients};

/// Database methods
impl ApiKey {
    /// Rolled keys whose grace ends after `from` and at or before `to`, soonest first.
    pub fn grace_ending_between(conn: &mut DbConn, from: i64, to: i64) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::replaced_by.is_not_null())
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::expires_at.gt(from))
            .filter(api_keys::expires_at.le(to))
            .order(api_keys::expires_at)
            .select(ApiKey::as_select())
            .load(conn)
    }

    /// Ends the grace of a rolled key at `at` (it expires then).
    pub fn end_grace(conn: &mut DbConn, id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            api_keys::table
                .find(id)
                .filter(api_keys::replaced_by.is_not_null())
                .filter(api_keys::revoked_at.is_null())
                .filter(api_keys::expires_at.gt(at)),
        )
        .set(api_keys::expires_at.eq(at))
        .execute(conn)
    }

    /// Moves the end of a rolled key's grace from `from` to `until`, once
    /// per roll (it notes `at` as the extension's time).
    pub fn extend_grace(conn: &mut DbConn, id: &str, from: i64, until: i64, at: i64) -> QueryResult<usize> {
        diesel::update(
            api_keys::table
                .find(id)
                .filter(api_keys::replaced_by.is_not_null())
                .filter(api_keys::revoked_at.is_null())
                .filter(api_keys::grace_extended_at.is_null())
                .filter(api_keys::expires_at.eq(from))
                .filter(api_keys::expires_at.gt(at)),
        )
        .set((api_keys::expires_at.eq(until), api_keys::grace_extended_at.eq(at)))
        .execute(conn)
    }
}

/// Database methods
impl OauthClient {
    /// Apps whose previous secret's grace ends after `from` and at or before `to`.
    pub fn secret_grace_ending_between(conn: &mut DbConn, from: i64, to: i64) -> QueryResult<Vec<OauthClient>> {
        oauth_clients::table
            .filter(oauth_clients::old_secret_hash.is_not_null())
            .filter(oauth_clients::old_secret_expires_at.gt(from))
            .filter(oauth_clients::old_secret_expires_at.le(to))
            .order(oauth_clients::old_secret_expires_at)
            .select(OauthClient::as_select())
            .load(conn)
    }

    /// Ends the previous secret (with the hash `old_hash`) at `at`: it is
    /// forgotten and no longer accepted.
    pub fn end_secret_grace(conn: &mut DbConn, id: &str, old_hash: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            oauth_clients::table
                .find(id)
                .filter(oauth_clients::old_secret_hash.eq(old_hash))
                .filter(oauth_clients::old_secret_expires_at.gt(at)),
        )
        .set((oauth_clients::old_secret_hash.eq(None::<String>), oauth_clients::old_secret_expires_at.eq(at)))
        .execute(conn)
    }

    /// Moves the end of the previous secret's grace from `from` to `until`,
    /// once per rotation (it notes `at` as the extension's time).
    pub fn extend_secret_grace(
        conn: &mut DbConn,
        id: &str,
        old_hash: &str,
        (from, until): (i64, i64),
        at: i64,
    ) -> QueryResult<usize> {
        diesel::update(
            oauth_clients::table
                .find(id)
                .filter(oauth_clients::old_secret_hash.eq(old_hash))
                .filter(oauth_clients::old_secret_extended_at.is_null())
                .filter(oauth_clients::old_secret_expires_at.eq(from))
                .filter(oauth_clients::old_secret_expires_at.gt(at)),
        )
        .set((oauth_clients::old_secret_expires_at.eq(until), oauth_clients::old_secret_extended_at.eq(at)))
        .execute(conn)
    }
}
