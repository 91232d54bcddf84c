//! HTTP caching for `GET` and `HEAD` as a shared cache (RFC 9111), with
//! `CDN-Cache-Control` (RFC 9213) and `stale-while-revalidate` /
//! `stale-if-error` (RFC 5861).
//!
//! Decisions are data: [`storable`] says whether (and with what metadata) a
//! response may be stored, [`lookup`] whether a stored one is fresh, stale
//! (and how to revalidate) or unusable. Time is passed in as milliseconds
//! since the Unix epoch; nothing here reads a clock. Header fields are
//! `http::HeaderMap`s, as the hosts hold them.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::directives::{Directives, split_list};
use crate::fields::{age_s, first, http_date_s, values};

/// The longest heuristic freshness lifetime given (RFC 9111 §4.2.2 leaves
/// the bound to the cache).
pub const HEURISTIC_MAX_S: u64 = 24 * 3600;

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
const HEURISTIC_STATUSES: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Header fields a `304` must not replace in the stored response (RFC 9111 §3.2).
const NOT_UPDATED: [&str; 5] = ["content-length", "content-encoding", "transfer-encoding", "content-range", "age"];

/// Whether a `304`'s header field `name` (lower-case) replaces the stored
/// one: all do except those §3.2 excludes (and `Age`, which the cache
/// computes itself).
pub fn replaced_by_304(name: &str) -> bool {
    !NOT_UPDATED.contains(&name)
}

/// The directives this cache obeys: `CDN-Cache-Control` when the response
/// has a valid one (RFC 9213 §2.1), else `Cache-Control`.
pub fn response_directives(headers: &HeaderMap) -> Directives {
    Directives::parse_cdn(values(headers, "cdn-cache-control"))
        .unwrap_or_else(|| Directives::parse(values(headers, "cache-control")))
}

/// The directives of a request, with `Pragma: no-cache` read as `no-cache`
/// when there is no `Cache-Control` (RFC 9111 §5.4).
fn request_directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::parse(values(headers, "cache-control"));
    if !headers.contains_key(http::header::CACHE_CONTROL)
        && values(headers, "pragma").any(|p| split_list(p).iter().any(|t| t.eq_ignore_ascii_case("no-cache")))
    {
        d.no_cache = true;
    }
    d
}

/// Why a response may not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only `GET` and `HEAD` are cached (§3).
    Method,
    /// Not a final, complete response the cache understands (§3): a `206`
    /// is part of a representation, never stored as the whole of it.
    Status,
    /// `no-store` in the request or the response (§3, §5.2.1.5, §5.2.2.5).
    NoStore,
    /// `private`: for one user, not a shared cache (§5.2.2.7).
    Private,
    /// The request had `Authorization` and the response did not allow
    /// sharing it with `public`, `s-maxage` or `must-revalidate` (§3.5).
    Authorization,
    /// `Vary: *`: no later request can ever match (§4.1).
    VaryStar,
    /// Nothing says how long it stays fresh, and it cannot be revalidated.
    NoFreshness,
}

/// What is kept about a stored response besides its status, header fields
/// and body (which the host keeps with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The request's values of the fields `Vary` names (lower-case names,
    /// the SHA-256 of each whitespace-normalized value; `None` where the
    /// request lacked one).
    pub vary: Vec<(String, Option<String>)>,
    /// When the response was received (`response_time`, §4.2.3).
    pub response_ms: u64,
    /// `corrected_initial_age` (§4.2.3), in seconds.
    pub initial_age_s: u64,
    /// Freshness lifetime (§4.2.1), in seconds.
    pub lifetime_s: u64,
}

impl Stored {
    /// `current_age` at `now_ms` (§4.2.3), in seconds: the value of the
    /// `Age` header a served copy must carry (§5.1).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        self.initial_age_s + now_ms.saturating_sub(self.response_ms) / 1000
    }
}

/// Whether a stored response can be revalidated (has a validator, §4.3.1).
pub fn has_validator(response: &HeaderMap) -> bool {
    response.contains_key(http::header::ETAG) || response.contains_key(http::header::LAST_MODIFIED)
}

/// The freshness lifetime of a response (§4.2.1), heuristics included (§4.2.2).
fn lifetime_s(status: u16, headers: &HeaderMap, d: &Directives, response_ms: u64) -> u64 {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return s;
    }
    let date = first(headers, "date").and_then(http_date_s).unwrap_or(response_ms / 1000);
    if let Some(expires) = first(headers, "expires") {
        // An invalid Expires (such as "0") means already expired (§5.3).
        return http_date_s(expires).map_or(0, |e| e.saturating_sub(date));
    }
    let heuristic_ok = HEURISTIC_STATUSES.contains(&status) || d.public;
    match first(headers, "last-modified").and_then(http_date_s) {
        Some(modified) if heuristic_ok => (date.saturating_sub(modified) / 10).min(HEURISTIC_MAX_S),
        _ => 0,
    }
}

