//! A node's `host`: the base URL it must be, and the scheme a host written
//! without one gets.

use super::Validator;

impl Validator<'_> {
    /// A URL the edge box calls on its own (a node's `metrics_url`, a
    /// webhook): `http://` or `https://` with a host, written out in full.
    pub(super) fn http_url(&mut self, path: &str, written: &str) -> Option<String> {
        let complaint = |why: &str| format!("`{written}` is not a usable URL: {why}");
        let Ok(uri) = written.trim().parse::<http::Uri>() else {
            self.err(path, complaint("write it as `http://host:port/path` or `https://host/path`"));
            return None;
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            self.err(path, complaint("it must start with `http://` or `https://`"));
            return None;
        }
        if uri.host().is_none_or(str::is_empty) {
            self.err(path, complaint("it has no host"));
            return None;
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            self.err(path, complaint("credentials cannot go in it (use webhook_token_env for a webhook's)"));
            return None;
        }
        Some(written.trim().to_string())
    }

    pub(super) fn base_url(&mut self, path: &str, written: &str) -> String {
        let schemed;
        let host = if written.contains("://") || written.trim().is_empty() {
            written
        } else {
            let (scheme, why) = default_scheme(written);
            schemed = format!("{scheme}://{written}");
            self.warn(
                path,
                format!("`{written}` has no scheme, so `{schemed}` is used ({why}); write the scheme to choose"),
            );
            &schemed
        };
        let complaint = |why: &str| format!("`{host}` is not a usable origin URL: {why}");
        let uri: http::Uri = match host.parse() {
            Ok(u) => u,
            Err(_) => {
                self.err(path, complaint("write it as `http://host:port` or `https://host`"));
                return String::new();
            }
        };
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => self.err(path, complaint(&format!("the scheme must be http or https, not {other}"))),
            None => self.err(path, complaint("it needs a scheme, `http://` or `https://`")),
        }
        if uri.host().is_none_or(str::is_empty) {
            self.err(path, complaint("it has no host"));
        }
        if uri.query().is_some() {
            self.err(path, complaint("it cannot carry a query string"));
        }
        // `http::Uri` drops a fragment silently, and a request's target
        // cannot follow one.
        if host.contains('#') {
            self.err(path, complaint("it cannot carry a fragment (`#…`)"));
        }
        host.trim_end_matches('/').to_string()
    }
}

/// The scheme of a `host` written without one, and why: `:443` is https and
/// `:80` http; otherwise private, loopback and link-local addresses and local
/// names (`localhost`, one label, `.local`, `.internal`, `.lan`,
/// `.home.arpa`) are http, anything else https.
fn default_scheme(host: &str) -> (&'static str, &'static str) {
    let authority = host.split('/').next().unwrap_or_default();
    let (name, port) = match authority.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
        _ => (authority, None),
    };
    match port {
        Some("443") => return ("https", "port 443"),
        Some("80") => return ("http", "port 80"),
        _ => {}
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    let local = match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let [a, b, ..] = ip.octets();
            ip.is_private() || ip.is_loopback() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        Err(_) => {
            let lower = bare.to_ascii_lowercase();
            !lower.contains('.')
                || [".localhost", ".local", ".internal", ".lan", ".home.arpa"].iter().any(|s| lower.ends_with(s))
        }
    };
    if local { ("http", "a private address or local name") } else { ("https", "a public name or address") }
}
