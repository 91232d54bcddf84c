//! An answer being kept for the cache as it streams to the client. It is
//! stored only if the whole body went through; dropped any other way (too
//! large, broken off, cut), it stores nothing.

use bytes::Bytes;
use edge_cache::Stored;
use edge_router::hop::{connection_tokens, is_hop_by_hop};
use edge_router::wire::{CacheFill, Explain};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::entry::{Cached, Entry};
use crate::usage::find_usage;

/// An answer on its way into the cache.
#[derive(Debug)]
pub struct Capture {
    key: String,
    entry: Entry,
    /// How long an AI answer stays fresh; `None` for an RFC 9111 entry.
    ttl_ms: Option<u64>,
    estimated_tokens: u64,
    body: Vec<u8>,
    max: usize,
}

/// A whole answer, ready to store.
#[derive(Debug)]
pub struct Captured {
    /// Its cache key.
    pub key: String,
    /// The answer.
    pub cached: Cached,
}

impl Capture {
    /// An AI answer (a `200`) to keep for the fill's TTL; at most `max` bytes.
    pub fn ai(fill: &CacheFill, headers: &HeaderMap, explain: &Explain, max: usize) -> Self {
        Self::new(fill, StatusCode::OK, headers, explain, None, Some(fill.ttl_s.max(1).saturating_mul(1000)), max)
    }

    /// A passthrough `GET`'s answer that RFC 9111 lets the cache store.
    pub fn http(
        fill: &CacheFill,
        status: StatusCode,
        headers: &HeaderMap,
        explain: &Explain,
        stored: Stored,
        max: usize,
    ) -> Self {
        Self::new(fill, status, headers, explain, Some(stored), None, max)
    }

    fn new(
        fill: &CacheFill,
        status: StatusCode,
        headers: &HeaderMap,
        explain: &Explain,
        http: Option<Stored>,
        ttl_ms: Option<u64>,
        max: usize,
    ) -> Self {
        let entry = Entry {
            status,
            headers: stored_headers(headers, http.is_none()),
            node: explain.node.clone(),
            model: explain.model.clone(),
            stored_ms: 0,
            expires_ms: u64::MAX,
            tokens: 0,
            http,
        };
        Self { key: fill.key.clone(), entry, ttl_ms, estimated_tokens: fill.estimated_tokens, body: Vec::new(), max }
    }

    /// Adds a chunk; false once the answer is too large to keep.
    pub fn keep(&mut self, data: &[u8]) -> bool {
        self.body.extend_from_slice(data);
        self.body.len() <= self.max
    }

    /// The whole answer, stored at `now_ms`: an AI answer then expires
    /// after its TTL and saves the tokens its `usage` reported (else the
    /// request's estimate).
    pub fn finish(self, now_ms: u64) -> Captured {
        let Self { key, mut entry, ttl_ms, estimated_tokens, body, .. } = self;
        entry.stored_ms = now_ms;
        if let Some(ttl_ms) = ttl_ms {
            entry.expires_ms = now_ms.saturating_add(ttl_ms);
            entry.tokens = find_usage(&body).map_or(estimated_tokens, |u| u.total());
        }
        Captured { key, cached: Cached { entry, body: Bytes::from(body) } }
    }
}

/// Whether a response header field is stored with an answer: not the
/// explanation (each serve has its own), not `Age` or `Content-Length`,
/// which a serve sets itself, and not a hop-by-hop field (RFC 9111 §3.1),
/// which belonged to the origin's connection (`tokens`: the names its
/// `Connection` lists). An AI answer (`ai`), served to every client that
/// asks the same, keeps no `Set-Cookie`: a cookie is for the one client.
fn stored_field(name: &str, tokens: &[String], ai: bool) -> bool {
    !name.starts_with("x-edge-")
        && name != "age"
        && name != "content-length"
        && !(ai && name == "set-cookie")
        && !is_hop_by_hop(name, tokens)
}

