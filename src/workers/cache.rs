//! The edge cache on the Workers Cache API (`caches.default`).
//!
//! The Cache API keys entries by `GET` URL and knows only `max-age`. So each
//! entry is stored under a synthetic `GET` URL made from the router's cache
//! key (which already holds the tenant partition of an AI answer), and what
//! the router needs besides the body is stored beside it, as one JSON header
//! (`x-edge-meta`) of the stored response: the status and headers to serve,
//! the node that answered, the model, when it was stored, the tokens it
//! saves, and for a passthrough `GET` its RFC 9111 metadata
//! (`edge_cache::Stored`), from which stale-while-revalidate,
//! stale-if-error and revalidation are decided here, since the Cache API
//! does none of them. The stored copy's own `cache-control` only says how
//! long the Cache API keeps it.
//!
//! A fresh hit is served from the cache's body stream, so a stored SSE
//! answer replays as a stream.

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::{Cache, Headers, Response, ResponseBody};

use super::now_ms;
use crate::error::headers as names;
use crate::hop::is_hop_by_hop;
use crate::wire::{CacheLookup, CacheStatus, Explain, Header};
use edge_cache::http::{Lookup, Revalidate};

/// Where synthetic keys live; `.invalid` can never be a real host (RFC 2606).
const KEY_ORIGIN: &str = "https://edge-router-cache.invalid/";
/// The largest body kept.
const MAX_ENTRY: usize = 8 << 20;
/// The header holding [`Meta`].
const META: &str = "x-edge-meta";
/// How long the Cache API keeps a passthrough entry that can be revalidated
/// (it has a validator) once it is stale.
const REVALIDATABLE_KEEP_S: u64 = 86_400;

/// What is stored beside a body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    node: String,
    model: Option<String>,
    status: u16,
    /// The origin's header fields, as served.
    headers: Vec<(String, String)>,
    stored_ms: u64,
    /// When an AI answer expires (`u64::MAX` for passthrough entries, which
    /// RFC 9111 judges).
    expires_ms: u64,
    /// Tokens a hit saves (AI answers).
    tokens: u64,
    /// RFC 9111 metadata of a passthrough `GET`.
    http: Option<HttpMeta>,
}

/// `edge_cache::Stored` without the status and headers [`Meta`] holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HttpMeta {
    vary: Vec<(String, Option<String>)>,
    response_ms: u64,
    initial_age_s: u64,
    lifetime_s: u64,
}

impl Meta {
    fn stored(&self) -> Option<edge_cache::Stored> {
        let h = self.http.as_ref()?;
        Some(edge_cache::Stored {
            status: self.status,
            headers: self.headers.clone(),
            vary: h.vary.clone(),
            response_ms: h.response_ms,
            initial_age_s: h.initial_age_s,
            lifetime_s: h.lifetime_s,
        })
    }

    fn set_stored(&mut self, stored: edge_cache::Stored) {
        self.status = stored.status;
        self.headers = stored.headers;
        self.http = Some(HttpMeta {
            vary: stored.vary,
            response_ms: stored.response_ms,
            initial_age_s: stored.initial_age_s,
            lifetime_s: stored.lifetime_s,
        });
    }

    /// `age` of a copy served at `now`.
    fn age_s(&self, now: u64) -> u64 {
        match self.stored() {
            Some(stored) => stored.age_s(now),
            None => now.saturating_sub(self.stored_ms) / 1000,
        }
    }
}

/// A stored entry read whole (to serve stale, or to revalidate).
pub struct Entry {
    meta: Meta,
    body: Vec<u8>,
}

impl Entry {
    /// The headers of a conditional request revalidating it.
    pub fn conditional_headers(&self) -> Vec<(String, String)> {
        self.meta.stored().map(|s| edge_cache::http::conditional_headers(&s)).unwrap_or_default()
    }

    /// The node that answered it.
    pub fn node(&self) -> &str {
        &self.meta.node
    }
}

/// What the cache had for a request.
pub enum Looked {
    /// A fresh answer: serve it.
    Hit(Response),
    /// A stale answer to serve now and revalidate in the background.
    Stale { response: Response, entry: Entry },
    /// A stale entry to revalidate before use (`if_error`: it may answer an error).
    Revalidate { entry: Entry, if_error: bool },
    /// Nothing.
    Miss,
}

