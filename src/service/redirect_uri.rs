//! OAuth redirect URIs (RFC 6749 §3.1.2, RFC 8252 §7.3, RFC 9700 §4.1),
//! parsed with the WHATWG URL parser, never sliced as strings.
//!
//! Rules: a URI is accepted only in the exact form the parser gives back
//! (anything that normalizes differently — case, percent-encoding, dot
//! segments, default ports, empty ports, IPv4 shorthands — is refused, so
//! that the text we compare is the URL a browser will follow); printable
//! ASCII only; no userinfo, no fragment, no backslash, no wildcard; https, or
//! http for the loopback IP literals `127.0.0.1` and `[::1]` and for
//! `localhost`. At authorize, the given URI must pass the same rules and
//! equal a registered one exactly; only a loopback IP literal's port may
//! differ. `localhost`, `127.0.0.1` and `[::1]` are three different hosts.
//!
//! Self-contained (std and `url` only) so that the fuzz targets include it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The longest redirect URI accepted.
pub const MAX_LEN: usize = 2000;

/// Why a redirect URI is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooLong,
    /// Whitespace, control or non-ASCII characters.
    Characters,
    Backslash,
    Wildcard,
    Fragment,
    NotAUrl,
    Userinfo,
    NoHost,
    /// http for anything but a loopback address, or another scheme.
    Scheme,
    /// The parser reads it differently from how it is written; the canonical form.
    NotCanonical(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "use at most {MAX_LEN} characters"),
            Self::Characters => f.write_str("use printable ASCII only, without spaces (percent-encode the rest)"),
            Self::Backslash => f.write_str("must not contain a backslash"),
            Self::Wildcard => f.write_str("wildcards are not allowed"),
            Self::Fragment => f.write_str("must not contain a fragment (#)"),
            Self::NotAUrl => f.write_str("not an absolute URL with a valid host and port"),
            Self::Userinfo => f.write_str("must not contain a user name or password (@)"),
            Self::NoHost => f.write_str("needs a host"),
            Self::Scheme => f.write_str("use https (http only for 127.0.0.1, [::1] or localhost)"),
            Self::NotCanonical(canonical) => write!(f, "write it exactly as {canonical}"),
        }
    }
}

/// Whether the host is a loopback IP literal, whose port may vary (RFC 8252 §7.3).
fn is_loopback_literal(url: &Url) -> bool {
    matches!(url.host(), Some(Host::Ipv4(ip)) if ip == Ipv4Addr::LOCALHOST)
        || matches!(url.host(), Some(Host::Ipv6(ip)) if ip == Ipv6Addr::LOCALHOST)
}

/// Parses a redirect URI and checks every rule of this module.
pub fn parse(raw: &str) -> Result<Url, Refusal> {
    if raw.len() > MAX_LEN {
        return Err(Refusal::TooLong);
    }
    if raw.contains('\\') {
        return Err(Refusal::Backslash);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::Characters);
    }
    if raw.contains('*') {
        return Err(Refusal::Wildcard);
    }
    if raw.contains('#') {
        return Err(Refusal::Fragment);
    }
    let url = Url::parse(raw).map_err(|_| Refusal::NotAUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Userinfo);
    }
    if url.fragment().is_some() {
        return Err(Refusal::Fragment);
    }
    if url.host().is_none() {
        return Err(Refusal::NoHost);
    }
    let loopback = is_loopback_literal(&url) || url.host() == Some(Host::Domain("localhost"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(Refusal::Scheme),
    }
    if url.as_str() != raw {
        return Err(Refusal::NotCanonical(url.as_str().to_owned()));
    }
    Ok(url)
}

/// One URI at registration: `Ok` when it may be registered.
pub fn check(raw: &str) -> Result<(), Refusal> {
    parse(raw).map(|_| ())
}

/// Whether `given` (from an authorization request) names the `registered`
/// URI: both valid, equal exactly, or — for a loopback IP literal only —
/// equal in everything but the port.
pub fn matches(registered: &str, given: &str) -> bool {
    let (Ok(reg), Ok(giv)) = (parse(registered), parse(given)) else { return false };
    if reg.as_str() == giv.as_str() {
        return true;
    }
    if !is_loopback_literal(&reg) || reg.scheme() != "http" || reg.host() != giv.host() {
        return false;
    }
    without_port(reg).is_some_and(|r| without_port(giv).is_some_and(|g| r.as_str() == g.as_str()))
}

