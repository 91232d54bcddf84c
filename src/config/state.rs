//! `state`: a store shared by a fleet of edge boxes (Valkey or Redis), which
//! holds their rate limits as one (see `docs/security.md`).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{DurationSpec, Percent};

/// State shared by the edge boxes of a fleet. Without it, each box counts alone.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The store: `redis://HOST:PORT` (Valkey or Redis), optionally with `/DB`.
    #[serde(default)]
    pub redis: Option<String>,
    /// The environment variable holding the store's password (`AUTH`), if it has one.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Prefix of the keys the boxes keep there, so several fleets can share one store.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long a box waits for the store before it counts alone.
    #[serde(default = "default_timeout")]
    pub timeout: DurationSpec,
    /// The share (0-100) of each rate limit a box may use alone while the store is
    /// unreachable: with N boxes, 100/N keeps the fleet within the limit.
    #[serde(default = "default_share")]
    pub local_share: Percent,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            redis: None,
            password_env: None,
            key_prefix: default_prefix(),
            timeout: default_timeout(),
            local_share: default_share(),
        }
    }
}

fn default_prefix() -> String {
    "edge-router".into()
}

fn default_timeout() -> DurationSpec {
    DurationSpec(std::time::Duration::from_millis(100))
}

fn default_share() -> Percent {
    Percent::HALF
}

/// A parsed `redis://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAddress {
    /// `host:port`.
    pub authority: String,
    /// The database number.
    pub db: u32,
}

impl StoreAddress {
    /// Parses `redis://HOST[:PORT][/DB]` (port 6379 by default). A password in the URL is
    /// refused: it belongs in `password_env`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("`{url}` is not a `redis://HOST:PORT` address (TLS is not supported)"))?;
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err("put the store's password in the variable `password_env` names, not in the address".into());
        }
        if authority.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:6379")
        };
        let db = if db.is_empty() { 0 } else { db.parse().map_err(|_| format!("`{db}` is not a database number"))? };
        Ok(Self { authority, db })
    }
}
