//! A client request, from its arrival to the router's first action: the
//! body's limits, the client's country, what the router is given, and the
//! cache lookup the router may ask for first.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use edge_router::RouterConfig;
use edge_router::client::{client_address, client_country};
use edge_router::facts::Endpoint;
use edge_router::geo::Country;
use edge_router::wire::{Action, BearerToken, BodyRef, Event, Fleet, RequestRef};
use exchange::answer::host_error;
use exchange::head::Stale;
use exchange::intake::{
    HostReads, Intake, body_limits, host_reads, limited_request, path_and_query, read_limited, read_token, take_in,
};
use exchange::record::Begun;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Deferred, FinishOnDrop};
use super::lookup::{Looked, look_up};
use super::recorded::recorded;
use super::route::Pending;
use super::{Client, Generation, Shared, now_ms};
use crate::origins::ProxyBody;

/// The client's address and country, believed as `edge_router::client`
/// says: through trusted proxies only, the country from their header before
/// the IP database.
fn client_of(
    shared: &Shared,
    headers: &HeaderMap,
    peer: IpAddr,
    config: &RouterConfig,
) -> (Option<IpAddr>, Option<Country>) {
    let trusted = &config.trusted_proxies;
    let forwarded = headers.get_all("x-forwarded-for").iter().map(http::HeaderValue::as_bytes);
    let address = client_address(peer, forwarded, trusted);
    let peer_trusted = trusted.iter().any(|b| b.contains(peer));
    let header =
        config.server.country_header.as_deref().and_then(|name| headers.get(name)).map(http::HeaderValue::as_bytes);
    let geoip = shared.geoip();
    let country = client_country(peer_trusted, header, address, |a| geoip.as_ref()?.country(a));
    (address, country.map(|(c, _)| c))
}

