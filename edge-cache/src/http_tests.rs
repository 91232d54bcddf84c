//! Tests of `http.rs`, named for the RFC sections they check.

use super::*;
use crate::test_support::h;

const NOW: u64 = 1_700_000_000_000;

/// A stored response: its header fields and metadata.
#[derive(Debug, PartialEq)]
struct Kept {
    headers: HeaderMap,
    meta: Stored,
}

impl std::ops::Deref for Kept {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.meta
    }
}

/// `storable` with the test's text arguments.
fn st(method: &str, req: &HeaderMap, status: u16, resp: &HeaderMap, rq: u64, rs: u64) -> Result<Kept, NotStorable> {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let status = StatusCode::from_u16(status).expect("a status");
    let authorized = req.contains_key(http::header::AUTHORIZATION);
    storable(&method, req, authorized, status, resp, rq, rs).map(|meta| Kept { headers: resp.clone(), meta })
}

fn look(req: &HeaderMap, kept: &Kept, now: u64) -> Lookup {
    lookup(req, &kept.headers, &kept.meta, now)
}

fn none() -> HeaderMap {
    HeaderMap::new()
}

fn date(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

fn store(response: &[(&str, &str)]) -> Result<Kept, NotStorable> {
    st("GET", &none(), 200, &h(response), NOW, NOW)
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
    assert!(matches!(look(&none(), &s, NOW), Lookup::Stale { .. }));
}

#[test]
fn rfc9111_4_2_2_heuristic_freshness_only_without_explicit_expiry() {
    let d = date(NOW);
    let modified = date(NOW - 100_000_000);
    let s = store(&[("date", &d), ("last-modified", &modified)]);
    assert_eq!(s.map(|s| s.lifetime_s), Ok(10_000), "10% of the time since last modification");
    // A status that is not heuristically cacheable gets no heuristic freshness (§4.2.2).
    let not = st("GET", &none(), 302, &h(&[("date", &d), ("last-modified", &modified)]), NOW, NOW);
    assert_eq!(not, Err(NotStorable::Status));
    let long = date(NOW - 10_000_000_000);
    assert_eq!(store(&[("date", &d), ("last-modified", &long)]).map(|s| s.lifetime_s), Ok(HEURISTIC_MAX_S));
}

#[test]
fn rfc9111_4_2_3_age_counts_upstream_age_delay_and_residence() {
    let d = date(NOW - 5_000);
    let s =
        st("GET", &none(), 200, &h(&[("cache-control", "max-age=100"), ("date", &d), ("age", "3")]), NOW - 2_000, NOW)
            .expect("storable");
    // apparent age 5; corrected age value 3 + 2 s of delay = 5; initial age 5.
    assert_eq!(s.initial_age_s, 5);
    assert_eq!(s.age_s(NOW + 10_000), 15);
    assert_eq!(look(&none(), &s, NOW + 10_000), Lookup::Fresh { age_s: 15 });
    assert!(matches!(look(&none(), &s, NOW + 96_000), Lookup::Stale { age_s: 101, .. }));
}

#[test]
fn rfc9111_3_no_store_private_and_unknown_methods_are_not_stored() {
    assert_eq!(store(&[("cache-control", "no-store, max-age=60")]), Err(NotStorable::NoStore));
    let req = h(&[("cache-control", "no-store")]);
    assert_eq!(st("GET", &req, 200, &h(&[("cache-control", "max-age=60")]), NOW, NOW), Err(NotStorable::NoStore));
    assert_eq!(store(&[("cache-control", "private, max-age=60")]), Err(NotStorable::Private));
    assert_eq!(st("POST", &none(), 200, &h(&[("cache-control", "max-age=60")]), NOW, NOW), Err(NotStorable::Method));
    assert_eq!(st("GET", &none(), 206, &h(&[("cache-control", "max-age=60")]), NOW, NOW), Err(NotStorable::Status));
    assert_eq!(store(&[]), Err(NotStorable::NoFreshness), "a 200 with nothing to go on is useless stored");
}

#[test]
fn rfc9111_3_5_authorized_requests_need_explicit_permission() {
    let req = h(&[("authorization", "Bearer x")]);
    let plain = h(&[("cache-control", "max-age=60")]);
    assert_eq!(st("GET", &req, 200, &plain, NOW, NOW), Err(NotStorable::Authorization));
    for allowed in ["public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"] {
        let resp = h(&[("cache-control", allowed)]);
        assert!(st("GET", &req, 200, &resp, NOW, NOW).is_ok(), "{allowed}");
    }
}

#[test]
fn rfc9111_4_1_vary_matches_normalized_values_and_vary_star_never_matches() {
    let req = h(&[("accept-language", "en, de"), ("x-other", "1")]);
    let resp = h(&[("cache-control", "max-age=60"), ("vary", "Accept-Language, Accept-Encoding")]);
    let s = st("GET", &req, 200, &resp, NOW, NOW).expect("storable");
    assert_eq!(look(&h(&[("accept-language", "en,de")]), &s, NOW), Lookup::Fresh { age_s: 0 });
    assert_eq!(look(&h(&[("accept-language", "fr")]), &s, NOW), Lookup::Miss);
    let with_encoding = h(&[("accept-language", "en, de"), ("accept-encoding", "gzip")]);
    assert_eq!(look(&with_encoding, &s, NOW), Lookup::Miss, "absent must match absent");
    let star = h(&[("cache-control", "max-age=60"), ("vary", "*")]);
    assert_eq!(st("GET", &req, 200, &star, NOW, NOW), Err(NotStorable::VaryStar));
    // A credential a response varies on is matched, and never kept as it is.
    let req = h(&[("authorization", "Bearer sk-client-secret"), ("cookie", "session=abc123")]);
    let resp = h(&[("cache-control", "public, max-age=60"), ("vary", "Authorization, Cookie")]);
    let s = st("GET", &req, 200, &resp, NOW, NOW).expect("storable");
    let kept = serde_json::to_string(&s.meta).expect("JSON");
    assert!(!kept.contains("sk-client-secret") && !kept.contains("abc123"), "{kept}");
    assert_eq!(look(&req, &s, NOW), Lookup::Fresh { age_s: 0 });
    let other = h(&[("authorization", "Bearer sk-other"), ("cookie", "session=abc123")]);
    assert_eq!(look(&other, &s, NOW), Lookup::Miss);
}

#[test]
fn rfc9111_5_2_no_cache_in_request_or_response_means_validate_first() {
    let s = store(&[("cache-control", "max-age=60")]).expect("storable");
    let no_cache = Lookup::Stale { age_s: 0, revalidate: Revalidate::First { if_error: false } };
    assert_eq!(look(&h(&[("cache-control", "no-cache")]), &s, NOW), no_cache);
    assert_eq!(look(&h(&[("pragma", "no-cache")]), &s, NOW), no_cache, "§5.4 Pragma without Cache-Control");
    let s = store(&[("cache-control", "no-cache, max-age=60"), ("etag", "\"a\"")]).expect("storable");
    assert_eq!(look(&none(), &s, NOW), no_cache);
}

#[test]
fn rfc9111_5_2_1_request_max_age_min_fresh_and_max_stale() {
    let s = store(&[("cache-control", "max-age=60")]).expect("storable");
    let later = NOW + 30_000;
    assert!(matches!(look(&h(&[("cache-control", "max-age=10")]), &s, later), Lookup::Stale { .. }));
    assert!(matches!(look(&h(&[("cache-control", "min-fresh=40")]), &s, later), Lookup::Stale { .. }));
    let stale = NOW + 70_000;
    assert_eq!(look(&h(&[("cache-control", "max-stale=20")]), &s, stale), Lookup::Fresh { age_s: 70 });
    assert!(matches!(look(&h(&[("cache-control", "max-stale=5")]), &s, stale), Lookup::Stale { .. }));
}

#[test]
fn rfc5861_stale_while_revalidate_and_stale_if_error_windows() {
    let s = store(&[("cache-control", "max-age=10, stale-while-revalidate=20, stale-if-error=100")]).expect("ok");
    let at = |s_after: u64| NOW + s_after * 1000;
    assert_eq!(look(&none(), &s, at(15)), Lookup::Stale { age_s: 15, revalidate: Revalidate::InBackground });
    let check = |if_error| Revalidate::First { if_error };
    assert_eq!(look(&none(), &s, at(50)), Lookup::Stale { age_s: 50, revalidate: check(true) });
    assert_eq!(look(&none(), &s, at(200)), Lookup::Stale { age_s: 200, revalidate: check(false) });
}

#[test]
fn rfc9111_5_2_2_2_must_revalidate_and_s_maxage_forbid_serving_stale() {
    for cc in [
        "max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60",
        "max-age=10, proxy-revalidate, stale-if-error=60",
        "s-maxage=10, stale-while-revalidate=60",
    ] {
        let s = store(&[("cache-control", cc)]).expect("storable");
        let l = look(&h(&[("cache-control", "max-stale")]), &s, NOW + 20_000);
        assert_eq!(l, Lookup::Stale { age_s: 20, revalidate: Revalidate::First { if_error: false } }, "{cc}");
    }
}

#[test]
fn rfc9213_cdn_cache_control_takes_precedence_over_cache_control() {
    let s = store(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=120")]).expect("storable");
    assert_eq!(s.lifetime_s, 120);
    assert_eq!(store(&[("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")]), Err(NotStorable::NoStore));
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
    let conditional: Vec<(String, String)> = conditional_headers(&s.headers)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(
        conditional,
        [("if-none-match".to_string(), "\"v1\"".to_string()), ("if-modified-since".to_string(), d.clone())],
        "§4.3.1 validators"
    );
    let later = NOW + 60_000;
    assert!(matches!(look(&none(), &s, later), Lookup::Stale { .. }));
    let d2 = date(later);
    let not_modified =
        h(&[("cache-control", "max-age=30"), ("x-version", "2"), ("date", &d2), ("content-length", "0")]);
    let original = (s.meta.clone(), s.headers.clone());
    assert!(freshen(&mut s.meta, StatusCode::OK, &mut s.headers, &not_modified, false, (later, later)));
    assert_eq!(look(&none(), &s, later + 5_000), Lookup::Fresh { age_s: 5 }, "§4.3.4 freshness restarts");
    let value = |n: &str| s.headers.get(n).and_then(|v| v.to_str().ok());
    assert_eq!((value("x-version"), value("content-length")), (Some("2"), Some("42")), "§3.2 header update");
    assert_eq!(s.headers.get_all("cache-control").iter().count(), 1);
    // A 304 that makes the response private or no-store, or one to a request
    // with Authorization that no directive lets a shared cache keep: it is
    // served, and not kept (§5.2.2.5, §5.2.2.7, §3.5).
    for (cache_control, authorized) in
        [("private, max-age=30", false), ("no-store", false), ("max-age=30", true), ("public, max-age=30", false)]
    {
        let (mut meta, mut headers) = original.clone();
        let not_modified = h(&[("cache-control", cache_control), ("date", &d2)]);
        let kept = freshen(&mut meta, StatusCode::OK, &mut headers, &not_modified, authorized, (later, later));
        assert_eq!(kept, cache_control.starts_with("public"), "{cache_control}, authorized: {authorized}");
    }
}

#[test]
fn rfc9111_4_4_unsafe_methods_invalidate_the_target_and_same_origin_locations() {
    let resp = h(&[("location", "/items/7"), ("content-location", "https://elsewhere.example/x")]);
    let ok = |code| StatusCode::from_u16(code).expect("a status");
    let uris = invalidated(&Method::POST, ok(201), "https://api.example", "/items", &resp);
    assert_eq!(uris, ["https://api.example/items", "https://api.example/items/7"]);
    assert!(invalidated(&Method::GET, ok(200), "https://api.example", "/items", &none()).is_empty());
    assert!(
        invalidated(&Method::DELETE, ok(500), "https://api.example", "/items", &none()).is_empty(),
        "errors do not invalidate"
    );
    assert_eq!(invalidated(&Method::DELETE, ok(204), "https://api.example", "/items/1", &none()).len(), 1);
}

#[test]
fn rfc9111_3_5_what_reached_the_origin_decides_not_the_clients_headers() {
    let plain = h(&[("cache-control", "max-age=60")]);
    let auth = storable(&Method::GET, &none(), true, StatusCode::OK, &plain, NOW, NOW);
    assert_eq!(auth, Err(NotStorable::Authorization), "the node's own key makes the request authorized");
    let public = h(&[("cache-control", "public, max-age=60")]);
    assert!(storable(&Method::GET, &none(), true, StatusCode::OK, &public, NOW, NOW).is_ok());
    let client_key = h(&[("authorization", "Bearer the-clients-own")]);
    let kept_at_edge = storable(&Method::GET, &client_key, false, StatusCode::OK, &plain, NOW, NOW);
    assert!(kept_at_edge.is_ok(), "a credential the edge kept back did not reach the origin");
}

#[test]
fn rfc9111_5_1_an_invalid_age_is_not_taken_as_a_number() {
    for bad in ["+30", "30s", "1, 2"] {
        let s = store(&[("cache-control", "max-age=100"), ("age", bad)]).expect("storable");
        assert_eq!(s.initial_age_s, 0, "Age: {bad} is ignored");
    }
    let s = store(&[("cache-control", "max-age=100"), ("age", "30")]).expect("storable");
    assert_eq!(s.initial_age_s, 30);
}

#[test]
fn rfc9213_an_invalid_cdn_cache_control_is_ignored_whole() {
    // Not a Structured Field (an unclosed string): Cache-Control applies.
    let s = store(&[("cache-control", "max-age=30"), ("cdn-cache-control", "max-age=600, private=\"x")]);
    assert_eq!(s.map(|s| s.lifetime_s), Ok(30), "the invalid field's max-age is not half used");
    let s = store(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600, no-store=")]);
    assert_eq!(s, Err(NotStorable::NoStore), "nor does it override Cache-Control");
}
