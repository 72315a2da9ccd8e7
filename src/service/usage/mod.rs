//! Usage of keys (and client secrets) on its way to the database: what each
//! instance buffers between flushes, how a batch is written, and how it is
//! read back for the pages and the API.
//!
//! Rules:
//! - Nothing is written on the request path: a request adds to the buffer
//!   under one short lock (one map lookup by subject, then scans of a few
//!   small vectors); the flush hands the batch on (`relay`) or writes it
//!   (`write`).
//! - A *subject* is a key id, or `cs_` and the start of a client secret's
//!   keyed hash (see [`secret_subject`]). Per subject the buffer holds the
//!   last use, per day the counts by [`UsageOutcome`], per hour the requests,
//!   the scopes exercised, and the last [`SIGHTINGS`] distinct client
//!   addresses and user agents (first and last seen, requests).
//! - Memory between flushes does not grow with traffic: subjects are keys
//!   and secrets that exist (each was read from the database to be
//!   verified); per subject at most [`SIGHTINGS`] addresses and as many user
//!   agents (the one seen longest ago makes room: it could not be among the
//!   last ones anyway), at most [`MAX_SCOPES`] scopes, user agents cut to
//!   [`AGENT_MAX`] bytes; days and hours grow only with time.
//! - A request's outcome is counted once: `ok` when it was verified, then
//!   moved to `scope_denied` ([`Usage::reclassify`]) if its route refused it
//!   for a scope. A move whose `ok` was already flushed writes -1/+1, which
//!   adds up to the same counts.

mod relay;
pub mod report;
mod write;

use std::collections::HashMap;
use std::net::IpAddr;

pub use relay::{CHUNK, Moved, Relay, When};
pub use write::{prune, write};

use crate::domain::UsageOutcome;

/// Distinct client addresses (and, apart, user agents) kept per subject.
pub const SIGHTINGS: usize = 10;
/// Scopes recorded per subject between flushes (the catalog is smaller).
pub const MAX_SCOPES: usize = 64;
/// Bytes of a user agent kept.
pub const AGENT_MAX: usize = 200;
/// Outcomes counted per day.
pub const OUTCOMES: usize = 7;

/// The subject under which a client secret's use is counted: `cs_` and the
/// first 16 characters of its keyed hash (which says nothing of the secret).
pub fn secret_subject(secret_hash: &str) -> String {
    let end = secret_hash.char_indices().nth(16).map_or(secret_hash.len(), |(i, _)| i);
    format!("cs_{}", &secret_hash[..end])
}

/// Whether a subject is a client secret's (otherwise it is a key id).
pub fn is_secret_subject(subject: &str) -> bool {
    subject.starts_with("cs_")
}

/// What kind of thing a sighting saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SightKind {
    Address,
    Agent,
}

impl SightKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "address" => Some(Self::Address),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// A distinct value seen using a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub kind: SightKind,
    pub value: String,
    pub first: i64,
    pub last: i64,
    pub requests: i64,
}

/// A scope a key exercised: first and last time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeUse {
    pub scope: String,
    pub first: i64,
    pub last: i64,
}

/// Who presented a subject, and when (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub at: i64,
    pub ip: Option<IpAddr>,
    pub agent: Option<&'a str>,
}

/// One subject's usage since the last flush.
#[derive(Debug, Clone, Default)]
pub struct SubjectUse {
    /// The last accepted use (`ok` or `scope_denied`); 0: none.
    pub last_used: i64,
    /// Unix day → counts by outcome (in [`UsageOutcome::ALL`] order).
    pub days: Vec<(i64, [i64; OUTCOMES])>,
    /// Hour (Unix seconds / 3600) → requests, whatever their outcome.
    pub hours: Vec<(i64, i64)>,
    pub sightings: Vec<Sighting>,
    pub scopes: Vec<ScopeUse>,
    /// Addresses as seen (turned into text when written).
    addresses: Vec<(IpAddr, i64, i64, i64)>,
}

impl SubjectUse {
    fn day(&mut self, day: i64) -> &mut [i64; OUTCOMES] {
        let i = match self.days.iter().position(|(d, _)| *d == day) {
            Some(i) => i,
            None => {
                self.days.push((day, [0; OUTCOMES]));
                self.days.len() - 1
            }
        };
        &mut self.days[i].1
    }

