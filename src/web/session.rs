//! The browser session's state, typed: one method per thing it holds.
//!
//! Rules: nothing outside this module (and the store that persists the state)
//! names a session key; a value that is present but does not read as its type
//! is an internal error, never taken for "absent"; features owned elsewhere
//! (the OAuth consent in flight) keep their own key through [`TypedSession::get`]
//! and [`TypedSession::insert`].

use std::future::{Ready, ready};

use actix_session::{Session, SessionExt, SessionGetError, SessionInsertError};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::session_store::keys;
use crate::domain::{SessionId, UserId};
use crate::error::AppError;

/// A password accepted, the second factor still to come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub user_id: UserId,
    /// When the password was accepted (Unix seconds).
    pub at: i64,
    /// Where to go once signed in.
    pub next: String,
}

/// What a completed sign-in writes into the session.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub user_id: UserId,
    pub at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// The session of a request, read and written through typed methods.
#[derive(Clone)]
pub struct TypedSession(Session);

fn read_error(e: SessionGetError) -> AppError {
    AppError::Internal(anyhow::Error::new(e).context("reading the session"))
}

fn write_error(e: SessionInsertError) -> AppError {
    AppError::Internal(anyhow::Error::new(e).context("writing the session"))
}

impl TypedSession {
    pub fn new(session: Session) -> Self {
        Self(session)
    }

    /// A value stored under a key of its own (for features with their own state).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AppError> {
        self.0.get(key).map_err(read_error)
    }

    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), AppError> {
        self.0.insert(key, value).map_err(write_error)
    }

    /// Removes and returns a value stored under a key of its own.
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AppError> {
        let raw = self.0.remove(key);
        match raw {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading the session"))),
        }
    }

    pub fn remove(&self, key: &str) {
        self.0.remove(key);
    }

    /// The signed-in user, if any.
    pub fn user_id(&self) -> Result<Option<UserId>, AppError> {
        self.get(keys::USER_ID)
    }

    /// When the signed-in user signed in (Unix seconds).
    pub fn signed_in_at(&self) -> Result<Option<i64>, AppError> {
        self.get(keys::AUTH_AT)
    }

    /// The stored session this state was loaded from (absent for a state
    /// created by this very request).
    pub fn row_id(&self) -> Result<Option<SessionId>, AppError> {
        self.get(keys::ROW)
    }

    pub fn csrf_token(&self) -> Result<Option<String>, AppError> {
        self.get(keys::CSRF)
    }

    pub fn set_csrf_token(&self, token: &str) -> Result<(), AppError> {
        self.insert(keys::CSRF, token)
    }

    pub fn pending_login(&self) -> Result<Option<PendingLogin>, AppError> {
        let Some(user_id) = self.get::<UserId>(keys::PENDING_USER_ID)? else { return Ok(None) };
        let Some(at) = self.get::<i64>(keys::PENDING_AT)? else { return Ok(None) };
        let next = self.get::<String>(keys::PENDING_NEXT)?.unwrap_or_default();
        Ok(Some(PendingLogin { user_id, at, next }))
    }

    /// Half signs in under a new session id: only the second step accepts it.
    pub fn begin_pending_login(&self, pending: &PendingLogin) -> Result<(), AppError> {
        self.0.renew();
        self.insert(keys::PENDING_USER_ID, &pending.user_id)?;
        self.insert(keys::PENDING_AT, pending.at)?;
        self.insert(keys::PENDING_NEXT, &pending.next)
    }

    /// Signs in under a new session id (the half-signed-in state forgotten);
    /// the caller rotates the CSRF token.
    pub fn sign_in(&self, sign_in: &SignIn) -> Result<(), AppError> {
        self.0.renew();
        for k in [keys::PENDING_USER_ID, keys::PENDING_AT, keys::PENDING_NEXT] {
            self.0.remove(k);
        }
        self.insert(keys::USER_ID, &sign_in.user_id)?;
        self.insert(keys::AUTH_AT, sign_in.at)?;
        self.insert(keys::USER_AGENT, &sign_in.user_agent)?;
        self.insert(keys::IP, &sign_in.ip)?;
        self.mark_issued()
    }

    /// Keeps this browser signed in under a new session id (after every
    /// stored session of the user was ended).
    pub fn renew_signed_in(&self) -> Result<(), AppError> {
        self.0.renew();
        self.mark_issued()
    }

    /// Lets the session store persist this signed-in state: only the request
    /// that signs a user in (or renews a live session) may create a row.
    fn mark_issued(&self) -> Result<(), AppError> {
        self.insert(keys::ISSUED, true)
    }

    /// Where to continue once the 2FA enrolment a team requires is done.
    pub fn set_enrolment_next(&self, next: &str) -> Result<(), AppError> {
        self.insert(keys::ENROLMENT_NEXT, next)
    }

    pub fn take_enrolment_next(&self) -> Result<Option<String>, AppError> {
        self.take(keys::ENROLMENT_NEXT)
    }

    /// A one-shot message for the next page (never a secret).
    pub fn flash(&self, message: &str) -> Result<(), AppError> {
        self.insert(keys::FLASH, message)
    }

    pub fn take_flash(&self) -> Result<Option<String>, AppError> {
        self.take(keys::FLASH)
    }

    /// Ends the session: its state is dropped and its stored row deleted.
    pub fn purge(&self) {
        self.0.purge();
    }

    /// Ends a session that no longer signs anyone in (expired, revoked) while
    /// the request goes on as anonymous: its state is dropped and its stored
    /// row deleted, and what this request stores next (the CSRF token of the
    /// sign-in form it shows, say) lives on under a new key — after
    /// [`purge`](Self::purge) it would be thrown away.
    pub fn end_signed_out(&self) {
        self.0.clear();
        self.0.renew();
    }
}

impl From<Session> for TypedSession {
    fn from(session: Session) -> Self {
        Self(session)
    }
}

impl FromRequest for TypedSession {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(req.get_session())))
    }
}
