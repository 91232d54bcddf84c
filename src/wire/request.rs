//! A client request's headers and body, as a host hands them to the router.

use serde::{Deserialize, Serialize};

/// One header. Values are bytes: HTTP allows non-UTF-8 values and none may be lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Lower-case name.
    pub name: String,
    /// Raw value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Header {
    /// A header from text.
    pub fn new(name: &str, value: &str) -> Self {
        Self { name: name.to_string(), value: value.as_bytes().to_vec() }
    }

    /// The header, borrowed.
    pub fn as_ref(&self) -> HeaderRef<'_> {
        HeaderRef { name: &self.name, value: &self.value }
    }
}

/// A client header as the router reads it: borrowed from a [`Header`], or
/// straight from an encoded [`Event::Request`] (see [`RequestRef`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRef<'a> {
    /// Lower-case name.
    pub name: &'a str,
    /// Raw value.
    #[serde(with = "serde_bytes")]
    pub value: &'a [u8],
}

/// The client headers the router reads (lower-case), besides the key
/// headers ([`KEY_HEADERS`]). Its decisions depend on no other request
/// header, so a host may leave the others out of [`Event::Request`]: the
/// edge box does, which saves encoding and reading them in the module.
pub const READ_HEADERS: [&str; 4] = ["cache-control", "connection", "x-edge-cache-ttl", "x-request-type"];

/// The headers a client key comes in. The router reads them only when the
/// host does not pass the key's digest (`key_sha256`).
pub const KEY_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

/// Whether the router may read request header `name` (lower-case); `hashed`:
/// the host passes the key's digest.
pub fn router_reads(name: &str, hashed: bool) -> bool {
    READ_HEADERS.contains(&name) || (!hashed && KEY_HEADERS.contains(&name))
}

/// The body of a client request as the host hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Read completely (bounded by `server.max_body_bytes`).
    Buffered(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Left in the connection, to be streamed to the origin (passthrough paths).
    Streamed,
}
