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
pub const NEVER_FORWARDED: [&str; 6] =
    ["host", "content-length", "authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// Whether a client request header is never forwarded, whatever the request:
/// always hop-by-hop, or in [`NEVER_FORWARDED`].
pub fn never_forwarded(name: &str) -> bool {
    HOP_BY_HOP.iter().chain(NEVER_FORWARDED.iter()).any(|h| name.eq_ignore_ascii_case(h))
}

/// [`never_forwarded`] for a name already in lower case, as http's
/// `HeaderName` always is: one `match` rather than fourteen comparisons, for
/// every header of every request.
pub fn never_forwarded_lowercase(name: &str) -> bool {
    always_hop_by_hop_lowercase(name)
        || matches!(name, "host" | "content-length" | "authorization" | "x-api-key" | "api-key" | "x-goog-api-key")
}

/// Whether `name`, in lower case, is in [`HOP_BY_HOP`].
pub fn always_hop_by_hop_lowercase(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Calls `f` with each header name listed in a message's `Connection`
/// header values, trimmed and as sent (not lower-cased). Allocates nothing
/// unless a value is not UTF-8: most requests carry a bare `keep-alive`.
pub fn for_each_connection_token<'a>(connection_values: impl IntoIterator<Item = &'a [u8]>, mut f: impl FnMut(&str)) {
    for value in connection_values {
        let text = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        text.split(',').map(str::trim).filter(|t| !t.is_empty()).for_each(&mut f);
    }
}

/// The lower-cased header names listed in a message's `Connection` header values.
pub fn connection_tokens<'a>(connection_values: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut tokens = Vec::new();
    for_each_connection_token(connection_values, |t| tokens.push(t.to_ascii_lowercase()));
    tokens
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
        // Empty tokens are skipped; a value that is not UTF-8 is read lossily.
        assert_eq!(connection_tokens([&b" , Close,,"[..], b"x-\xffa, b"]), ["close", "x-\u{fffd}a", "b"]);
    }

    #[test]
    fn the_lowercase_matches_read_the_lists() {
        for name in HOP_BY_HOP {
            assert!(always_hop_by_hop_lowercase(name) && never_forwarded_lowercase(name), "{name}");
        }
        for name in NEVER_FORWARDED {
            assert!(!always_hop_by_hop_lowercase(name) && never_forwarded_lowercase(name), "{name}");
        }
        // Every name either way agrees with the lists: common headers, near
        // misses, and (below) any lower-case name.
        let names = [
            "x-trace",
            "content-type",
            "hosts",
            "t",
            "te ",
            "accept",
            "upgrade-insecure-requests",
            "cookie",
            "set-cookie",
            "user-agent",
            "x-request-id",
            "x-forwarded-for",
            "forwarded",
            "via",
            "trailers",
            "proxy-authenticate",
            "www-authenticate",
            "openai-organization",
            "anthropic-version",
            "x-edge-node",
            "api-keys",
            "x-api",
            "authorization2",
            "content-length ",
            "",
        ];
        for name in names {
            assert_eq!(never_forwarded_lowercase(name), never_forwarded(name), "{name}");
            assert_eq!(always_hop_by_hop_lowercase(name), HOP_BY_HOP.contains(&name), "{name}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_lowercase_matches_agree_with_the_lists_on_any_name(name in "[a-z0-9-]{0,24}") {
            proptest::prop_assert_eq!(never_forwarded_lowercase(&name), never_forwarded(&name));
            proptest::prop_assert_eq!(always_hop_by_hop_lowercase(&name), HOP_BY_HOP.contains(&name.as_str()));
        }
    }
}