/// `corrected_initial_age` (§4.2.3); an invalid `Age` counts as absent (§5.1).
fn initial_age_s(headers: &HeaderMap, request_ms: u64, response_ms: u64) -> u64 {
    let age_value = age_s(headers).unwrap_or(0);
    let date = first(headers, "date").and_then(http_date_s).unwrap_or(response_ms / 1000);
    let apparent_age = (response_ms / 1000).saturating_sub(date);
    let response_delay = response_ms.saturating_sub(request_ms) / 1000;
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// A request's value of a header named by `Vary` (§4.1), normalized (field
/// lines combined, whitespace around commas removed) and kept as its
/// SHA-256: only equality is asked of it, and the field may be a
/// credential (`Vary: Authorization`, `Cookie`) that no cache may hold.
fn vary_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let parts: Vec<&str> = lines.filter_map(|v| v.to_str().ok()).flat_map(split_list).collect();
    Some(crate::sha256_hex(&parts.join(",")))
}

/// What a response's own directives say about a shared cache keeping it:
/// not with `no-store` (§5.2.2.5) or `private` (§5.2.2.7), nor, for a
/// request that carried `Authorization`, without a directive that allows it
/// (§3.5).
fn shared_may_keep(d: &Directives, authorized: bool) -> Result<(), NotStorable> {
    if d.no_store {
        return Err(NotStorable::NoStore);
    }
    if d.private {
        return Err(NotStorable::Private);
    }
    if authorized && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    Ok(())
}

/// Decides whether the response to a request may be stored, and with what
/// metadata (RFC 9111 §3). `request` holds the header fields of the
/// request; `authorized` says whether it reached the origin with
/// `Authorization` (§3.5), which the caller knows and `request` may not
/// show: a client's own credentials may stay at the edge while the edge
/// adds a key of its own. `request_ms` is when the request was sent,
/// `response_ms` when the response head arrived.
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    authorized: bool,
    status: StatusCode,
    response: &HeaderMap,
    request_ms: u64,
    response_ms: u64,
) -> Result<Stored, NotStorable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotStorable::Method);
    }
    let code = status.as_u16();
    if !(200..600).contains(&code) || code == 206 || code == 304 {
        return Err(NotStorable::Status);
    }
    let req = request_directives(request);
    let d = response_directives(response);
    if req.no_store {
        return Err(NotStorable::NoStore);
    }
    shared_may_keep(&d, authorized)?;
    let mut vary = Vec::new();
    for name in values(response, "vary").flat_map(split_list) {
        if name == "*" {
            return Err(NotStorable::VaryStar);
        }
        let name = name.to_ascii_lowercase();
        let value = vary_value(request, &name);
        vary.push((name, value));
    }
    let explicit =
        d.public || d.max_age.is_some() || d.s_maxage.is_some() || response.contains_key(http::header::EXPIRES);
    if !explicit && !HEURISTIC_STATUSES.contains(&code) {
        return Err(NotStorable::Status);
    }
    let stored = Stored {
        vary,
        response_ms,
        initial_age_s: initial_age_s(response, request_ms, response_ms),
        lifetime_s: lifetime_s(code, response, &d, response_ms),
    };
    if stored.lifetime_s == 0 && !has_validator(response) && d.stale_if_error.is_none() {
        return Err(NotStorable::NoFreshness);
    }
    Ok(stored)
}

/// How a stale response must be revalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revalidate {
    /// Serve it now and revalidate in the background (`stale-while-revalidate`).
    InBackground,
    /// Revalidate before using it. `if_error`: if the origin cannot be
    /// reached or answers 5xx, the stale response may be served instead
    /// (`stale-if-error`).
    First {
        /// Whether an error may be answered with the stale response.
        if_error: bool,
    },
}

/// What a stored response is good for, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Serve it, with `Age: age_s`.
    Fresh {
        /// Current age in seconds.
        age_s: u64,
    },
    /// It may not be served as is.
    Stale {
        /// Current age in seconds.
        age_s: u64,
        /// What to do.
        revalidate: Revalidate,
    },
    /// It does not answer this request (`Vary` differs, §4.1).
    Miss,
}

