//! actix-session's server-side store, backed by the `sessions` table, so that
//! sessions are shared by every instance on PostgreSQL and can be listed and
//! ended. Rows are keyed by the SHA-256 of the cookie's session key: a copy of
//! the table does not hand out live sessions.
//!
//! Rules: a session whose row is gone (signed out, ended from another tab,
//! password changed, member removed, 2FA reset by the operator, expired) stays
//! gone: `update` never re-creates a missing row, and `save` persists a
//! signed-in state only when this very request signed the user in (the
//! one-shot [`keys::ISSUED`] marker, which is never stored). A request that was
//! already in flight when its session ended therefore answers with a cookie
//! that authenticates nobody.
//!
//! Anonymous visitors write nothing to the database: a state that names no
//! user (the CSRF token of the login, setup and invite forms, a flash message)
//! travels in the session cookie itself — a key `anon.<expiry>.<state>.<tag>`,
//! tagged with an HMAC under the server secret and, like every session cookie,
//! encrypted by actix-session, HttpOnly, SameSite=Lax, Secure behind https.
//! The row is created only when someone signs in.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::service::crypto::{self, Keys};
use crate::store::models::SessionRow;
use crate::store::{Db, now};

/// Session-state keys; read and written through `web::session::TypedSession`.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const AUTH_AT: &str = "auth_at";
    pub const CSRF: &str = "csrf";
    pub const FLASH: &str = "flash";
    pub const USER_AGENT: &str = "ua";
    pub const IP: &str = "ip";
    /// Password accepted, second factor pending.
    pub const PENDING_USER_ID: &str = "pending_uid";
    pub const PENDING_AT: &str = "pending_at";
    pub const PENDING_NEXT: &str = "pending_next";
    /// The row a state was loaded from (set by `load`, never stored): lets a
    /// request check, once its body has arrived, that its session still lives,
    /// and tells the current session in the user's list of sessions.
    pub const ROW: &str = "row";
    /// Where to continue once the 2FA enrolment a team requires is done.
    pub const ENROLMENT_NEXT: &str = "enrolment_next";
    /// Set by the request that signs a user in (or renews a live session):
    /// only then may `save` persist a state that carries a user id. Stripped
    /// before anything is stored.
    pub const ISSUED: &str = "issued";
}

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    keys: Keys,
}

/// The prefix of a session key that carries an anonymous state itself.
const ANONYMOUS: &str = "anon.";

/// A state that names nobody, not even half-way through a sign-in.
fn is_anonymous(state: &HashMap<String, String>) -> bool {
    !state.contains_key(keys::USER_ID) && !state.contains_key(keys::PENDING_USER_ID)
}

impl DbSessionStore {
    pub fn new(db: Db, keys: Keys) -> Self {
        Self { db, keys }
    }
}

/// A key holding an anonymous state, tagged and valid for `ttl`.
fn anonymous_key(keys: &Keys, state: &HashMap<String, String>, ttl: &Duration) -> anyhow::Result<SessionKey> {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(state)?);
    let signed = format!("{}.{body}", now() + ttl.whole_seconds());
    let tag = keys.sign(&format!("anonymous-session:{signed}"));
    SessionKey::try_from(format!("{ANONYMOUS}{signed}.{tag}")).map_err(|e| anyhow::anyhow!("session key: {e}"))
}