    fn hour(&mut self, hour: i64, requests: i64) {
        match self.hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, n)) => *n += requests,
            None => self.hours.push((hour, requests)),
        }
    }

    fn address(&mut self, ip: IpAddr, first: i64, last: i64, requests: i64) {
        if let Some(a) = self.addresses.iter_mut().find(|a| a.0 == ip) {
            (a.1, a.2, a.3) = (a.1.min(first), a.2.max(last), a.3 + requests);
            return;
        }
        if self.addresses.len() >= SIGHTINGS {
            let Some(oldest) = self.addresses.iter().enumerate().min_by_key(|(_, a)| a.2).map(|(i, _)| i) else {
                return;
            };
            if self.addresses[oldest].2 > last {
                return;
            }
            self.addresses.swap_remove(oldest);
        }
        self.addresses.push((ip, first, last, requests));
    }

    fn sighting(&mut self, kind: SightKind, value: &str, first: i64, last: i64, requests: i64) {
        if let Some(s) = self.sightings.iter_mut().find(|s| s.kind == kind && s.value == value) {
            (s.first, s.last, s.requests) = (s.first.min(first), s.last.max(last), s.requests + requests);
            return;
        }
        let of_kind = || self.sightings.iter().enumerate().filter(|(_, s)| s.kind == kind);
        if of_kind().count() >= SIGHTINGS {
            let Some((oldest, at)) = of_kind().min_by_key(|(_, s)| s.last).map(|(i, s)| (i, s.last)) else { return };
            if at > last {
                return;
            }
            self.sightings.swap_remove(oldest);
        }
        self.sightings.push(Sighting { kind, value: value.to_owned(), first, last, requests });
    }

    /// Counts one more sighting of a value already kept exactly so; `false`
    /// if there is none.
    fn seen_again(&mut self, kind: SightKind, value: &str, at: i64) -> bool {
        match self.sightings.iter_mut().find(|s| s.kind == kind && s.value == value) {
            Some(s) => {
                (s.first, s.last, s.requests) = (s.first.min(at), s.last.max(at), s.requests + 1);
                true
            }
            None => false,
        }
    }

    fn scope(&mut self, scope: &str, first: i64, last: i64) {
        if let Some(s) = self.scopes.iter_mut().find(|s| s.scope == scope) {
            (s.first, s.last) = (s.first.min(first), s.last.max(last));
        } else if self.scopes.len() < MAX_SCOPES {
            self.scopes.push(ScopeUse { scope: scope.to_owned(), first, last });
        }
    }

    /// Entries this subject takes in a hand-over (see `relay`).
    fn entries(&self) -> usize {
        let days: usize = self.days.iter().map(|(_, c)| c.iter().filter(|n| **n != 0).count()).sum();
        1 + days + self.hours.len() + self.addresses.len() + self.sightings.len() + self.scopes.len()
    }

    fn add_count(&mut self, day: i64, outcome: usize, n: i64) {
        if let Some(count) = self.day(day).get_mut(outcome) {
            *count += n;
        }
    }

    fn add_hour(&mut self, hour: i64, n: i64) {
        self.hour(hour, n);
    }

    fn add_sighting(&mut self, kind: SightKind, value: &str, first: i64, last: i64, n: i64) {
        match (kind, value.parse::<IpAddr>()) {
            (SightKind::Address, Ok(ip)) => self.address(ip, first, last, n),
            _ => self.sighting(kind, value, first, last, n),
        }
    }

    fn add_scope(&mut self, scope: &str, first: i64, last: i64) {
        self.scope(scope, first, last);
    }

    /// The sightings, addresses included (as text).
    pub fn all_sightings(&self) -> Vec<Sighting> {
        let addresses = self.addresses.iter().map(|(ip, first, last, requests)| Sighting {
            kind: SightKind::Address,
            value: ip.to_string(),
            first: *first,
            last: *last,
            requests: *requests,
        });
        addresses.chain(self.sightings.iter().cloned()).collect()
    }

    /// Requests counted, all outcomes.
    pub fn requests(&self) -> i64 {
        self.days.iter().flat_map(|(_, c)| c.iter()).sum()
    }

    fn merge(&mut self, other: SubjectUse) {
        self.last_used = self.last_used.max(other.last_used);
        for (day, counts) in other.days {
            let mine = self.day(day);
            for (m, n) in mine.iter_mut().zip(counts) {
                *m += n;
            }
        }
        for (hour, n) in other.hours {
            self.hour(hour, n);
        }
        for (ip, first, last, n) in other.addresses {
            self.address(ip, first, last, n);
        }
        for s in other.sightings {
            self.sighting(s.kind, &s.value, s.first, s.last, s.requests);
        }
        for s in other.scopes {
            self.scope(&s.scope, s.first, s.last);
        }
    }
}

