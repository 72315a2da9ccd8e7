//! The forwarded-address parser never panics, and its answer is the peer or
//! one of the addresses listed in the header lines (normalized), or `None`.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

#[path = "../../src/service/forwarded.rs"]
mod forwarded;

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let trusted: Vec<IpAddr> = ["127.0.0.1", "10.0.0.2", "::1"].iter().filter_map(|s| s.parse().ok()).collect();
    let peer: IpAddr = match flags % 4 {
        0 => "127.0.0.1",
        1 => "::ffff:127.0.0.1",
        2 => "10.0.0.2",
        _ => "198.51.100.9",
    }
    .parse()
    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let lines: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let answer = forwarded::client_address(peer, &trusted, &lines);
    let Some(ip) = answer else { return };
    assert_eq!(ip, ip.to_canonical(), "normalized");
    if !forwarded::is_trusted(peer, &trusted) {
        assert_eq!(ip, peer.to_canonical(), "an untrusted peer is the client");
        return;
    }
    let listed: Vec<IpAddr> = lines
        .iter()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .flat_map(|l| l.split(','))
        .filter_map(forwarded::parse_entry)
        .collect();
    assert!(ip == peer.to_canonical() || listed.contains(&ip), "{ip} is not listed");
});
