//! `auth`: who may call, from where, and how much: client keys, tenants,
//! their IP allow-lists and rate limits (see `docs/security.md`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Client API keys and tenants.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse requests without a known key (401). Otherwise they run as tier `default`, tenant `anonymous`.
    #[serde(default)]
    pub required: bool,
    /// The known keys. A tenant may have several at once, so that a key is rotated without
    /// downtime: add the new one, move clients over, let the old one's `not_after` pass.
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    /// Tenants by name: the tier, IP allow-list and rate limits shared by all their keys.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// JWT bearer tokens from an identity provider, besides keys: a valid token's claims name
    /// its tenant and tier.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// JWT bearer tokens (RFC 7519), signed with RS256/384/512, PS256/384/512, ES256/384,
/// EdDSA (Ed25519) or HS256/384/512. A token must be signed by one of the keys, unexpired,
/// and carry the tenant claim; `alg: none` is never accepted.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys": [...]}`, as an identity provider publishes it), read at start
    /// and at every reload (edge box).
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Keys written in the config, as a JWKS (`{keys: [...]}`): the Worker's way, and static
    /// keys for the edge box.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub jwks: Option<serde_json::Value>,
    /// The `iss` a token must have. Unset: any.
    #[serde(default)]
    pub issuer: Option<String>,
    /// A value the token's `aud` must hold. Unset: any.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that names the tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim that names the tier. Missing in a token: the tenant's `tier`, else `default`.
    #[serde(default = "default_tier_claim")]
    pub tier_claim: String,
    /// Clock difference allowed when reading `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: super::DurationSpec,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_tier_claim() -> String {
    "tier".into()
}

fn default_leeway() -> super::DurationSpec {
    super::DurationSpec::secs(60)
}

/// One client key. Only its SHA-256 is stored: `printf %s "$KEY" | sha256sum`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// A name for the key in messages and the audit log, such as `ci-2026-q4` (never the key).
    /// Default: the first 12 hex digits of its SHA-256.
    #[serde(default)]
    pub name: Option<String>,
    /// Tier used by `user_tier` rules. Default: its tenant's `tier`, else `default`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Tenant the key belongs to.
    pub tenant: String,
    /// The last moment the key is accepted, in RFC 3339 (`2027-01-31T00:00:00Z`) or a date
    /// (`2027-01-31`, its midnight UTC). After it, the key gets 401.
    #[serde(default)]
    pub not_after: Option<String>,
    /// Client addresses (IPs or CIDR blocks) the key is accepted from; others get 403.
    /// Empty: any address (the tenant's list still applies).
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Rate limits of this key alone, on top of its tenant's.
    #[serde(default)]
    pub limits: RateLimitsConfig,
}

/// A tenant's settings, shared by all its keys.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tier of the tenant's keys that name none.
    #[serde(default)]
    pub tier: Option<String>,
    /// Client addresses (IPs or CIDR blocks) the tenant's keys are accepted from; others get
    /// 403. Empty: any address.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Rate limits of all the tenant's keys together.
    #[serde(default)]
    pub limits: RateLimitsConfig,
}

/// Rate limits with OpenAI's semantics: each a bucket of a minute's allowance that refills
/// continuously. A request is refused with 429 when it would overdraw one.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute: a request reserves its estimate (prompt and `max_tokens`) and is
    /// settled at the `usage` its answer reports.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}
