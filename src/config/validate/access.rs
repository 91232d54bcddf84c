//! `auth`: keys, tenants, allow-lists and rate limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::Validator;
use crate::auth::{KeyEntry, KeyTable, Principal, TenantEntry, parse_digest};
use crate::config::{AuthConfig, CidrBlock, JwtConfig, RateLimitsConfig, StateConfig, StoreAddress, parse_instant_ms};
use crate::jwt::{JwtRules, KeySet};
use crate::limits::Rates;

impl Validator<'_> {
    pub(super) fn auth(&mut self, a: &AuthConfig) -> KeyTable {
        let mut tenants: HashMap<Arc<str>, TenantEntry> = HashMap::new();
        for (name, t) in &a.tenants {
            let path = format!("auth.tenants.{name}");
            if name.trim().is_empty() {
                self.err(&path, "a tenant needs a name");
            }
            let entry = TenantEntry {
                tier: t.tier.as_deref().map(Arc::from),
                allow_ips: self.allow_ips(&path, &t.allow_ips),
                rates: self.rates(&path, &t.limits),
            };
            tenants.insert(name.as_str().into(), entry);
        }
        let mut entries: Vec<KeyEntry> = Vec::new();
        for (i, k) in a.keys.iter().enumerate() {
            let path = format!("auth.keys[{i}]");
            let Some(digest) = parse_digest(&k.sha256) else {
                self.err(
                    format!("{path}.sha256"),
                    "must be the 64-character hex SHA-256 of the key (`printf %s \"$KEY\" | sha256sum`)",
                );
                continue;
            };
            if entries.iter().any(|e| e.digest == digest) {
                self.err(format!("{path}.sha256"), "this key is listed twice");
            }
            if k.tenant.trim().is_empty() {
                self.err(format!("{path}.tenant"), "a tenant cannot be empty");
            }
            let not_after_ms = k.not_after.as_deref().and_then(|text| {
                let ms = parse_instant_ms(text);
                if ms.is_none() {
                    self.err(
                        format!("{path}.not_after"),
                        format!(
                            "`{text}` is not a moment: write RFC 3339 (`2027-01-31T00:00:00Z`) or a date (`2027-01-31`)"
                        ),
                    );
                }
                ms
            });
            let name = match &k.name {
                Some(n) if n.trim().is_empty() => {
                    self.err(format!("{path}.name"), "a key's name cannot be empty (leave it out for the default)");
                    n.clone()
                }
                Some(n) => n.clone(),
                None => k.sha256.trim().chars().take(12).collect::<String>().to_ascii_lowercase(),
            };
            if entries.iter().any(|e| *e.name == *name) {
                self.err(format!("{path}.name"), format!("another key is named `{name}` already"));
            }
            let tier = k.tier.clone().or_else(|| a.tenants.get(&k.tenant).and_then(|t| t.tier.clone()));
            entries.push(KeyEntry {
                digest,
                principal: Principal::new(tier.as_deref().unwrap_or("default"), &k.tenant),
                name: name.into(),
                not_after_ms,
                allow_ips: self.allow_ips(&path, &k.allow_ips),
                rates: self.rates(&path, &k.limits),
            });
        }
        for name in a.tenants.keys() {
            if a.jwt.is_none() && !a.keys.iter().any(|k| k.tenant == *name) {
                self.warn(
                    format!("auth.tenants.{name}"),
                    "no key belongs to this tenant, so its settings apply to nobody",
                );
            }
        }
        let jwt = a.jwt.as_ref().map(|j| self.jwt(j));
        if a.required && entries.is_empty() && jwt.is_none() {
            self.err(
                "auth.required",
                "keys are required but none are listed (nor `jwt`), so every request would be refused",
            );
        }
        KeyTable { required: a.required, entries, tenants, jwt }
    }

    fn jwt(&mut self, j: &JwtConfig) -> JwtRules {
        let inline = match &j.jwks {
            Some(jwks) => KeySet::parse(jwks).unwrap_or_else(|e| {
                self.err("auth.jwt.jwks", e);
                KeySet::default()
            }),
            None => KeySet::default(),
        };
        if j.jwks.is_none() && j.jwks_file.as_deref().is_none_or(|f| f.trim().is_empty()) {
            self.err("auth.jwt", "name the keys tokens are signed with: `jwks_file`, or `jwks` written here");
        }
        for (field, value) in [("tenant_claim", &j.tenant_claim), ("tier_claim", &j.tier_claim)] {
            if value.trim().is_empty() {
                self.err(format!("auth.jwt.{field}"), "must name a claim");
            }
        }
        JwtRules {
            issuer: j.issuer.clone(),
            audience: j.audience.clone(),
            tenant_claim: j.tenant_claim.clone(),
            tier_claim: j.tier_claim.clone(),
            leeway_ms: j.leeway.as_millis(),
            jwks_file: j.jwks_file.clone(),
            inline,
        }
    }

    /// `state`: the store's address and the share a box uses alone.
    pub(super) fn state(&mut self, s: &StateConfig) {
        if let Some(url) = &s.redis
            && let Err(e) = StoreAddress::parse(url)
        {
            self.err("state.redis", e);
        }
        if s.redis.is_none() && s.password_env.is_some() {
            self.warn("state.password_env", "no `redis` store is named, so the password is never used");
        }
        if s.local_share.get() == 0 {
            self.warn(
                "state.local_share",
                "0: while the store is unreachable, a box admits a rate-limited caller one request (and one token) a minute",
            );
        }
        if s.timeout.0.is_zero() {
            self.err("state.timeout", "must be longer than zero");
        }
    }

    fn allow_ips(&mut self, path: &str, list: &[String]) -> Vec<CidrBlock> {
        let mut out = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            match CidrBlock::parse(entry) {
                Ok(b) => out.push(b),
                Err(e) => self.err(format!("{path}.allow_ips[{i}]"), e),
            }
        }
        out
    }

    fn rates(&mut self, path: &str, limits: &RateLimitsConfig) -> Rates {
        for (field, value) in
            [("requests_per_minute", limits.requests_per_minute), ("tokens_per_minute", limits.tokens_per_minute)]
        {
            if value == Some(0) {
                self.err(format!("{path}.limits.{field}"), "must be at least 1 (leave it out for no limit)");
            }
        }
        Rates { requests_per_minute: limits.requests_per_minute, tokens_per_minute: limits.tokens_per_minute }
    }
}
