//! Answers that do not stream from an origin: the router's own (`Respond`),
//! errors a host meets before the router sees a request, and answers from
//! the cache, with their `Age`, tokens saved and explanation, and what a
//! client's conditional or range request gets of them.

use bytes::Bytes;
use edge_cache::conditional::{NOT_MODIFIED_FIELDS, Ranged, not_modified, ranged};
use edge_router::error::{RouterError, kind_of_body};
use edge_router::geo::{Country, country_label};
use edge_router::wire::{CacheStatus, Explain, Header};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::entry::{Cached, Entry};
use crate::explain::set_explanation;
use crate::record::ErrorKind;

/// The router's `Respond` action (or any answer of the router's shape) as a
/// response. An error's kind goes with it as an extension
/// ([`ErrorKind`]), for the request's record.
pub fn respond(status: u16, headers: &[Header], body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status >= 400
        && let Some(kind) = kind_of_body(response.body())
    {
        response.extensions_mut().insert(ErrorKind(kind));
    }
    let map = response.headers_mut();
    for h in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(&h.value)) {
            map.insert(n, v);
        }
    }
    response
}

/// An error a host answers itself for request `id` (before or without the
/// router). The host logs an internal error's detail itself.
pub fn host_error(error: &RouterError, country: Option<Country>, id: u64) -> Response<Bytes> {
    let explain = Explain::router("-", 0, country_label(country));
    let (status, headers, body) = error.to_response(id, explain.headers());
    respond(status, &headers, body)
}

/// Whether a response of `status` to `method` has no body to pass on.
pub fn bodiless(method: &Method, status: StatusCode) -> bool {
    method == Method::HEAD || status.is_informational() || matches!(status.as_u16(), 204 | 205 | 304)
}

/// Which part of a stored body an answer from the cache carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it.
    Whole,
    /// Bytes `start..=end`.
    Range {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// None (a `HEAD`, a `304`, a `416`, a status without a body).
    Empty,
}

impl Part {
    /// The part of `body`.
    pub fn of(self, body: &Bytes) -> Bytes {
        let len = body.len() as u64;
        match self {
            Self::Whole => body.clone(),
            Self::Range { start, end } if start <= end && end < len => body.slice(start as usize..=end as usize),
            Self::Range { .. } | Self::Empty => Bytes::new(),
        }
    }
}

/// An answer from the cache, without its body.
#[derive(Debug)]
pub struct FromCache {
    /// Status: the stored one, or `304`, `206` or `416`.
    pub status: StatusCode,
    /// Header fields.
    pub headers: HeaderMap,
    /// What of the stored body goes.
    pub part: Part,
}

/// The answer a request gets from stored `entry` (whose body has `len`
/// bytes), `age_s` old, with `explain` (the node and model are the
/// entry's own) and `cache` as its `x-edge-cache`. An RFC 9111 entry also
/// answers the client's own conditional request (`304`) and one byte range
/// (`206`, or `416`). A `HEAD` gets the head a `GET` would, with the
/// `Content-Length` of the body it leaves out.
pub fn from_cache(
    entry: &Entry,
    len: u64,
    explain: &Explain,
    cache: CacheStatus,
    age_s: u64,
    method: &Method,
    request: &HeaderMap,
) -> FromCache {
    let explain = Explain { node: entry.node.clone(), model: entry.model.clone(), cache, ..explain.clone() };
    let mut status = entry.status;
    let mut part = if bodiless(method, status) { Part::Empty } else { Part::Whole };
    let mut headers = entry.headers.clone();
    if let Some(stored) = &entry.http {
        if not_modified(method, request, &entry.headers, stored.response_ms) {
            status = StatusCode::NOT_MODIFIED;
            part = Part::Empty;
            let other: Vec<HeaderName> =
                headers.keys().filter(|n| !NOT_MODIFIED_FIELDS.contains(&n.as_str())).cloned().collect();
            for name in other {
                headers.remove(name);
            }
        } else {
            let range = ranged(method, request, entry.status, &entry.headers, len);
            if let Some(value) = range.content_range(len).and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(http::header::CONTENT_RANGE, value);
            }
            status = if range == Ranged::Whole { status } else { range.status() };
            part = match range {
                Ranged::Whole => part,
                Ranged::Part { start, end } => Part::Range { start, end },
                Ranged::Unsatisfiable => Part::Empty,
            };
            if range != Ranged::Unsatisfiable {
                headers.insert(http::header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
        }
    }
    if method == Method::HEAD && status == entry.status {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    set_explanation(&mut headers, &explain);
    headers.insert(http::header::AGE, HeaderValue::from(age_s));
    if entry.http.is_none() {
        let saved = HeaderName::from_static(edge_router::error::headers::TOKENS_SAVED);
        headers.insert(saved, HeaderValue::from(entry.tokens));
    }
    FromCache { status, headers, part }
}

/// The answer a request gets from `cached` (its body in memory), `age_s`
/// old, with `explain` and `cache` as its `x-edge-cache`: [`from_cache`]
/// with the part of the body it carries.
pub fn serve(
    cached: &Cached,
    explain: &Explain,
    cache: CacheStatus,
    age_s: u64,
    request: &http::request::Parts,
) -> Response<Bytes> {
    let len = cached.body.len() as u64;
    let answer = from_cache(&cached.entry, len, explain, cache, age_s, &request.method, &request.headers);
    let mut response = Response::new(answer.part.of(&cached.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    response
}

/// The explanation of a stale entry answering for a request the router
/// refused or failed (`stale-if-error`) with no attempt of its own.
pub fn stale_explain(entry: &Entry, country: Option<Country>) -> Explain {
    Explain {
        node: entry.node.clone(),
        rule: "passthrough".into(),
        attempts: 0,
        country: country_label(country),
        model: None,
        difficulty: None,
        cache: CacheStatus::Stale,
        panic: false,
        ratelimit: Default::default(),
    }
}

/// Whether an error answer of `status` (the router's own, or an origin's)
/// may be replaced by a stale entry whose `stale-if-error` allows it: a 5xx.
pub fn stale_may_answer(status: u16) -> bool {
    (500..600).contains(&status)
}

#[cfg(test)]
mod tests;