/// Decides what a stored response (`response` its header fields, `stored`
/// its metadata) can do for a request (RFC 9111 §4).
pub fn lookup(request: &HeaderMap, response: &HeaderMap, stored: &Stored, now_ms: u64) -> Lookup {
    for (name, value) in &stored.vary {
        if vary_value(request, name) != *value {
            return Lookup::Miss;
        }
    }
    let req = request_directives(request);
    let d = response_directives(response);
    let age_s = stored.age_s(now_ms);
    let lifetime = stored.lifetime_s;
    // §5.2.2.2, §5.2.2.8, and §5.2.2.10: s-maxage implies proxy-revalidate.
    let no_stale = d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some();
    let if_error = |window: Option<u64>| !no_stale && window.is_some_and(|w| age_s < lifetime.saturating_add(w));
    let must_check = Revalidate::First { if_error: if_error(d.stale_if_error.or(req.stale_if_error)) };

    if req.no_cache || d.no_cache {
        // §5.2.1.4 and §5.2.2.4: validate before every use.
        return Lookup::Stale { age_s, revalidate: Revalidate::First { if_error: false } };
    }
    let too_old_for_client = req.max_age.is_some_and(|max| age_s > max);
    let fresh_enough = req.min_fresh.map_or(lifetime > age_s, |min| lifetime > age_s.saturating_add(min));
    if fresh_enough && !too_old_for_client {
        return Lookup::Fresh { age_s };
    }
    if too_old_for_client {
        return Lookup::Stale { age_s, revalidate: must_check };
    }
    // The client accepts staleness (§5.2.1.2) unless the response forbids it.
    let stale_by = age_s.saturating_sub(lifetime);
    if !no_stale && req.max_stale.is_some_and(|limit| limit.is_none_or(|l| stale_by <= l)) {
        return Lookup::Fresh { age_s };
    }
    if !no_stale && d.stale_while_revalidate.is_some_and(|w| age_s < lifetime.saturating_add(w)) {
        return Lookup::Stale { age_s, revalidate: Revalidate::InBackground };
    }
    Lookup::Stale { age_s, revalidate: must_check }
}

/// The header fields of a conditional request revalidating a stored
/// response (§4.3.1): `If-None-Match` from its `ETag`, `If-Modified-Since`
/// from its `Last-Modified`.
pub fn conditional_headers(response: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(etag) = response.get(http::header::ETAG) {
        out.push((http::header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(modified) = response.get(http::header::LAST_MODIFIED) {
        out.push((http::header::IF_MODIFIED_SINCE, modified.clone()));
    }
    out
}

/// Updates a stored response with a `304 Not Modified` (§4.3.4): its header
/// fields replace the stored ones in `response` (except those §3.2
/// excludes), and age and freshness start again from this response, sent at
/// `request_ms` and received at `response_ms`. Whether a shared cache may
/// still keep it (`authorized`: the request carried `Authorization`): a
/// `304` may make it `private` or `no-store`.
pub fn freshen(
    stored: &mut Stored,
    status: StatusCode,
    response: &mut HeaderMap,
    not_modified: &HeaderMap,
    authorized: bool,
    (request_ms, response_ms): (u64, u64),
) -> bool {
    for name in not_modified.keys() {
        if replaced_by_304(name.as_str()) {
            response.remove(name);
        }
    }
    for (name, value) in not_modified {
        if replaced_by_304(name.as_str()) {
            response.append(name, value.clone());
        }
    }
    let d = response_directives(response);
    stored.response_ms = response_ms;
    stored.initial_age_s = initial_age_s(not_modified, request_ms, response_ms);
    stored.lifetime_s = lifetime_s(status.as_u16(), response, &d, response_ms);
    shared_may_keep(&d, authorized).is_ok()
}

/// The URIs whose stored responses a response to an unsafe request
/// invalidates (§4.4): the target URI, and the `Location` and
/// `Content-Location` URIs when they are on the same origin. Nothing for
/// safe methods or for error responses.
pub fn invalidated(
    method: &Method,
    status: StatusCode,
    origin: &str,
    target: &str,
    response: &HeaderMap,
) -> Vec<String> {
    if method.is_safe() || !(200..400).contains(&status.as_u16()) {
        return Vec::new();
    }
    let mut out = vec![format!("{origin}{target}")];
    for name in ["location", "content-location"] {
        let Some(uri) = first(response, name) else { continue };
        let absolute = if uri.starts_with('/') { format!("{origin}{uri}") } else { uri.to_string() };
        // Only the same origin: another host's resources are not ours to drop.
        if absolute.starts_with(origin) && absolute[origin.len()..].starts_with('/') && !out.contains(&absolute) {
            out.push(absolute);
        }
    }
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
