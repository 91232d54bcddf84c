//! The edge cache on the Workers Cache API (`caches.default`).
//!
//! The Cache API keys entries by `GET` URL and knows only `max-age`. So each
//! entry is stored under a synthetic `GET` URL made from the router's cache
//! key (which already holds the tenant partition of an AI answer), and its
//! head — the exchange's `Entry`: status and header fields to serve, the
//! node that answered, the model, when it was stored, the tokens it saves,
//! and for a passthrough `GET` its RFC 9111 metadata — is stored beside the
//! body as one JSON header (`x-edge-meta`) of the stored response. What an
//! entry is good for is the exchange's verdict, as on the edge box; the
//! stored copy's own `cache-control` only says how long the Cache API keeps
//! it.
//!
//! A fresh hit is served from the cache's body stream, so a stored SSE
//! answer replays as a stream.

use bytes::Bytes;
use edge_cache::http::{Lookup, Revalidate, has_validator, response_directives};
use edge_router::wire::{CacheLookup, CacheStatus, Explain};
use exchange::Entry;
use exchange::answer::{Part, from_cache};
use exchange::entry::{Cached, verdict};
use sha2::{Digest, Sha256};
use worker::{Cache, Headers};

use crate::convert::{Answer, Body, fixed, response};
use crate::now_ms;

/// Where synthetic keys live; `.invalid` can never be a real host (RFC 2606).
const KEY_ORIGIN: &str = "https://edge-router-cache.invalid/";
/// The largest body kept.
pub const MAX_ENTRY: usize = 8 << 20;
/// The header holding the entry's head.
const META: &str = "x-edge-meta";
/// How long the Cache API keeps a passthrough entry that can be revalidated
/// (it has a validator) once it is stale.
const REVALIDATABLE_KEEP_S: u64 = 86_400;

/// What the cache had for a request.
pub enum Looked {
    /// A fresh answer: serve it.
    Hit(Answer),
    /// A stale answer to serve now and revalidate in the background.
    Stale { response: Answer, stored: Cached },
    /// A stale entry to revalidate before use (`if_error`: it may answer an error).
    Revalidate { stored: Cached, if_error: bool },
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

/// Looks the answer to a request up.
pub async fn look_up(lookup: &CacheLookup, request: &http::request::Parts) -> Looked {
    let mut found = match Cache::default().get(url_of(&lookup.key), true).await {
        Ok(Some(found)) => found,
        Ok(None) => return Looked::Miss,
        Err(e) => {
            worker::console_warn!("edge-router: cache lookup failed, going to the origin: {e}");
            return Looked::Miss;
        }
    };
    let Some(entry) = found.headers().get(META).ok().flatten().and_then(|m| Entry::from_json(&m)) else {
        return Looked::Miss;
    };
    let now = now_ms();
    match verdict(&entry, lookup, &request.headers, now) {
        Lookup::Miss => Looked::Miss,
        Lookup::Fresh { age_s } => {
            // A plain GET streams the stored body; a range or a HEAD needs its length.
            if request.method == http::Method::GET && !request.headers.contains_key(http::header::RANGE) {
                let answer =
                    from_cache(&entry, 0, &lookup.explain, CacheStatus::Hit, age_s, &request.method, &request.headers);
                let body = match (answer.part, found.into_parts().1) {
                    (Part::Whole, worker::ResponseBody::Stream(stream)) => Body::Stream(stream),
                    (Part::Whole, worker::ResponseBody::Body(bytes)) => Body::Fixed(Bytes::from(bytes)),
                    _ => Body::Empty,
                };
                return Looked::Hit(response(answer.status, &answer.headers, body));
            }
            let Ok(body) = found.bytes().await else { return Looked::Miss };
            let stored = Cached { entry, body: Bytes::from(body) };
            Looked::Hit(serve(&stored, &lookup.explain, CacheStatus::Hit, age_s, request))
        }
        Lookup::Stale { age_s, revalidate } => {
            let Ok(body) = found.bytes().await else { return Looked::Miss };
            let stored = Cached { entry, body: Bytes::from(body) };
            match revalidate {
                Revalidate::InBackground => {
                    let response = serve(&stored, &lookup.explain, CacheStatus::Stale, age_s, request);
                    Looked::Stale { response, stored }
                }
                Revalidate::First { if_error } => Looked::Revalidate { stored, if_error },
            }
        }
    }
}

/// An answer from a stored entry read whole.
pub fn serve(
    stored: &Cached,
    explain: &Explain,
    cache: CacheStatus,
    age_s: u64,
    request: &http::request::Parts,
) -> Answer {
    fixed(exchange::answer::serve(stored, explain, cache, age_s, request))
}

/// How long the Cache API should keep an entry, in seconds.
fn keep_s(entry: &Entry) -> u64 {
    let Some(stored) = &entry.http else {
        return entry.expires_ms.saturating_sub(entry.stored_ms).div_ceil(1000).max(1);
    };
    let d = response_directives(&entry.headers);
    let stale = d.stale_while_revalidate.unwrap_or(0).max(d.stale_if_error.unwrap_or(0));
    let mut keep = stored.lifetime_s.saturating_add(stale);
    if has_validator(&entry.headers) {
        keep = keep.max(REVALIDATABLE_KEEP_S);
    }
    keep.clamp(1, 365 * 86_400)
}

/// Stores an answer under `key` (run after the response went out).
pub async fn put(key: String, Cached { entry, body }: Cached) {
    if body.len() > MAX_ENTRY {
        return;
    }
    let headers = Headers::new();
    let Some(json) = entry.to_json() else { return };
    let _ = headers.set(META, &json);
    let _ = headers.set("cache-control", &format!("public, max-age={}", keep_s(&entry)));
    let response = worker::ResponseBuilder::new().with_headers(headers).fixed(body.to_vec());
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
