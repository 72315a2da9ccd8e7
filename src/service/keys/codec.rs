//! The credential format: `{prefix}_{30 base62 random}{6 base62 CRC32}`.
//!
//! The checksum (CRC-32 of everything before it) lets a mistyped or truncated
//! key be refused without any database call, and lets secret scanners find
//! real keys with few false positives. It is not a secret and proves nothing
//! about authenticity: only the keyed hash lookup does that.

use crate::service::crypto;

pub const RANDOM_LEN: usize = 30;
pub const CHECKSUM_LEN: usize = 6;
/// Characters of the random part shown to people (`lk_a1b2c3d4…`).
pub const DISPLAY_LEN: usize = 8;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn checksum(head: &str) -> String {
    let mut n = u64::from(crc32fast::hash(head.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// A new credential with the given prefix (`lk`, `lkat`, …).
pub fn generate(prefix: &str) -> Result<String, getrandom::Error> {
    Ok(encode(prefix, &crypto::random_base62(RANDOM_LEN)?))
}

/// The credential for a given random part (`RANDOM_LEN` base62 characters).
pub fn encode(prefix: &str, random: &str) -> String {
    let head = format!("{prefix}_{random}");
    let sum = checksum(&head);
    head + &sum
}

/// A well-formed credential: its prefix and display prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub prefix: &'a str,
    /// `prefix_` plus the first characters of the random part.
    pub display: &'a str,
}

/// The words of a pasted text (a key sits between punctuation, quotes or spaces).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// A pasted text with everything but ASCII letters, digits and `_` taken
/// out: whatever was put inside a secret (spaces, line breaks, dashes and
/// dots of any kind, invisible format characters) is gone, and it is whole.
fn compact(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The letters and digits around each `_` of a compacted text: (before, after).
fn around_underscores(compact: &str) -> impl Iterator<Item = (&str, &str)> {
    compact.match_indices('_').map(move |(i, _)| {
        let before = compact[..i].rsplit('_').next().unwrap_or_default();
        let after = compact[i + 1..].split('_').next().unwrap_or_default();
        (before, after)
    })
}

/// Whether letters and digits read like random secret material rather than
/// words: 16 or more, mixing two of lowercase, uppercase and digits.
fn random_like(run: &str) -> bool {
    let has = |f: fn(&u8) -> bool| u8::from(run.as_bytes().iter().any(f));
    run.len() >= 16 && has(u8::is_ascii_lowercase) + has(u8::is_ascii_uppercase) + has(u8::is_ascii_digit) >= 2
}

/// The first whole, well-formed key in `text`: a key pasted with words or
/// punctuation around it, or with anything put inside it.
pub fn embedded(text: &str) -> Option<String> {
    if let Some(word) = words(text).find(|w| parse(w).is_some()) {
        return Some(word.to_owned());
    }
    let compact = compact(text);
    let body = RANDOM_LEN + CHECKSUM_LEN;
    compact.match_indices('_').find_map(|(i, _)| {
        let end = (i + 1 + body <= compact.len()).then_some(i + 1 + body)?;
        (1..=16.min(i))
            .map(|len| &compact[i - len..end])
            .find(|candidate| parse(candidate).is_some())
            .map(str::to_owned)
    })
}

/// Whether `text` holds what looks like a secret, whole or in part: a
/// well-formed key; a prefix and `_` followed by 16 or more random-looking
/// characters, also once everything put inside it is taken out; or a word as
/// long as a key's random part. Searches refuse such text in addresses and
/// never echo it.
pub fn looks_like_a_whole_key(text: &str) -> bool {
    let long_body = |w: &str| w.rsplit_once('_').map_or(w, |(_, body)| body).len() >= RANDOM_LEN;
    words(text).any(|w| parse(w).is_some() || long_body(w))
        || embedded(text).is_some()
        || around_underscores(&compact(text)).any(|(before, after)| !before.is_empty() && random_like(after))
}

/// What [`redact`] answers for text holding a credential it cannot cut out
/// (one with things put inside it).
pub const HOLDS_A_SECRET: &str = "(text holding a secret: not kept)";

/// `text` with every secret-looking part replaced by `[secret]`: each run of
/// at least [`SECRET_RUN`] letters and digits (and base64's `+`, `/`, `=`)
/// that reads as random — a key's body with or without its prefix, checksum
/// or separator, a token, their base64 — and each well-formed credential;
/// [`HOLDS_A_SECRET`] when a credential is still there in a form that cannot
/// be cut out (one with things put inside it, or percent-encoded). Borrowed
/// when nothing looks secret (the common case). Over-redaction of a long
/// random-looking word costs nothing.
///
/// What it is for: a secret that reaches free text by accident (a client
/// that sends its key as its user agent, whole, encoded or without its
/// prefix). Someone who holds a key and disguises it on purpose (split into
/// short pieces, spelled out) can publish it anyway, as in a description:
/// that is beyond what text can be checked for.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    match without_userinfo(text) {
        Some(stripped) => std::borrow::Cow::Owned(redact_words(&stripped).into_owned()),
        None => redact_words(text),
    }
}

/// `text` with the user name and password of every URL in it (`scheme://user:password@host`)
/// cut out, or `None` if it has none.
fn without_userinfo(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    let mut cut = false;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("[secret]");
                rest = &tail[userinfo_end..];
                cut = true;
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    cut.then_some(out)
}

/// [`redact`] of text without URL user info.
fn redact_words(text: &str) -> std::borrow::Cow<'_, str> {
    if let Some(decoded) = percent_decoded(text)
        && cut_secrets(&decoded).is_some()
    {
        return std::borrow::Cow::Borrowed(HOLDS_A_SECRET);
    }
    match cut_secrets(text) {
        None => std::borrow::Cow::Borrowed(text),
        Some(cut) if embedded(&cut).is_some() => std::borrow::Cow::Borrowed(HOLDS_A_SECRET),
        Some(cut) => std::borrow::Cow::Owned(cut),
    }
}

