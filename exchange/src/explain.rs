//! The explanation headers (`x-edge-*`) on a response head.

use edge_router::wire::Explain;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Sets `explain`'s headers on `headers`, replacing any the origin sent.
pub fn set_explanation(headers: &mut HeaderMap, explain: &Explain) {
    explain.for_each_header(|name, value| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    });
}
