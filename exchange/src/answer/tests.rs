//! Answers from the cache, and the router's own.

use bytes::Bytes;
use edge_cache::Stored;
use edge_router::error::RouterError;
use edge_router::wire::{CacheStatus, Explain};
use http::{Method, StatusCode};

use super::*;
use crate::entry::Entry;
use crate::test_support::h;

fn http_entry() -> Entry {
    Entry {
        status: StatusCode::OK,
        headers: h(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("content-type", "text/plain"),
            ("x-other", "1"),
        ]),
        node: "origin".into(),
        model: None,
        stored_ms: 0,
        expires_ms: u64::MAX,
        tokens: 0,
        http: Some(Stored { vary: Vec::new(), response_ms: 0, initial_age_s: 0, lifetime_s: 60 }),
    }
}

fn hit() -> Explain {
    Explain {
        node: "-".into(),
        rule: "passthrough".into(),
        attempts: 0,
        country: "DE".into(),
        model: None,
        difficulty: None,
        cache: CacheStatus::Hit,
        panic: false,
        ratelimit: Default::default(),
    }
}

fn serve(entry: &Entry, method: Method, request: &[(&'static str, &'static str)]) -> FromCache {
    from_cache(entry, 10, &hit(), CacheStatus::Hit, 5, &method, &h(request))
}

#[test]
fn a_hit_carries_its_age_the_entrys_node_and_the_explanation() {
    let got = serve(&http_entry(), Method::GET, &[]);
    assert_eq!((got.status, got.part), (StatusCode::OK, Part::Whole));
    assert_eq!(got.headers["age"], "5");
    assert_eq!(got.headers["x-edge-node"], "origin");
    assert_eq!(got.headers["x-edge-cache"], "HIT");
    assert!(got.headers.get("x-edge-cache-tokens-saved").is_none(), "only AI answers save tokens");
    let mut ai = http_entry();
    ai.http = None;
    ai.tokens = 40;
    ai.model = Some("tiny".into());
    let got = serve(&ai, Method::POST, &[]);
    assert_eq!(got.headers["x-edge-cache-tokens-saved"], "40");
    assert_eq!(got.headers["x-edge-model"], "tiny");
}

#[test]
fn rfc9110_13_2_2_a_clients_matching_validator_gets_a_304_with_the_fields_it_needs() {
    let got = serve(&http_entry(), Method::GET, &[("if-none-match", "\"v1\"")]);
    assert_eq!((got.status, got.part), (StatusCode::NOT_MODIFIED, Part::Empty));
    assert_eq!(got.headers["etag"], "\"v1\"");
    assert_eq!(got.headers["cache-control"], "max-age=60");
    assert!(got.headers.get("content-type").is_none() && got.headers.get("x-other").is_none(), "§15.4.5");
    assert_eq!(got.headers["x-edge-cache"], "HIT");
    let other = serve(&http_entry(), Method::GET, &[("if-none-match", "\"v2\"")]);
    assert_eq!(other.status, StatusCode::OK);
    let mut ai = http_entry();
    ai.http = None;
    assert_eq!(
        serve(&ai, Method::POST, &[("if-none-match", "*")]).status,
        StatusCode::OK,
        "AI answers are not validated"
    );
}

#[test]
fn rfc9110_14_one_range_of_a_stored_200_is_a_206_and_past_the_end_a_416() {
    let got = serve(&http_entry(), Method::GET, &[("range", "bytes=2-4")]);
    assert_eq!((got.status, got.part), (StatusCode::PARTIAL_CONTENT, Part::Range { start: 2, end: 4 }));
    assert_eq!(got.headers["content-range"], "bytes 2-4/10");
    assert_eq!(&got.part.of(&Bytes::from_static(b"0123456789"))[..], b"234");
    let past = serve(&http_entry(), Method::GET, &[("range", "bytes=10-")]);
    assert_eq!((past.status, past.part), (StatusCode::RANGE_NOT_SATISFIABLE, Part::Empty));
    assert_eq!(past.headers["content-range"], "bytes */10");
}

#[test]
fn a_head_gets_the_length_of_the_body_it_leaves_out() {
    let got = serve(&http_entry(), Method::HEAD, &[]);
    assert_eq!((got.status, got.part), (StatusCode::OK, Part::Empty));
    assert_eq!(got.headers["content-length"], "10");
}

#[test]
fn a_host_error_is_openai_shaped_with_the_explanation() {
    let resp = host_error(&RouterError::PayloadTooLarge { limit: 8 }, None, 7);
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["x-edge-node"], "-");
    assert_eq!(resp.headers()["x-edge-cache"], "BYPASS");
    assert_eq!(resp.headers()["x-edge-country"], "XX");
    assert_eq!(resp.headers()["x-request-id"], "0000000000000007");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("JSON");
    assert_eq!(body["error"]["type"], "request_too_large");
    assert!(bodiless(&Method::HEAD, StatusCode::OK) && bodiless(&Method::GET, StatusCode::NOT_MODIFIED));
    assert!(!bodiless(&Method::GET, StatusCode::OK));
}
