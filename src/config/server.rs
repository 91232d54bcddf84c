//! `server`: the edge box's listener, its TLS, and whom it trusts for the
//! client's address and country.

use schemars::JsonSchema;
use serde::Deserialize;

use super::duration::DurationSpec;

/// Settings of the native edge box.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:8080`. `--listen` overrides it.
    pub listen: String,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: u64,
    /// How long a client may take to send its request head and body.
    pub client_timeout: DurationSpec,
    /// Header that carries the client's ISO country, set by a proxy in front (e.g. `CF-IPCountry`).
    /// Believed only from a trusted proxy, and before the IP database.
    pub country_header: Option<String>,
    /// Peer addresses or CIDR blocks trusted as proxies: their `country_header` is believed, and
    /// the hops they append to `X-Forwarded-For` (see `docs/security.md`). Anyone else's are ignored.
    pub trusted_proxies: Vec<String>,
    /// A MaxMind-format IP database (`.mmdb`, such as GeoLite2-Country) that gives the client's
    /// country from its address when no trusted proxy's `country_header` does. Read again at
    /// every reload.
    pub geoip_database: Option<String>,
    /// How long in-flight requests and streams may run on after SIGTERM or SIGINT.
    pub shutdown_grace: DurationSpec,
    /// Threads that serve client connections, each with its own origin
    /// connection pool. Default: one per CPU.
    pub workers: Option<std::num::NonZeroU16>,
    /// HTTPS on `listen` (the edge box): without it, plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// HTTPS: TLS 1.2 and 1.3, HTTP/2 by ALPN beside HTTP/1.1 (see `docs/tls.md`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificates with their keys, in PEM files. A client's SNI name picks the first whose
    /// names cover it; a client naming none that matches gets the first.
    pub certificates: Vec<TlsCertificate>,
    /// Send `Strict-Transport-Security` with every answer.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
}

/// One certificate chain and its private key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// The PEM file of the certificate, followed by its intermediates.
    pub cert: String,
    /// The PEM file of its private key (PKCS#8, RSA or SEC1).
    pub key: String,
}

/// `Strict-Transport-Security`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// How long browsers keep to HTTPS, e.g. `365d`.
    pub max_age: DurationSpec,
    /// The same for every subdomain.
    #[serde(default)]
    pub include_subdomains: bool,
}

impl HstsConfig {
    /// The header's value.
    pub fn header_value(&self) -> String {
        let sub = if self.include_subdomains { "; includeSubDomains" } else { "" };
        format!("max-age={}{sub}", self.max_age.0.as_secs())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            client_timeout: DurationSpec::secs(30),
            country_header: None,
            trusted_proxies: Vec::new(),
            geoip_database: None,
            shutdown_grace: DurationSpec::secs(30),
            workers: None,
            tls: None,
        }
    }
}
