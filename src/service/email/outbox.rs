//! Sending email through SMTP without making anyone wait: the [`Mailer`]
//! channel composes each message and queues it (bounded, [`QUEUE`]); one task
//! sends them in order, each tried up to [`ATTEMPTS`] times with a doubling
//! backoff (a permanent refusal, 5xx, is not retried).
//!
//! Rules: a full queue drops the message with a warning rather than block a
//! request; a failure is logged with the kind and the cause, never the
//! message (it may hold an invite link) nor the SMTP URL (it may hold a
//! password). `smtp://` is plain (or STARTTLS with `?tls=required` /
//! `?tls=opportunistic`), `smtp+starttls://` requires STARTTLS, `smtps://`
//! is TLS from the start; user and password come from the URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use super::compose::{self, Site};
use crate::config::Config;
use crate::service::crypto::Keys;
use crate::service::notify::{Channel, Notice, NoticeKind, Notifier};

/// How many messages may wait to be sent.
pub const QUEUE: usize = 2000;
/// How often a message is tried.
pub const ATTEMPTS: u32 = 4;
/// The wait before the second try (doubled after each).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// The notifier for this configuration: SMTP when `LATCHKEY_SMTP_URL` is
/// set, else email logged only. Spawns the sending task (call it inside a
/// Tokio runtime).
pub fn notifier(config: &Config, keys: &Keys) -> anyhow::Result<Notifier> {
    let Some(url) = &config.smtp_url else { return Ok(Notifier::logged_only()) };
    let site = Site::new(&config.public_url, keys.clone());
    let mailer = Mailer::start(url.expose_secret(), &config.smtp_from, site)?;
    Ok(Notifier::with_channels(vec![Arc::new(mailer)]))
}

/// Sends one notice from a one-shot command (`latchkey user reset-totp`):
/// logged only without SMTP; otherwise sent on a runtime of its own, waiting
/// at most `within` for it to go out.
pub fn send_now(config: &Config, notice: &Notice, within: Duration) -> anyhow::Result<()> {
    if config.smtp_url.is_none() {
        Notifier::logged_only().send(notice);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let notifier = notifier(config, &Keys::derive(config.secret_bytes()))?;
        notifier.send(notice);
        let left = notifier.drain(within).await;
        if left > 0 || notifier.failed() > 0 {
            tracing::warn!(kind = notice.kind.as_str(), "the email was not sent (see above)");
        }
        Ok(())
    })
}

/// A composed message waiting to be sent.
struct Outgoing {
    message: Message,
    kind: NoticeKind,
}

/// Email through SMTP, as a notice channel.
pub struct Mailer {
    queue: mpsc::Sender<Outgoing>,
    pending: Arc<AtomicUsize>,
    failed: Arc<AtomicU64>,
    site: Site,
    from: Mailbox,
}

impl Mailer {
    /// Connects lazily to `url` and starts the sending task.
    pub fn start(url: &str, from: &str, site: Site) -> anyhow::Result<Self> {
        let transport = transport(url)?;
        let from: Mailbox = from.parse().context("LATCHKEY_SMTP_FROM is not an email address")?;
        let (queue, waiting) = mpsc::channel(QUEUE);
        let (pending, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
        tokio::spawn(send_all(transport, waiting, pending.clone(), failed.clone()));
        Ok(Self { queue, pending, failed, site, from })
    }

    fn enqueue(&self, message: Message, kind: NoticeKind) -> bool {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.try_send(Outgoing { message, kind }).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.failed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Channel for Mailer {
    fn deliver(&self, notice: &Notice) -> anyhow::Result<()> {
        let (mut dropped, mut unusable) = (0, Vec::new());
        for to in &notice.recipients {
            match compose::letter(notice, to, &self.site, &self.from) {
                Ok(Some(message)) => {
                    if !self.enqueue(message, notice.kind) {
                        dropped += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => unusable.push(format!("{e:#}")),
            }
        }
        match (dropped, unusable.first()) {
            (0, None) => Ok(()),
            (0, Some(e)) => anyhow::bail!("{} message(s) could not be composed: {e}", unusable.len()),
            (n, _) => anyhow::bail!("the email queue is full: {n} message(s) dropped"),
        }
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// lettre's transport for one of our SMTP URLs.
fn transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = match url.strip_prefix("smtp+starttls://") {
        Some(rest) if rest.contains("tls=") => format!("smtp://{rest}"),
        Some(rest) => format!("smtp://{rest}{}tls=required", if rest.contains('?') { "&" } else { "?" }),
        None => url.to_owned(),
    };
    // The URL is never put in the error: it may hold a password.
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
        .map_err(|e| anyhow::anyhow!("LATCHKEY_SMTP_URL is not a usable SMTP URL: {e}"))?;
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

/// Sends what is queued, in order, until every sender is gone.
async fn send_all(
    transport: AsyncSmtpTransport<Tokio1Executor>,
    mut waiting: mpsc::Receiver<Outgoing>,
    pending: Arc<AtomicUsize>,
    failed: Arc<AtomicU64>,
) {
    while let Some(out) = waiting.recv().await {
        if !send_one(&transport, &out).await {
            failed.fetch_add(1, Ordering::Relaxed);
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tries one message up to [`ATTEMPTS`] times; whether it went out.
async fn send_one(transport: &AsyncSmtpTransport<Tokio1Executor>, out: &Outgoing) -> bool {
    let kind = out.kind.as_str();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match transport.send(out.message.clone()).await {
            Ok(_) => {
                tracing::debug!(kind, attempt, "email sent");
                return true;
            }
            Err(e) if attempt < ATTEMPTS && !e.is_permanent() => {
                tracing::warn!(kind, attempt, error = %e, "sending an email failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => {
                tracing::error!(kind, attempts = attempt, error = %e, "sending an email failed; it was dropped");
                return false;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_we_document_builds_a_transport_and_others_do_not() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for ok in [
                "smtp://127.0.0.1:2525",
                "smtp://user:p%40ss@mail.example.test:587?tls=required",
                "smtp+starttls://user:pass@mail.example.test",
                "smtps://user:pass@mail.example.test",
            ] {
                assert!(transport(ok).is_ok(), "{ok}");
            }
            let err = transport("smtp://user:hunter2@").unwrap_err();
            assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        });
    }
}
