//! Password hashing with argon2id at OWASP's parameters (19 MiB, t=2, p=1).
//!
//! Rules: hashing and checking are CPU-heavy and blocking: services call
//! `service::hashing`, which bounds how many run at once and runs the
//! functions here on its threads, each with its own reused [`Memory`]. An
//! unknown account is checked against a dummy hash of the same parameters so
//! that the time taken does not reveal whether the email exists. The computed
//! hash is compared with the stored one in constant time. A stored hash that
//! cannot be read is an internal error, never a wrong password.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use super::{Error, Result};

/// Salt length of a new hash (bytes), as argon2's own hasher draws.
const SALT_LEN: usize = 16;
/// A hash of the default parameters with a made-up salt and output (no
/// password is known to match it): checking it costs what checking a real
/// one does.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$QWtsE9s3Jw1pfwhsaUqWBw$8c8FXnp/vDB1kapBYrYLpN7sz6b6MoUJkZ4yTq5v8Lk";
/// Blocks reserved per buffer: more than glibc's largest dynamic mmap
/// threshold (32 MiB), so that the buffer is always its own mapping and
/// freeing it gives the memory back to the system. Only the blocks a hash
/// uses (19 MiB) are ever touched.
const RESERVE_BLOCKS: usize = 33 * 1024;

/// Argon2's working memory, kept by one hashing thread between hashes.
#[derive(Default)]
pub struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// At least `count` blocks (taken from the system the first time).
    fn blocks(&mut self, count: usize) -> Result<&mut [Block]> {
        if self.blocks.len() < count {
            let mut blocks = Vec::new();
            blocks.try_reserve_exact(count.max(RESERVE_BLOCKS)).map_err(|e| Error::internal(e, "argon2 memory"))?;
            blocks.resize(count, Block::default());
            self.blocks = blocks;
        }
        Ok(&mut self.blocks[..count])
    }

    /// Gives the memory back.
    pub fn release(&mut self) {
        self.blocks = Vec::new();
    }
}

/// A PHC string for a new password.
pub fn hash(memory: &mut Memory, password: &str) -> Result<String> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| internal("drawing a salt", e))?;
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory.blocks(params.block_count())?)
        .map_err(|e| internal("hashing a password", e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| internal("hashing a password", e))?,
        salt: Some(Salt::new(&salt).map_err(|e| internal("hashing a password", e))?),
        hash: Some(Output::new(&out).map_err(|e| internal("hashing a password", e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `phc`; a stored hash that cannot be read (or
/// checked) is an error.
pub fn verify(memory: &mut Memory, phc: &str, password: &str) -> Result<bool> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::Internal(anyhow::anyhow!("checking a password against its stored hash: {e}"))
    };
    let parsed = PasswordHash::new(phc).map_err(|e| unreadable(&e))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(unreadable(&"no salt or no hash"));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| unreadable(&e))?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| unreadable(&e))?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
    let count = params.block_count();
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, memory.blocks(count)?)
        .map_err(|e| unreadable(&e))?;
    Ok(out.ct_eq(expected.as_bytes()).into())
}

/// Spends the same work as [`verify`] for an account that does not exist.
pub fn verify_dummy(memory: &mut Memory, password: &str) -> Result<()> {
    verify(memory, DUMMY, password).map(|_| ())
}

fn internal(doing: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{doing}: {e}"))
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let mut memory = Memory::default();
        let phc = hash(&mut memory, "correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&mut memory, &phc, "correct horse battery staple").unwrap());
        assert!(!verify(&mut memory, &phc, "wrong").unwrap());
    }

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        let mut memory = Memory::default();
        let ours = hash(&mut memory, "pw one").unwrap();
        assert!(Argon2::default().verify_password(b"pw one", ours.as_str()).is_ok());
        assert!(Argon2::default().verify_password(b"pw two", ours.as_str()).is_err());
        let theirs = Argon2::default().hash_password(b"pw two").unwrap().to_string();
        assert!(verify(&mut memory, &theirs, "pw two").unwrap());
        assert!(!verify(&mut memory, &theirs, "pw one").unwrap());
    }

    #[test]
    fn the_dummy_hash_costs_what_a_new_hash_costs() {
        let mut memory = Memory::default();
        let real = hash(&mut memory, "x").unwrap();
        let (real, dummy) = (PasswordHash::new(&real).unwrap(), PasswordHash::new(DUMMY).unwrap());
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        verify_dummy(&mut memory, "anything").unwrap();
    }

    #[test]
    fn a_stored_hash_that_cannot_be_read_is_an_error_not_a_wrong_password() {
        let mut memory = Memory::default();
        assert!(verify(&mut memory, "not a hash", "x").is_err());
    }

    #[test]
    fn memory_is_reused_and_released() {
        let mut memory = Memory::default();
        let a = hash(&mut memory, "a").unwrap();
        assert!(verify(&mut memory, &a, "a").unwrap());
        memory.release();
        assert!(memory.blocks.is_empty());
        assert!(verify(&mut memory, &a, "a").unwrap());
    }
}
