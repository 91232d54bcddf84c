//! What the crate's tests share.

use edge_router::wire::{CacheStatus, Forward, ForwardBody, RuleRef};
use http::{HeaderMap, HeaderValue};

/// Header fields from name and value pairs.
pub fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(*n, HeaderValue::from_static(v));
    }
    map
}

/// A forward to node 0 with `body`, timeouts of a millisecond and nothing
/// else asked for; tests change what they look at.
pub fn forward(body: ForwardBody) -> Forward {
    Forward {
        node: 0,
        attempt: 1,
        remove_headers: Vec::new(),
        body,
        connect_timeout_ms: 1,
        first_byte_timeout_ms: 1,
        idle_timeout_ms: 1,
        total_timeout_ms: 1,
        fallback: false,
        meter: false,
        fill: None,
        rule: RuleRef::Default,
        cache: CacheStatus::Bypass,
        panic: false,
        ratelimit: Default::default(),
        difficulty: None,
    }
}

/// Runs `input` through `transform` in chunks cut at `cuts` (taken modulo
/// the input's length, in order), then ends it; what came out.
pub fn feed(transform: &mut dyn crate::transform::Transform, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = std::collections::VecDeque::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut from = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        if cut > from {
            transform.chunk(bytes::Bytes::copy_from_slice(&input[from..cut]), &mut out);
            from = cut;
        }
    }
    transform.end(&mut out);
    out.into_iter().flatten().collect()
}
