//! Telling people what happened to their account, team and credentials. A
//! [`Notice`] says what happened ([`NoticeKind`]), to whom (each a
//! [`Recipient`]: an email and, for an account, its user id) and, when it is
//! about a key, which one; the [`Notifier`] hands it to each [`Channel`].
//!
//! Rules: a notice never carries a secret — a key is named by its name and
//! display prefix — except the one an invite exists for: its link's token,
//! in [`Notice::invite_token`] (a `PlainSecret`: never printed, logged or
//! put in `text`), which only the invitee's email shows. A notice is sent
//! after the transaction that decided it has committed, and a delivery that
//! fails is logged, never retried into a second notice; a channel never
//! blocks its caller (one that talks to a network queues the notice and
//! delivers it on a task of its own, `service::email::outbox`). Without
//! `LATCHKEY_SMTP_URL`, email is logged only: one `info` line with the kind,
//! the recipients and the key's prefix, never a link.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::PlainSecret;

/// What a notice is about; `as_str` names it as audit events and webhooks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// An invitation to join a team (to the invitee).
    Invite,
    /// A key expires in 7 days, or in 1 day (`details.days`).
    KeyExpiring,
    /// Support revoked a key, with a reason.
    KeyRevokedBySupport,
    /// A secret-scanning partner reported a key; it was revoked.
    KeyLeaked,
    /// A sign-in from a device the account never used.
    NewDevice,
    /// Two-factor authentication was turned off (by the user or the operator).
    TotpDisabled,
    PasswordChanged,
    /// A webhook endpoint failed too often and was turned off.
    WebhookEndpointDisabled,
}

impl NoticeKind {
    pub const ALL: [Self; 8] = [
        Self::Invite,
        Self::KeyExpiring,
        Self::KeyRevokedBySupport,
        Self::KeyLeaked,
        Self::NewDevice,
        Self::TotpDisabled,
        Self::PasswordChanged,
        Self::WebhookEndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "member.invited",
            Self::KeyExpiring => "api_key.expiring",
            Self::KeyRevokedBySupport => "api_key.revoked",
            Self::KeyLeaked => "api_key.leaked",
            Self::NewDevice => "security.new_device",
            Self::TotpDisabled => "security.totp_disabled",
            Self::PasswordChanged => "security.password_changed",
            Self::WebhookEndpointDisabled => "webhook.endpoint_disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether people may turn this email off: reminders only. What tells
    /// them about their account's security, or a credential taken from them,
    /// always goes out.
    pub fn may_unsubscribe(self) -> bool {
        matches!(self, Self::KeyExpiring)
    }
}

/// Someone told: their email, and their user id when they have an account
/// (what an unsubscribe link names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: String,
    pub user_id: Option<String>,
}

impl Recipient {
    pub fn user(user_id: &str, email: &str) -> Self {
        Self { email: email.to_owned(), user_id: Some(user_id.to_owned()) }
    }
}

impl From<&str> for Recipient {
    fn from(email: &str) -> Self {
        Self { email: email.to_owned(), user_id: None }
    }
}

impl From<String> for Recipient {
    fn from(email: String) -> Self {
        Self { email, user_id: None }
    }
}

/// Compares with an email (tests list recipients by email).
impl PartialEq<&str> for Recipient {
    fn eq(&self, other: &&str) -> bool {
        self.email == *other
    }
}

/// The key a notice is about: its id, name and display prefix (`lk_a1b2c3d4`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub id: String,
    pub name: String,
    pub prefix: String,
}

/// Something people are told about.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    /// The team it happened in (none for an account's own security).
    pub team_id: Option<String>,
    /// The people told, each once.
    pub recipients: Vec<Recipient>,
    pub key: Option<KeyRef>,
    /// One line for a person ("Key Billing (lk_a1b2c3d4…) expires in 7 days."),
    /// never a secret or a link.
    pub text: String,
    /// The event's details (as its audit event records them, plus what the
    /// email names: a team's name, a reason, an address).
    pub details: serde_json::Value,
    /// An invite's link token, for the invitee's email only.
    pub invite_token: Option<PlainSecret>,
}

impl Notice {
    /// A notice with no key, no details and no invite.
    pub fn new(kind: NoticeKind, recipients: Vec<Recipient>, text: String) -> Self {
        Self { kind, team_id: None, recipients, key: None, text, details: serde_json::json!({}), invite_token: None }
    }

    pub fn team(mut self, team_id: &str) -> Self {
        self.team_id = Some(team_id.to_owned());
        self
    }

    pub fn key(mut self, key: KeyRef) -> Self {
        self.key = Some(key);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The owners told that a webhook endpoint of their team was turned off
    /// after failing too often. Only the endpoint's origin is shown: its path
    /// and query may hold a token of the receiver's.
    pub fn webhook_endpoint_disabled(
        team_id: &str,
        recipients: impl IntoIterator<Item = impl Into<Recipient>>,
        endpoint_url: &str,
        reason: &str,
    ) -> Self {
        let origin = origin_of(endpoint_url);
        let text = format!("The webhook endpoint {origin} was disabled after repeated failures.");
        Self::new(NoticeKind::WebhookEndpointDisabled, Self::dedup(recipients), text)
            .team(team_id)
            .details(serde_json::json!({"endpoint": origin, "reason": reason}))
    }

    /// Recipients, each once (by email, case-insensitively), in order.
    pub fn dedup(recipients: impl IntoIterator<Item = impl Into<Recipient>>) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        for r in recipients.into_iter().map(Into::into) {
            if !out.iter().any(|o| o.email.eq_ignore_ascii_case(&r.email)) {
                out.push(r);
            }
        }
        out
    }
}