/// A user agent as it is kept: anything that looks like a secret (a key, a
/// token, a client secret — whole or disguised) replaced, control characters
/// dropped, at most [`AGENT_MAX`] bytes (cut at a character boundary).
pub fn clean_agent(agent: &str) -> std::borrow::Cow<'_, str> {
    use crate::service::keys::codec;
    let redacted = codec::redact(agent);
    if *redacted != *agent {
        return std::borrow::Cow::Owned(clean_agent(&redacted).into_owned());
    }
    let fits = agent.len() <= AGENT_MAX && !agent.chars().any(char::is_control);
    if fits {
        return std::borrow::Cow::Borrowed(agent);
    }
    let mut out = String::with_capacity(agent.len().min(AGENT_MAX));
    for c in agent.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > AGENT_MAX {
            break;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// The usage of every subject since the last flush.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    pub(crate) subjects: HashMap<String, SubjectUse>,
}

impl Usage {
    /// A new subject's entry (callers look the subject up by `&str` first,
    /// so that the common case allocates nothing).
    fn subject(&mut self, subject: &str) -> &mut SubjectUse {
        self.subjects.entry(subject.to_owned()).or_default()
    }

    /// One request presenting `subject`, ended with `outcome`.
    pub fn record(&mut self, subject: &str, outcome: UsageOutcome, seen: &Seen<'_>) {
        let s = match self.subjects.get_mut(subject) {
            Some(s) => s,
            None => self.subject(subject),
        };
        if matches!(outcome, UsageOutcome::Ok | UsageOutcome::ScopeDenied) {
            s.last_used = s.last_used.max(seen.at);
        }
        s.day(seen.at.div_euclid(86_400))[outcome.index()] += 1;
        s.hour(seen.at.div_euclid(3_600), 1);
        if let Some(ip) = seen.ip {
            s.address(ip.to_canonical(), seen.at, seen.at, 1);
        }
        // An agent already kept as it came needs no cleaning (the common
        // case: one comparison per request).
        if let Some(agent) = seen.agent
            && !s.seen_again(SightKind::Agent, agent, seen.at)
        {
            let agent = clean_agent(agent);
            s.sighting(SightKind::Agent, &agent, seen.at, seen.at, 1);
        }
    }

    /// A request counted as `from` at `at` ended as `to` instead.
    pub fn reclassify(&mut self, subject: &str, at: i64, from: UsageOutcome, to: UsageOutcome) {
        let s = match self.subjects.get_mut(subject) {
            Some(s) => s,
            None => self.subject(subject),
        };
        let day = s.day(at.div_euclid(86_400));
        day[from.index()] -= 1;
        day[to.index()] += 1;
    }

    /// `subject` exercised `scope` at `at`.
    pub fn exercised(&mut self, subject: &str, scope: &str, at: i64) {
        let s = match self.subjects.get_mut(subject) {
            Some(s) => s,
            None => self.subject(subject),
        };
        s.scope(scope, at, at);
    }

    /// Takes back a batch that was not written: its counts add to those
    /// buffered since, the later last use is kept, sightings and scopes merge.
    pub fn merge(&mut self, unwritten: Usage) {
        for (subject, u) in unwritten.subjects {
            match self.subjects.get_mut(&subject) {
                Some(mine) => mine.merge(u),
                None => {
                    self.subjects.insert(subject, u);
                }
            }
        }
    }

    /// The last presentation of each subject (at most `at`): the latest of
    /// its last use and sightings, or the end of its latest hour when that
    /// is all it has (a refused request with no address nor agent).
    pub fn last_presented(&self, at: i64) -> HashMap<String, i64> {
        self.subjects
            .iter()
            .filter_map(|(subject, u)| {
                let seen = u.all_sightings().iter().map(|s| s.last).max().unwrap_or(0).max(u.last_used);
                let hour = u.hours.iter().map(|(h, _)| *h).max();
                let explained = hour.is_none_or(|h| seen.div_euclid(3_600) >= h);
                let last = if explained { seen } else { hour.map_or(seen, |h| (h * 3_600 + 3_599).min(at)) };
                (last > 0).then(|| (subject.clone(), last))
            })
            .collect()
    }

