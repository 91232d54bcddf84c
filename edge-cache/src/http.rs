//! HTTP caching for `GET` and `HEAD` as a shared cache (RFC 9111), with
//! `CDN-Cache-Control` (RFC 9213) and `stale-while-revalidate` /
//! `stale-if-error` (RFC 5861).
//!
//! Decisions are data: [`storable`] says whether (and with what metadata) a
//! response may be stored, [`lookup`] whether a stored one is fresh, stale
//! (and how to revalidate) or unusable. Time is passed in as milliseconds
//! since the Unix epoch; nothing here reads a clock.

use crate::directives::{Directives, split_list};

/// Header fields: lower-case name and value, in message order.
pub type Headers = [(String, String)];

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

/// Values of every field line named `name`.
fn values<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn first<'a>(headers: &'a Headers, name: &'a str) -> Option<&'a str> {
    values(headers, name).next()
}

/// An HTTP date as seconds since the epoch (RFC 9110 §5.6.7).
fn date_s(text: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The directives this cache obeys: `CDN-Cache-Control` when the response
/// has it (RFC 9213 §2.1), else `Cache-Control`.
pub fn response_directives(headers: &Headers) -> Directives {
    let cdn = Directives::parse(values(headers, "cdn-cache-control"));
    if values(headers, "cdn-cache-control").next().is_some() {
        return cdn;
    }
    Directives::parse(values(headers, "cache-control"))
}

/// The directives of a request, with `Pragma: no-cache` read as `no-cache`
/// when there is no `Cache-Control` (RFC 9111 §5.4).
fn request_directives(headers: &Headers) -> Directives {
    let mut d = Directives::parse(values(headers, "cache-control"));
    if values(headers, "cache-control").next().is_none()
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
    /// Not a final, complete response the cache understands (§3).
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

/// What is kept about a stored response besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Status code.
    pub status: u16,
    /// Response header fields as stored.
    pub headers: Vec<(String, String)>,
    /// The request's values of the fields `Vary` names (lower-case names,
    /// whitespace-normalized values; `None` where the request lacked one).
    pub vary: Vec<(String, Option<String>)>,
    /// When the response was received (`response_time`, §4.2.3).
    pub response_ms: u64,
    /// `corrected_initial_age` (§4.2.3), in seconds.
    pub initial_age_s: u64,
    /// Freshness lifetime (§4.2.1), in seconds.
    pub lifetime_s: u64,
}

impl Stored {
    /// The response's directives.
    pub fn directives(&self) -> Directives {
        response_directives(&self.headers)
    }

    /// `current_age` at `now_ms` (§4.2.3), in seconds: the value of the
    /// `Age` header a served copy must carry (§5.1).
    pub fn age_s(&self, now_ms: u64) -> u64 {
        self.initial_age_s + now_ms.saturating_sub(self.response_ms) / 1000
    }

    /// Whether it can be revalidated (has a validator, §4.3.1).
    pub fn has_validator(&self) -> bool {
        first(&self.headers, "etag").is_some() || first(&self.headers, "last-modified").is_some()
    }
}

/// The freshness lifetime of a response (§4.2.1), heuristics included (§4.2.2).
fn lifetime_s(status: u16, headers: &Headers, d: &Directives, response_ms: u64) -> u64 {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return s;
    }
    let date = first(headers, "date").and_then(date_s).unwrap_or(response_ms / 1000);
    if let Some(expires) = first(headers, "expires") {
        // An invalid Expires (such as "0") means already expired (§5.3).
        return date_s(expires).map_or(0, |e| e.saturating_sub(date));
    }
    let heuristic_ok = HEURISTIC_STATUSES.contains(&status) || d.public;
    match first(headers, "last-modified").and_then(date_s) {
        Some(modified) if heuristic_ok => (date.saturating_sub(modified) / 10).min(HEURISTIC_MAX_S),
        _ => 0,
    }
}

/// `corrected_initial_age` (§4.2.3).
fn initial_age_s(headers: &Headers, request_ms: u64, response_ms: u64) -> u64 {
    let age_value = first(headers, "age").and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
    let date = first(headers, "date").and_then(date_s).unwrap_or(response_ms / 1000);
    let apparent_age = (response_ms / 1000).saturating_sub(date);
    let response_delay = response_ms.saturating_sub(request_ms) / 1000;
    apparent_age.max(age_value + response_delay)
}

/// Normalizes a request's value of a header named by `Vary` (§4.1): field
/// lines combined, whitespace around commas removed.
fn vary_value(headers: &Headers, name: &str) -> Option<String> {
    let parts: Vec<&str> = values(headers, name).flat_map(split_list).collect();
    (values(headers, name).next().is_some()).then(|| parts.join(","))
}

