//! The OAuth server's rows: apps (clients), consents, codes and tokens.
//!
//! Rules: secrets, codes and tokens are stored only as keyed hashes; a
//! client's type and a token's kind are stored as TEXT and read as their
//! `domain` enums (a row naming an unknown one fails to load).

use diesel::prelude::*;

use crate::domain::{ClientType, TokenKind};
use crate::store::DbConn;
use crate::store::schema::{oauth_clients, oauth_codes, oauth_consents, oauth_tokens};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_clients)]
pub struct OauthClient {
    pub id: String,
    pub team_id: String,
    pub created_by: Option<String>,
    pub name: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub client_type: ClientType,
    /// One per line.
    pub redirect_uris: String,
    /// Space-separated.
    pub allowed_scopes: String,
    pub logo_url: String,
    pub homepage: String,
    pub secret_hash: Option<String>,
    pub old_secret_hash: Option<String>,
    pub old_secret_expires_at: Option<i64>,
    pub created_at: i64,
    /// When the previous secret's grace was extended (once per rotation).
    pub old_secret_extended_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_consents)]
pub struct OauthConsent {
    pub user_id: String,
    pub client_id: String,
    pub scopes: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_codes)]
pub struct OauthCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub team_id: String,
    pub redirect_uri: String,
    pub scopes: String,
    pub code_challenge: Option<String>,
    pub grant_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The authorization request named its redirect URI (RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_tokens)]
pub struct OauthToken {
    pub id: String,
    pub token_hash: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub kind: TokenKind,
    pub client_id: String,
    pub user_id: Option<String>,
    pub team_id: String,
    pub scopes: String,
    /// Every token descended from one authorization shares this id.
    pub grant_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub used_at: Option<i64>,
}

/// Database methods
impl OauthClient {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(oauth_clients::table).values(self.clone()).execute(conn).map(|_| ())
    }

    /// The app inside a write transaction, holding its row until it ends (a
    /// share lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serializes
    /// writers), so that a concurrent disarm or rotation waits, or is seen.
    pub fn find_for_share(conn: &mut DbConn, id: &str) -> QueryResult<Option<OauthClient>> {
        match conn {
            DbConn::Pg(pg) => {
                oauth_clients::table.find(id).select(OauthClient::as_select()).for_share().first(pg).optional()
            }
            DbConn::Sqlite(_) => Self::find(conn, id),
        }
    }

    pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<Option<OauthClient>> {
        oauth_clients::table.find(id).select(OauthClient::as_select()).first(conn).optional()
    }

    pub fn for_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<OauthClient>> {
        oauth_clients::table
            .filter(oauth_clients::team_id.eq(team_id))
            .order(oauth_clients::created_at.desc())
            .select(OauthClient::as_select())
            .load(conn)
    }

    pub fn update_settings(conn: &mut DbConn, c: &OauthClient) -> QueryResult<usize> {
        diesel::update(oauth_clients::table.find(&c.id))
            .set((
                oauth_clients::name.eq(&c.name),
                oauth_clients::redirect_uris.eq(&c.redirect_uris),
                oauth_clients::allowed_scopes.eq(&c.allowed_scopes),
                oauth_clients::logo_url.eq(&c.logo_url),
                oauth_clients::homepage.eq(&c.homepage),
            ))
            .execute(conn)
    }

    pub fn rotate_secret(
        conn: &mut DbConn,
        id: &str,
        new_hash: &str,
        old: Option<&str>,
        old_until: i64,
    ) -> QueryResult<usize> {
        diesel::update(oauth_clients::table.find(id))
            .set((
                oauth_clients::secret_hash.eq(new_hash),
                oauth_clients::old_secret_hash.eq(old),
                oauth_clients::old_secret_expires_at.eq(old_until),
                // A new rotation may have its grace extended once again.
                oauth_clients::old_secret_extended_at.eq(None::<i64>),
            ))
            .execute(conn)
    }

    /// Forgets an app's redirect URIs: it sends no one anywhere until a
    /// member who manages it enters them again.
    pub fn clear_redirect_uris(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::update(oauth_clients::table.find(id)).set(oauth_clients::redirect_uris.eq("")).execute(conn)
    }

    /// Makes `to` answerable for the apps `from` registered in the team.
    pub fn transfer(conn: &mut DbConn, team_id: &str, from: &str, to: Option<&str>) -> QueryResult<usize> {
        diesel::update(
            oauth_clients::table.filter(oauth_clients::team_id.eq(team_id)).filter(oauth_clients::created_by.eq(from)),
        )
        .set(oauth_clients::created_by.eq(to))
        .execute(conn)
    }

    pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
        diesel::delete(oauth_clients::table.find(id)).execute(conn)
    }

    /// The app whose current or previous secret has this hash.
    pub fn find_by_secret_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<OauthClient>> {
        oauth_clients::table
            .filter(oauth_clients::secret_hash.eq(hash).or(oauth_clients::old_secret_hash.eq(hash)))
            .select(OauthClient::as_select())
            .first(conn)
            .optional()
    }

    /// Sets both secret hashes (a leaked one is replaced or cleared).
    pub fn set_secrets(
        conn: &mut DbConn,
        id: &str,
        current: Option<&str>,
        (old, old_until): (Option<&str>, Option<i64>),
    ) -> QueryResult<usize> {
        diesel::update(oauth_clients::table.find(id))
            .set((
                oauth_clients::secret_hash.eq(current),
                oauth_clients::old_secret_hash.eq(old),
                oauth_clients::old_secret_expires_at.eq(old_until),
            ))
            .execute(conn)
    }
}

