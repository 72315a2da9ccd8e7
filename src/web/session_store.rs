//! actix-session's server-side store, backed by the `sessions` table, so that
//! sessions are shared by every instance on PostgreSQL and can be listed and
//! ended. Rows are keyed by the SHA-256 of the cookie's session key: a copy of
//! the table does not hand out live sessions.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use crate::service::crypto;
use crate::store::models::SessionRow;
use crate::store::{Db, StoreError, now};

/// Session-state keys written by the web layer.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const AUTH_AT: &str = "auth_at";
    pub const CSRF: &str = "csrf";
    pub const FLASH: &str = "flash";
    pub const USER_AGENT: &str = "ua";
    pub const IP: &str = "ip";
    /// A random id of this sign-in, to tell the current session in lists.
    pub const SID: &str = "sid";
    /// Password accepted, second factor pending.
    pub const PENDING_USER_ID: &str = "pending_uid";
    pub const PENDING_AT: &str = "pending_at";
    pub const PENDING_NEXT: &str = "pending_next";
}

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// Session values are JSON; this reads a string one.
fn string_value(state: &HashMap<String, String>, key: &str) -> Option<String> {
    state.get(key).and_then(|v| serde_json::from_str::<String>(v).ok())
}

fn row(id: String, state: &HashMap<String, String>, ttl: &Duration) -> Result<SessionRow, serde_json::Error> {
    let at = now();
    Ok(SessionRow {
        id,
        user_id: string_value(state, keys::USER_ID),
        state: serde_json::to_string(state)?,
        created_at: at,
        last_seen_at: at,
        expires_at: at + ttl.whole_seconds(),
        user_agent: string_value(state, keys::USER_AGENT),
        ip: string_value(state, keys::IP),
    })
}

fn new_key() -> Result<SessionKey, anyhow::Error> {
    let key = crypto::random_base62(64).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    SessionKey::try_from(key).map_err(|e| anyhow::anyhow!("session key: {e}"))
}

impl SessionStore for DbSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let id = crypto::sha256_hex(session_key.as_ref());
        let found = self.db.run(move |conn| SessionRow::find_live(conn, &id, now()).map_err(StoreError::from)).await;
        match found.map_err(|e| LoadError::Other(e.into()))? {
            None => Ok(None),
            Some(row) => serde_json::from_str(&row.state).map(Some).map_err(|e| LoadError::Deserialization(e.into())),
        }
    }

    async fn save(&self, state: HashMap<String, String>, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let key = new_key().map_err(SaveError::Other)?;
        let row = row(crypto::sha256_hex(key.as_ref()), &state, ttl).map_err(|e| SaveError::Serialization(e.into()))?;
        self.db
            .run(move |conn| row.insert(conn).map_err(StoreError::from))
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let row = row(crypto::sha256_hex(session_key.as_ref()), &state, ttl)
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        let changed = self
            .db
            .run(move |conn| SessionRow::update_state(conn, &row).map_err(StoreError::from))
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        if changed == 1 {
            return Ok(session_key);
        }
        // The row is gone (ended elsewhere or expired): start a new session.
        self.save(state, ttl).await.map_err(|e| UpdateError::Other(anyhow::anyhow!("{e}")))
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let id = crypto::sha256_hex(session_key.as_ref());
        let secs = ttl.whole_seconds();
        self.db
            .run(move |conn| {
                let at = now();
                SessionRow::touch(conn, &id, at, at + secs).map_err(StoreError::from)
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = crypto::sha256_hex(session_key.as_ref());
        self.db.run(move |conn| SessionRow::delete(conn, &id).map_err(StoreError::from)).await?;
        Ok(())
    }
}
