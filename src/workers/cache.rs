//! The edge cache on the Workers Cache API (`caches.default`).
//!
//! The Cache API keys entries by `GET` URL and knows only `max-age`. So an AI
//! answer (a `POST`) is stored under a synthetic `GET` URL made from the
//! router's cache key, which already holds the tenant partition; and what the
//! router needs besides the body (the node that answered, the model, when it
//! was stored, when it expires, the tokens it saves, the origin's own
//! `cache-control`) is stored beside it, as `x-edge-meta-*` headers of the
//! stored response, which are taken off again when it is served.
//! A stored SSE answer is served from the cache's body stream as it is, so
//! it replays as a stream.

use sha2::{Digest, Sha256};
use worker::{Cache, Headers, Response};

use super::now_ms;
use crate::error::headers as names;
use crate::wire::{CacheFill, CacheLookup, Explain};

/// Where synthetic keys live; `.invalid` can never be a real host (RFC 2606).
const KEY_ORIGIN: &str = "https://edge-router-cache.invalid";
/// The largest answer kept.
const MAX_ENTRY: usize = 8 << 20;

const META_NODE: &str = "x-edge-meta-node";
const META_MODEL: &str = "x-edge-meta-model";
const META_STORED: &str = "x-edge-meta-stored-ms";
const META_EXPIRES: &str = "x-edge-meta-expires-ms";
const META_TOKENS: &str = "x-edge-meta-tokens";
const META_CACHE_CONTROL: &str = "x-edge-meta-cache-control";

/// The synthetic `GET` URL of a cache key. Hashed, so keys of any length
/// and content make a valid URL; the key's tenant partition carries over.
fn url_of(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut url = String::with_capacity(KEY_ORIGIN.len() + 4 + 64);
    url.push_str(KEY_ORIGIN);
    url.push_str("/ai/");
    for byte in digest {
        url.push_str(&format!("{byte:02x}"));
    }
    url
}

/// The stored answer for `lookup`, ready to serve, if there is a fresh one.
/// RFC 9111 entries of passthrough `GET`s are not kept on Workers (see
/// `docs/workers.md`), so those always miss.
pub async fn look_up(lookup: &CacheLookup) -> Option<Response> {
    if lookup.http {
        return None;
    }
    let cache = Cache::default();
    let mut stored = match cache.get(url_of(&lookup.key), true).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return None,
        Err(e) => {
            worker::console_warn!("edge-router: cache lookup failed, going to the origin: {e}");
            return None;
        }
    };
    let meta = |name: &str| stored.headers().get(name).ok().flatten();
    let now = now_ms();
    let expires = meta(META_EXPIRES).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if expires <= now {
        return None;
    }
    let stored_ms = meta(META_STORED).and_then(|v| v.parse::<u64>().ok()).unwrap_or(now);
    let explain = Explain {
        node: meta(META_NODE).unwrap_or_else(|| lookup.explain.node.clone()),
        model: meta(META_MODEL),
        ..lookup.explain.clone()
    };
    let tokens = meta(META_TOKENS).unwrap_or_else(|| "0".into());
    let origin_cache_control = meta(META_CACHE_CONTROL);
    let out = Headers::new();
    for (name, value) in stored.headers().entries() {
        if !name.starts_with("x-edge-meta-") && name != "cache-control" && name != "age" {
            let _ = out.append(&name, &value);
        }
    }
    if let Some(value) = origin_cache_control {
        let _ = out.set("cache-control", &value);
    }
    explain.for_each_header(|name, value| {
        let _ = out.set(name, value);
    });
    let _ = out.set("age", &(now.saturating_sub(stored_ms) / 1000).to_string());
    let _ = out.set(names::TOKENS_SAVED, &tokens);
    let status = stored.status_code();
    let body = stored.stream().ok()?;
    Some(Response::from_stream(body).ok()?.with_status(status).with_headers(out))
}

/// An answer being kept as it streams to the client; stored only if the
/// whole body went through.
pub struct Capture {
    fill: CacheFill,
    headers: Vec<(String, String)>,
    node: String,
    model: Option<String>,
    body: Vec<u8>,
}

impl Capture {
    pub fn new(fill: CacheFill, headers: Vec<(String, String)>, explain: &Explain) -> Self {
        Self { fill, headers, node: explain.node.clone(), model: explain.model.clone(), body: Vec::new() }
    }

    /// Adds a chunk; false once the answer is too large to keep.
    pub fn keep(&mut self, chunk: &[u8]) -> bool {
        self.body.extend_from_slice(chunk);
        self.body.len() <= MAX_ENTRY
    }

    /// Stores the answer (run after the response went out).
    pub async fn store(self) {
        let now = now_ms();
        let tokens = crate::usage::find_usage(&self.body).map_or(self.fill.estimated_tokens, |u| u.total());
        let headers = Headers::new();
        for (name, value) in &self.headers {
            match name.as_str() {
                "cache-control" => {
                    let _ = headers.set(META_CACHE_CONTROL, value);
                }
                // The Cache API refuses to store a response that sets cookies.
                "set-cookie" | "age" => {}
                _ => {
                    let _ = headers.append(name, value);
                }
            }
        }
        let ttl_s = self.fill.ttl_s.max(1);
        let _ = headers.set("cache-control", &format!("public, max-age={ttl_s}"));
        let _ = headers.set(META_NODE, &self.node);
        if let Some(model) = &self.model {
            let _ = headers.set(META_MODEL, model);
        }
        let _ = headers.set(META_STORED, &now.to_string());
        let _ = headers.set(META_EXPIRES, &now.saturating_add(ttl_s * 1000).to_string());
        let _ = headers.set(META_TOKENS, &tokens.to_string());
        let response = match Response::from_bytes(self.body) {
            Ok(r) => r.with_headers(headers),
            Err(e) => {
                worker::console_warn!("edge-router: an answer could not be stored: {e}");
                return;
            }
        };
        if let Err(e) = Cache::default().put(url_of(&self.fill.key), response).await {
            worker::console_warn!("edge-router: an answer could not be stored: {e}");
        }
    }
}
