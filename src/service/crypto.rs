//! Randomness, keyed hashing and constant-time comparison.
//!
//! Rules: every secret comes from the OS CSPRNG; tokens are stored only as
//! HMAC-SHA256 under a key derived from the server secret; secrets are compared
//! with `subtle`, never `==`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` base62 characters from the OS CSPRNG, without modulo bias.
pub fn random_base62(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for b in buf {
            // 248 = 4 × 62: bytes above are dropped so every symbol is equally likely.
            if b < 248 && out.len() < len {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// A new public identifier such as `usr_4f9…`.
pub fn new_id(kind: &str) -> Result<String, getrandom::Error> {
    Ok(format!("{kind}_{}", random_base62(20)?))
}

/// The tag of values sealed with a context (associated data).
const SEALED_V2: &str = "v2:";

/// A value [`Keys::open`] decrypted.
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// Sealed without a context (before `v2`): seal it again on next use.
    pub legacy: bool,
}

/// Keys derived from the server secret, one per purpose.
#[derive(Clone)]
pub struct Keys {
    /// HMAC-SHA256 keyed for token hashes, its key already absorbed (every
    /// verification hashes the presented credential: this saves two of its
    /// four compressions).
    token: Hmac<Sha256>,
    cookie: [u8; 64],
    /// Signs stateless tokens: the OAuth consent form, anonymous sessions.
    consent: [u8; 32],
    totp: [u8; 32],
    successor: [u8; 32],
    /// Keys the verifier's in-memory index of presented credentials.
    cache_index: [u8; 32],
}

impl Keys {
    pub fn derive(server_secret: &[u8]) -> Self {
        let mut cookie = [0u8; 64];
        cookie[..32].copy_from_slice(&hmac(server_secret, b"latchkey/cookie/1"));
        cookie[32..].copy_from_slice(&hmac(server_secret, b"latchkey/cookie/2"));
        Self {
            token: keyed(&hmac(server_secret, b"latchkey/token-hash")),
            cookie,
            // The label predates the field's name and stays: a new label would
            // derive a new key, and a consent form (or anonymous session)
            // signed just before an upgrade would be refused after it.
            consent: hmac(server_secret, b"latchkey/csrf"),
            totp: hmac(server_secret, b"latchkey/totp-aead"),
            successor: hmac(server_secret, b"latchkey/refresh-successor"),
            cache_index: hmac(server_secret, b"latchkey/verifier-cache-index"),
        }
    }

    /// The stored form of a token: hex HMAC-SHA256 under the token key.
    pub fn token_hash(&self, token: &str) -> String {
        let tag: [u8; 32] = self.token.clone().chain_update(token.as_bytes()).finalize().into_bytes().into();
        hex::encode(tag)
    }

    /// `len` base62 characters that only the server can compute from `input`
    /// (HMAC-SHA256 in counter mode under a key of their own, without modulo
    /// bias): a refresh token's successor, so that a retry gets the same one.
    pub fn derived_base62(&self, input: &str, len: usize) -> String {
        let mut out = String::with_capacity(len);
        let mut counter: u32 = 0;
        while out.len() < len {
            let block = hmac(&self.successor, &[&counter.to_be_bytes()[..], input.as_bytes()].concat());
            for b in block {
                if b < 248 && out.len() < len {
                    out.push(char::from(BASE62[usize::from(b % 62)]));
                }
            }
            counter = counter.wrapping_add(1);
        }
        out
    }

    /// The 128-bit key of the verifier's cache index (SipHash-2-4-128 of a
    /// presented credential: a keyed PRF, so the index holds no secret and
    /// nobody without the server secret can aim at an entry).
    pub fn cache_index_key(&self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key.copy_from_slice(&self.cache_index[..16]);
        key
    }

    /// Master key for the session cookie (signing and encryption).
    pub fn cookie_master(&self) -> &[u8] {
        &self.cookie
    }

    /// Encrypts with AES-256-GCM under the TOTP key, bound to `context` (the
    /// owner and column, as associated data): `v2:` hex(nonce ‖ ciphertext).
    /// A sealed value copied to another row or column no longer opens.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, String> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&self.totp).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
        let payload = Payload { msg: plaintext, aad: context.as_bytes() };
        let sealed = cipher.encrypt(&nonce.into(), payload).map_err(|e| e.to_string())?;
        Ok(format!("{SEALED_V2}{}", hex::encode([nonce.as_slice(), &sealed].concat())))
    }

    /// Reverses [`Keys::seal`] for the same `context`; fails on tampering, another
    /// context or a different server secret. Values sealed before contexts
    /// existed (no `v2:` tag) open without one: [`Opened::legacy`] tells the
    /// caller to seal them again.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Opened, String> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let (hexed, aad, legacy) = match sealed.strip_prefix(SEALED_V2) {
            Some(rest) => (rest, context.as_bytes(), false),
            None => (sealed, &b""[..], true),
        };
        let bytes = hex::decode(hexed).map_err(|e| e.to_string())?;
        if bytes.len() < 12 + 16 {
            return Err("sealed value too short".into());
        }
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&self.totp).map_err(|e| e.to_string())?;
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "nonce".to_owned())?;
        let plaintext =
            cipher.decrypt(&nonce.into(), Payload { msg: ct, aad }).map_err(|_| "cannot decrypt".to_owned())?;
        Ok(Opened { plaintext, legacy })
    }

    /// A keyed tag over `data` for signed, stateless tokens.
    pub fn sign(&self, data: &str) -> String {
        hex::encode(hmac(&self.consent, data.as_bytes()))
    }
}

