//! API keys: how they are made, how they are stored (only as hashes) and how a
//! presented key is checked, plus whether the API requires one at all.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{ApiKey, Store, StoreError};

/// How every key starts, so that secret scanners and people recognise one.
pub const KEY_PREFIX: &str = "kadi_";

/// Random bytes in a key: 256 bits, so that guessing a key is hopeless even
/// for an attacker who is never rate limited.
const KEY_RANDOM_BYTES: usize = 32;

/// Length of a well-formed key: the prefix and the random bytes in hex.
const KEY_LEN: usize = KEY_PREFIX.len() + 2 * KEY_RANDOM_BYTES;

/// Characters of a key kept in clear: `kadi_` and 8 hex digits. Enough to tell
/// keys apart in `kadi keys list` and to find the candidate rows of a check;
/// the 224 bits that stay secret keep a guess hopeless.
const LOOKUP_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// Whether the resource API requires an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Anyone who reaches the listener may use the API (the original contract).
    Off,
    /// Every read and write of users, links and events needs a valid key.
    Required,
}

impl AuthMode {
    /// The mode's name, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Required => "required",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a presented key was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key, a malformed one, an unknown one or a revoked one: callers must
    /// answer all of these the same way.
    #[error("a valid API key is required")]
    Rejected,
    /// The store could not be asked.
    #[error("cannot look up the API key")]
    Lookup(#[source] StoreError),
}

/// A freshly created key: the secret is shown once and never stored.
#[derive(Debug)]
pub struct CreatedKey {
    /// The stored row.
    pub key: ApiKey,
    /// The key itself, for the `Authorization: Bearer` header.
    pub secret: String,
}

/// Creates a key named `name` and stores its hash.
pub async fn create_key(store: &Store, name: &str) -> Result<CreatedKey, StoreError> {
    let secret = generate_secret();
    let key = store
        .insert_api_key(name, lookup_prefix(&secret), &hash_key(&secret))
        .await?;
    Ok(CreatedKey { key, secret })
}

/// Stores `secret` as a key named `name` unless it is stored already; for a
/// key handed to Kadi by its deployment (`KADI_BOOTSTRAP_API_KEY`). Returns
/// whether it was new. A malformed secret is refused.
pub async fn ensure_key(store: &Store, name: &str, secret: &str) -> Result<bool, AuthError> {
    if !is_well_formed(secret) {
        return Err(AuthError::Rejected);
    }
    let hash = hash_key(secret);
    let stored = store
        .api_key_hashes(lookup_prefix(secret))
        .await
        .map_err(AuthError::Lookup)?;
    if stored.iter().any(|candidate| candidate.key_hash == hash) {
        return Ok(false);
    }
    match store
        .insert_api_key(name, lookup_prefix(secret), &hash)
        .await
    {
        Ok(_) => Ok(true),
        // Another replica stored it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(error) => Err(AuthError::Lookup(error)),
    }
}

/// A new random key: `kadi_` and 64 hex digits.
fn generate_secret() -> String {
    let mut bytes = [0_u8; KEY_RANDOM_BYTES];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The hex SHA-256 of a key, as stored. A fast hash is enough: the key has
/// 256 random bits, so there is no dictionary to run against a leaked hash.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The part of a well-formed key kept in clear.
fn lookup_prefix(secret: &str) -> &str {
    &secret[..LOOKUP_PREFIX_LEN]
}

/// Whether `secret` has the shape of a key this module makes.
fn is_well_formed(secret: &str) -> bool {
    secret.len() == KEY_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a presented key and returns the id of the valid key it is.
///
/// Unknown, malformed and revoked keys are all [`AuthError::Rejected`]. Every
/// stored key with the same prefix is compared, each in constant time, and a
/// revoked key is only told apart after the comparison.
pub async fn verify_key(store: &Store, presented: &str) -> Result<i64, AuthError> {
    if !is_well_formed(presented) {
        return Err(AuthError::Rejected);
    }
    let candidates = store
        .api_key_hashes(lookup_prefix(presented))
        .await
        .map_err(AuthError::Lookup)?;
    let presented_hash = hash_key(presented);
    let mut accepted = None;
    for candidate in &candidates {
        let same = presented_hash
            .as_bytes()
            .ct_eq(candidate.key_hash.as_bytes());
        if bool::from(same) {
            accepted = Some(candidate);
        }
    }
    match accepted {
        Some(candidate) if candidate.revoked_at.is_none() => Ok(candidate.id),
        _ => Err(AuthError::Rejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(is_well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(lookup_prefix(&a).len(), LOOKUP_PREFIX_LEN);
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        for key in [
            "",
            "kadi_",
            "Bearer kadi_00",
            &format!("kadi_{}", "g".repeat(64)),
            &format!("kadi_{}", "A".repeat(64)),
            &format!("kado_{}", "0".repeat(64)),
            &format!("kadi_{}", "0".repeat(65)),
        ] {
            assert!(!is_well_formed(key), "{key}");
        }
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