/// `address` as text. An IPv4 address, which nearly every request has, is
/// written by hand: `Display` goes through the formatting machinery (width
/// and padding) at about ten times the cost, on every request.
fn ip_text(address: IpAddr) -> String {
    let IpAddr::V4(v4) = address else { return address.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// What the fleet's shared store says of the request's rate limits, when
/// the box shares them (`state.redis`) and the caller has limits.
async fn fleet_verdict(
    shared: &Shared,
    config: &RouterConfig,
    id: u64,
    key_sha256: Option<&[u8; 32]>,
    token: Option<&BearerToken>,
    endpoint: Endpoint,
    facts: Option<&edge_router::facts::BodyFacts>,
) -> Option<Fleet> {
    let store = shared.fleet.as_ref()?;
    let claim = limited_request(config, key_sha256, token, endpoint, facts)?;
    Some(store.reserve(id, &claim.limited, claim.tokens, now_ms()).await)
}

/// An answer the host gives itself, as a response of the proxy.
pub(super) fn own(response: Response<Bytes>) -> Response<ProxyBody> {
    response.map(super::route::full)
}

/// Handles one client request; its record is closed when its response is over.
pub async fn handle(shared: Arc<Shared>, client: Client, req: Request<Incoming>) -> Response<ProxyBody> {
    let id = shared.request_id();
    // The config in force now is the request's, to its end.
    let generation = shared.generation();
    let mut begun = Begun::new(id, now_ms(), req.method(), path_and_query(req.uri()));
    let response = admit(shared.clone(), generation.clone(), client, req, &mut begun).await;
    if !shared.signals.wanted() {
        return response;
    }
    recorded(&shared, generation, begun, response)
}

/// A client request up to its response, noting in `begun` what the router read.
async fn admit(
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    client: Client,
    req: Request<Incoming>,
    begun: &mut Begun,
) -> Response<ProxyBody> {
    let config = &generation.config;
    let id = begun.id;
    let (address, country) = client_of(&shared, req.headers(), client.peer, config);
    let address = address.map(ip_text);
    let (parts, incoming) = req.into_parts();
    let endpoint = Endpoint::classify(parts.method.as_str(), path_and_query(&parts.uri));
    begun.endpoint = Some(endpoint);
    // `original` is kept for fallbacks and model rewrites (the event borrows it).
    let taken =
        take_in(endpoint, &parts.headers, body_limits(config), incoming, read_limited, tokio::time::sleep).await;
    let (original, stream) = match taken {
        Ok(Intake::Whole(bytes)) => (Some(bytes), None),
        Ok(Intake::Streams(incoming)) => (None, Some(incoming)),
        Err(e) => return own(host_error(&e, country, id)),
    };

    let guard = FinishOnDrop::new(Deferred(shared.clone()), id);
    // The event borrows the client's headers and body: they are encoded
    // straight from the request, not copied first.
    let token =
        shared.jwt_keys().and_then(|keys| read_token(config, &parts.headers, &keys, now_ms(), crate::jwt::verify));
    let HostReads { headers, key_sha256, body_facts, requested_model } =
        host_reads(config, &parts.headers, country, endpoint, original.as_deref(), token.as_ref());
    begun.read(config, endpoint, key_sha256.as_ref(), token.as_ref(), body_facts.as_ref());
    let country_code = country.as_ref().map(Country::as_str);
    let fleet =
        fleet_verdict(&shared, config, id, key_sha256.as_ref(), token.as_ref(), endpoint, body_facts.as_ref()).await;
    let mut decided = shared.request(&RequestRef {
        id,
        method: parts.method.as_str(),
        target: path_and_query(&parts.uri),
        headers,
        country: country_code,
        client: address.as_deref(),
        body: original.as_deref().map_or(BodyRef::Streamed, BodyRef::Buffered),
        now_ms: now_ms(),
        random: shared.random(),
        key_sha256,
        body_facts,
        token: token.as_ref().map(BearerToken::as_ref),
        fleet,
    });
    if let (Some(store), Some(_)) = (&shared.fleet, fleet) {
        store.decided(id, matches!(decided.action, Action::Forward(_) | Action::Lookup(_)), now_ms());
    }
    // An origin's interim responses are passed on for passthrough paths, to
    // clients that may get them (not HTTP/1.0 ones, RFC 9110 §15.2).
    let interim = (!endpoint.is_api() && parts.version >= http::Version::HTTP_11).then_some(client.interim);
    let mut pending = Pending {
        shared: shared.clone(),
        generation: generation.clone(),
        worker: client.worker,
        interim,
        id,
        guard,
        parts,
        original: original.unwrap_or_default(),
        stream,
        country,
        endpoint,
        requested_model,
        filling: None,
        stale: None,
        upload: None,
        pii: None,
        blocked: None,
    };
    if let Action::Lookup(lookup) = &decided.action {
        let miss = |shared: &Shared| shared.decide(&Event::CacheMiss { id, now_ms: now_ms() });
        match look_up(&shared, lookup, &pending.parts).await {
            Looked::Hit(hit) => {
                pending.guard.disarm();
                shared.defer(&Event::CacheHit { id, now_ms: now_ms() });
                return hit;
            }
            Looked::Stale { response, entry } => {
                // stale-while-revalidate: the client gets the stale answer
                // now, and the same exchange revalidates it in the background
                // (whose interim responses no client waits for).
                pending.stale = Some(Stale { entry, if_error: true });
                pending.interim = None;
                let decided = miss(&shared);
                tokio::spawn(async move {
                    let refreshed = pending.route(decided).await;
                    let _ = refreshed.into_body().collect().await;
                });
                return response;
            }
            Looked::Revalidate { entry, if_error, leader } => {
                pending.stale = Some(Stale { entry, if_error });
                pending.filling = leader;
                decided = miss(&shared);
            }
            Looked::Miss(leader) => {
                pending.filling = leader;
                decided = miss(&shared);
            }
        }
    }
    pending.route(decided).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        for text in
            ["0.0.0.0", "1.2.3.4", "10.0.0.255", "192.168.100.9", "255.255.255.255", "::1", "2001:db8::8a2e:370:7334"]
        {
            let address: IpAddr = text.parse().expect("an address");
            assert_eq!(ip_text(address), text);
        }
        for octet in 0..=255u8 {
            let address = IpAddr::from([octet, 0, 99, 255 - octet]);
            assert_eq!(ip_text(address), address.to_string());
        }
    }
}
