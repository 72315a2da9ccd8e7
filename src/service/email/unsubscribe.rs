//! Turning reminders off and on: in one click from the email (RFC 8058), or
//! on the security page.
//!
//! Rules: an unsubscribe token is `base64url(user id ":" kind) "." MAC`, the
//! MAC a keyed tag of the server's (`Keys::sign`) over the user and the kind:
//! nothing is looked up to check it, the comparison is constant-time, and it
//! can only turn that kind off for that user — a kind that cannot be turned
//! off (security email) is refused like a forged token. A token does not
//! expire: the email that holds it may be read months later. Turning a kind
//! off twice, or on when it was not off, changes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::service::clock::Clock;
use crate::service::crypto::{self, Keys};
use crate::service::notify::NoticeKind;
use crate::service::{Error, Result};
use crate::store::models::{EmailOptOut, User};
use crate::store::{Db, DbConn, StoreError};

/// The longest token read (a user id is far shorter).
const MAX_TOKEN: usize = 256;

/// The kinds people may turn off, as the security page lists them.
pub const OPTIONAL: [NoticeKind; 1] = [NoticeKind::KeyExpiring];

fn tag(keys: &Keys, user_id: &str, kind: NoticeKind) -> String {
    keys.sign(&format!("email-unsubscribe:{user_id}:{}", kind.as_str()))
}

/// The token of `user`'s one-click unsubscribe link for `kind`.
pub fn token(keys: &Keys, user_id: &str, kind: NoticeKind) -> String {
    let named = URL_SAFE_NO_PAD.encode(format!("{user_id}:{}", kind.as_str()));
    format!("{named}.{}", tag(keys, user_id, kind))
}

/// The user and kind a token names, if it is one of ours for a kind that may
/// be turned off.
pub fn check(keys: &Keys, token: &str) -> Option<(String, NoticeKind)> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let (named, presented) = token.split_once('.')?;
    let named = String::from_utf8(URL_SAFE_NO_PAD.decode(named).ok()?).ok()?;
    let (user_id, kind) = named.split_once(':')?;
    let kind = NoticeKind::parse(kind).filter(|k| k.may_unsubscribe())?;
    crypto::ct_eq(&tag(keys, user_id, kind), presented).then(|| (user_id.to_owned(), kind))
}

/// One kind of email on the security page: whether the user gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPreference {
    pub kind: NoticeKind,
    pub label: &'static str,
    pub on: bool,
}

/// What the one-click page and its POST know about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscription {
    pub kind: NoticeKind,
    pub email: String,
}

/// How the pages name a kind that may be turned off.
pub fn label(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::KeyExpiring => "Reminders before an API key expires (7 days and 1 day before)",
        _ => kind.as_str(),
    }
}

/// Every kind the user may turn off, and whether it is on.
pub fn preferences(conn: &mut DbConn, user_id: &str) -> Result<Vec<EmailPreference>> {
    let off = EmailOptOut::of_user(conn, user_id)?;
    Ok(OPTIONAL
        .into_iter()
        .map(|kind| EmailPreference { kind, label: label(kind), on: !off.iter().any(|k| k == kind.as_str()) })
        .collect())
}

/// The email preferences' use cases.
pub struct EmailService<'a> {
    pub db: &'a Db,
    pub keys: &'a Keys,
    pub clock: &'a Clock,
}

impl EmailService<'_> {
    /// Who and what a token would unsubscribe (the page asks first); a token
    /// that is not ours, or names no user, is `NotFound`.
    pub async fn inspect(&self, token: &str) -> Result<Unsubscription> {
        let (user_id, kind) = check(self.keys, token).ok_or(Error::NotFound)?;
        let user = self.db.run(move |conn| User::find(conn, &user_id).map_err(StoreError::from)).await?;
        let user = user.ok_or(Error::NotFound)?;
        Ok(Unsubscription { kind, email: user.email })
    }

    /// Turns the token's kind off for its user (the token is the authority).
    pub async fn unsubscribe(&self, token: &str) -> Result<Unsubscription> {
        let (user_id, kind) = check(self.keys, token).ok_or(Error::NotFound)?;
        let at = self.clock.now();
        self.db
            .run(move |conn| {
                crate::store::transaction(conn, |conn| {
                    let user = User::find(conn, &user_id)?.ok_or(Error::NotFound)?;
                    EmailOptOut::add(conn, &user.id, kind.as_str(), at)?;
                    Ok(Unsubscription { kind, email: user.email })
                })
            })
            .await
    }

    /// Turns a kind (as the form names it) on or off for the signed-in user.
    pub async fn set(&self, user_id: &str, kind: &str, on: bool) -> Result<()> {
        let kind = NoticeKind::parse(kind).filter(|k| k.may_unsubscribe()).ok_or_else(|| {
            Error::Invalid(crate::service::FieldErrors::single("kind", "This email cannot be turned off."))
        })?;
        let (uid, at) = (user_id.to_owned(), self.clock.now());
        self.db
            .run(move |conn| {
                if on {
                    EmailOptOut::remove(conn, &uid, kind.as_str()).map(|_| ())
                } else {
                    EmailOptOut::add(conn, &uid, kind.as_str(), at)
                }
                .map_err(|e| Error::from(StoreError::from(e)))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::derive(b"a-secret-that-is-long-enough-0123456789")
    }

    #[test]
    fn a_token_names_its_user_and_kind_and_nothing_else() {
        let t = token(&keys(), "usr_a", NoticeKind::KeyExpiring);
        assert_eq!(check(&keys(), &t), Some(("usr_a".into(), NoticeKind::KeyExpiring)));
        let other = Keys::derive(b"another-secret-long-enough-0123456789ab");
        assert_eq!(check(&other, &t), None, "another server's secret");
        let (_, mac) = t.split_once('.').unwrap();
        let swapped = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("usr_b:api_key.expiring"));
        assert_eq!(check(&keys(), &swapped), None, "another user with the same MAC");
        let security = token(&keys(), "usr_a", NoticeKind::NewDevice);
        assert_eq!(check(&keys(), &security), None, "security email cannot be turned off");
        for bad in ["", ".", "x.y", &t[..t.len() - 1], &format!("{t}0"), &"a".repeat(300)] {
            assert_eq!(check(&keys(), bad), None, "{bad}");
        }
    }
}