    /// Requests counted, all outcomes and subjects.
    pub fn requests(&self) -> i64 {
        self.subjects.values().map(SubjectUse::requests).sum()
    }

    /// Subjects with usage.
    pub fn keys(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// The last use of `subject` in this batch (tests and the merge).
    pub fn last_used(&self, subject: &str) -> Option<i64> {
        self.subjects.get(subject).map(|s| s.last_used).filter(|at| *at > 0)
    }

    /// The counts of `subject` on `day`, by outcome.
    pub fn day_counts(&self, subject: &str, day: i64) -> Option<[i64; OUTCOMES]> {
        self.subjects.get(subject)?.days.iter().find(|(d, _)| *d == day).map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: i64, ip: &str, agent: &str) -> Seen<'static> {
        let agent: &'static str = Box::leak(agent.to_owned().into_boxed_str());
        Seen { at, ip: ip.parse().ok(), agent: Some(agent) }
    }

    #[test]
    fn an_older_record_never_moves_the_last_use_back() {
        let mut usage = Usage::default();
        usage.record("key_1", UsageOutcome::Ok, &seen(200, "10.0.0.1", "a"));
        usage.record("key_1", UsageOutcome::Ok, &seen(100, "10.0.0.1", "a"));
        assert_eq!(usage.last_used("key_1"), Some(200));
        assert_eq!(usage.requests(), 2);
    }

    #[test]
    fn outcomes_count_apart_and_a_scope_refusal_moves_one_ok() {
        let mut usage = Usage::default();
        for outcome in UsageOutcome::ALL {
            usage.record("key_1", *outcome, &seen(100, "10.0.0.1", "a"));
        }
        usage.record("key_1", UsageOutcome::Ok, &seen(100, "10.0.0.1", "a"));
        usage.reclassify("key_1", 100, UsageOutcome::Ok, UsageOutcome::ScopeDenied);
        assert_eq!(usage.day_counts("key_1", 0), Some([1, 2, 1, 1, 1, 1, 1]));
        // Refusals are not uses.
        let mut refused = Usage::default();
        refused.record("key_2", UsageOutcome::Revoked, &seen(100, "10.0.0.1", "a"));
        assert_eq!(refused.last_used("key_2"), None);
    }

    #[test]
    fn sightings_stay_bounded_whatever_the_traffic_and_keep_the_latest() {
        let mut usage = Usage::default();
        for i in 0..10_000i64 {
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            usage.record("key_1", UsageOutcome::Ok, &seen(i, &ip, &format!("agent {i} {}", "x".repeat(500))));
            usage.exercised("key_1", &format!("scope:{i}"), i);
        }
        let s = &usage.subjects["key_1"];
        assert_eq!(s.addresses.len(), SIGHTINGS);
        assert_eq!(s.sightings.len(), SIGHTINGS);
        assert!(s.sightings.iter().all(|a| a.value.len() <= AGENT_MAX));
        assert_eq!(s.scopes.len(), MAX_SCOPES);
        let mut lasts: Vec<i64> = s.addresses.iter().map(|a| a.2).collect();
        lasts.sort_unstable();
        assert_eq!(lasts, (9_990..10_000).collect::<Vec<_>>(), "the ten seen last");
    }

    #[test]
    fn ipv4_mapped_addresses_are_one_address() {
        let mut usage = Usage::default();
        usage.record("key_1", UsageOutcome::Ok, &seen(1, "9.9.9.9", "a"));
        usage.record("key_1", UsageOutcome::Ok, &seen(2, "::ffff:9.9.9.9", "a"));
        let all = usage.subjects["key_1"].all_sightings();
        let addresses: Vec<_> = all.iter().filter(|s| s.kind == SightKind::Address).collect();
        assert_eq!(addresses.len(), 1);
        assert_eq!((addresses[0].value.as_str(), addresses[0].requests), ("9.9.9.9", 2));
    }

