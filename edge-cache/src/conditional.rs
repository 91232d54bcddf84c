//! What a client's own conditional and range requests get from a stored
//! response, without going to the origin: a `304 Not Modified` when its
//! `If-None-Match` or `If-Modified-Since` says it already has the
//! representation (RFC 9111 §4.3.2, RFC 9110 §13.2.2), and one byte range
//! of a stored complete `200` as a `206 Partial Content` (RFC 9110 §14).

use http::{HeaderMap, Method, StatusCode};

use crate::directives::split_list;
use crate::fields::{first, http_date_s, values};

/// Whether a client's conditional `GET` or `HEAD` is answered with a `304`
/// by a stored response with header fields `stored` (received at
/// `received_ms`), as a cache evaluates it (RFC 9111 §4.3.2):
/// `If-None-Match` when present (weak comparison, `*` matches any stored
/// response), else `If-Modified-Since` against the stored `Last-Modified`,
/// else its `Date`, else when it was received. `If-Match` and
/// `If-Unmodified-Since` only apply to an origin server and are left alone.
pub fn not_modified(method: &Method, request: &HeaderMap, stored: &HeaderMap, received_ms: u64) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if request.contains_key(http::header::IF_NONE_MATCH) {
        let etag = first(stored, "etag").map(opaque_tag);
        return values(request, "if-none-match").flat_map(split_list).any(|t| t == "*" || Some(opaque_tag(t)) == etag);
    }
    // An invalid date, or more than one, is ignored (RFC 9110 §13.1.3).
    let mut since = values(request, "if-modified-since");
    let (Some(text), None) = (since.next(), since.next()) else { return false };
    let Some(since_s) = http_date_s(text) else { return false };
    let modified_s = first(stored, "last-modified")
        .or_else(|| first(stored, "date"))
        .and_then(http_date_s)
        .unwrap_or(received_ms / 1000);
    modified_s <= since_s
}

