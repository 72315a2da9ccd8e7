//! Telling people about their team's credentials (today: a key about to
//! expire). A [`Notice`] says what happened, to whom (their emails) and about
//! which key; the [`Notifier`] hands it to each [`Channel`].
//!
//! Rules: a notice never carries a secret — a key is named by its name and
//! display prefix; a notice is sent after the transaction that decided it has
//! committed, and a delivery that fails is logged, never retried into a second
//! notice; a channel never blocks its caller (one that talks to a network
//! queues the notice and delivers it on a task of its own). Email is logged
//! only (`LATCHKEY_SMTP_URL` unset: one `info` line with the kind, the
//! recipients and the key's prefix); webhooks do not exist yet. An SMTP or a
//! webhook sender plugs in as one more channel ([`Notifier::with_channel`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Something people are told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The event, as webhooks will name it (`api_key.expiring`).
    pub kind: &'static str,
    pub team_id: String,
    /// The people told, by email.
    pub recipients: Vec<String>,
    /// The key it is about: its id, name and display prefix (`lk_a1b2c3d4`).
    pub key_id: String,
    pub key_name: String,
    pub key_prefix: String,
    /// One line for a person ("Key Billing (lk_a1b2c3d4…) expires in 7 days.").
    pub text: String,
    /// The event's details, as its audit event records them.
    pub details: serde_json::Value,
}

/// Where notices go: an email sender, a webhook sender, a log.
pub trait Channel: Send + Sync {
    /// Hands the notice on, without blocking.
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()>;
}

/// Email while no SMTP server is configured: one log line per notice.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggedEmail;

impl Channel for LoggedEmail {
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()> {
        tracing::info!(
            kind = notice.kind,
            to = %notice.recipients.join(", "),
            key = %notice.key_prefix,
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
    /// Today's notifier: email is logged only, there are no webhooks.
    pub fn logged_only() -> Self {
        Self { channels: vec![Arc::new(LoggedEmail)] }
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
                tracing::warn!(kind = notice.kind, key = %notice.key_prefix, error = %format!("{e:#}"), "a notice was not delivered");
            }
        }
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
        Notice {
            kind: "api_key.expiring",
            team_id: "team_1".into(),
            recipients: vec!["a@example.test".into()],
            key_id: format!("key_{n}"),
            key_name: "k".into(),
            key_prefix: "lk_abcdefgh".into(),
            text: "Key k expires in 7 days.".into(),
            details: serde_json::json!({"days": 7}),
        }
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
        assert_eq!(kept[0].key_id, "key_2");
    }
}