    #[test]
    fn an_unwritten_batch_merges_back() {
        let mut a = Usage::default();
        a.record("key_1", UsageOutcome::Ok, &seen(100, "10.0.0.1", "a"));
        a.exercised("key_1", "products:read", 100);
        let mut b = Usage::default();
        b.record("key_1", UsageOutcome::Expired, &seen(50, "10.0.0.2", "b"));
        b.exercised("key_1", "products:read", 40);
        a.merge(b);
        assert_eq!(a.day_counts("key_1", 0), Some([1, 0, 0, 0, 1, 0, 0]));
        let s = &a.subjects["key_1"];
        assert_eq!(s.scopes, vec![ScopeUse { scope: "products:read".into(), first: 40, last: 100 }]);
        assert_eq!(s.all_sightings().len(), 4);
        assert_eq!(s.hours, vec![(0, 2)]);
    }

    #[test]
    fn agents_lose_control_characters_and_length() {
        assert_eq!(clean_agent("curl/8.0"), "curl/8.0");
        assert_eq!(clean_agent("a\u{0}b\nc"), "abc");
        assert_eq!(clean_agent(&"é".repeat(300)).len(), AGENT_MAX);
        let browser = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/131.0.0.0";
        assert_eq!(clean_agent(browser), browser, "an ordinary agent is kept as it is");
    }

    /// Standard base64 (with `+`, `/` and padding), for the test.
    fn base64_of(text: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in text.as_bytes().chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                let c = if i <= chunk.len() { A[((n >> (18 - 6 * i)) & 63) as usize] } else { b'=' };
                out.push(char::from(c));
            }
        }
        out
    }

    #[test]
    fn ordinary_user_agents_are_kept_as_they_are() {
        for agent in [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240905.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36",
            "curl/8.11.0",
            "python-requests/2.32.3",
            "python-httpx/0.28.1",
            "Go-http-client/2.0",
            "okhttp/4.12.0",
            "PostmanRuntime/7.43.0",
            "aws-sdk-java/2.29.0 Linux/6.1 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS Java/21.0.5 vendor/Eclipse_Adoptium",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "GitHub-Hookshot/a1b2c3d",
            "Terraform/1.10.2 (+https://www.terraform.io) terraform-provider-acme/3.4.5",
        ] {
            assert_eq!(clean_agent(agent), agent);
        }
    }

    #[test]
    fn a_secret_in_a_user_agent_is_never_kept() {
        let key = crate::service::keys::codec::generate("lk").unwrap();
        let token = crate::service::keys::codec::generate("lkat").unwrap();
        for (agent, kept) in [
            (key.clone(), "[secret]".to_owned()),
            (format!("worker/1.0 {token} (linux)"), "worker/1.0 [secret] (linux)".to_owned()),
            (format!("worker/1.0 ({key})"), "worker/1.0 ([secret])".to_owned()),
            (format!("x/{}-{}", &key[..10], &key[10..]), format!("x/{}-[secret]", &key[..10])),
            (format!("x/{}.{}", &key[..20], &key[20..]), crate::service::keys::codec::HOLDS_A_SECRET.to_owned()),
            // Forms a person turns back into the key at a glance.
            (format!("client/2 {}", &key[3..]), "client/2 [secret]".to_owned()),
            (format!("client/3 {}", &key[..33]), "client/3 lk_[secret]".to_owned()),
            (format!("client/4 lk%5F{}", &key[3..]), crate::service::keys::codec::HOLDS_A_SECRET.to_owned()),
            (format!("client/6 {}", base64_of(&key)), "client/6 [secret]".to_owned()),
            (format!("client/5 lk__{}", &key[3..]), "client/5 lk__[secret]".to_owned()),
        ] {
            let cleaned = clean_agent(&agent).into_owned();
            assert_eq!(cleaned, kept, "{agent}");
            let mut usage = Usage::default();
            for at in [1, 2] {
                usage.record("key_1", UsageOutcome::Ok, &Seen { at, ip: None, agent: Some(&agent) });
            }
            let all = usage.subjects["key_1"].all_sightings();
            assert_eq!(all.len(), 1, "one agent, counted twice");
            assert_eq!((all[0].value.as_str(), all[0].requests), (kept.as_str(), 2));
        }
    }

    #[test]
    fn a_secret_subject_names_the_start_of_its_hash() {
        assert_eq!(secret_subject("0123456789abcdef0123"), "cs_0123456789abcdef");
        assert!(is_secret_subject(&secret_subject("ab")));
        assert!(!is_secret_subject("key_abc"));
    }
}
