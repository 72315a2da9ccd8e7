//! Where a browser may be sent after signing in (`next`): one rule for every
//! return target.
//!
//! Rules: a same-origin absolute path only (`/x?y`), written in printable
//! ASCII; no backslash and no control character, neither as written nor once
//! percent-decoded (`%09`, `%0d%0a`, `%5c`); no `//` at the start, neither as
//! written nor decoded (`/%2f`); and the WHATWG parser, resolving it against
//! our origin, must read it exactly as written and stay on our origin.
//! Anything else is refused, and the caller falls back to `/`.
//!
//! Self-contained (std and `url` only) so that a fuzz target can include it.

use url::{Position, Url};

/// The longest return target kept.
pub const MAX_LEN: usize = 2000;

const BASE: &str = "http://latchkey.invalid/";

/// `raw` when it is a safe same-origin path, else `None`.
pub fn local_path(raw: &str) -> Option<&str> {
    if raw.is_empty() || raw.len() > MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let decoded = fully_decoded(raw)?;
    let decoded = String::from_utf8_lossy(&decoded);
    if !raw.starts_with('/') || !decoded.starts_with('/') || decoded.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    if raw.starts_with("//") || decoded.starts_with("//") {
        return None;
    }
    let base = Url::parse(BASE).ok()?;
    let parsed = base.join(raw).ok()?;
    let same = parsed.origin() == base.origin() && &parsed[Position::BeforePath..] == raw;
    same.then_some(raw)
}

/// Percent-decodes until nothing changes (at most a few rounds); `None` when
/// it keeps changing, since no honest path is encoded that many times over.
fn fully_decoded(raw: &str) -> Option<Vec<u8>> {
    let mut current = raw.as_bytes().to_vec();
    for _ in 0..4 {
        let next = percent_decode(&current);
        if next == current {
            return Some(current);
        }
        current = next;
    }
    None
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let pair = input.get(i + 1).copied().and_then(hex).zip(input.get(i + 2).copied().and_then(hex));
        match (input[i], pair) {
            (b'%', Some((hi, lo))) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths_are_kept() {
        for good in [
            "/",
            "/settings/team",
            "/settings/team?x=1&y=%20z",
            "/oauth/authorize?response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=a-b_c",
            "/a%2Fb",
            "/search?q=%C3%A9t%C3%A9+a%20b",
        ] {
            assert_eq!(local_path(good), Some(good), "{good}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "",
            "evil",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%5cevil.example",
            "/%5Cevil.example",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/\r\nSet-Cookie:x=1",
            "/%00",
            "/%7f",
            "/%2509/evil.example",
            "/%25252525252509",
            "/ /evil",
            "/%C2%85",
            "/é",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "/a/../b",
            "/a/%2e%2e/b",
            "/./a",
            "/a b",
            "/a\"b",
            "/a<b",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(MAX_LEN))), None);
    }
}
