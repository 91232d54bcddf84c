//! A MaxMind DB (`.mmdb`) writer for tests: a small database of networks
//! and their records, in the format MaxMind publishes (a binary search tree
//! of 24-bit records, a data section, then metadata; see
//! <https://maxmind.github.io/MaxMind-DB/>), so that tests read it with the
//! real `maxminddb` reader rather than a stand-in. IPv4 networks go where
//! MaxMind's IPv6 databases put them: `::a.b.c.d`, under 96 zero bits.
//! Also included by the host's tests (`host/tests/common`).

use std::net::IpAddr;

/// A value of the data section.
#[derive(Debug, Clone)]
pub enum Value {
    /// UTF-8 string.
    Str(String),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Map with string keys.
    Map(Vec<(String, Value)>),
    /// Array.
    Array(Vec<Value>),
}

/// A string value.
pub fn text(s: &str) -> Value {
    Value::Str(s.to_string())
}

/// A map value.
pub fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

/// A country record as MaxMind's GeoIP2/GeoLite2-Country write it.
pub fn maxmind_country(code: &str) -> Value {
    map(&[("country", map(&[("iso_code", text(code))])), ("continent", map(&[("code", text("XX"))]))])
}

/// A country record as ip-location-db's `*-country-mmdb` packages write it.
pub fn ip_location_db_country(code: &str) -> Value {
    map(&[("country_code", text(code))])
}

/// Encodes one value (MaxMind DB "data section" encoding).
fn encode(value: &Value, out: &mut Vec<u8>) {
    // (type, extended type, size)
    let head = |out: &mut Vec<u8>, kind: u8, size: usize| {
        let (ext, kind) = if kind > 7 { (Some(kind - 7), 0) } else { (None, kind) };
        let (small, extra): (u8, Vec<u8>) = match size {
            0..29 => (size as u8, vec![]),
            29..285 => (29, vec![(size - 29) as u8]),
            285..65821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
            _ => (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec()),
        };
        out.push((kind << 5) | small);
        out.extend(ext);
        out.extend(extra);
    };
    let uint = |out: &mut Vec<u8>, kind: u8, n: u64| {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        head(out, kind, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    };
    match value {
        Value::Str(s) => {
            head(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(pairs) => {
            head(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            head(out, 11, items.len());
            for v in items {
                encode(v, out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database of `networks` (`10.0.0.0/8`, `2001:db8::/32`), each with its
/// record, as `database_type`. Networks must not overlap.
pub fn database(database_type: &str, networks: &[(&str, Value)]) -> Vec<u8> {
    let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty; 2]];
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (i, (network, record)) in networks.iter().enumerate() {
        let (addr, prefix) = network.split_once('/').unwrap_or((network, ""));
        let addr: IpAddr = addr.parse().unwrap_or_else(|_| panic!("{network} is not a network"));
        let (bits, width) = match addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let prefix: u32 = if prefix.is_empty() { width } else { prefix.parse().expect("prefix") };
        // An IPv4 network lies under 96 zero bits.
        let depth = prefix + (128 - width);
        assert!(depth >= 1, "the whole address space is no network");
        offsets.push(data.len());
        encode(record, &mut data);
        let mut node = 0;
        for d in 0..depth {
            let bit = ((bits >> (127 - d)) & 1) as usize;
            if d + 1 == depth {
                assert!(matches!(nodes[node][bit], Slot::Empty), "{network} overlaps another network");
                nodes[node][bit] = Slot::Data(i);
                break;
            }
            node = match nodes[node][bit] {
                Slot::Node(n) => n,
                Slot::Empty => {
                    nodes.push([Slot::Empty; 2]);
                    nodes[node][bit] = Slot::Node(nodes.len() - 1);
                    nodes.len() - 1
                }
                Slot::Data(_) => panic!("{network} lies inside another network"),
            };
        }
    }
    let count = nodes.len();
    let mut out = Vec::with_capacity(count * 6 + 16 + data.len() + 256);
    for node in &nodes {
        for slot in node {
            let value = match *slot {
                Slot::Empty => count,
                Slot::Node(n) => n,
                Slot::Data(d) => count + 16 + offsets[d],
            };
            assert!(value < 1 << 24, "too big for 24-bit records");
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata = map(&[
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        (
            "build_epoch",
            Value::U64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        ),
        ("database_type", text(database_type)),
        ("description", map(&[("en", text("edge-router test database"))])),
        ("ip_version", Value::U16(6)),
        ("languages", Value::Array(vec![text("en")])),
        ("node_count", Value::U32(count as u32)),
        ("record_size", Value::U16(24)),
    ]);
    encode(&metadata, &mut out);
    out
}