/// `text` with its secret-looking words cut out, or `None` if it has none.
fn cut_secrets(text: &str) -> Option<String> {
    let in_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '/' | '=');
    let secret_run = |run: &str| run.len() >= SECRET_RUN && random_like(run);
    let words = || text.split(|c: char| !in_word(c)).filter(|w| !w.is_empty());
    if embedded(text).is_none() && !words().any(|w| w.split('_').any(secret_run)) {
        return None;
    }
    let cut = |word: &str| -> String {
        if parse(word).is_some() {
            return "[secret]".to_owned();
        }
        let parts: Vec<&str> = word.split('_').map(|p| if secret_run(p) { "[secret]" } else { p }).collect();
        parts.join("_")
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if in_word(c) {
            word.push(c);
            continue;
        }
        out.push_str(&cut(&word));
        word.clear();
        out.push(c);
    }
    out.pop();
    Some(out)
}

/// `text` with its `%XX` escapes decoded, when it has any.
fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let (mut out, mut i, mut any) = (Vec::with_capacity(bytes.len()), 0, false);
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                (i, any) = (i + 3, true);
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    any.then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Letters and digits in a row from which [`redact`] takes a secret.
pub const SECRET_RUN: usize = 24;

/// Checks shape and checksum; `None` for anything malformed.
pub fn parse(key: &str) -> Option<Parsed<'_>> {
    let (prefix, body) = key.split_once('_')?;
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !prefix_ok || body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let split = key.len() - CHECKSUM_LEN;
    if !crypto::ct_eq(&checksum(&key[..split]), &key[split..]) {
        return None;
    }
    // ASCII throughout (checked above): any byte offset is a character boundary.
    Some(Parsed { prefix, display: key.get(..prefix.len() + 1 + DISPLAY_LEN)? })
}

