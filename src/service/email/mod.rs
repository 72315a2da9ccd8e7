//! Email: each notice (`service::notify`) becomes one message per recipient,
//! sent through SMTP (`LATCHKEY_SMTP_URL`) or, without it, logged only.
//!
//! Rules:
//! - A message is plain text and simple HTML (multipart/alternative) from the
//!   templates under `templates/email/` ([`compose`]): no tracking, no remote
//!   images, no shortened links; every link points under the public URL. It
//!   never holds a secret (API key, client secret, webhook secret, session,
//!   TOTP secret); only the invitation holds its invite link, its purpose.
//!   Text that came from people (names, reasons, user agents) is put on one
//!   line and shortened before it reaches a header; lettre encodes headers, so
//!   nothing typed can add a header or a recipient.
//! - Each recipient gets a message of their own (nobody sees who else was told).
//! - Sending never blocks a request ([`outbox`]): messages wait in a bounded
//!   queue drained by one task, tried a few times with backoff; a failure is
//!   logged with the kind and the cause, never a link; at shutdown the queue
//!   is given a few seconds.
//! - Reminders may be turned off, in one click from the email (RFC 8058, a
//!   token that is a MAC of the user and kind, [`unsubscribe`]) or in
//!   Settings → Security; security email cannot be.
//! - A sign-in from a device the account never used is announced
//!   ([`devices`]); the account's first sign-in is not.

pub mod compose;
mod content;
pub mod devices;
mod notices;
pub mod outbox;
pub mod unsubscribe;

use crate::service::notify::{NoticeKind, Recipient};
use crate::service::policy;
use crate::store::DbConn;
use crate::store::models::{ApiKey, EmailOptOut, Membership};

pub use notices::key_ref;
pub use unsubscribe::{EmailPreference, EmailService};

/// `recipients` without the users who turned `kind` off (a kind that cannot
/// be turned off keeps everyone).
pub fn without_opted_out(
    conn: &mut DbConn,
    kind: NoticeKind,
    recipients: Vec<Recipient>,
) -> Result<Vec<Recipient>, diesel::result::Error> {
    if !kind.may_unsubscribe() {
        return Ok(recipients);
    }
    let ids: Vec<&str> = recipients.iter().filter_map(|r| r.user_id.as_deref()).collect();
    let out = EmailOptOut::among(conn, &ids, kind.as_str())?;
    Ok(recipients.into_iter().filter(|r| r.user_id.as_ref().is_none_or(|id| !out.contains(id))).collect())
}

/// Who hears that a key was taken away: its creator while a member of the
/// key's team, and (`with_owners`: a leak) the team's owners, each once.
pub fn key_people(conn: &mut DbConn, key: &ApiKey, with_owners: bool) -> Result<Vec<Recipient>, diesel::result::Error> {
    let Some(team_id) = key.team_id.as_deref() else { return Ok(Vec::new()) };
    let members = Membership::list(conn, team_id)?;
    let creator = members.iter().filter(|(m, _)| key.created_by.as_deref() == Some(m.user_id.as_str()));
    let owners = members.iter().filter(|(m, _)| with_owners && policy::told_of_leaked_keys(m.role));
    Ok(crate::service::notify::Notice::dedup(creator.chain(owners).map(|(_, u)| Recipient::user(&u.id, &u.email))))
}

/// A text from people for one line of an email: control characters become
/// spaces, runs of spaces one, at most `max` characters (then "…").
pub fn one_line(text: &str, max: usize) -> String {
    let spaced: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A moment as an email names it: `2026-11-29 14:03 UTC`.
pub fn moment(at: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_people_becomes_one_short_line() {
        assert_eq!(one_line("Acme\r\nBcc: evil@example.test", 100), "Acme Bcc: evil@example.test");
        assert_eq!(one_line("a\u{0}b\tc", 100), "a b c");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }

    #[test]
    fn moments_are_utc_minutes() {
        assert_eq!(moment(0), "1970-01-01 00:00 UTC");
    }
}