/// The synthetic `GET` URL of a cache key. Hashed, so keys of any length
/// and content make a valid URL.
fn url_of(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut url = String::with_capacity(KEY_ORIGIN.len() + 64);
    url.push_str(KEY_ORIGIN);
    for byte in digest {
        url.push_str(&format!("{byte:02x}"));
    }
    url
}

/// Header fields as lower-case name and text value pairs.
pub fn text_pairs<'a>(headers: impl IntoIterator<Item = &'a Header>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter_map(|h| Some((h.name.to_ascii_lowercase(), std::str::from_utf8(&h.value).ok()?.to_string())))
        .collect()
}

/// Looks the answer to a request up.
pub async fn look_up(lookup: &CacheLookup, request: &[Header], head_only: bool) -> Looked {
    let mut stored = match Cache::default().get(url_of(&lookup.key), true).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Looked::Miss,
        Err(e) => {
            worker::console_warn!("edge-router: cache lookup failed, going to the origin: {e}");
            return Looked::Miss;
        }
    };
    let Some(meta) = stored.headers().get(META).ok().flatten().and_then(|m| serde_json::from_str::<Meta>(&m).ok())
    else {
        return Looked::Miss;
    };
    let now = now_ms();
    let verdict = match (&lookup.http, meta.stored()) {
        (false, _) if meta.expires_ms > now => Lookup::Fresh { age_s: meta.age_s(now) },
        (false, _) | (true, None) => Lookup::Miss,
        (true, Some(s)) => edge_cache::http::lookup(&text_pairs(request), &s, now),
    };
    match verdict {
        Lookup::Miss => Looked::Miss,
        Lookup::Fresh { age_s } => {
            let (_, body) = stored.into_parts();
            Looked::Hit(served(&meta, body, &lookup.explain, age_s, head_only))
        }
        Lookup::Stale { age_s, revalidate } => {
            let Ok(body) = stored.bytes().await else { return Looked::Miss };
            let entry = Entry { meta, body };
            match revalidate {
                Revalidate::InBackground => {
                    let explain = Explain { cache: CacheStatus::Stale, ..lookup.explain.clone() };
                    let response = entry.serve(&explain, age_s, head_only);
                    Looked::Stale { response, entry }
                }
                Revalidate::First { if_error } => Looked::Revalidate { entry, if_error },
            }
        }
    }
}

impl Entry {
    /// Serves the entry from memory with `explain` (its own node and model).
    pub fn serve(&self, explain: &Explain, age_s: u64, head_only: bool) -> Response {
        let body = if head_only { ResponseBody::Empty } else { ResponseBody::Body(self.body.clone()) };
        served(&self.meta, body, explain, age_s, head_only)
    }

    /// Serves it as a stale answer (`stale-if-error`, or while revalidating).
    pub fn serve_stale(&self, explain: &Explain, head_only: bool) -> Response {
        let explain = Explain { cache: CacheStatus::Stale, ..explain.clone() };
        self.serve(&explain, self.meta.age_s(now_ms()), head_only)
    }

    /// A `304` confirmed it: freshened (RFC 9111 §4.3.4), to be stored again
    /// and served as `REVALIDATED`.
    /// Returns the response and, when `key` is given, the store of the
    /// freshened entry to run after it.
    pub fn revalidated(
        mut self,
        not_modified: &[(String, String)],
        sent_ms: u64,
        explain: &Explain,
        head_only: bool,
        key: Option<String>,
    ) -> (Response, Option<LocalBoxFuture<'static, ()>>) {
        let now = now_ms();
        if let Some(mut stored) = self.meta.stored() {
            edge_cache::http::freshen(&mut stored, not_modified, sent_ms, now);
            self.meta.set_stored(stored);
        }
        self.meta.stored_ms = now;
        let explain = Explain { cache: CacheStatus::Revalidated, ..explain.clone() };
        let response = self.serve(&explain, self.meta.age_s(now), head_only);
        let store = key.map(|key| put(key, self.meta, self.body).boxed_local());
        (response, store)
    }
}

/// A response from the cache: the stored status and headers, `explain`
/// with the node (and model) that answered originally, `age`, and for an AI
/// answer the tokens it saved.
fn served(meta: &Meta, body: ResponseBody, explain: &Explain, age_s: u64, head_only: bool) -> Response {
    let out = Headers::new();
    for (name, value) in &meta.headers {
        if !is_hop_by_hop(name, &[]) && name != "age" && name != "content-length" {
            let _ = out.append(name, value);
        }
    }
    let explain = Explain { node: meta.node.clone(), model: meta.model.clone(), ..explain.clone() };
    explain.for_each_header(|name, value| {
        let _ = out.set(name, value);
    });
    let _ = out.set("age", &age_s.to_string());
    if meta.http.is_none() {
        let _ = out.set(names::TOKENS_SAVED, &meta.tokens.to_string());
    }
    let builder = Response::builder().with_status(meta.status).with_headers(out);
    if head_only || super::origin::null_body_status(meta.status) { builder.empty() } else { builder.body(body) }
}

