//! The request an origin gets: which client headers go on, what is added,
//! and the body (the client's, or with its `model` rewritten).
//!
//! An origin sees every client header except the hop-by-hop ones, the
//! client's credentials and `Host` (`edge_router::hop::never_forwarded`),
//! those the client's `Connection` names (the forward's `remove_headers`),
//! and the trusted country header the edge box reads. A revalidation adds
//! the stored entry's validators. The host adds `Host` and the node's own
//! key, which never pass through here.

use bytes::Bytes;
use edge_router::hop::never_forwarded;
use edge_router::wire::{Forward, ForwardBody};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::transform::{SetModel, transform_whole};

/// The header fields of the request to the origin of `forward`, from the
/// client's `client`. `country_header` is the header the host trusts for
/// the client's country (it never leaves the edge); `conditional` the
/// validators of a stored entry being revalidated.
pub fn upstream_headers(
    client: &HeaderMap,
    forward: &Forward,
    country_header: Option<&str>,
    conditional: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(client.len() + conditional.len() + 2);
    for (name, value) in client {
        let removed = never_forwarded(name.as_str())
            || forward.remove_headers.binary_search_by(|r| r.as_str().cmp(name.as_str())).is_ok()
            || country_header.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c));
        if !removed {
            headers.append(name, value.clone());
        }
    }
    for (name, value) in conditional {
        headers.insert(name, value.clone());
    }
    headers
}

/// The body to send: `Some` bytes (the buffered body, or it with its
/// `model` rewritten), or `None` when the client's body is still in its
/// connection and streams through as it is (`original` is then empty).
pub fn upstream_body(forward: &Forward, original: &Bytes, streamed: bool) -> Option<Bytes> {
    match &forward.body {
        // Through the transform seam: the body's bytes stay the client's
        // but for the model.
        ForwardBody::RewriteModel(model) => Some(transform_whole(&mut SetModel::request(model), original.clone())),
        ForwardBody::Original if streamed => None,
        ForwardBody::Original => Some(original.clone()),
    }
}

/// `Authorization: Bearer <key>` for a node's key, marked sensitive so that
/// it never shows in debug output. `None` if the key holds characters a
/// header may not.
pub fn bearer(key: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(remove: &[&str], body: ForwardBody) -> Forward {
        Forward { remove_headers: remove.iter().map(|s| s.to_string()).collect(), ..crate::test_support::forward(body) }
    }

    #[test]
    fn client_keys_hop_by_hop_connection_named_and_country_headers_stay_behind() {
        let mut client = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer client-key"),
            ("x-api-key", "k"),
            ("host", "edge.example"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "s"),
            ("x-country", "DE"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
            ("x-trace", "1"),
        ] {
            client.append(n, HeaderValue::from_static(v));
        }
        client.append("x-trace", HeaderValue::from_static("2"));
        let validators = [(http::header::IF_NONE_MATCH, HeaderValue::from_static("\"v1\""))];
        let out =
            upstream_headers(&client, &forward(&["x-secret"], ForwardBody::Original), Some("X-Country"), &validators);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "x-trace", "if-none-match"]);
        assert_eq!(out.get_all("x-trace").iter().count(), 2, "repeated fields all go");
    }

    #[test]
    fn the_body_is_the_clients_or_rewritten_keeping_every_other_field_in_order() {
        let original = Bytes::from_static(br#"{"stream":true,"model":"auto","messages":[]}"#);
        let rewritten = upstream_body(&forward(&[], ForwardBody::RewriteModel("tiny".into())), &original, false);
        assert_eq!(rewritten.as_deref(), Some(&br#"{"stream":true,"model":"tiny","messages":[]}"#[..]));
        assert_eq!(upstream_body(&forward(&[], ForwardBody::Original), &original, false), Some(original.clone()));
        assert_eq!(upstream_body(&forward(&[], ForwardBody::Original), &Bytes::new(), true), None);
        let not_json = Bytes::from_static(b"not json");
        let kept = upstream_body(&forward(&[], ForwardBody::RewriteModel("tiny".into())), &not_json, false);
        assert_eq!(kept, Some(not_json), "a body that is not a JSON object goes as it came");
        assert!(bearer("sk-1").is_some_and(|v| v.is_sensitive()));
        assert!(bearer("bad\nkey").is_none());
    }
}
