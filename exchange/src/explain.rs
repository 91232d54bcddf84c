//! The explanation headers (`x-edge-*`) on a response head.

use edge_router::wire::Explain;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Sets `explain`'s headers on `headers`, replacing any the origin sent.
pub fn set_explanation(headers: &mut HeaderMap, explain: &Explain) {
    // The `x-edge-*` names are this router's: an origin's (another edge
    // router upstream) would be taken for ours where ours sets none
    // (`x-edge-model`, `x-edge-panic`), and read into the access log.
    let theirs = |n: &HeaderName| n.as_str().starts_with("x-edge-");
    if headers.keys().any(theirs) {
        let theirs: Vec<HeaderName> = headers.keys().filter(|n| theirs(n)).cloned().collect();
        for name in theirs {
            headers.remove(name);
        }
    }
    // Room for ours at once, rather than the map growing on the way.
    headers.reserve(8);
    explain.for_each_header(|name, value| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origins_own_explanation_headers_do_not_pass_for_ours() {
        let mut headers = HeaderMap::new();
        headers.insert("x-edge-model", HeaderValue::from_static("upstream; score=0.990; band=10"));
        headers.insert("x-edge-panic", HeaderValue::from_static("true"));
        headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("500"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        set_explanation(&mut headers, &Explain::router("r", 1, "DE".into()));
        assert!(headers.get("x-edge-model").is_none() && headers.get("x-edge-panic").is_none(), "{headers:?}");
        assert_eq!(headers["x-edge-rule"], "r");
        assert_eq!(
            headers["x-ratelimit-limit-requests"], "500",
            "a provider's own limits pass when the caller has none here"
        );
        assert_eq!(headers["content-type"], "application/json");
    }
}