/// The state of an anonymous key, if its tag is ours, it has not expired and
/// it names nobody.
fn open_anonymous(keys: &Keys, key: &str) -> Option<HashMap<String, String>> {
    let (signed, tag) = key.strip_prefix(ANONYMOUS)?.rsplit_once('.')?;
    if !crypto::ct_eq(&keys.sign(&format!("anonymous-session:{signed}")), tag) {
        return None;
    }
    let (expires, body) = signed.split_once('.')?;
    if expires.parse::<i64>().ok()? <= now() {
        return None;
    }
    let state: HashMap<String, String> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    is_anonymous(&state).then_some(state)
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

/// Whether a state to be saved may be persisted: an anonymous or half-signed-in
/// state always; a signed-in one only when this request issued it. The marker
/// is removed either way.
fn may_persist(state: &mut HashMap<String, String>) -> bool {
    let issued = state.remove(keys::ISSUED).is_some();
    issued || !state.contains_key(keys::USER_ID)
}

fn new_key() -> Result<SessionKey, anyhow::Error> {
    let key = crypto::random_base62(64).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    SessionKey::try_from(key).map_err(|e| anyhow::anyhow!("session key: {e}"))
}

impl SessionStore for DbSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        if session_key.as_ref().starts_with(ANONYMOUS) {
            return Ok(open_anonymous(&self.keys, session_key.as_ref()));
        }
        let id = crypto::sha256_hex(session_key.as_ref());
        match SessionRow::load_live(&self.db, id, now()).await.map_err(|e| LoadError::Other(e.into()))? {
            None => Ok(None),
            Some(row) => {
                let mut state: HashMap<String, String> =
                    serde_json::from_str(&row.state).map_err(|e| LoadError::Deserialization(e.into()))?;
                let id = serde_json::to_string(&row.id).map_err(|e| LoadError::Deserialization(e.into()))?;
                state.insert(keys::ROW.to_owned(), id);
                Ok(Some(state))
            }
        }
    }

    async fn save(&self, mut state: HashMap<String, String>, ttl: &Duration) -> Result<SessionKey, SaveError> {
        state.remove(keys::ROW);
        if is_anonymous(&state) {
            state.remove(keys::ISSUED);
            return anonymous_key(&self.keys, &state, ttl).map_err(SaveError::Other);
        }
        let key = new_key().map_err(SaveError::Other)?;
        if !may_persist(&mut state) {
            // A signed-in state whose row was deleted while the request ran
            // (a renewal after the session ended): store nothing, so the
            // cookie answered with authenticates nobody.
            tracing::info!("not re-creating a session that ended while a request was in flight");
            return Ok(key);
        }
        let row = row(crypto::sha256_hex(key.as_ref()), &state, ttl).map_err(|e| SaveError::Serialization(e.into()))?;
        row.store(&self.db).await.map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        mut state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        if session_key.as_ref().starts_with(ANONYMOUS) {
            // Nothing stored to update or to have been ended: a new key.
            return self.save(state, ttl).await.map_err(|e| UpdateError::Other(anyhow::anyhow!("{e}")));
        }
        state.remove(keys::ISSUED);
        state.remove(keys::ROW);
        let row = row(crypto::sha256_hex(session_key.as_ref()), &state, ttl)
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        let changed = row.store_state(&self.db).await.map_err(|e| UpdateError::Other(e.into()))?;
        if changed != 1 {
            // The row is gone (ended elsewhere while this request ran): it
            // stays gone. The cookie keeps a key that loads nothing.
            tracing::info!("session ended while a request was in flight; its state is dropped");
        }
        Ok(session_key)
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        if session_key.as_ref().starts_with(ANONYMOUS) {
            return Ok(());
        }
        let id = crypto::sha256_hex(session_key.as_ref());
        let at = now();
        SessionRow::keep_alive(&self.db, id, at, at + ttl.whole_seconds()).await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        if session_key.as_ref().starts_with(ANONYMOUS) {
            return Ok(());
        }
        let id = crypto::sha256_hex(session_key.as_ref());
        SessionRow::end(&self.db, id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::derive(b"a-secret-that-is-long-enough-0123456789")
    }

    fn state(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::to_string(v).unwrap())).collect()
    }

    #[test]
    fn an_anonymous_state_round_trips_and_refuses_tampering() {
        let (k, anon) = (keys(), state(&[(keys::CSRF, "token")]));
        let key = anonymous_key(&k, &anon, &Duration::minutes(5)).unwrap();
        assert_eq!(open_anonymous(&k, key.as_ref()), Some(anon.clone()));
        let other = Keys::derive(b"another-secret-long-enough-0123456789ab");
        assert_eq!(open_anonymous(&other, key.as_ref()), None, "another server secret");
        let expired = anonymous_key(&k, &anon, &Duration::seconds(-1)).unwrap();
        assert_eq!(open_anonymous(&k, expired.as_ref()), None, "expired");
        // A state naming a user, even with a valid tag, is not anonymous.
        let forged = anonymous_key(&k, &state(&[(keys::USER_ID, "usr_1")]), &Duration::minutes(5)).unwrap();
        assert_eq!(open_anonymous(&k, forged.as_ref()), None);
        let (signed, tag) = key.as_ref().rsplit_once('.').unwrap();
        let mut bad = tag.to_owned();
        bad.replace_range(..1, if tag.starts_with('0') { "1" } else { "0" });
        assert_eq!(open_anonymous(&k, &format!("{signed}.{bad}")), None, "tag");
        let longer = key.as_ref().replacen("anon.", "anon.9", 1);
        assert_eq!(open_anonymous(&k, &longer), None, "expiry changed");
    }

    #[test]
    fn a_signed_in_state_persists_only_when_issued_and_never_keeps_the_marker() {
        let mut signed_in = state(&[(keys::USER_ID, "usr_1")]);
        assert!(!may_persist(&mut signed_in), "a renewal of an ended session");
        signed_in.insert(keys::ISSUED.into(), "true".into());
        assert!(may_persist(&mut signed_in));
        assert!(!signed_in.contains_key(keys::ISSUED), "the marker is never stored");
        assert!(may_persist(&mut state(&[(keys::PENDING_USER_ID, "usr_1")])));
    }
}
