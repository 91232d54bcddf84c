//! Client API keys: who is calling, in which tier, for which tenant, until
//! when, from which addresses, and with which rate limits.
//!
//! The config stores only SHA-256 digests of keys. A presented key is hashed
//! and compared against every digest in constant time, so neither the key nor
//! timing reveals which entry matched. The key itself is dropped from the
//! request before it is forwarded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::CidrBlock;
use crate::limits::{Limited, Rates, Scope};
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
    /// Its name in messages and the audit log (never the key).
    pub name: Arc<str>,
    /// The last moment it is accepted, in milliseconds since the Unix epoch.
    pub not_after_ms: Option<u64>,
    /// Addresses it is accepted from; empty: any.
    pub allow_ips: Vec<CidrBlock>,
    /// Its own rate limits.
    pub rates: Rates,
}

/// A tenant's settings, shared by its keys.
#[derive(Debug, Clone, Default)]
pub struct TenantEntry {
    /// The tier of its callers that name none.
    pub tier: Option<Arc<str>>,
    /// Addresses its keys are accepted from; empty: any.
    pub allow_ips: Vec<CidrBlock>,
    /// The rate limits of all its keys together.
    pub rates: Rates,
}

/// The configured keys and tenants.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    /// Refuse unknown callers.
    pub required: bool,
    /// Known keys.
    pub entries: Vec<KeyEntry>,
    /// Tenants with settings.
    pub tenants: HashMap<Arc<str>, TenantEntry>,
    /// JWT bearer tokens, when accepted.
    pub jwt: Option<crate::jwt::JwtRules>,
}

/// Why a known key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Its `not_after` has passed (at this time, in milliseconds since the epoch).
    Expired(u64),
    /// The client's address is not on the key's or its tenant's allow-list.
    AddressNotAllowed,
}

impl KeyTable {
    /// Looks up a presented key. Every entry is compared, whatever matches.
    pub fn identify(&self, presented: Option<&[u8]>) -> Option<&Principal> {
        self.identify_digest(&key_digest(presented?)).map(|k| &k.principal)
    }

    /// Looks up the SHA-256 of a presented key, in constant time as [`identify`](Self::identify).
    pub fn identify_digest(&self, digest: &[u8; 32]) -> Option<&KeyEntry> {
        let mut found = None;
        for entry in &self.entries {
            if bool::from(digests_equal(&entry.digest, digest)) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }

    /// Whether `key` may be used now, from `client` (the address the host
    /// believes; `None`: unknown, which no allow-list admits).
    pub fn admits(&self, key: &KeyEntry, client: Option<IpAddr>, now_ms: u64) -> Result<(), KeyRefusal> {
        if let Some(end) = key.not_after_ms
            && now_ms > end
        {
            return Err(KeyRefusal::Expired(end));
        }
        if !allows(&key.allow_ips, client) || !self.tenant_admits(&key.principal.tenant, client) {
            return Err(KeyRefusal::AddressNotAllowed);
        }
        Ok(())
    }

    /// Whether `tenant`'s allow-list (if it has one) admits `client`.
    pub fn tenant_admits(&self, tenant: &str, client: Option<IpAddr>) -> bool {
        self.tenants.get(tenant).is_none_or(|t| allows(&t.allow_ips, client))
    }

    /// The rate-limited scopes of a caller: its key's (if any) and its tenant's.
    pub fn limited(&self, key: Option<&KeyEntry>, tenant: &Arc<str>) -> Vec<Limited> {
        let mut out = Vec::new();
        if let Some(k) = key.filter(|k| k.rates.any()) {
            out.push(Limited { scope: Scope::Key(k.digest), rates: k.rates, label: format!("key {}", k.name).into() });
        }
        if let Some(t) = self.tenants.get(tenant).filter(|t| t.rates.any()) {
            out.push(Limited {
                scope: Scope::Tenant(tenant.clone()),
                rates: t.rates,
                label: format!("tenant {tenant}").into(),
            });
        }
        out
    }
}

/// Whether an allow-list admits `client`: an empty one admits anyone, a
/// list admits only an address it holds (never an unknown one).
fn allows(list: &[CidrBlock], client: Option<IpAddr>) -> bool {
    list.is_empty() || client.is_some_and(|c| list.iter().any(|b| b.contains(c)))
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

    fn entry(key: &[u8], tenant: &str) -> KeyEntry {
        KeyEntry {
            digest: Sha256::digest(key).into(),
            principal: Principal::new("vip", tenant),
            name: "k".into(),
            not_after_ms: None,
            allow_ips: Vec::new(),
            rates: Rates::default(),
        }
    }

    fn table() -> KeyTable {
        KeyTable { required: true, entries: vec![entry(b"sk-team-a", "acme")], ..KeyTable::default() }
    }

    #[test]
    fn a_key_is_refused_after_its_not_after_and_outside_the_allow_lists() {
        let blocks = |l: &[&str]| l.iter().map(|b| CidrBlock::parse(b).unwrap()).collect::<Vec<_>>();
        let mut t = table();
        t.entries[0].not_after_ms = Some(1_000);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let key = t.entries[0].clone();
        assert_eq!(t.admits(&key, None, 1_000), Ok(()), "the last moment is still in");
        assert_eq!(t.admits(&key, None, 1_001), Err(KeyRefusal::Expired(1_000)));
        let mut key = entry(b"sk-team-a", "acme");
        key.allow_ips = blocks(&["10.0.0.0/8"]);
        assert_eq!(t.admits(&key, ip("10.1.2.3"), 0), Ok(()));
        assert_eq!(t.admits(&key, ip("192.0.2.1"), 0), Err(KeyRefusal::AddressNotAllowed));
        assert_eq!(t.admits(&key, None, 0), Err(KeyRefusal::AddressNotAllowed), "an unknown address is no allowed one");
        // The tenant's list applies as well as the key's.
        t.tenants.insert("acme".into(), TenantEntry { allow_ips: blocks(&["10.1.0.0/16"]), ..TenantEntry::default() });
        assert_eq!(t.admits(&key, ip("10.1.2.3"), 0), Ok(()));
        assert_eq!(t.admits(&key, ip("10.2.0.1"), 0), Err(KeyRefusal::AddressNotAllowed));
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
