//! The redirect-URI matcher: a match implies the same scheme, host, path and
//! query, no userinfo, no fragment, the canonical text, and a port that
//! differs only for a loopback IP literal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use url::{Host, Position, Url};

#[path = "../../src/service/redirect_uri.rs"]
mod redirect_uri;

fn loopback_literal(u: &Url) -> bool {
    matches!(u.host(), Some(Host::Ipv4(ip)) if ip.is_loopback() && ip.octets() == [127, 0, 0, 1])
        || matches!(u.host(), Some(Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST)
}

fn check_match(registered: &str, given: &str) {
    let _ = redirect_uri::check(given);
    let _ = redirect_uri::origin(given);
    if !redirect_uri::matches(registered, given) {
        return;
    }
    let (Ok(r), Ok(g)) = (Url::parse(registered), Url::parse(given)) else {
        panic!("a match that does not parse: {registered:?} {given:?}");
    };
    assert_eq!(g.as_str(), given, "given is canonical");
    assert_eq!(r.as_str(), registered, "registered is canonical");
    assert_eq!(r.scheme(), g.scheme());
    assert_eq!(r.host(), g.host());
    assert_eq!(r.path(), g.path());
    assert_eq!(r.query(), g.query());
    assert!(g.username().is_empty() && g.password().is_none(), "userinfo in {given:?}");
    assert!(g.fragment().is_none());
    assert!(!given.contains('\\'), "backslash in {given:?}");
    assert!(!g[..Position::BeforePath].contains('@'), "@ in the authority of {given:?}");
    if r.port() != g.port() {
        assert!(loopback_literal(&r) && r.scheme() == "http", "port varied: {registered:?} {given:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // One URI alone is matched against itself; two lines are registered, given.
    match text.split_once('\n') {
        Some((registered, given)) => {
            check_match(registered, given);
            // The same given against a known-good loopback registration.
            check_match("http://127.0.0.1:8765/cb", given);
            check_match(registered, registered);
        }
        None => {
            check_match(text, text);
            check_match("http://127.0.0.1:8765/cb", text);
            check_match("https://app.example/cb?x=1", text);
        }
    }
});
