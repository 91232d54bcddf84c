//! What the crate's tests share.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header fields from name and value pairs.
pub fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        let name = HeaderName::from_bytes(n.as_bytes()).expect("a header name");
        map.append(name, HeaderValue::from_str(v).expect("a header value"));
    }
    map
}