/// The display prefix of a stored key, from its `key_prefix` column.
pub fn display(prefix: &str, key_prefix: &str) -> String {
    format!("{prefix}_{key_prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_kept() {
        assert_eq!(redact("curl/8 https://u:pw@host/x?y=1"), "curl/8 https://[secret]@host/x?y=1");
        assert_eq!(redact("a https://u:p@h b http://x:y@z/"), "a https://[secret]@h b http://[secret]@z/");
        assert_eq!(redact("see http://host/a@b"), "see http://host/a@b");
        assert_eq!(redact("plain agent/1.0"), "plain agent/1.0");
    }

    #[test]
    fn a_pasted_secret_is_recognised_however_it_is_disguised() {
        let key = generate("lk").unwrap();
        let (head, tail) = key.split_at(11);
        let mut pasted: Vec<String> = vec![key.clone(), format!("key: {key}."), format!("“{key}”"), format!("<{key}>")];
        for gap in [
            "\u{00AD}",
            "\u{200B}",
            " ",
            "-",
            "\n",
            "\u{2014}",
            "\u{2012}",
            "\u{2212}",
            "\u{E0020}",
            "\u{FFF9}",
            "\u{FE0F}",
            ".",
            "/",
        ] {
            pasted.push(format!("{head}{gap}{tail}"));
            pasted.push(format!("see {}{gap}{}{gap}{} now", &key[..7], &key[7..20], &key[20..]));
        }
        pasted.push(key.chars().map(|c| format!("{c}\u{200D}")).collect());
        for p in &pasted {
            assert!(looks_like_a_whole_key(p), "{p:?}");
            assert_eq!(embedded(p).as_deref(), Some(key.as_str()), "{p:?}");
        }
        // Part of a secret is still a secret; an uppercase copy too, even split.
        assert!(looks_like_a_whole_key(&key[..3 + 20]));
        assert!(looks_like_a_whole_key(&key.to_uppercase()));
        assert!(looks_like_a_whole_key(&format!("{} {}", &key.to_uppercase()[..11], &key.to_uppercase()[11..])));
        // What people search for is not.
        for q in [
            "lk_a1b2c3d4",
            "lk_a1b2c3d4…",
            "lk_a1b2c3d4 probe",
            "Acme Rockets",
            "owner@acme.test",
            "jane_macdonald@a.test",
            "dev_operations@a.test",
            "alpha_platform team",
            "Production billing reconciliation worker",
        ] {
            assert!(!looks_like_a_whole_key(q), "{q}");
        }
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse() {
        for prefix in ["lk", "whm", "lkat", "chumi2"] {
            let key = generate(prefix).unwrap();
            assert_eq!(key.len(), prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
            let parsed = parse(&key).unwrap();
            assert_eq!(parsed.prefix, prefix);
            assert_eq!(parsed.display, &key[..prefix.len() + 1 + DISPLAY_LEN]);
        }
    }

    #[test]
    fn encoding_a_given_random_part_gives_a_parseable_credential() {
        let random = "A".repeat(RANDOM_LEN);
        let key = encode("lkrt", &random);
        assert_eq!(key, encode("lkrt", &random), "deterministic");
        assert_eq!(parse(&key).unwrap().prefix, "lkrt");
        assert!(key.starts_with(&format!("lkrt_{random}")));
    }

    /// Property: for many random keys, every single-character substitution at
    /// every position is refused (CRC-32 detects all single-symbol errors).
    #[test]
    fn any_single_character_change_is_caught() {
        for _ in 0..200 {
            let key = generate("lk").unwrap();
            assert!(parse(&key).is_some());
            let bytes = key.as_bytes();
            for i in 0..bytes.len() {
                for &c in BASE62.iter().chain(b"_-") {
                    if c == bytes[i] {
                        continue;
                    }
                    let mut changed = bytes.to_vec();
                    changed[i] = c;
                    let changed = String::from_utf8(changed).unwrap();
                    assert!(parse(&changed).is_none(), "{key} → {changed}");
                }
            }
        }
    }

    #[test]
    fn truncated_extended_and_odd_inputs_are_refused() {
        let key = generate("lk").unwrap();
        for bad in
            [&key[..key.len() - 1], &format!("{key}0"), "", "lk_", "_abc", "LK_x", "lk_é", &key.replace('_', "-")]
        {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
