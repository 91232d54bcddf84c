//! HTTPS on the edge box's listener (`server.tls`): rustls with TLS 1.2
//! and 1.3 only, HTTP/2 offered by ALPN beside HTTP/1.1, and a certificate
//! per SNI name. The certificates are read when the box starts and at every
//! reload, so a renewed certificate goes in force without a restart, and
//! connections already open keep theirs. See `docs/tls.md`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use edge_router::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate expiring sooner than this is warned about.
const EXPIRY_WARNING_S: i64 = 14 * 86_400;

/// What the listener serves HTTPS with.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The `Strict-Transport-Security` value, if the config asks for it.
    pub hsts: Option<http::HeaderValue>,
    pub certificates: Vec<Certificate>,
}

/// A certificate as `check` and the log describe it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub file: String,
    /// The DNS names it covers (its subject alternative names, else its common name), lower case.
    pub names: Vec<String>,
    /// When it stops being valid, in seconds since the epoch.
    pub not_after: i64,
}

impl Certificate {
    /// Its expiry, and a warning if it is past or near.
    pub fn expiry(&self) -> (String, Option<String>) {
        let when = exchange::record::rfc3339_ms(u64::try_from(self.not_after).unwrap_or(0).saturating_mul(1000));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let warning = if self.not_after <= now {
            Some(format!("{} expired at {when}: clients will refuse it", self.file))
        } else if self.not_after - now < EXPIRY_WARNING_S {
            Some(format!("{} expires at {when}, in {} days", self.file, (self.not_after - now) / 86_400))
        } else {
            None
        };
        (when, warning)
    }

    /// Whether it covers `name` (`*.example.com` covers one label more).
    fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(parent) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => *n == name,
        })
    }
}

impl Tls {
    /// Logs a warning for each certificate past or near its expiry.
    pub fn warn_of_expiry(&self) {
        for c in &self.certificates {
            if let (_, Some(warning)) = c.expiry() {
                tracing::warn!("server.tls: {warning}");
            }
        }
    }
}

/// Reads the certificates and keys `config` names, and checks each key
/// matches its certificate.
pub fn load(config: &TlsConfig) -> anyhow::Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    for c in &config.certificates {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", c.cert))?;
        let Some(leaf) = chain.first() else {
            anyhow::bail!("{}: holds no certificate", c.cert);
        };
        let key = PrivateKeyDer::from_pem_file(&c.key)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM private key file: {e}", c.key))?;
        let certificate = describe(&c.cert, leaf)?;
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => anyhow::anyhow!("{} is not the key of {}", c.key, c.cert),
            other => anyhow::anyhow!("{} with {}: {other}", c.cert, c.key),
        })?;
        keys.push(Arc::new(certified));
        certificates.push(certificate);
    }
    if keys.is_empty() {
        anyhow::bail!("server.tls names no certificate");
    }
    let resolver = BySni { keys, certificates: certificates.clone() };
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let hsts = config.hsts.as_ref().and_then(|h| http::HeaderValue::from_str(&h.header_value()).ok());
    Ok(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)), hsts, certificates })
}

/// The names a certificate covers and when it expires.
fn describe(file: &str, der: &CertificateDer<'_>) -> anyhow::Result<Certificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("{file}: the certificate does not parse: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names =
            cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect();
    }
    Ok(Certificate { file: file.to_string(), names, not_after: cert.validity().not_after.timestamp() })
}

/// Picks the certificate for a client's SNI name: the first that covers
/// it, else the first of all (a client that names none, or an IP address).
#[derive(Debug)]
struct BySni {
    keys: Vec<Arc<CertifiedKey>>,
    certificates: Vec<Certificate>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Of the certificates for the name (else of all), the first whose
        // key can sign in a way the client takes (an RSA one and an ECDSA
        // one may serve the same name); failing that, the first.
        let name = hello.server_name();
        let usable = |i: &usize| self.keys[*i].key.choose_scheme(hello.signature_schemes()).is_some();
        let for_name: Vec<usize> =
            (0..self.keys.len()).filter(|i| name.is_some_and(|n| self.certificates[*i].covers(n))).collect();
        let candidates = if for_name.is_empty() { (0..self.keys.len()).collect() } else { for_name };
        let chosen = candidates.iter().copied().find(usable).or(candidates.first().copied());
        self.keys.get(chosen.unwrap_or(0)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_covered_exactly_or_by_one_wildcard_label() {
        let c = Certificate {
            file: "c.pem".into(),
            names: vec!["api.example.com".into(), "*.edge.example.com".into()],
            not_after: 0,
        };
        assert!(c.covers("API.example.com"));
        assert!(c.covers("fra.edge.example.com"));
        assert!(!c.covers("edge.example.com"), "a wildcard needs a label");
        assert!(!c.covers("a.fra.edge.example.com"), "and only one");
        assert!(!c.covers("example.com"));
        assert!(c.expiry().1.is_some_and(|w| w.contains("expired")));
    }
}
