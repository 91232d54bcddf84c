//! The dashboard on the admin listener (`/dashboard`): a page that reads the
//! status report every two seconds and follows the routing log, with charts
//! drawn by uPlot, which is vendored from npm into the binary
//! (`host/dashboard/vendor/`, checked against `package-lock.json` by
//! `scripts/test.sh`). No build step and no network: everything it needs is
//! served from here.
//!
//! A browser cannot send the admin token as a header when it opens a page,
//! so the token (typed into the login form) or a one-time link (from
//! `edge-router dashboard`) is exchanged for a session cookie. The cookie is
//! `HttpOnly`, lasts 12 hours, is sent only to `/dashboard` paths (not to
//! the proxy's port on the same host, nor to the rest of the admin API),
//! and admits reads only: the page, and `GET /dashboard/api/status` and
//! `/dashboard/api/routing-log` (the status report and the routing log).
//! Anything that changes the router still takes the token, so a page
//! elsewhere cannot make a logged-in browser change it; and no other site
//! can read what the cookie admits (no CORS), which is why it may be
//! `SameSite=Lax`: a one-time link opened from a chat window still logs in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The cookie a session is carried in.
pub const COOKIE: &str = "edge_router_session";
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a one-time link may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::from_secs(60);
/// Sessions (and links) kept at once; the oldest go first.
const MAX_SESSIONS: usize = 256;

/// The page's files, built into the binary.
const ASSETS: [(&str, &str, &str); 4] = [
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../dashboard/dashboard.js")),
    ("dashboard.css", "text/css; charset=utf-8", include_str!("../dashboard/dashboard.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_str!("../dashboard/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("../dashboard/vendor/uPlot.min.css")),
];
const INDEX: &str = include_str!("../dashboard/index.html");
const LOGIN: &str = include_str!("../dashboard/login.html");

/// What the pages may load and do: only this listener's own files and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard page.
pub fn index() -> &'static str {
    INDEX
}

/// The login page, saying `message` (plain text) above the form, if any.
pub fn login_page(message: Option<&str>) -> String {
    let note = message.map(|m| format!("<p class=\"error\">{}</p>", escape(m))).unwrap_or_default();
    LOGIN.replacen("<!--message-->", &note, 1)
}

/// One of the page's files and its content type.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|(_, kind, body)| (*kind, *body))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Sessions and one-time links, by the SHA-256 of their secret.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
    links: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Sessions {
    /// A new session's secret, for the cookie.
    pub fn open(&self) -> anyhow::Result<String> {
        insert(&self.sessions, SESSION_LIFETIME)
    }

    /// A new one-time link's code.
    pub fn link(&self) -> anyhow::Result<String> {
        insert(&self.links, LINK_LIFETIME)
    }

    /// Whether `code` is a link not yet used nor expired; it is used up.
    pub fn redeem(&self, code: &str) -> bool {
        let mut links = crate::lock(&self.links);
        links.remove(&digest(code)).is_some_and(|expires| expires > Instant::now())
    }

    /// Whether one of the request's session cookies holds a live session
    /// (another service on the host may have set one of the same name).
    pub fn admits(&self, headers: &http::HeaderMap) -> bool {
        let sessions = crate::lock(&self.sessions);
        let now = Instant::now();
        cookies(headers, COOKIE).any(|secret| sessions.get(&digest(secret)).is_some_and(|expires| *expires > now))
    }

    /// The `Set-Cookie` value for a session secret.
    pub fn set_cookie(secret: &str) -> String {
        format!("{COOKIE}={secret}; Path=/dashboard; HttpOnly; SameSite=Lax; Max-Age={}", SESSION_LIFETIME.as_secs())
    }
}

/// Adds a fresh secret to `map`, dropping expired ones and, when full, the
/// one that expires first.
fn insert(map: &Mutex<HashMap<[u8; 32], Instant>>, lifetime: Duration) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a session: {e}"))?;
    let secret = crate::hex(&bytes);
    let now = Instant::now();
    let mut map = crate::lock(map);
    map.retain(|_, expires| *expires > now);
    if map.len() >= MAX_SESSIONS
        && let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k)
    {
        map.remove(&oldest);
    }
    map.insert(digest(&secret), now + lifetime);
    Ok(secret)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The values of cookie `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a http::HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// The `token` field of a login form (`application/x-www-form-urlencoded`).
pub fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| edge_router::facts::percent_decoded(&value.replace('+', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_admitted_by_its_cookie_and_a_link_once() {
        let sessions = Sessions::default();
        let secret = sessions.open().expect("session");
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, format!("theme=dark; {COOKIE}={secret}").parse().expect("header"));
        assert!(sessions.admits(&headers));
        // A cookie of the same name set by another service does not shadow it.
        let both = format!("{COOKIE}=planted; {COOKIE}={secret}");
        headers.insert(http::header::COOKIE, both.parse().expect("header"));
        assert!(sessions.admits(&headers));
        headers.insert(http::header::COOKIE, format!("{COOKIE}={}", "0".repeat(64)).parse().expect("header"));
        assert!(!sessions.admits(&headers));
        assert!(!sessions.admits(&http::HeaderMap::new()));
        let code = sessions.link().expect("link");
        assert!(!sessions.redeem(&secret), "a session is not a link");
        assert!(sessions.redeem(&code));
        assert!(!sessions.redeem(&code), "a link is good once");
    }

    #[test]
    fn sessions_are_bounded_and_forms_and_pages_are_read_safely() {
        let sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.open().expect("session");
        }
        assert_eq!(crate::lock(&sessions.sessions).len(), MAX_SESSIONS);
        assert_eq!(form_token(b"token=a%2Bb+c&x=1").as_deref(), Some("a+b c"));
        assert_eq!(form_token(b"nothing=here"), None);
        let page = login_page(Some("<script>alert(1)</script>"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>alert"));
        assert!(asset("uPlot.iife.min.js").is_some_and(|(_, body)| body.contains("uPlot")));
        assert!(asset("../Cargo.toml").is_none());
    }
}
