//! Hop-by-hop headers (RFC 9110 §7.6.1): they concern one connection and are
//! never passed on, in either direction. Besides the fixed list, a
//! `Connection` header may name further headers that are hop-by-hop for
//! that message.

/// Headers that are always hop-by-hop.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client request headers an origin never sees besides the hop-by-hop ones:
/// those the host sets itself and the client's credentials.
pub const NEVER_FORWARDED: [&str; 5] = ["host", "content-length", "authorization", "x-api-key", "api-key"];

/// Whether a client request header is never forwarded, whatever the request:
/// always hop-by-hop, or in [`NEVER_FORWARDED`].
pub fn never_forwarded(name: &str) -> bool {
    HOP_BY_HOP.iter().chain(NEVER_FORWARDED.iter()).any(|h| name.eq_ignore_ascii_case(h))
}

/// The lower-cased header names listed in a message's `Connection` header values.
pub fn connection_tokens<'a>(connection_values: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    connection_values
        .into_iter()
        .flat_map(|v| String::from_utf8_lossy(v).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `name` must not be passed on, given the message's `Connection` tokens.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_tokens.iter().any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_connection_named_headers_are_hop_by_hop() {
        let tokens = connection_tokens([&b"keep-alive, X-Hop"[..], b"x-other"]);
        assert_eq!(tokens, ["keep-alive", "x-hop", "x-other"]);
        assert!(is_hop_by_hop("Transfer-Encoding", &tokens));
        assert!(is_hop_by_hop("x-hop", &tokens));
        assert!(!is_hop_by_hop("x-trace", &tokens));
        assert!(!is_hop_by_hop("x-hop", &[]));
    }
}
