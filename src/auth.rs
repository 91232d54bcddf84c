//! Client API keys: who is calling, in which tier, for which tenant.
//!
//! The config stores only SHA-256 digests of keys. A presented key is hashed
//! and compared against every digest in constant time, so neither the key nor
//! timing reveals which entry matched. The key itself is dropped from the
//! request before it is forwarded.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who a request belongs to. The names are shared, not copied: every
/// request of a key (and every exchange) holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tier used by `user_tier` rules.
    pub tier: Arc<str>,
    /// Tenant the key belongs to.
    pub tenant: Arc<str>,
}

impl Principal {
    /// A principal of tier `tier` and tenant `tenant`.
    pub fn new(tier: &str, tenant: &str) -> Self {
        Self { tier: tier.into(), tenant: tenant.into() }
    }

    /// A caller without a known key.
    pub fn anonymous() -> Self {
        thread_local! {
            static ANONYMOUS: Principal = Principal::new("default", "anonymous");
        }
        ANONYMOUS.with(Clone::clone)
    }
}

/// One known key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// Who the key belongs to.
    pub principal: Principal,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    /// Refuse unknown callers.
    pub required: bool,
    /// Known keys.
    pub entries: Vec<KeyEntry>,
}

impl KeyTable {
    /// Looks up a presented key. Every entry is compared, whatever matches.
    pub fn identify(&self, presented: Option<&[u8]>) -> Option<&Principal> {
        self.identify_digest(&key_digest(presented?))
    }

    /// Looks up the SHA-256 of a presented key, in constant time as [`identify`](Self::identify).
    pub fn identify_digest(&self, digest: &[u8; 32]) -> Option<&Principal> {
        let mut found = None;
        for entry in &self.entries {
            if bool::from(digests_equal(&entry.digest, digest)) && found.is_none() {
                found = Some(&entry.principal);
            }
        }
        found
    }
}

/// Whether two digests are equal, in constant time. The differences are
/// folded into one word without branches and only that word goes through
/// `subtle`'s optimisation barrier: comparing byte by byte would call the
/// barrier 32 times, and in the wasm module each is a real function call.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    let word = |d: &[u8; 32], i: usize| u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let difference = (0..4).fold(0u64, |acc, i| acc | (word(a, i) ^ word(b, i)));
    difference.ct_eq(&0)
}

/// SHA-256 of a presented key, as the key table stores keys.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The key a client presented, from `Authorization: Bearer …` or `x-api-key`.
pub fn presented_key<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<&'a [u8]> {
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
                return Some(value[7..].trim_ascii());
            }
        } else if name.eq_ignore_ascii_case("x-api-key") {
            return Some(value.trim_ascii());
        }
    }
    None
}

/// Parses a hex SHA-256 digest.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.trim().as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(name: &str, value: &[u8]) -> Option<Vec<u8>> {
        presented_key([(name, value)]).map(<[u8]>::to_vec)
    }

    fn table() -> KeyTable {
        let digest: [u8; 32] = Sha256::digest(b"sk-team-a").into();
        KeyTable { required: true, entries: vec![KeyEntry { digest, principal: Principal::new("vip", "acme") }] }
    }

    #[test]
    fn bearer_and_x_api_key_are_both_recognised() {
        let k = key_of("Authorization", b"Bearer sk-team-a ");
        assert_eq!(&*table().identify(k.as_deref()).unwrap().tenant, "acme");
        let k = key_of("x-api-key", b"sk-team-a");
        assert_eq!(&*table().identify(k.as_deref()).unwrap().tier, "vip");
    }

    #[test]
    fn wrong_or_missing_keys_match_nothing() {
        let k = key_of("authorization", b"Bearer sk-team-b");
        assert!(table().identify(k.as_deref()).is_none());
        assert!(table().identify(None).is_none());
        assert!(key_of("authorization", b"Basic c2stdGVhbS1h").is_none());
    }

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let a: [u8; 32] = Sha256::digest(b"sk-team-a").into();
        assert!(bool::from(digests_equal(&a, &a)));
        for i in 0..32 {
            for bit in [0x01, 0x80] {
                let mut b = a;
                b[i] ^= bit;
                assert!(!bool::from(digests_equal(&a, &b)), "byte {i}, bit {bit:#x}");
            }
        }
    }

    #[test]
    fn digests_must_be_64_hex_characters() {
        assert!(parse_digest(&"ab".repeat(32)).is_some());
        assert!(parse_digest("abc").is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
    }
}
