//! Pure cache policy for edge-router: no clock reads, no I/O. Builds for
//! native, `wasm32-unknown-unknown` and `wasm32-wasip2`.
//!
//! - [`http`]: RFC 9111 shared caching of `GET` and `HEAD` (with RFC 9213
//!   `CDN-Cache-Control` and RFC 5861 stale extensions): what may be stored,
//!   what a stored response is good for, revalidation and invalidation.
//! - [`conditional`]: a client's own conditional and range requests,
//!   answered from a stored response (`304`, `206`, `416`).
//! - [`ai`]: keys and decisions of the AI-request cache.
//! - [`directives`]: `Cache-Control` and `CDN-Cache-Control` parsing.
//! - [`fields`]: HTTP dates (the one parser), delta-seconds, `Age`, `Retry-After`.
//! - [`store`]: the store trait and a byte-bounded LRU memory store.
//! - [`structured`]: Structured Field Dictionaries (RFC 9651), as `CDN-Cache-Control` needs them.

pub mod ai;
pub mod conditional;
pub mod directives;
pub mod fields;
pub mod http;
pub mod store;
pub mod structured;

#[cfg(test)]
mod test_support;

/// The SHA-256 of `text`, in lower-case hex.
fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub use directives::Directives;
pub use http::{Lookup, NotStorable, Revalidate, Stored, lookup, storable};
