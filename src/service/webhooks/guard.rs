//! Where webhooks may go: the SSRF guard.
//!
//! Rules: an endpoint URL is `https://` (also `http://` with
//! `webhook_allow_private`), with a host, no user name or password, at most
//! 2048 characters. Unless `webhook_allow_private` is on, an address that is
//! not public unicast is refused — unspecified, loopback, private (10/8,
//! 172.16/12, 192.168/16), shared (100.64/10), link-local (169.254/16, the
//! cloud metadata address included; fe80::/10), unique-local (fc00::/7),
//! documentation, benchmarking, multicast, broadcast, reserved, and IPv6 forms
//! that embed such an IPv4 address (mapped, compatible, NAT64, 6to4). It is
//! refused at registration (literal addresses, `localhost`, and names that
//! resolve to such addresses) and again at every delivery: names are resolved
//! by [`GuardedResolver`], which hands the HTTP client only the addresses it
//! checked (no second lookup to rebind), and a literal address, which the
//! client never resolves, is checked before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// The longest endpoint URL.
pub const MAX_URL: usize = 2048;

/// Why a destination is refused (said in a delivery's `last_error`).
pub const PRIVATE_REFUSED: &str = "refused: the address is private, loopback, link-local or otherwise not public";

/// Whether `ip` is a public unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0                                  // this network, unspecified
        || a == 10                                        // private
        || (a == 100 && (64..128).contains(&b))           // shared address space (CGNAT)
        || a == 127                                       // loopback
        || (a == 169 && b == 254)                         // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))            // private
        || (a == 192 && b == 0 && c == 0)                 // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // documentation
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // private
        || (a == 198 && (18..20).contains(&b))            // benchmarking
        || (a == 198 && b == 51 && c == 100)              // documentation
        || (a == 203 && b == 0 && c == 113)               // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
    let teredo_and_protocol = s[0] == 0x2001 && s[1] < 0x0200;
    let benchmarking = s[0] == 0x2001 && s[1] == 0x0002;
    global_unicast && !documentation && !teredo_and_protocol && !benchmarking
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`),
/// compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if ip != Ipv6Addr::UNSPECIFIED && ip != Ipv6Addr::LOCALHOST => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// An endpoint URL as registered: the checks that need no lookup.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Enter the URL that receives the events.");
    }
    if raw.len() > MAX_URL || !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains('\\') {
        return Err("Use an https:// URL of at most 2048 characters, without spaces.");
    }
    let url = Url::parse(raw).map_err(|_| "Use an https:// URL, such as https://example.com/webhooks.")?;
    match (url.scheme(), allow_private) {
        ("https", _) | ("http", true) => {}
        ("http", false) => return Err("Use https://: events are not sent over plain http."),
        _ => return Err("Use an https:// URL, such as https://example.com/webhooks."),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Remove the user name and password from the URL.");
    }
    if !allow_private && !host_allowed(&url) {
        return Err("Use a public address: private, loopback and link-local addresses are refused.");
    }
    Ok(url)
}

/// Whether the URL's host may be reached without a lookup: a public literal
/// address, or a name other than `localhost` (checked when resolved).
pub fn host_allowed(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(v4)) => is_public_v4(v4),
        Some(Host::Ipv6(v6)) => is_public_v6(v6),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            !(d == "localhost" || d.ends_with(".localhost") || d.is_empty())
        }
        None => false,
    }
}

/// At registration: a name that resolves to a refused address is refused
/// (one that does not resolve now is accepted; delivery checks again).
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), &'static str> {
    let (Some(Host::Domain(name)), false) = (url.host(), allow_private) else { return Ok(()) };
    let Ok(found) = tokio::net::lookup_host((name, url.port_or_known_default().unwrap_or(443))).await else {
        return Ok(());
    };
    if found.into_iter().any(|a| !is_public(a.ip())) {
        return Err("This name resolves to a private, loopback or link-local address: use a public one.");
    }
    Ok(())
}

/// The error a refused lookup gives the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("{PRIVATE_REFUSED}")]
pub struct Refused;

/// Resolves names for the webhook client, keeping only allowed addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.into_iter().filter(|a| allow || is_public(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn only_public_unicast_addresses_are_allowed() {
        for refused in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(!public(refused), "{refused} must be refused");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(allowed), "{allowed} must be allowed");
        }
    }

    #[test]
    fn urls_are_https_public_and_without_credentials() {
        assert!(check_url("https://hooks.example.com/in", false).is_ok());
        for bad in [
            "http://hooks.example.com/in",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://127.0.0.1/",
            "https://localhost/",
            "https://app.localhost./",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://0.0.0.0/",
            "https://10.1.2.3/",
            "",
            "https://exa mple.com/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} must be refused");
        }
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL)), false).is_err());
        assert!(check_url("http://127.0.0.1:9000/hook", true).is_ok(), "allowed by the operator's setting");
    }
}
