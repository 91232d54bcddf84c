//! Who the client is: its address, believed through trusted proxies only,
//! and its country, from the first source that knows it.
//!
//! The address is the connection's peer, unless the peer is a trusted proxy
//! (`server.trusted_proxies`): then `X-Forwarded-For` is read from its right
//! end, each hop a trusted proxy appended, and the first address that is
//! not a trusted proxy's is the client's. Everything to its left was written
//! by the client or by proxies nobody vouches for, and is never read.
//!
//! The country comes from, in this order:
//! 1. the `server.country_header` a trusted proxy (the peer) sent, such as a
//!    CDN's `CF-IPCountry`, unless it says `XX` (unknown);
//! 2. the client's address looked up in the IP database (`server.geoip_database`);
//! 3. nowhere: the country is unknown, and `geofence.unknown` decides.
//!
//! The edge box calls this; the Workers build has Cloudflare's own
//! `request.cf.country` and `CF-Connecting-IP` instead.

use std::net::IpAddr;

use crate::config::CidrBlock;
use crate::geo::Country;

/// The most `X-Forwarded-For` hops read before giving up: a chain of trusted
/// proxies is never this long, and a header that makes one is not believed.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The client's address. `peer` is the connection's; `forwarded_for` the
/// values of the request's `X-Forwarded-For` headers, in order. `None` when
/// a trusted proxy's hop is not an address (such as `unknown`), or when the
/// chain of trusted hops is longer than [`MAX_FORWARDED_HOPS`]: then nobody
/// vouches for any address.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    trusted: &[CidrBlock],
) -> Option<IpAddr> {
    let trusts = |a: IpAddr| trusted.iter().any(|b| b.contains(a));
    let mut client = canonical(peer);
    if !trusts(client) {
        return Some(client);
    }
    // Several headers are one list, in order (RFC 9110 §5.3).
    let values: Vec<&[u8]> = forwarded_for.into_iter().collect();
    let hops = values.iter().rev().flat_map(|v| v.rsplit(|&b| b == b','));
    let mut read = 0;
    for hop in hops {
        let hop = hop.trim_ascii();
        if hop.is_empty() {
            // An empty list element is no element (RFC 9110 §5.6.1).
            continue;
        }
        read += 1;
        if read > MAX_FORWARDED_HOPS {
            return None;
        }
        client = canonical(parse_hop(hop)?);
        if !trusts(client) {
            return Some(client);
        }
    }
    // Every hop was a trusted address: the first of them is the client.
    Some(client)
}

/// One `X-Forwarded-For` hop: an address, perhaps with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`) or in brackets.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as a dual-stack socket
/// reports IPv4 peers) as the IPv4 address it is.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Where a client's country came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountrySource {
    /// The trusted proxy's country header.
    Header,
    /// The IP database.
    Database,
}

/// The client's country and its source, in the order the module documents:
/// `header` is the country header's value, read only if `peer_trusted`;
/// `lookup` asks the IP database (if any) about the client's address.
pub fn client_country(
    peer_trusted: bool,
    header: Option<&[u8]>,
    client: Option<IpAddr>,
    lookup: impl FnOnce(IpAddr) -> Option<Country>,
) -> Option<(Country, CountrySource)> {
    let from_header =
        header.filter(|_| peer_trusted).and_then(|v| std::str::from_utf8(v).ok()).and_then(Country::parse);
    if let Some(c) = from_header {
        return Some((c, CountrySource::Header));
    }
    Some((lookup(client?)?, CountrySource::Database))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(list: &[&str]) -> Vec<CidrBlock> {
        list.iter().map(|b| CidrBlock::parse(b).unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn address(peer: &str, xff: &[&str], trusted: &[&str]) -> Option<IpAddr> {
        client_address(ip(peer), xff.iter().map(|v| v.as_bytes()), &blocks(trusted))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(address("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]), Some(ip("203.0.113.9")));
        assert_eq!(address("203.0.113.9", &["garbage"], &[]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn trusted_hops_are_walked_from_the_right_to_the_first_untrusted_one() {
        let trusted = ["10.0.0.0/8", "192.0.2.7"];
        // The client prepended a spoofed address; the proxies appended theirs.
        let xff = ["6.6.6.6, 198.51.100.23, 10.1.1.1"];
        assert_eq!(address("192.0.2.7", &xff, &trusted), Some(ip("198.51.100.23")));
        // Two headers are one list.
        assert_eq!(address("10.0.0.1", &["6.6.6.6, 198.51.100.23", "10.1.1.1"], &trusted), Some(ip("198.51.100.23")));
        // No header: the trusted peer itself is the client.
        assert_eq!(address("10.0.0.1", &[], &trusted), Some(ip("10.0.0.1")));
        // Every hop trusted: the leftmost is the client.
        assert_eq!(address("10.0.0.1", &["10.2.2.2, 10.3.3.3"], &trusted), Some(ip("10.2.2.2")));
    }

    #[test]
    fn hops_may_carry_ports_brackets_and_empty_elements() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(address("10.0.0.1", &["198.51.100.1:4711"], &trusted), Some(ip("198.51.100.1")));
        assert_eq!(address("10.0.0.1", &["[2001:db8::5]:443"], &trusted), Some(ip("2001:db8::5")));
        assert_eq!(address("10.0.0.1", &["[2001:db8::6]"], &trusted), Some(ip("2001:db8::6")));
        assert_eq!(address("10.0.0.1", &["198.51.100.2, , 10.9.9.9,"], &trusted), Some(ip("198.51.100.2")));
        assert_eq!(address("::ffff:10.0.0.1", &["::ffff:198.51.100.3"], &trusted), Some(ip("198.51.100.3")));
    }

    #[test]
    fn a_hop_that_is_no_address_or_too_long_a_chain_vouches_for_nobody() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(address("10.0.0.1", &["unknown"], &trusted), None);
        assert_eq!(address("10.0.0.1", &["198.51.100.1, _hidden, 10.0.0.2"], &trusted), None);
        // Garbage left of the first untrusted hop is never read.
        assert_eq!(address("10.0.0.1", &["\u{0}garbage, 198.51.100.1"], &trusted), Some(ip("198.51.100.1")));
        let long = vec!["10.0.0.2"; MAX_FORWARDED_HOPS + 1].join(",");
        assert_eq!(address("10.0.0.1", &[&long], &trusted), None);
        let just = vec!["10.0.0.2"; MAX_FORWARDED_HOPS].join(",");
        assert_eq!(address("10.0.0.1", &[&just], &trusted), Some(ip("10.0.0.2")));
    }

    #[test]
    fn the_trusted_header_comes_before_the_database() {
        let de = Country::parse("DE");
        let fr = Country::parse("FR");
        let db = |_: IpAddr| fr;
        let client = Some(ip("198.51.100.1"));
        assert_eq!(client_country(true, Some(b"de"), client, db), Some((de.unwrap(), CountrySource::Header)));
        // An untrusted peer's header is not read; the database answers.
        assert_eq!(client_country(false, Some(b"DE"), client, db), Some((fr.unwrap(), CountrySource::Database)));
        // A CDN's XX, or no header at all: the database answers.
        assert_eq!(client_country(true, Some(b"XX"), client, db), Some((fr.unwrap(), CountrySource::Database)));
        assert_eq!(client_country(true, None, client, db), Some((fr.unwrap(), CountrySource::Database)));
        // No address vouched for, or no database entry: unknown.
        assert_eq!(client_country(true, None, None, db), None);
        assert_eq!(client_country(false, None, client, |_| None), None);
    }
}
