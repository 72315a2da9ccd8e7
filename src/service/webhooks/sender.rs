//! The HTTP side of a delivery: one signed POST.
//!
//! Rules: no redirect is followed (a 3xx is a failure), no proxy from the
//! environment is used, the whole exchange is bounded by [`TIMEOUT`], at most
//! [`MAX_RESPONSE`] bytes of the answer are read and the rest dropped, and
//! every destination passes the guard (`guard`) — literal addresses here,
//! names in the resolver. A 2xx answer is a delivery; anything else, or no
//! answer, is a failure described in a few words without any secret.

use std::sync::Arc;
use std::time::Duration;

use super::guard::{self, GuardedResolver};

/// How long one attempt may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer is read.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// The headers of one attempt (Standard Webhooks).
pub struct Signed {
    pub msg_id: String,
    pub timestamp: i64,
    pub signature: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: String },
}

/// The webhook HTTP client of one instance.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .pool_max_idle_per_host(2)
            .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()?;
        Ok(Self { client, allow_private })
    }

    /// POSTs `body` to `url` with the signature headers.
    pub async fn send(&self, url: &str, signed: &Signed, body: String) -> Outcome {
        let failed = |error: &str| Outcome::Failed { status: None, error: error.to_owned() };
        let Ok(parsed) = url::Url::parse(url) else { return failed("the URL is not valid") };
        let scheme_ok = parsed.scheme() == "https" || (self.allow_private && parsed.scheme() == "http");
        if !scheme_ok {
            return failed("refused: only https:// URLs are called");
        }
        if !self.allow_private && !guard::host_allowed(&parsed) {
            return failed(guard::PRIVATE_REFUSED);
        }
        let request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &signed.msg_id)
            .header("webhook-timestamp", signed.timestamp.to_string())
            .header("webhook-signature", &signed.signature)
            .body(body);
        match request.send().await {
            Ok(response) => answered(response).await,
            Err(e) => failed(&describe(&e)),
        }
    }
}

/// Reads at most [`MAX_RESPONSE`] bytes of the answer, then judges its status.
async fn answered(mut response: reqwest::Response) -> Outcome {
    let status = response.status();
    let mut read = 0usize;
    while read < MAX_RESPONSE {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break,
            // The status already came: a body cut short does not undo it.
            Err(_) => break,
        }
    }
    drop(response);
    if status.is_success() {
        Outcome::Delivered { status: status.as_u16() }
    } else if status.is_redirection() {
        Outcome::Failed {
            status: Some(status.as_u16()),
            error: "answered with a redirect, which is not followed".into(),
        }
    } else {
        Outcome::Failed { status: Some(status.as_u16()), error: format!("answered HTTP {}", status.as_u16()) }
    }
}

/// A failure in a few words (no URL, no header: nothing secret).
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<guard::Refused>().is_some() {
            return guard::PRIVATE_REFUSED.to_owned();
        }
        source = s.source();
    }
    if e.is_timeout() {
        format!("no answer within {} seconds", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}
