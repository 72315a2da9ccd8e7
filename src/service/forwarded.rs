//! The client's address behind reverse proxies (`X-Forwarded-For`), and
//! whether to believe what a proxy says at all.
//!
//! Rules: the headers are believed only when the socket peer is a trusted
//! proxy. Every `X-Forwarded-For` line is read, in order, as one list; the
//! list is walked from the right (the entry the nearest proxy appended) past
//! trusted proxies, and the first untrusted entry is the client. An entry may
//! carry a port (`203.0.113.7:5555`, `[2001:db8::1]:443`), which is dropped.
//! IPv4-mapped IPv6 addresses (`::ffff:9.9.9.9`) are the IPv4 address, for
//! the peer too. Anything unparseable on the way — garbage, an empty entry,
//! `unknown`, a zone id, a bad port, bytes that are not text — makes the
//! client address unknown (`None`), so an address allow-list refuses it.
//! Entries left of the client are the client's own words and never read.
//!
//! Self-contained (std only) so that the fuzz targets include it.

use std::net::IpAddr;

/// Whether `peer` is one of the `trusted` proxies (both normalized).
pub fn is_trusted(peer: IpAddr, trusted: &[IpAddr]) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|t| t.to_canonical() == peer)
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the nearest untrusted address of the `X-Forwarded-For` lines; `None` when
/// a line the walk needs cannot be read.
pub fn client_address(peer: IpAddr, trusted: &[IpAddr], lines: &[&[u8]]) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut joined = String::new();
    for line in lines {
        let text = std::str::from_utf8(line).ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    if joined.trim_matches([' ', '\t']).is_empty() {
        // The proxy forwarded nothing: the proxy itself is the client.
        return Some(peer);
    }
    let mut nearest = peer;
    for entry in joined.rsplit(',') {
        let ip = parse_entry(entry)?;
        if !is_trusted(ip, trusted) {
            return Some(ip);
        }
        nearest = ip;
    }
    // Every hop was a trusted proxy: the leftmost one is the client.
    Some(nearest)
}

/// One list entry: an address, optionally with a port; `None` for anything else.
pub fn parse_entry(raw: &str) -> Option<IpAddr> {
    let entry = raw.trim_matches([' ', '\t']);
    let ip = if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !after.is_empty() {
            port(after.strip_prefix(':')?)?;
        }
        match inside.parse().ok()? {
            IpAddr::V6(v6) => IpAddr::V6(v6),
            IpAddr::V4(_) => return None,
        }
    } else if let Ok(ip) = entry.parse::<IpAddr>() {
        ip
    } else {
        // Only IPv4 may carry a port without brackets.
        let (host, p) = entry.rsplit_once(':')?;
        port(p)?;
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn port(raw: &str) -> Option<u16> {
    if raw.is_empty() || raw.len() > 5 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROXY: &str = "127.0.0.1";

    fn client(peer: &str, lines: &[&str]) -> Option<IpAddr> {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        client_address(ip(peer), &[ip(PROXY), ip("10.0.0.2")], &lines)
    }

    #[test]
    fn entries_parse_with_or_without_ports() {
        assert_eq!(parse_entry("203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(parse_entry(" 203.0.113.7:5555 "), Some(ip("203.0.113.7")));
        assert_eq!(parse_entry("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("::ffff:9.9.9.9"), Some(ip("9.9.9.9")));
        assert_eq!(parse_entry("[::ffff:9.9.9.9]:1"), Some(ip("9.9.9.9")));
        for bad in [
            "",
            " ",
            "unknown",
            "garbage",
            "203.0.113.7:",
            "203.0.113.7:99999",
            "203.0.113.7:+1",
            "203.0.113.7:55:55",
            "203.0.113.7 1.2.3.4",
            "[203.0.113.7]:1",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "[2001:db8::1",
            "2001:db8::1:443x",
            "fe80::1%eth0",
            "\"[2001:db8::1]\"",
            "for=203.0.113.7",
            "0x7f.1",
            "203.0.113.7\0",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_say() {
        assert_eq!(client("198.51.100.9", &["203.0.113.7"]), Some(ip("198.51.100.9")));
        assert_eq!(client("::ffff:198.51.100.9", &[]), Some(ip("198.51.100.9")));
    }

    #[test]
    fn the_walk_starts_at_the_right_and_skips_trusted_proxies() {
        assert_eq!(client(PROXY, &["203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client("::ffff:127.0.0.1", &["203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client(PROXY, &["1.1.1.1, 203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client(PROXY, &["garbage, 203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client(PROXY, &["203.0.113.7, 10.0.0.2"]), Some(ip("203.0.113.7")));
        assert_eq!(client(PROXY, &["203.0.113.7:5555"]), Some(ip("203.0.113.7")));
        assert_eq!(client(PROXY, &["203.0.113.7", "198.51.100.9"]), Some(ip("198.51.100.9")));
        assert_eq!(client(PROXY, &["203.0.113.7, 198.51.100.9:5555"]), Some(ip("198.51.100.9")));
        assert_eq!(client(PROXY, &["203.0.113.7, [2001:db8::1]:443"]), Some(ip("2001:db8::1")));
        assert_eq!(client(PROXY, &["10.0.0.2, 127.0.0.1"]), Some(ip("10.0.0.2")));
        assert_eq!(client(PROXY, &[]), Some(ip(PROXY)));
        assert_eq!(client(PROXY, &[""]), Some(ip(PROXY)));
    }

    #[test]
    fn anything_unreadable_on_the_walk_makes_the_client_unknown() {
        for lines in [
            &["203.0.113.7, garbage"][..],
            &["203.0.113.7, "],
            &["203.0.113.7,,10.0.0.2"],
            &["203.0.113.7", ""],
            &["203.0.113.7, unknown"],
            &["203.0.113.7, 198.51.100.9:99999"],
            &["203.0.113.7, fe80::1%eth0"],
            &["203.0.113.7 198.51.100.9"],
        ] {
            assert_eq!(client(PROXY, lines), None, "{lines:?}");
        }
        let bytes: &[&[u8]] = &[b"203.0.113.7, \xff"];
        assert_eq!(client_address(ip(PROXY), &[ip(PROXY)], bytes), None);
    }
}