/// Decides whether the response to a request may be stored, and with what
/// metadata (RFC 9111 §3). `request_ms` is when the request was sent,
/// `response_ms` when the response head arrived.
pub fn storable(
    method: &str,
    request: &Headers,
    status: u16,
    response: &Headers,
    request_ms: u64,
    response_ms: u64,
) -> Result<Stored, NotStorable> {
    if !matches!(method, "GET" | "HEAD") {
        return Err(NotStorable::Method);
    }
    if !(200..600).contains(&status) || status == 206 || status == 304 {
        return Err(NotStorable::Status);
    }
    let req = request_directives(request);
    let d = response_directives(response);
    if req.no_store || d.no_store {
        return Err(NotStorable::NoStore);
    }
    if d.private {
        return Err(NotStorable::Private);
    }
    if first(request, "authorization").is_some() && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    let mut vary = Vec::new();
    for name in values(response, "vary").flat_map(split_list) {
        if name == "*" {
            return Err(NotStorable::VaryStar);
        }
        let name = name.to_ascii_lowercase();
        let value = vary_value(request, &name);
        vary.push((name, value));
    }
    let explicit = d.public || d.max_age.is_some() || d.s_maxage.is_some() || first(response, "expires").is_some();
    if !explicit && !HEURISTIC_STATUSES.contains(&status) {
        return Err(NotStorable::Status);
    }
    let stored = Stored {
        status,
        headers: response.to_vec(),
        vary,
        response_ms,
        initial_age_s: initial_age_s(response, request_ms, response_ms),
        lifetime_s: lifetime_s(status, response, &d, response_ms),
    };
    if stored.lifetime_s == 0 && !stored.has_validator() && d.stale_if_error.is_none() {
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

/// Decides what `stored` can do for a request (RFC 9111 §4).
pub fn lookup(request: &Headers, stored: &Stored, now_ms: u64) -> Lookup {
    for (name, value) in &stored.vary {
        if vary_value(request, name) != *value {
            return Lookup::Miss;
        }
    }
    let req = request_directives(request);
    let d = stored.directives();
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

/// The header fields of a conditional request revalidating `stored`
/// (§4.3.1): `If-None-Match` from its `ETag`, `If-Modified-Since` from its
/// `Last-Modified`.
pub fn conditional_headers(stored: &Stored) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(etag) = first(&stored.headers, "etag") {
        out.push(("if-none-match".to_string(), etag.to_string()));
    }
    if let Some(modified) = first(&stored.headers, "last-modified") {
        out.push(("if-modified-since".to_string(), modified.to_string()));
    }
    out
}

/// Updates `stored` with a `304 Not Modified` (§4.3.4): its header fields
/// replace the stored ones (except those §3.2 excludes), and age and
/// freshness start again from this response.
pub fn freshen(stored: &mut Stored, not_modified: &Headers, request_ms: u64, response_ms: u64) {
    for (name, _) in not_modified {
        if replaced_by_304(name) {
            stored.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }
    for (name, value) in not_modified {
        if replaced_by_304(name) {
            stored.headers.push((name.clone(), value.clone()));
        }
    }
    let d = stored.directives();
    stored.response_ms = response_ms;
    stored.initial_age_s = initial_age_s(not_modified, request_ms, response_ms);
    stored.lifetime_s = lifetime_s(stored.status, &stored.headers, &d, response_ms);
}

/// The URIs whose stored responses a response to an unsafe request
/// invalidates (§4.4): the target URI, and the `Location` and
/// `Content-Location` URIs when they are on the same origin. Nothing for
/// safe methods or for error responses.
pub fn invalidated(method: &str, status: u16, origin: &str, target: &str, response: &Headers) -> Vec<String> {
    if matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE") || !(200..400).contains(&status) {
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
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn date(ms: u64) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    fn store(response: &[(&str, &str)]) -> Result<Stored, NotStorable> {
        storable("GET", &[], 200, &h(response), NOW, NOW)
    }

    #[test]
    fn rfc9111_4_2_1_s_maxage_beats_max_age_beats_expires() {
        let d = date(NOW);
        let expires = date(NOW + 500_000);
        let s = store(&[("cache-control", "max-age=60, s-maxage=30"), ("date", &d), ("expires", &expires)]);
        assert_eq!(s.map(|s| s.lifetime_s), Ok(30));
        let s = store(&[("cache-control", "max-age=60"), ("date", &d), ("expires", &expires)]);
        assert_eq!(s.map(|s| s.lifetime_s), Ok(60));
        let s = store(&[("date", &d), ("expires", &expires)]);
        assert_eq!(s.map(|s| s.lifetime_s), Ok(500));
    }

    #[test]
    fn rfc9111_5_3_an_invalid_expires_means_already_expired() {
        let s = store(&[("expires", "0"), ("etag", "\"v1\"")]).expect("storable: it has a validator");
        assert_eq!(s.lifetime_s, 0);
        assert!(matches!(lookup(&[], &s, NOW), Lookup::Stale { .. }));
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_freshness_only_without_explicit_expiry() {
        let d = date(NOW);
        let modified = date(NOW - 100_000_000);
        let s = store(&[("date", &d), ("last-modified", &modified)]);
        assert_eq!(s.map(|s| s.lifetime_s), Ok(10_000), "10% of the time since last modification");
        // A status that is not heuristically cacheable gets no heuristic freshness (§4.2.2).
        let not = storable("GET", &[], 302, &h(&[("date", &d), ("last-modified", &modified)]), NOW, NOW);
        assert_eq!(not, Err(NotStorable::Status));
        let long = date(NOW - 10_000_000_000);
        assert_eq!(store(&[("date", &d), ("last-modified", &long)]).map(|s| s.lifetime_s), Ok(HEURISTIC_MAX_S));
    }

    #[test]
    fn rfc9111_4_2_3_age_counts_upstream_age_delay_and_residence() {
        let d = date(NOW - 5_000);
        let s = storable(
            "GET",
            &[],
            200,
            &h(&[("cache-control", "max-age=100"), ("date", &d), ("age", "3")]),
            NOW - 2_000,
            NOW,
        )
        .expect("storable");
        // apparent age 5; corrected age value 3 + 2 s of delay = 5; initial age 5.
        assert_eq!(s.initial_age_s, 5);
        assert_eq!(s.age_s(NOW + 10_000), 15);
        assert_eq!(lookup(&[], &s, NOW + 10_000), Lookup::Fresh { age_s: 15 });
        assert!(matches!(lookup(&[], &s, NOW + 96_000), Lookup::Stale { age_s: 101, .. }));
    }

    #[test]
    fn rfc9111_3_no_store_private_and_unknown_methods_are_not_stored() {
        assert_eq!(store(&[("cache-control", "no-store, max-age=60")]), Err(NotStorable::NoStore));
        let req = h(&[("cache-control", "no-store")]);
        assert_eq!(
            storable("GET", &req, 200, &h(&[("cache-control", "max-age=60")]), NOW, NOW),
            Err(NotStorable::NoStore)
        );
        assert_eq!(store(&[("cache-control", "private, max-age=60")]), Err(NotStorable::Private));
        assert_eq!(
            storable("POST", &[], 200, &h(&[("cache-control", "max-age=60")]), NOW, NOW),
            Err(NotStorable::Method)
        );
        assert_eq!(
            storable("GET", &[], 206, &h(&[("cache-control", "max-age=60")]), NOW, NOW),
            Err(NotStorable::Status)
        );
        assert_eq!(store(&[]), Err(NotStorable::NoFreshness), "a 200 with nothing to go on is useless stored");
    }

    #[test]
    fn rfc9111_3_5_authorized_requests_need_explicit_permission() {
        let req = h(&[("authorization", "Bearer x")]);
        let plain = h(&[("cache-control", "max-age=60")]);
        assert_eq!(storable("GET", &req, 200, &plain, NOW, NOW), Err(NotStorable::Authorization));
        for allowed in ["public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"] {
            let resp = h(&[("cache-control", allowed)]);
            assert!(storable("GET", &req, 200, &resp, NOW, NOW).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn rfc9111_4_1_vary_matches_normalized_values_and_vary_star_never_matches() {
        let req = h(&[("accept-language", "en, de"), ("x-other", "1")]);
        let resp = h(&[("cache-control", "max-age=60"), ("vary", "Accept-Language, Accept-Encoding")]);
        let s = storable("GET", &req, 200, &resp, NOW, NOW).expect("storable");
        assert_eq!(lookup(&h(&[("accept-language", "en,de")]), &s, NOW), Lookup::Fresh { age_s: 0 });
        assert_eq!(lookup(&h(&[("accept-language", "fr")]), &s, NOW), Lookup::Miss);
        let with_encoding = h(&[("accept-language", "en, de"), ("accept-encoding", "gzip")]);
        assert_eq!(lookup(&with_encoding, &s, NOW), Lookup::Miss, "absent must match absent");
        let star = h(&[("cache-control", "max-age=60"), ("vary", "*")]);
        assert_eq!(storable("GET", &req, 200, &star, NOW, NOW), Err(NotStorable::VaryStar));
    }

    #[test]
    fn rfc9111_5_2_no_cache_in_request_or_response_means_validate_first() {
        let s = store(&[("cache-control", "max-age=60")]).expect("storable");
        let no_cache = Lookup::Stale { age_s: 0, revalidate: Revalidate::First { if_error: false } };
        assert_eq!(lookup(&h(&[("cache-control", "no-cache")]), &s, NOW), no_cache);
        assert_eq!(lookup(&h(&[("pragma", "no-cache")]), &s, NOW), no_cache, "§5.4 Pragma without Cache-Control");
        let s = store(&[("cache-control", "no-cache, max-age=60"), ("etag", "\"a\"")]).expect("storable");
        assert_eq!(lookup(&[], &s, NOW), no_cache);
    }

    #[test]
    fn rfc9111_5_2_1_request_max_age_min_fresh_and_max_stale() {
        let s = store(&[("cache-control", "max-age=60")]).expect("storable");
        let later = NOW + 30_000;
        assert!(matches!(lookup(&h(&[("cache-control", "max-age=10")]), &s, later), Lookup::Stale { .. }));
        assert!(matches!(lookup(&h(&[("cache-control", "min-fresh=40")]), &s, later), Lookup::Stale { .. }));
        let stale = NOW + 70_000;
        assert_eq!(lookup(&h(&[("cache-control", "max-stale=20")]), &s, stale), Lookup::Fresh { age_s: 70 });
        assert!(matches!(lookup(&h(&[("cache-control", "max-stale=5")]), &s, stale), Lookup::Stale { .. }));
    }

    #[test]
    fn rfc5861_stale_while_revalidate_and_stale_if_error_windows() {
        let s = store(&[("cache-control", "max-age=10, stale-while-revalidate=20, stale-if-error=100")]).expect("ok");
        let at = |s_after: u64| NOW + s_after * 1000;
        assert_eq!(lookup(&[], &s, at(15)), Lookup::Stale { age_s: 15, revalidate: Revalidate::InBackground });
        let check = |if_error| Revalidate::First { if_error };
        assert_eq!(lookup(&[], &s, at(50)), Lookup::Stale { age_s: 50, revalidate: check(true) });
        assert_eq!(lookup(&[], &s, at(200)), Lookup::Stale { age_s: 200, revalidate: check(false) });
    }

    #[test]
    fn rfc9111_5_2_2_2_must_revalidate_and_s_maxage_forbid_serving_stale() {
        for cc in [
            "max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60",
            "max-age=10, proxy-revalidate, stale-if-error=60",
            "s-maxage=10, stale-while-revalidate=60",
        ] {
            let s = store(&[("cache-control", cc)]).expect("storable");
            let l = lookup(&h(&[("cache-control", "max-stale")]), &s, NOW + 20_000);
            assert_eq!(l, Lookup::Stale { age_s: 20, revalidate: Revalidate::First { if_error: false } }, "{cc}");
        }
    }

    #[test]
    fn rfc9213_cdn_cache_control_takes_precedence_over_cache_control() {
        let s = store(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=120")]).expect("storable");
        assert_eq!(s.lifetime_s, 120);
        assert_eq!(
            store(&[("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")]),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn rfc9111_4_3_conditional_requests_and_304_freshening() {
        let d = date(NOW);
        let mut s = store(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("last-modified", &d),
            ("content-length", "42"),
            ("x-version", "1"),
        ])
        .expect("storable");
        assert_eq!(
            conditional_headers(&s),
            h(&[("if-none-match", "\"v1\""), ("if-modified-since", &d)]),
            "§4.3.1 validators"
        );
        let later = NOW + 60_000;
        assert!(matches!(lookup(&[], &s, later), Lookup::Stale { .. }));
        let d2 = date(later);
        let not_modified =
            h(&[("cache-control", "max-age=30"), ("x-version", "2"), ("date", &d2), ("content-length", "0")]);
        freshen(&mut s, &not_modified, later, later);
        assert_eq!(lookup(&[], &s, later + 5_000), Lookup::Fresh { age_s: 5 }, "§4.3.4 freshness restarts");
        let value = |n: &str| s.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!((value("x-version"), value("content-length")), (Some("2"), Some("42")), "§3.2 header update");
        assert_eq!(s.headers.iter().filter(|(k, _)| k == "cache-control").count(), 1);
    }

    #[test]
    fn rfc9111_4_4_unsafe_methods_invalidate_the_target_and_same_origin_locations() {
        let resp = h(&[("location", "/items/7"), ("content-location", "https://elsewhere.example/x")]);
        let uris = invalidated("POST", 201, "https://api.example", "/items", &resp);
        assert_eq!(uris, ["https://api.example/items", "https://api.example/items/7"]);
        assert!(invalidated("GET", 200, "https://api.example", "/items", &[]).is_empty());
        assert!(
            invalidated("DELETE", 500, "https://api.example", "/items", &[]).is_empty(),
            "errors do not invalidate"
        );
        assert_eq!(invalidated("DELETE", 204, "https://api.example", "/items/1", &[]).len(), 1);
    }
}