/// An entity tag without its weakness indicator, for weak comparison
/// (RFC 9110 §8.8.3.2).
fn opaque_tag(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Header fields a `304` carries from the stored response (RFC 9110
/// §15.4.5): those a `200` would have sent and that guide cache updates.
/// `Last-Modified` goes too: without an `ETag` it is the only validator.
pub const NOT_MODIFIED_FIELDS: [&str; 7] =
    ["cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"];

/// What a `GET` gets of a stored complete response of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole representation, as a `200`: no `Range`, one this cache
    /// does not serve (another unit, several ranges, bad syntax), an
    /// `If-Range` that does not match, or a stored status other than `200`.
    Whole,
    /// Bytes `start..=end` of it, as a `206` with `Content-Range`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// A `416` with `Content-Range: bytes */len`: the one range asked for
    /// starts past the end.
    Unsatisfiable,
}

impl Ranged {
    /// The status a response of this kind has.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Whole => StatusCode::OK,
            Self::Part { .. } => StatusCode::PARTIAL_CONTENT,
            Self::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    /// The `Content-Range` value of a response of this kind, for a
    /// representation of `len` bytes.
    pub fn content_range(self, len: u64) -> Option<String> {
        match self {
            Self::Whole => None,
            Self::Part { start, end } => Some(format!("bytes {start}-{end}/{len}")),
            Self::Unsatisfiable => Some(format!("bytes */{len}")),
        }
    }
}

/// Which part of a stored response (status `status`, header fields
/// `stored`, `len` bytes) answers a request's `Range` (RFC 9110 §14.2).
/// Only `GET` has range semantics, and only one `bytes` range is served;
/// anything else gets the whole representation, which §14.2 allows.
pub fn ranged(method: &Method, request: &HeaderMap, status: StatusCode, stored: &HeaderMap, len: u64) -> Ranged {
    if method != Method::GET || status != StatusCode::OK {
        return Ranged::Whole;
    }
    let mut lines = values(request, "range");
    let (Some(range), None) = (lines.next(), lines.next()) else { return Ranged::Whole };
    if !if_range_holds(request, stored) {
        return Ranged::Whole;
    }
    let Some((unit, set)) = range.split_once('=') else { return Ranged::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Whole;
    }
    let specs = split_list(set);
    let [spec] = specs.as_slice() else { return Ranged::Whole };
    let Some((first_pos, last_pos)) = spec.split_once('-') else { return Ranged::Whole };
    let digits = |t: &str| (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<u64>().ok());
    match (first_pos.trim(), last_pos.trim()) {
        // `-N`: the last N bytes (a suffix of zero is unsatisfiable).
        ("", suffix) => match digits(suffix) {
            Some(Some(n)) if n > 0 && len > 0 => Ranged::Part { start: len.saturating_sub(n), end: len - 1 },
            Some(Some(_)) => Ranged::Unsatisfiable,
            _ => Ranged::Whole,
        },
        (from, to) => {
            let Some(Some(start)) = digits(from) else { return Ranged::Whole };
            let end = match to {
                "" => None,
                to => match digits(to) {
                    Some(Some(end)) if end >= start => Some(end),
                    // A last position before the first is invalid: ignored.
                    _ => return Ranged::Whole,
                },
            };
            if start >= len {
                return Ranged::Unsatisfiable;
            }
            Ranged::Part { start, end: end.map_or(len - 1, |e| e.min(len - 1)) }
        }
    }
}

/// Whether a request's `If-Range` (if any) names the stored representation
/// (RFC 9110 §13.1.5): an entity tag by strong comparison, or the exact
/// `Last-Modified` date.
fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = first(request, "if-range").map(str::trim) else { return true };
    if condition.starts_with('"') {
        return first(stored, "etag").map(str::trim) == Some(condition);
    }
    if condition.starts_with("W/") {
        return false;
    }
    match (http_date_s(condition), first(stored, "last-modified").and_then(http_date_s)) {
        (Some(asked), Some(modified)) => asked == modified,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::h;

    const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const LATER: &str = "Mon, 07 Nov 1994 08:49:37 GMT";
    const EARLIER: &str = "Sat, 05 Nov 1994 08:49:37 GMT";

    #[test]
    fn rfc9110_13_1_2_if_none_match_compares_weakly_and_star_matches() {
        let stored = h(&[("etag", "W/\"v1\""), ("last-modified", MODIFIED)]);
        let get = |pairs: &[(&str, &str)]| not_modified(&Method::GET, &h(pairs), &stored, 0);
        assert!(get(&[("if-none-match", "\"v1\"")]), "weak comparison ignores W/");
        assert!(get(&[("if-none-match", "\"x\", W/\"v1\"")]), "any tag of the list");
        assert!(get(&[("if-none-match", "*")]));
        assert!(!get(&[("if-none-match", "\"v2\"")]));
        // If-None-Match takes precedence over If-Modified-Since (§13.2.2).
        assert!(!get(&[("if-none-match", "\"v2\""), ("if-modified-since", LATER)]));
        assert!(!not_modified(&Method::POST, &h(&[("if-none-match", "*")]), &stored, 0), "GET and HEAD only");
        assert!(not_modified(&Method::HEAD, &h(&[("if-none-match", "\"v1\"")]), &stored, 0));
    }

    #[test]
    fn rfc9111_4_3_2_if_modified_since_uses_last_modified_then_date_then_receipt() {
        let stored = h(&[("last-modified", MODIFIED)]);
        let ims = |date: &str, stored: &HeaderMap| {
            not_modified(&Method::GET, &h(&[("if-modified-since", date)]), stored, 784_111_777_000)
        };
        assert!(ims(MODIFIED, &stored) && ims(LATER, &stored));
        assert!(!ims(EARLIER, &stored));
        assert!(!ims("not a date", &stored), "an invalid date is ignored (§13.1.3)");
        assert!(ims(LATER, &h(&[("date", MODIFIED)])), "no Last-Modified: its Date");
        assert!(!ims(EARLIER, &HeaderMap::new()), "neither: when it was received");
        assert!(ims(MODIFIED, &HeaderMap::new()));
        let twice = h(&[("if-modified-since", LATER), ("if-modified-since", LATER)]);
        assert!(!not_modified(&Method::GET, &twice, &stored, 0), "a list is not a date");
    }

    #[test]
    fn rfc9110_14_1_2_one_byte_range_is_served_as_partial_content() {
        let stored = h(&[("etag", "\"v1\""), ("last-modified", MODIFIED)]);
        let range = |value: &str| ranged(&Method::GET, &h(&[("range", value)]), StatusCode::OK, &stored, 1000);
        assert_eq!(range("bytes=0-499"), Ranged::Part { start: 0, end: 499 });
        assert_eq!(range("bytes=500-"), Ranged::Part { start: 500, end: 999 });
        assert_eq!(range("bytes=-100"), Ranged::Part { start: 900, end: 999 });
        assert_eq!(range("bytes=-5000"), Ranged::Part { start: 0, end: 999 }, "a suffix longer than all");
        assert_eq!(range("bytes=900-5000"), Ranged::Part { start: 900, end: 999 }, "the end is clipped");
        assert_eq!(range("Bytes = 1-2"), Ranged::Part { start: 1, end: 2 });
        assert_eq!(range("bytes=1000-"), Ranged::Unsatisfiable);
        assert_eq!(range("bytes=-0"), Ranged::Unsatisfiable);
        for whole in ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes", "bytes=-"] {
            assert_eq!(range(whole), Ranged::Whole, "{whole}");
        }
        assert_eq!(Ranged::Part { start: 0, end: 499 }.content_range(1000).as_deref(), Some("bytes 0-499/1000"));
        assert_eq!(Ranged::Unsatisfiable.content_range(1000).as_deref(), Some("bytes */1000"));
    }

    #[test]
    fn rfc9110_14_2_only_get_of_a_stored_200_is_ranged() {
        let stored = h(&[("etag", "\"v1\"")]);
        let req = h(&[("range", "bytes=0-1")]);
        assert_eq!(ranged(&Method::HEAD, &req, StatusCode::OK, &stored, 10), Ranged::Whole);
        assert_eq!(ranged(&Method::GET, &req, StatusCode::NOT_FOUND, &stored, 10), Ranged::Whole);
        assert_eq!(ranged(&Method::GET, &HeaderMap::new(), StatusCode::OK, &stored, 10), Ranged::Whole);
    }

    #[test]
    fn rfc9110_13_1_5_if_range_needs_a_strong_match() {
        let stored = h(&[("etag", "\"v1\""), ("last-modified", MODIFIED)]);
        let with = |cond: &str| {
            ranged(&Method::GET, &h(&[("range", "bytes=0-1"), ("if-range", cond)]), StatusCode::OK, &stored, 10)
        };
        assert_eq!(with("\"v1\""), Ranged::Part { start: 0, end: 1 });
        assert_eq!(with(MODIFIED), Ranged::Part { start: 0, end: 1 });
        for stale in ["\"v0\"", "W/\"v1\"", LATER, "garbage"] {
            assert_eq!(with(stale), Ranged::Whole, "{stale}");
        }
    }
}