/// Database methods
impl OauthConsent {
    pub fn find(conn: &mut DbConn, user_id: &str, client_id: &str) -> QueryResult<Option<OauthConsent>> {
        oauth_consents::table.find((user_id, client_id)).select(OauthConsent::as_select()).first(conn).optional()
    }

    /// Records consent (replacing an earlier one for the same app).
    pub fn save(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::delete(oauth_consents::table.find((&self.user_id, &self.client_id))).execute(conn)?;
        diesel::insert_into(oauth_consents::table).values(self).execute(conn).map(|_| ())
    }

    pub fn for_user(conn: &mut DbConn, user_id: &str) -> QueryResult<Vec<(OauthConsent, OauthClient)>> {
        oauth_consents::table
            .inner_join(oauth_clients::table)
            .filter(oauth_consents::user_id.eq(user_id))
            .select((OauthConsent::as_select(), OauthClient::as_select()))
            .load(conn)
    }

    /// Forgets a user's consents to the team's apps (they left the team).
    pub fn delete_for_member(conn: &mut DbConn, team_id: &str, user_id: &str) -> QueryResult<usize> {
        let apps = oauth_clients::table.filter(oauth_clients::team_id.eq(team_id)).select(oauth_clients::id);
        diesel::delete(
            oauth_consents::table
                .filter(oauth_consents::user_id.eq(user_id))
                .filter(oauth_consents::client_id.eq_any(apps)),
        )
        .execute(conn)
    }

    /// Forgets every consent to an app (its users must consent again).
    pub fn delete_for_client(conn: &mut DbConn, client_id: &str) -> QueryResult<usize> {
        diesel::delete(oauth_consents::table.filter(oauth_consents::client_id.eq(client_id))).execute(conn)
    }

    pub fn delete(conn: &mut DbConn, user_id: &str, client_id: &str) -> QueryResult<usize> {
        diesel::delete(oauth_consents::table.find((user_id, client_id))).execute(conn)
    }

    /// Consents given by members of a team: (member email, consent, app).
    pub fn for_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<(String, OauthConsent, OauthClient)>> {
        use crate::store::schema::{memberships, users};
        oauth_consents::table
            .inner_join(oauth_clients::table)
            .inner_join(memberships::table.on(memberships::user_id.eq(oauth_consents::user_id)))
            .inner_join(users::table.on(users::id.eq(oauth_consents::user_id)))
            .filter(memberships::team_id.eq(team_id))
            .select((users::email, OauthConsent::as_select(), OauthClient::as_select()))
            .load(conn)
    }
}