/// HMAC-SHA256 (RFC 2104) through the `hmac` crate. The key is brought to the
/// block size first as RFC 2104 §2 does (hashed when longer, zero-padded), so
/// the crate's infallible fixed-size constructor applies to any key.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    keyed(key).chain_update(data).finalize().into_bytes().into()
}

/// HMAC-SHA256 with `key` absorbed, ready for data.
fn keyed(key: &[u8]) -> Hmac<Sha256> {
    let mut block = hmac::digest::Key::<Hmac<Sha256>>::default();
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block)
}

/// Plain SHA-256 in hex, for values that are already high-entropy (session keys).
pub fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_base62_has_the_length_and_alphabet() {
        let s = random_base62(100).unwrap();
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| BASE62.contains(&b)));
        assert_ne!(s, random_base62(100).unwrap());
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test case 2, and test case 6 (a key longer than the block).
        let tag = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let tag = hmac(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(tag), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn sealed_values_open_only_with_the_same_secret() {
        let a = Keys::derive(b"a-secret-that-is-long-enough-0123456789");
        let b = Keys::derive(b"another-secret-long-enough-0123456789ab");
        let sealed = a.seal(b"totp secret", "user:1").unwrap();
        assert!(!sealed.contains(&hex::encode(b"totp secret")));
        assert_eq!(a.open(&sealed, "user:1").unwrap().plaintext, b"totp secret");
        assert!(!a.open(&sealed, "user:1").unwrap().legacy);
        assert!(b.open(&sealed, "user:1").is_err());
        assert!(a.open(&sealed, "user:2").is_err(), "bound to its context");
        assert_ne!(sealed, a.seal(b"totp secret", "user:1").unwrap(), "fresh nonce each time");
    }

    #[test]
    fn values_sealed_without_a_context_still_open_and_say_so() {
        use aes_gcm::aead::{Aead, KeyInit};
        let keys = Keys::derive(b"a-secret-that-is-long-enough-0123456789");
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&keys.totp).unwrap();
        let nonce = [7u8; 12];
        let ct = cipher.encrypt(&nonce.into(), &b"old secret"[..]).unwrap();
        let legacy = hex::encode([nonce.as_slice(), &ct].concat());
        let opened = keys.open(&legacy, "user:1").unwrap();
        assert!(opened.legacy && opened.plaintext == b"old secret");
        assert!(keys.open(&format!("v2:{legacy}"), "user:1").is_err(), "a tag cannot be added to skip the context");
    }

    #[test]
    fn derived_values_are_deterministic_keyed_and_base62() {
        let a = Keys::derive(b"a-secret-that-is-long-enough-0123456789");
        let b = Keys::derive(b"another-secret-long-enough-0123456789ab");
        let d = a.derived_base62("access:lkrt_x", 30);
        assert_eq!(d.len(), 30);
        assert!(d.bytes().all(|c| BASE62.contains(&c)));
        assert_eq!(d, a.derived_base62("access:lkrt_x", 30));
        assert_ne!(d, a.derived_base62("refresh:lkrt_x", 30));
        assert_ne!(d, b.derived_base62("access:lkrt_x", 30));
        assert_ne!(a.token_hash("access:lkrt_x"), hex::encode(d));
        assert_eq!(a.derived_base62("y", 100).len(), 100);
    }

    #[test]
    fn token_hash_is_keyed() {
        let a = Keys::derive(b"a-secret-that-is-long-enough-0123456789");
        let b = Keys::derive(b"another-secret-long-enough-0123456789ab");
        assert_eq!(a.token_hash("t"), a.token_hash("t"));
        assert_ne!(a.token_hash("t"), b.token_hash("t"));
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
