//! Devices people sign in from, to tell them about a sign-in from a new one.
//!
//! Rules: a device is a browser holding our device cookie (random, 32 base62
//! characters, long-lived, HttpOnly); the database keeps only a keyed hash
//! of it bound to the user, so one browser shared by two people is a device
//! of each, and a stolen table names no cookie. A sign-in from a device the
//! user never used is `New` — unless the user has no device yet (their
//! first sign-in ever, or the first since devices were recorded), which is
//! not announced. Each user keeps their [`KEPT`] most recent devices.

use crate::domain::PlainSecret;
use crate::service::crypto::{self, Keys};
use crate::service::{Error, Result};
use crate::store::DbConn;
use crate::store::models::KnownDevice;

/// How long a device cookie is (random base62 characters).
pub const COOKIE_LEN: usize = 32;
/// How many devices each user keeps.
pub const KEPT: i64 = 50;

/// What a sign-in's device was to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The user's first device: nothing to announce.
    First,
    Known,
    /// A device the user never signed in from, while they have others.
    New,
}

/// The device cookie a browser presented, if it is one of ours in shape;
/// else a new one.
pub fn cookie_or_new(presented: Option<&str>) -> Result<PlainSecret> {
    match presented {
        Some(p) if p.len() == COOKIE_LEN && p.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(PlainSecret::new(p.to_owned()))
        }
        _ => crypto::random_base62(COOKIE_LEN)
            .map(PlainSecret::new)
            .map_err(|e| Error::internal(e, "drawing a device cookie")),
    }
}

/// Records that `user_id` signed in from `device` at `at`.
pub fn seen(conn: &mut DbConn, keys: &Keys, user_id: &str, device: &PlainSecret, at: i64) -> Result<Seen> {
    let hash = keys.token_hash(&format!("device:{user_id}:{}", device.expose()));
    crate::store::transaction(conn, |conn| {
        if KnownDevice::touch(conn, user_id, &hash, at)? {
            return Ok(Seen::Known);
        }
        let had_any = KnownDevice::any(conn, user_id)?;
        KnownDevice::add(conn, user_id, &hash, at)?;
        KnownDevice::keep_recent(conn, user_id, KEPT)?;
        Ok(if had_any { Seen::New } else { Seen::First })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cookie_of_our_shape_is_kept() {
        let ours = "a".repeat(COOKIE_LEN);
        assert_eq!(cookie_or_new(Some(&ours)).unwrap().expose(), ours);
        for other in [None, Some(""), Some("short"), Some(&*format!("{}!", "a".repeat(COOKIE_LEN - 1)))] {
            let fresh = cookie_or_new(other).unwrap();
            assert_eq!(fresh.expose().len(), COOKIE_LEN);
            assert_ne!(Some(fresh.expose()), other);
        }
    }
}