fn without_port(mut url: Url) -> Option<Url> {
    url.set_port(None).ok()?;
    Some(url)
}

/// `scheme://host[:port]` of a valid redirect URI, for a CSP `form-action`.
pub fn origin(raw: &str) -> Option<String> {
    parse(raw).ok().map(|u| u.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_takes_canonical_https_or_loopback_http() {
        for good in [
            "https://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com:8443/cb",
            "http://127.0.0.1:8000/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8000/cb",
            "http://localhost/cb",
            "http://localhost:3000/cb",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn registration_refuses_every_bad_form() {
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "https://app.example.com/cb#",
            "https://*.example.com/cb",
            "ftp://x/y",
            "javascript:alert(1)",
            "app.example.com",
            "/cb",
            "https://a b/cb",
            "https://a.example/c b",
            "https://a.example/cb\t",
            "https://a.example/cb\0",
            "https://a.example/é",
            "https://u@a.example/cb",
            "https://u:p@a.example/cb",
            "https://@a.example/cb",
            "http://127.0.0.1:1@evil.example/cb",
            "https://a.example\\@evil.example/cb",
            "https://a.example/cb\\x",
            "https://a.example:abc/cb",
            "https://a.example:/cb",
            "https://a.example:99999/cb",
            "https://a.example:443/cb",
            "https://A.example/cb",
            "HTTPS://a.example/cb",
            "https://a.example",
            "https://a.example/cb/../x",
            "https://a.example/cb/%2e%2e/x",
            "https://a.example/./cb",
            "http://0x7f.0.0.1/cb",
            "http://127.1/cb",
            "http://127.0.0.2/cb",
            "http://[::1]:/cb",
            "http://[0:0:0:0:0:0:0:1]/cb",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_non_canonical_uri_is_told_its_canonical_form() {
        assert_eq!(check("https://a.example"), Err(Refusal::NotCanonical("https://a.example/".into())));
    }

    #[test]
    fn matching_is_exact() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        for given in [
            "https://a.example/cb/",
            "https://a.example/cb?x=1",
            "https://a.example/CB",
            "https://a.example/%63b",
            "https://a.example:8443/cb",
            "https://a.example.evil.example/cb",
            "https://a.example/cb#x",
            "https://u@a.example/cb",
        ] {
            assert!(!matches("https://a.example/cb", given), "{given}");
        }
    }

    #[test]
    fn only_a_loopback_literal_port_may_vary() {
        let reg = "http://127.0.0.1:8765/cb";
        assert!(matches(reg, "http://127.0.0.1:9999/cb"));
        assert!(matches(reg, "http://127.0.0.1/cb"));
        assert!(matches("http://[::1]:8765/cb", "http://[::1]:1/cb"));
        for given in [
            "http://127.0.0.1:1@evil.example/cb",
            "http://u@127.0.0.1:8765/cb",
            "http://127.0.0.1:8765@evil.example/cb",
            "http://127.0.0.1.evil.example:8765/cb",
            "http://127.0.0.1:8765\\@evil.example/cb",
            "http://127.0.0.1:8765/cb#x",
            "http://127.0.0.1:abc/cb",
            "http://127.0.0.1:/cb",
            "http://localhost:8765/cb",
            "http://[::1]:8765/cb",
            "http://127.0.0.1:8765/cb/../x",
            "http://127.0.0.1:8765/cb/%2e%2e/x",
            "http://127.0.0.1:8765/cb?x=1",
            "http://127.0.0.1:8765/%63b",
            "http://127.0.0.1:8765/CB",
            "https://127.0.0.1:8765/cb",
            "http://127.0.0.1:9999/other",
        ] {
            assert!(!matches(reg, given), "{given}");
        }
        assert!(!matches("http://localhost:8765/cb", "http://localhost:9999/cb"));
        assert!(!matches("https://a.example:1/cb", "https://a.example:2/cb"));
    }

    #[test]
    fn a_stored_uri_that_breaks_the_rules_matches_nothing() {
        assert!(!matches("http://127.0.0.1:1@evil.example/cb", "http://127.0.0.1:1@evil.example/cb"));
    }

    #[test]
    fn origins() {
        assert_eq!(origin("http://127.0.0.1:9999/cb").as_deref(), Some("http://127.0.0.1:9999"));
        assert_eq!(origin("https://a.example/cb?x").as_deref(), Some("https://a.example"));
        assert_eq!(origin("http://u@127.0.0.1/cb"), None);
    }
}
