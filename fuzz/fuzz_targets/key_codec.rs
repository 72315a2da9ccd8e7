//! The credential codec: `parse` never panics, accepts only the documented
//! shape, and refuses any single-character change to a generated key.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The two helpers the codec uses, as the server defines them.
mod service {
    pub mod crypto {
        const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

        pub fn random_base62(len: usize) -> Result<String, getrandom::Error> {
            let mut buf = vec![0u8; len];
            getrandom::fill(&mut buf)?;
            Ok(buf.iter().map(|b| char::from(BASE62[usize::from(b % 62)])).collect())
        }

        pub fn ct_eq(a: &str, b: &str) -> bool {
            a == b
        }
    }
}

#[path = "../../src/service/keys/codec.rs"]
mod codec;

fn well_shaped(key: &str) -> bool {
    let Some((prefix, body)) = key.split_once('_') else { return false };
    (1..=16).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && body.len() == codec::RANDOM_LEN + codec::CHECKSUM_LEN
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(parsed) = codec::parse(text) {
            assert!(well_shaped(text), "{text:?}");
            assert!(text.starts_with(&parsed.display));
        }
    }
    // Mutate one character of a fresh key: always refused.
    let [prefix_pick, pos, new, ..] = data else { return };
    let prefix = ["lk", "lkat", "lkrt", "lkcs", "chumi"][usize::from(*prefix_pick) % 5];
    let Ok(key) = codec::generate(prefix) else { return };
    assert!(codec::parse(&key).is_some(), "{key}");
    let mut bytes = key.clone().into_bytes();
    let i = usize::from(*pos) % bytes.len();
    let replacement = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"[usize::from(*new) % 63];
    if bytes[i] == replacement {
        return;
    }
    bytes[i] = replacement;
    let Ok(mutated) = String::from_utf8(bytes) else { return };
    assert!(codec::parse(&mutated).is_none(), "{key} -> {mutated}");
});
