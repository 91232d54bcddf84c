//! `server`: the listener, TLS files, the country header and trusted proxies.

use std::net::SocketAddr;

use super::Validator;
use crate::config::CidrBlock;
use crate::config::server::ServerConfig;

impl Validator<'_> {
    pub(super) fn listen(&mut self, s: &ServerConfig) -> SocketAddr {
        s.listen.parse().unwrap_or_else(|_| {
            self.err("server.listen", format!("`{}` is not an address and port such as `0.0.0.0:8080`", s.listen));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        })
    }

    pub(super) fn server(&mut self, s: &ServerConfig) -> Vec<CidrBlock> {
        if s.max_body_bytes == 0 {
            self.err("server.max_body_bytes", "must be at least 1");
        }
        // The files themselves are read by the edge box (`check` too): the
        // Worker has no listener of its own.
        if let Some(tls) = &s.tls {
            if tls.certificates.is_empty() {
                self.err("server.tls.certificates", "name at least one `{cert, key}` pair of PEM files");
            }
            for (i, c) in tls.certificates.iter().enumerate() {
                for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
                    if path.trim().is_empty() {
                        self.err(format!("server.tls.certificates[{i}].{field}"), "must be a file path");
                    }
                }
            }
        }
        if let Some(h) = &s.country_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            self.err("server.country_header", format!("`{h}` is not a valid header name"));
        }
        if s.geoip_database.as_deref().is_some_and(|p| p.trim().is_empty()) {
            self.err("server.geoip_database", "must be the path of a `.mmdb` file");
        }
        let mut out = Vec::new();
        for (i, p) in s.trusted_proxies.iter().enumerate() {
            match CidrBlock::parse(p) {
                Ok(b) => out.push(b),
                Err(e) => self.err(format!("server.trusted_proxies[{i}]"), e),
            }
        }
        out
    }
}