/// Database methods
impl OauthCode {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(oauth_codes::table).values(self).execute(conn).map(|_| ())
    }

    /// Whether a code of this grant was issued already.
    pub fn grant_taken(conn: &mut DbConn, grant_id: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(oauth_codes::table.filter(oauth_codes::grant_id.eq(grant_id))))
            .get_result(conn)
    }

    pub fn find(conn: &mut DbConn, hash: &str) -> QueryResult<Option<OauthCode>> {
        oauth_codes::table.find(hash).select(OauthCode::as_select()).first(conn).optional()
    }

    /// Forgets an app's codes that were not exchanged yet.
    pub fn delete_unused_for_client(conn: &mut DbConn, client_id: &str) -> QueryResult<usize> {
        diesel::delete(
            oauth_codes::table.filter(oauth_codes::client_id.eq(client_id)).filter(oauth_codes::used_at.is_null()),
        )
        .execute(conn)
    }

    /// Marks the code used; 0 rows means it was used already.
    pub fn mark_used(conn: &mut DbConn, hash: &str, at: i64) -> QueryResult<usize> {
        diesel::update(oauth_codes::table.find(hash).filter(oauth_codes::used_at.is_null()))
            .set(oauth_codes::used_at.eq(at))
            .execute(conn)
    }
}

/// Database methods
impl OauthToken {
    pub fn insert(&self, conn: &mut DbConn) -> QueryResult<()> {
        diesel::insert_into(oauth_tokens::table).values(self.clone()).execute(conn).map(|_| ())
    }

    pub fn find_by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<OauthToken>> {
        oauth_tokens::table
            .filter(oauth_tokens::token_hash.eq(hash))
            .select(OauthToken::as_select())
            .first(conn)
            .optional()
    }

    /// Marks a refresh token used; 0 rows means it was used (or revoked) already.
    pub fn mark_used(conn: &mut DbConn, id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            oauth_tokens::table
                .find(id)
                .filter(oauth_tokens::used_at.is_null())
                .filter(oauth_tokens::revoked_at.is_null()),
        )
        .set(oauth_tokens::used_at.eq(at))
        .execute(conn)
    }

    /// Revokes one token; 0 rows means it was revoked already.
    pub fn revoke(conn: &mut DbConn, id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(oauth_tokens::table.find(id).filter(oauth_tokens::revoked_at.is_null()))
            .set(oauth_tokens::revoked_at.eq(at))
            .execute(conn)
    }

    pub fn revoke_grant(conn: &mut DbConn, grant_id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            oauth_tokens::table.filter(oauth_tokens::grant_id.eq(grant_id)).filter(oauth_tokens::revoked_at.is_null()),
        )
        .set(oauth_tokens::revoked_at.eq(at))
        .execute(conn)
    }

    /// Revokes the live tokens an app got for itself (client_credentials).
    pub fn revoke_machine_tokens(conn: &mut DbConn, client_id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(oauth_tokens::table)
            .filter(oauth_tokens::client_id.eq(client_id))
            .filter(oauth_tokens::user_id.is_null())
            .filter(oauth_tokens::revoked_at.is_null())
            .set(oauth_tokens::revoked_at.eq(at))
            .execute(conn)
    }

    pub fn revoke_for(conn: &mut DbConn, client_id: &str, user_id: Option<&str>, at: i64) -> QueryResult<usize> {
        let mut q = diesel::update(oauth_tokens::table)
            .filter(oauth_tokens::client_id.eq(client_id))
            .filter(oauth_tokens::revoked_at.is_null())
            .into_boxed();
        if let Some(u) = user_id {
            q = q.filter(oauth_tokens::user_id.eq(u));
        }
        q.set(oauth_tokens::revoked_at.eq(at)).execute(conn)
    }

    /// Revokes every token a user holds in a team (they left it).
    pub fn revoke_for_member(conn: &mut DbConn, team_id: &str, user_id: &str, at: i64) -> QueryResult<usize> {
        diesel::update(
            oauth_tokens::table
                .filter(oauth_tokens::team_id.eq(team_id))
                .filter(oauth_tokens::user_id.eq(user_id))
                .filter(oauth_tokens::revoked_at.is_null()),
        )
        .set(oauth_tokens::revoked_at.eq(at))
        .execute(conn)
    }
}

impl OauthClient {
    /// When the app's current secret was made: its latest rotation as the
    /// audit trail records it (`None`: never rotated, so at registration).
    pub fn secret_rotated_at(conn: &mut DbConn, id: &str) -> QueryResult<Option<i64>> {
        use crate::store::schema::audit_events;
        audit_events::table
            .filter(audit_events::object_type.eq("oauth_app"))
            .filter(audit_events::object_id.eq(id))
            .filter(audit_events::action.eq(crate::domain::AuditAction::OauthSecretRotated.as_str()))
            .order(audit_events::id.desc())
            .select(audit_events::created_at)
            .first(conn)
            .optional()
    }
}
