//! The encoding of messages, and a client request read in place.

use serde::{Deserialize, Serialize};

use super::{HeaderRef, RequestBody};

/// Encodes `value` with postcard at the end of `out`, as both sides of the
/// ABI do. postcard's own `to_extend` appends every piece, down to each
/// one-byte varint, with a copy of variable length: natively a call to
/// `memmove`, and in the module a call out of wasm (`memory.copy`), either
/// far dearer than the byte it copies. Here pieces of up to three bytes (most
/// varints) are pushed.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    postcard::serialize_with_flavor(value, Appender(out))
}

struct Appender(Vec<u8>);

impl postcard::ser_flavors::Flavor for Appender {
    type Output = Vec<u8>;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    // Only a single byte (most varints: lengths, tags, small numbers) is
    // pushed in place; the rest is a call. Inlined whole at every field,
    // it made the module a fifth larger for no measurable gain.
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match *data {
            [a] => self.0.push(a),
            _ => self.extend(data),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

impl Appender {
    #[inline(never)]
    fn extend(&mut self, data: &[u8]) {
        // Unrolled, not a loop: in the module every loop iteration also
        // checks the call's deadline. Copies of a fixed size are plain
        // loads and stores; eight bytes is an `f64` (spending, prices).
        match *data {
            [a, b] => self.0.extend_from_slice(&[a, b]),
            [a, b, c] => self.0.extend_from_slice(&[a, b, c]),
            [a, b, c, d, e, f, g, h] => self.0.extend_from_slice(&[a, b, c, d, e, f, g, h]),
            _ => self.0.extend_from_slice(data),
        }
    }
}

/// Encodes `request` as the [`Event::Request`] it borrows from, at the end of `out`.
pub fn encode_request(request: &RequestRef<'_>, mut out: Vec<u8>) -> postcard::Result<Vec<u8>> {
    out.push(REQUEST_TAG);
    encode_into(request, out)
}

/// The first byte of an encoded [`Event::Request`]: postcard writes an
/// enum's variant index first, and `Request` is the first variant.
pub const REQUEST_TAG: u8 = 0;

/// [`Event::Request`] borrowed: its strings, headers and body point into the
/// message they were read from, so the module reads a request without
/// copying it. The fields are `Event::Request`'s, in the same order and
/// encoding, so postcard reads an encoded `Event::Request` after its
/// [`REQUEST_TAG`] as this, and [`encode_request`] writes one that reads back
/// as an `Event::Request`: the edge box encodes its requests from the
/// client's headers and body without copying them first. Native callers of
/// the router may also use [`Event::Request`], which it borrows the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRef<'a> {
    /// Host-chosen id, unique among requests in flight.
    pub id: u64,
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
    /// Client headers.
    #[serde(borrow)]
    pub headers: Vec<HeaderRef<'a>>,
    /// ISO country from a trusted source, if any.
    #[serde(borrow)]
    pub country: Option<&'a str>,
    /// The client's IP address; see [`Event::Request`].
    #[serde(borrow)]
    pub client: Option<&'a str>,
    /// The body.
    #[serde(borrow)]
    pub body: BodyRef<'a>,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// A uniformly random value for weighted choices.
    pub random: u64,
    /// See [`Event::Request`].
    #[serde(with = "serde_bytes")]
    pub key_sha256: Option<[u8; 32]>,
    /// See [`Event::Request`].
    pub body_facts: Option<crate::facts::BodyFacts>,
    /// See [`Event::Request`].
    #[serde(borrow)]
    pub token: Option<super::BearerTokenRef<'a>>,
    /// See [`Event::Request`].
    pub fleet: Option<super::Fleet>,
}

/// [`RequestBody`] borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyRef<'a> {
    /// Read completely.
    Buffered(#[serde(with = "serde_bytes")] &'a [u8]),
    /// Left in the connection.
    Streamed,
}

impl RequestBody {
    /// The body, borrowed.
    pub fn as_ref(&self) -> BodyRef<'_> {
        match self {
            Self::Buffered(bytes) => BodyRef::Buffered(bytes),
            Self::Streamed => BodyRef::Streamed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::BodyFacts;
    use crate::wire::{Event, Header};

    /// Encodes `event` as the host does; its first byte must be the request tag.
    fn encoded_request(event: &Event) -> Vec<u8> {
        let bytes = postcard::to_allocvec(event).expect("encodes");
        assert_eq!(bytes.first(), Some(&REQUEST_TAG), "a request's encoding starts with its tag");
        bytes
    }

    #[test]
    fn an_encoded_request_reads_back_borrowed_field_by_field() {
        let facts = BodyFacts {
            model: Some("auto".into()),
            stream: true,
            max_tokens: Some(7),
            prompt_tokens: 12,
            temperature: Some(0.5),
            previous_response_id: Some("resp_1~n".into()),
        };
        let cases = [
            (
                RequestBody::Buffered(b"{\"model\":\"auto\"}".to_vec()),
                Some("DE"),
                Some("2001:db8::1"),
                Some([7u8; 32]),
                Some(facts),
            ),
            (RequestBody::Streamed, None, None, None, None),
            (RequestBody::Buffered(Vec::new()), Some(""), Some(""), None, Some(BodyFacts::default())),
        ];
        for (body, country, client, key_sha256, body_facts) in cases {
            let headers = vec![
                Header::new("authorization", "Bearer sk"),
                // Not UTF-8: values are bytes, and none may be lost.
                Header { name: "x-raw".into(), value: vec![0xff, 0x00, b'a'] },
                Header::new("", ""),
            ];
            let event = Event::Request {
                id: u64::MAX,
                method: "POST".into(),
                target: "/v1/chat/completions?x=ü".into(),
                headers: headers.clone(),
                country: country.map(Into::into),
                client: client.map(Into::into),
                body: body.clone(),
                now_ms: 1_700_000_000_000,
                random: 0x9E37_79B9_7F4A_7C15,
                key_sha256,
                body_facts: body_facts.clone(),
                token: None,
                fleet: None,
            };
            let bytes = encoded_request(&event);
            let (request, rest) = postcard::take_from_bytes::<RequestRef>(&bytes[1..]).expect("reads as a RequestRef");
            assert!(rest.is_empty(), "the whole request was read");
            // ...and a RequestRef encodes to the very same bytes.
            assert_eq!(encode_request(&request, Vec::new()).expect("encodes"), bytes);
            assert_eq!(
                request,
                RequestRef {
                    id: u64::MAX,
                    method: "POST",
                    target: "/v1/chat/completions?x=ü",
                    headers: headers.iter().map(Header::as_ref).collect(),
                    country,
                    client,
                    body: body.as_ref(),
                    now_ms: 1_700_000_000_000,
                    random: 0x9E37_79B9_7F4A_7C15,
                    key_sha256,
                    body_facts,
                    token: None,
                    fleet: None,
                }
            );
        }
    }

    #[test]
    fn other_events_do_not_start_with_the_request_tag() {
        let others = [
            Event::ResponseHead { id: 0, status: 200, retry_after_s: None, now_ms: 0 },
            Event::Finished { id: 0, usage: None, now_ms: 0 },
            Event::Tick { now_ms: 0 },
            Event::Status { now_ms: 0 },
        ];
        for event in others {
            assert_ne!(postcard::to_allocvec(&event).expect("encodes")[0], REQUEST_TAG, "{event:?}");
        }
    }
}