/// The header fields stored with an answer (an AI answer's when `ai`), in
/// memory of their own. Parsed names and values are slices of the
/// connection's read buffer; an entry holding such slices would keep the
/// whole buffer (kilobytes) alive.
pub fn stored_headers(headers: &HeaderMap, ai: bool) -> HeaderMap {
    let tokens = connection_tokens(headers.get_all(http::header::CONNECTION).iter().map(HeaderValue::as_bytes));
    headers
        .iter()
        .filter(|(n, _)| stored_field(n.as_str(), &tokens, ai))
        .filter_map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_str().as_bytes()).ok()?;
            Some((name, HeaderValue::from_bytes(v.as_bytes()).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router::wire::CacheStatus;

    fn explain() -> Explain {
        Explain {
            node: "n".into(),
            rule: "r".into(),
            attempts: 1,
            country: "DE".into(),
            model: Some("tiny".into()),
            difficulty: None,
            cache: CacheStatus::Miss,
            panic: false,
            ratelimit: Default::default(),
        }
    }

    #[test]
    fn an_ai_answer_expires_after_its_ttl_and_saves_its_reported_tokens() {
        let fill = CacheFill { key: "ai/t/1".into(), ttl_s: 60, estimated_tokens: 100, http: false };
        let mut headers = HeaderMap::new();
        for (n, v) in
            [("content-type", "application/json"), ("content-length", "99"), ("x-edge-node", "n"), ("age", "3")]
        {
            headers.insert(n, HeaderValue::from_static(v));
        }
        let mut c = Capture::ai(&fill, &headers, &explain(), 1024);
        assert!(c.keep(br#"{"usage":{"prompt_tokens":3,"#));
        assert!(c.keep(br#""completion_tokens":4}}"#));
        let done = c.finish(1_000);
        assert_eq!((done.cached.entry.expires_ms, done.cached.entry.tokens), (61_000, 7));
        assert_eq!(done.cached.entry.headers.len(), 1, "only content-type is stored: {:?}", done.cached.entry.headers);
        assert_eq!((done.cached.entry.node.as_str(), done.cached.entry.model.as_deref()), ("n", Some("tiny")));
        let mut big = Capture::ai(&fill, &headers, &explain(), 4);
        assert!(!big.keep(b"12345"), "over the limit");
    }

    #[test]
    fn rfc9111_3_1_hop_by_hop_fields_are_not_stored() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("content-type", "application/json"),
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-checksum"),
            ("etag", "\"v1\""),
            ("set-cookie", "__cf_bm=one-client; HttpOnly"),
        ] {
            headers.insert(n, HeaderValue::from_static(v));
        }
        let names = |ai: bool| {
            let mut names: Vec<String> = stored_headers(&headers, ai).keys().map(|n| n.to_string()).collect();
            names.sort_unstable();
            names
        };
        assert_eq!(names(false), ["content-type", "etag", "set-cookie"], "RFC 9111 lets a shared cache store it");
        assert_eq!(names(true), ["content-type", "etag"], "an AI answer served to all keeps no client's cookie");
    }

    #[test]
    fn without_usage_an_answer_saves_the_estimate() {
        let fill = CacheFill { key: "k".into(), ttl_s: 0, estimated_tokens: 7, http: false };
        let done = Capture::ai(&fill, &HeaderMap::new(), &explain(), 64).finish(0);
        assert_eq!((done.cached.entry.tokens, done.cached.entry.expires_ms), (7, 1000), "a TTL of 0 keeps it a second");
    }

    #[test]
    fn a_client_ttl_of_any_size_saturates() {
        // With `cache.client_ttl`, `x-edge-cache-ttl` may be any u64: its
        // milliseconds overflowed (a panic in a debug build).
        for ttl_s in [u64::MAX / 1000 + 1, u64::MAX] {
            let fill = CacheFill { key: "k".into(), ttl_s, estimated_tokens: 7, http: false };
            let done = Capture::ai(&fill, &HeaderMap::new(), &explain(), 64).finish(5);
            assert_eq!(done.cached.entry.expires_ms, u64::MAX, "{ttl_s}");
        }
    }
}
