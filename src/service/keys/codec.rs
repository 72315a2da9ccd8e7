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

/// The ways a pasted secret may be disguised: invisible format characters
/// (zero-width spaces and joiners, soft hyphens, direction marks, byte-order
/// marks) removed; and, besides, spaces, line breaks and dashes removed too
/// (a key wrapped over two lines, or cut by a hyphen).
fn readings(text: &str) -> [String; 2] {
    let invisible = |c: &char| matches!(*c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
    let visible: String = text.chars().filter(|c| !invisible(c)).collect();
    let joined: String =
        visible.chars().filter(|c| !(c.is_whitespace() || matches!(*c, '-' | '‐' | '‑' | '–'))).collect();
    [visible, joined]
}

/// Whether `word` has a key's shape: a prefix, `_`, and more random characters
/// than a display prefix shows (part of a secret is still a secret).
fn key_shaped(word: &str) -> bool {
    word.split_once('_').is_some_and(|(prefix, body)| {
        !prefix.is_empty()
            && prefix.len() <= 16
            && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && body.len() > DISPLAY_LEN
            && body.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The first whole, well-formed key in `text`: a key pasted with words,
/// punctuation, invisible characters or line breaks around or inside it.
pub fn embedded(text: &str) -> Option<String> {
    readings(text).into_iter().find_map(|t| words(&t).find(|w| parse(w).is_some()).map(str::to_owned))
}

/// Whether `text` holds what looks like a secret, whole or in part: a
/// well-formed key, a key-shaped word longer than a display prefix, or a
/// word as long as a key's random part — also once invisible characters,
/// spaces and dashes are taken out. Searches refuse such text in addresses
/// and never echo it.
pub fn looks_like_a_whole_key(text: &str) -> bool {
    let [visible, joined] = readings(text);
    let long_body = |w: &str| w.rsplit_once('_').map_or(w, |(_, body)| body).len() >= RANDOM_LEN;
    words(&visible).any(|w| parse(w).is_some() || key_shaped(w) || long_body(w))
        || words(&joined).any(|w| parse(w).is_some() || key_shaped(w))
}

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
    fn a_pasted_secret_is_recognised_however_it_is_disguised() {
        let key = generate("lk").unwrap();
        let (head, tail) = key.split_at(20);
        for pasted in [
            key.clone(),
            format!("key: {key}."),
            format!("“{key}”"),
            format!("{head}\u{00AD}{tail}"),
            format!("{head}\u{200B}{tail}"),
            key.chars().map(|c| format!("{c}\u{200D}")).collect::<String>(),
            format!("{head} {tail}"),
            format!("{head}-{tail}"),
            format!("{head}\n{tail}"),
        ] {
            assert!(looks_like_a_whole_key(&pasted), "{pasted:?}");
            assert_eq!(embedded(&pasted).as_deref(), Some(key.as_str()), "{pasted:?}");
        }
        // Part of a secret is still a secret; an uppercase copy too.
        assert!(looks_like_a_whole_key(&key[..3 + 29]));
        assert!(looks_like_a_whole_key(&key.to_uppercase()));
        // What people search for is not.
        for q in [
            "lk_a1b2c3d4",
            "lk_a1b2c3d4…",
            "Acme Rockets",
            "owner@acme.test",
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
