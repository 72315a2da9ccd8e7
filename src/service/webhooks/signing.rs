//! Standard Webhooks signatures and the endpoints' signing secrets.
//!
//! Rules: a secret is `whsec_` + base64 of 32 random bytes, shown once and
//! stored only sealed (AES-GCM under a key derived from the server secret,
//! bound to the endpoint and the column); the signature is
//! `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) where the key is
//! the secret's bytes; during a rotation's grace both the new and the old
//! secret sign, space-separated, new first.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::PlainSecret;
use crate::service::crypto::Keys;
use crate::service::{Error, Result};

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// Which stored secret a sealed value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
}

impl Slot {
    fn context(self, endpoint_id: &str) -> String {
        match self {
            Self::Current => format!("webhook_endpoints.secret_enc:{endpoint_id}"),
            Self::Previous => format!("webhook_endpoints.old_secret_enc:{endpoint_id}"),
        }
    }
}

/// A new secret from the OS CSPRNG.
pub fn generate() -> Result<PlainSecret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(e, "drawing a webhook secret"))?;
    Ok(PlainSecret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))))
}

/// The stored form of a secret for `endpoint_id`'s `slot`.
pub fn seal(keys: &Keys, secret: &str, endpoint_id: &str, slot: Slot) -> Result<String> {
    keys.seal(secret.as_bytes(), &slot.context(endpoint_id))
        .map_err(|e| Error::Internal(anyhow::anyhow!("sealing a webhook secret: {e}")))
}

/// The secret back from its stored form.
pub fn open(keys: &Keys, sealed: &str, endpoint_id: &str, slot: Slot) -> Result<PlainSecret> {
    let opened = keys
        .open(sealed, &slot.context(endpoint_id))
        .map_err(|e| Error::Internal(anyhow::anyhow!("opening a webhook secret: {e}")))?;
    let text = String::from_utf8(opened.plaintext)
        .map_err(|_| Error::Internal(anyhow::anyhow!("a webhook secret is not text")))?;
    Ok(PlainSecret::new(text))
}

/// `v1,<base64 signature>` of one message attempt under `secret`.
pub fn sign(secret: &PlainSecret, msg_id: &str, timestamp: i64, body: &str) -> Result<String> {
    let encoded = secret.expose().strip_prefix(SECRET_PREFIX).unwrap_or(secret.expose());
    let key =
        STANDARD.decode(encoded).map_err(|_| Error::Internal(anyhow::anyhow!("a webhook secret is not base64")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| Error::Internal(anyhow::anyhow!("a webhook secret has no usable length")))?;
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: the current secret's signature, then the
/// previous one's while it is in its grace.
pub fn header(secrets: &[PlainSecret], msg_id: &str, timestamp: i64, body: &str) -> Result<String> {
    let signed: Result<Vec<String>> = secrets.iter().map(|s| sign(s, msg_id, timestamp, body)).collect();
    Ok(signed?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = PlainSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_random_and_seal_to_their_endpoint_and_slot() {
        let keys = Keys::derive(b"a-secret-that-is-long-enough-0123456789");
        let s = generate().unwrap();
        assert!(s.expose().starts_with(SECRET_PREFIX) && s.expose().len() == 6 + 44);
        assert_ne!(s.expose(), generate().unwrap().expose());
        let sealed = seal(&keys, s.expose(), "we_1", Slot::Current).unwrap();
        assert!(!sealed.contains(&s.expose()[6..]));
        assert_eq!(open(&keys, &sealed, "we_1", Slot::Current).unwrap().expose(), s.expose());
        assert!(open(&keys, &sealed, "we_2", Slot::Current).is_err());
        assert!(open(&keys, &sealed, "we_1", Slot::Previous).is_err());
    }

    #[test]
    fn a_grace_signs_with_both_secrets_new_first() {
        let (new, old) = (generate().unwrap(), generate().unwrap());
        let h = header(&[new.clone(), old.clone()], "msg_1", 10, "{}").unwrap();
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts, [sign(&new, "msg_1", 10, "{}").unwrap(), sign(&old, "msg_1", 10, "{}").unwrap()]);
    }
}
