//! AWS's event-stream framing, which a Bedrock node's ConverseStream answer
//! comes in: each message is a 12-byte prelude (total length, headers'
//! length, both big-endian u32, and the CRC-32 of those 8 bytes), its
//! headers, its payload, and the CRC-32 of all before it. A header is a
//! name (u8 length), a type byte and a value whose size the type sets.

use bytes::{Bytes, BytesMut};

/// The longest message read: 1 MiB. The format allows 16 MiB, but
/// ConverseStream's events are deltas of a few hundred bytes, and each
/// stream may hold this much: a node that declares more is not waited for.
const MAX_MESSAGE: usize = 1 << 20;
const PRELUDE: usize = 12;

/// One message: its string headers, and its payload.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Message {
    /// The value of string header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Messages out of bytes that arrive cut anywhere.
#[derive(Default)]
pub struct Decoder {
    pending: BytesMut,
}

impl Decoder {
    /// Takes the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` until one has arrived, or what
    /// is wrong with it (after which the stream cannot be read on).
    pub fn next(&mut self) -> Result<Option<Message>, String> {
        let Some(prelude) = self.pending.get(..PRELUDE) else { return Ok(None) };
        let total = u32_at(prelude, 0) as usize;
        let headers_len = u32_at(prelude, 4) as usize;
        if crc32(&prelude[..8]) != u32_at(prelude, 8) {
            return Err("a message's prelude fails its checksum".into());
        }
        if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) || headers_len > total - PRELUDE - 4 {
            return Err(format!("a message declares {total} bytes with {headers_len} of headers"));
        }
        let Some(message) = self.pending.get(..total) else { return Ok(None) };
        if crc32(&message[..total - 4]) != u32_at(message, total - 4) {
            return Err("a message fails its checksum".into());
        }
        let headers = read_headers(&message[PRELUDE..PRELUDE + headers_len])?;
        let message = self.pending.split_to(total).freeze();
        Ok(Some(Message { headers, payload: message.slice(PRELUDE + headers_len..total - 4) }))
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The string headers of `bytes`; headers of other types are read past.
fn read_headers(mut bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let broken = || "a message's headers are malformed".to_string();
    let mut headers = Vec::new();
    while let Some((&name_len, rest)) = bytes.split_first() {
        let (name, rest) = rest.split_at_checked(usize::from(name_len)).ok_or_else(broken)?;
        let (&kind, rest) = rest.split_first().ok_or_else(broken)?;
        let size = match kind {
            0 | 1 => 0, // true, false
            2 => 1,     // byte
            3 => 2,     // int16
            4 => 4,     // int32
            5 | 8 => 8, // int64, timestamp
            9 => 16,    // uuid
            6 | 7 => {
                // byte array, string: a u16 length first
                let (len, _) = rest.split_at_checked(2).ok_or_else(broken)?;
                2 + usize::from(u16::from_be_bytes([len[0], len[1]]))
            }
            other => return Err(format!("a message's header has unknown type {other}")),
        };
        let (value, rest) = rest.split_at_checked(size).ok_or_else(broken)?;
        if kind == 7 {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| broken());
            headers.push((text(name)?, text(&value[2..])?));
        }
        bytes = rest;
    }
    Ok(headers)
}