/// `scheme://host[:port]` of a URL, or a placeholder when it is not one.
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.host_str().is_some() => u.origin().ascii_serialization(),
        _ => "(an endpoint)".to_owned(),
    }
}

/// Where notices go: an email sender, a webhook sender, a log.
pub trait Channel: Send + Sync {
    /// Hands the notice on, without blocking.
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()>;

    /// Deliveries handed on but not finished yet (queued or being sent).
    fn pending(&self) -> usize {
        0
    }

    /// Deliveries that failed for good since start.
    fn failed(&self) -> u64 {
        0
    }
}

/// Email while no SMTP server is configured: one log line per notice, with
/// neither a link nor a secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggedEmail;

impl Channel for LoggedEmail {
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()> {
        let to: Vec<&str> = notice.recipients.iter().map(|r| r.email.as_str()).collect();
        tracing::info!(
            kind = notice.kind.as_str(),
            to = %to.join(", "),
            key = %notice.key.as_ref().map(|k| k.prefix.as_str()).unwrap_or("-"),
            "email not configured (LATCHKEY_SMTP_URL unset), logged only: {}",
            notice.text
        );
        Ok(())
    }
}

/// Keeps the last notices in memory (tests read what was sent).
#[derive(Debug, Default)]
pub struct Recorder {
    kept: Mutex<VecDeque<Notice>>,
}

impl Recorder {
    /// How many notices it keeps; older ones are dropped first.
    pub const KEEP: usize = 1000;

    /// The notices kept, oldest first.
    pub fn notices(&self) -> Vec<Notice> {
        self.kept.lock().map(|k| k.iter().cloned().collect()).unwrap_or_default()
    }
}

impl Channel for Recorder {
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()> {
        let mut kept = self.kept.lock().map_err(|_| anyhow::anyhow!("the notice recorder's lock is poisoned"))?;
        if kept.len() >= Self::KEEP {
            kept.pop_front();
        }
        kept.push_back(notice.clone());
        Ok(())
    }
}

/// Hands notices to every channel.
#[derive(Clone)]
pub struct Notifier {
    channels: Vec<Arc<dyn Channel>>,
}

impl Notifier {
    /// Email is logged only.
    pub fn logged_only() -> Self {
        Self { channels: vec![Arc::new(LoggedEmail)] }
    }

    /// A notifier with these channels only.
    pub fn with_channels(channels: Vec<Arc<dyn Channel>>) -> Self {
        Self { channels }
    }

    /// The same notifier with one more channel.
    pub fn with_channel(mut self, channel: Arc<dyn Channel>) -> Self {
        self.channels.push(channel);
        self
    }

    /// Tells the notice's recipients through every channel; a channel that
    /// fails is logged and the others still run.
    pub fn send(&self, notice: &Notice) {
        for channel in &self.channels {
            if let Err(e) = channel.deliver(notice) {
                tracing::warn!(kind = notice.kind.as_str(), error = %format!("{e:#}"), "a notice was not delivered");
            }
        }
    }

    /// Deliveries handed on and not finished, over every channel.
    pub fn pending(&self) -> usize {
        self.channels.iter().map(|c| c.pending()).sum()
    }

    /// Deliveries that failed for good since start, over every channel.
    pub fn failed(&self) -> u64 {
        self.channels.iter().map(|c| c.failed()).sum()
    }

    /// Waits until every delivery handed on has finished, at most `within`;
    /// returns how many are still unfinished (graceful shutdown, tests).
    pub async fn drain(&self, within: Duration) -> usize {
        let until = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending()
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("channels", &self.channels.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(n: usize) -> Notice {
        let key = KeyRef { id: format!("key_{n}"), name: "k".into(), prefix: "lk_abcdefgh".into() };
        Notice::new(NoticeKind::KeyExpiring, vec!["a@example.test".into()], "Key k expires in 7 days.".into())
            .team("team_1")
            .key(key)
            .details(serde_json::json!({"days": 7}))
    }

    #[test]
    fn every_channel_gets_each_notice_and_the_recorder_is_bounded() {
        let recorder = Arc::new(Recorder::default());
        let notifier = Notifier::logged_only().with_channel(recorder.clone());
        for n in 0..Recorder::KEEP + 2 {
            notifier.send(&notice(n));
        }
        let kept = recorder.notices();
        assert_eq!(kept.len(), Recorder::KEEP);
        assert_eq!(kept[0].key.as_ref().unwrap().id, "key_2");
    }

    #[test]
    fn kinds_read_back_and_only_reminders_may_be_turned_off() {
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
        }
        let optional: Vec<NoticeKind> = NoticeKind::ALL.into_iter().filter(|k| k.may_unsubscribe()).collect();
        assert_eq!(optional, [NoticeKind::KeyExpiring]);
        assert_eq!(NoticeKind::parse("api_key.expiring\n"), None);
    }

    #[test]
    fn a_disabled_endpoint_is_named_by_its_origin_only() {
        let n = Notice::webhook_endpoint_disabled(
            "team_1",
            ["o@example.test", "O@example.test", "a@example.test"],
            "https://hooks.example.test:8443/in/T0K3N?sig=abc",
            "20 failures in a row",
        );
        assert_eq!(n.kind, NoticeKind::WebhookEndpointDisabled);
        assert_eq!(n.recipients, ["o@example.test", "a@example.test"]);
        assert_eq!(n.details["endpoint"], "https://hooks.example.test:8443");
        assert!(!format!("{n:?}").contains("T0K3N"));
    }
}