/// An answer being kept as it streams to the client; stored only if the
/// whole body went through.
pub struct Capture {
    key: String,
    meta: Meta,
    ttl_s: u64,
    estimated_tokens: u64,
    body: Vec<u8>,
}

impl Capture {
    /// An AI answer (a `200`), kept for `ttl_s`.
    pub fn ai(
        key: String,
        ttl_s: u64,
        estimated_tokens: u64,
        headers: Vec<(String, String)>,
        explain: &Explain,
    ) -> Self {
        let meta = Meta {
            node: explain.node.clone(),
            model: explain.model.clone(),
            status: 200,
            headers,
            stored_ms: 0,
            expires_ms: 0,
            tokens: estimated_tokens,
            http: None,
        };
        Self { key, meta, ttl_s: ttl_s.max(1), estimated_tokens, body: Vec::new() }
    }

    /// A passthrough `GET` that RFC 9111 lets the cache store.
    pub fn http(key: String, stored: edge_cache::Stored, explain: &Explain) -> Self {
        let mut meta = Meta {
            node: explain.node.clone(),
            model: None,
            status: 200,
            headers: Vec::new(),
            stored_ms: 0,
            expires_ms: u64::MAX,
            tokens: 0,
            http: None,
        };
        meta.set_stored(stored);
        Self { key, meta, ttl_s: 0, estimated_tokens: 0, body: Vec::new() }
    }

    /// Adds a chunk; false once the answer is too large to keep.
    pub fn keep(&mut self, chunk: &[u8]) -> bool {
        self.body.extend_from_slice(chunk);
        self.body.len() <= MAX_ENTRY
    }

    /// Stores the answer (run after the response went out).
    pub async fn store(mut self) {
        let now = now_ms();
        self.meta.stored_ms = now;
        if self.meta.http.is_none() {
            self.meta.expires_ms = now.saturating_add(self.ttl_s.saturating_mul(1000));
            self.meta.tokens = crate::usage::find_usage(&self.body).map_or(self.estimated_tokens, |u| u.total());
        }
        put(self.key, self.meta, self.body).await;
    }
}

/// How long the Cache API should keep an entry, in seconds.
fn keep_s(meta: &Meta) -> u64 {
    let Some(stored) = meta.stored() else {
        return meta.expires_ms.saturating_sub(meta.stored_ms).div_ceil(1000).max(1);
    };
    let d = stored.directives();
    let stale = d.stale_while_revalidate.unwrap_or(0).max(d.stale_if_error.unwrap_or(0));
    let mut keep = stored.lifetime_s.saturating_add(stale);
    if stored.has_validator() {
        keep = keep.max(REVALIDATABLE_KEEP_S);
    }
    keep.clamp(1, 365 * 86_400)
}

/// JSON with every character outside ASCII escaped, so it is a valid header value.
fn ascii_json(meta: &Meta) -> Option<String> {
    let json = serde_json::to_string(meta).ok()?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Some(out)
}

async fn put(key: String, meta: Meta, body: Vec<u8>) {
    let headers = Headers::new();
    let Some(json) = ascii_json(&meta) else { return };
    let _ = headers.set(META, &json);
    let _ = headers.set("cache-control", &format!("public, max-age={}", keep_s(&meta)));
    let response = match Response::from_bytes(body) {
        Ok(r) => r.with_headers(headers),
        Err(e) => {
            worker::console_warn!("edge-router: an answer could not be stored: {e}");
            return;
        }
    };
    if let Err(e) = Cache::default().put(url_of(&key), response).await {
        worker::console_warn!("edge-router: an answer could not be stored: {e}");
    }
}

/// Drops the entries of `keys` (RFC 9111 §4.4 invalidation).
pub async fn remove(keys: Vec<String>) {
    let cache = Cache::default();
    for key in keys {
        if let Err(e) = cache.delete(url_of(&key), true).await {
            worker::console_warn!("edge-router: a cache entry could not be removed: {e}");
        }
    }
}