/// CRC-32 (ISO-HDLC: polynomial 0x04C11DB7 reflected, as zlib's).
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::event_stream::{Header, HeaderValue as V, Message as AwsMessage};
    use proptest::prelude::*;

    /// `message` as AWS's own writer frames it.
    fn framed(message: &AwsMessage) -> Vec<u8> {
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(message, &mut out).expect("a frame");
        out
    }

    fn all(decoder: &mut Decoder) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        while let Some(m) = decoder.next()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn value() -> impl Strategy<Value = V> {
        prop_oneof![
            any::<bool>().prop_map(V::Bool),
            any::<i8>().prop_map(V::Byte),
            any::<i16>().prop_map(V::Int16),
            any::<i32>().prop_map(V::Int32),
            any::<i64>().prop_map(V::Int64),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| V::ByteArray(b.into())),
            "\\PC{0,20}".prop_map(|s| V::String(s.into())),
            (0i64..4_102_444_800_000).prop_map(|ms| V::Timestamp(aws_smithy_types::DateTime::from_millis(ms))),
            any::<u128>().prop_map(V::Uuid),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Messages of every header type, as AWS writes them, read back
        /// however the bytes are cut.
        #[test]
        fn reads_what_aws_writes(
            messages in proptest::collection::vec(
                (proptest::collection::vec(("[:a-z-]{1,12}", value()), 0..5), proptest::collection::vec(any::<u8>(), 0..80)),
                1..4,
            ),
            cuts in proptest::collection::vec(1usize..40, 0..8),
        ) {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (headers, payload) in &messages {
                let mut m = AwsMessage::new(payload.clone());
                for (name, v) in headers {
                    m = m.add_header(Header::new(name.clone(), v.clone()));
                }
                bytes.extend(framed(&m));
                let strings = headers
                    .iter()
                    .filter_map(|(n, v)| match v { V::String(s) => Some((n.clone(), s.as_str().to_string())), _ => None })
                    .collect();
                expected.push(Message { headers: strings, payload: Bytes::from(payload.clone()) });
            }
            let mut decoder = Decoder::default();
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            for cut in cuts {
                let (piece, after) = rest.split_at(cut.min(rest.len()));
                decoder.push(piece);
                got.extend(all(&mut decoder).expect("whole messages"));
                rest = after;
            }
            decoder.push(rest);
            got.extend(all(&mut decoder).expect("whole messages"));
            prop_assert_eq!(got, expected);
        }

        /// Any byte changed in a message is caught by a checksum: never
        /// read as another message, never waited on.
        #[test]
        fn a_changed_byte_is_an_error(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let m = AwsMessage::new(&b"{\"a\":1}"[..])
                .add_header(Header::new(":event-type", V::String("messageStart".into())));
            let mut bytes = framed(&m);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let mut decoder = Decoder::default();
            decoder.push(&bytes);
            let read = decoder.next();
            prop_assert!(read.is_err(), "{:?}", read);
        }

        /// Messages whose checksums are right but whose lengths and
        /// headers are anything, as a hostile node could send: each is an
        /// error or a message, and nothing panics.
        #[test]
        fn any_checksummed_bytes_are_read_or_refused(
            body in proptest::collection::vec(any::<u8>(), 0..96),
            headers_len in any::<prop::sample::Index>(),
        ) {
            let total = PRELUDE + body.len() + 4;
            let headers_len = headers_len.index(body.len() + 8);
            let mut bytes = Vec::new();
            bytes.extend((total as u32).to_be_bytes());
            bytes.extend((headers_len as u32).to_be_bytes());
            bytes.extend(crc32(&bytes).to_be_bytes());
            bytes.extend(&body);
            bytes.extend(crc32(&bytes).to_be_bytes());
            let mut decoder = Decoder::default();
            decoder.push(&bytes);
            match decoder.next() {
                Ok(Some(m)) => {
                    prop_assert!(headers_len <= body.len());
                    prop_assert_eq!(&m.payload[..], &body[headers_len..]);
                }
                Ok(None) => prop_assert!(false, "a whole message was waited on"),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn a_message_longer_than_the_limit_is_not_waited_for() {
        let mut prelude = Vec::new();
        prelude.extend(((MAX_MESSAGE + 1) as u32).to_be_bytes());
        prelude.extend(0u32.to_be_bytes());
        prelude.extend(crc32(&prelude).to_be_bytes());
        let mut decoder = Decoder::default();
        decoder.push(&prelude);
        assert_eq!(decoder.next(), Err(format!("a message declares {} bytes with 0 of headers", MAX_MESSAGE + 1)));
        let mut short = Decoder::default();
        short.push(&prelude[..11]);
        assert_eq!(short.next(), Ok(None), "a prelude cut short waits for the rest");
    }
}
