//! Geofencing, residency and the trust placed in the country header.

use edge_router_e2e::{FakeOrigin, TRUSTING_SERVER, TestRouter, chat_body, json_origin, refused_addr};

async fn ok_origin() -> FakeOrigin {
    json_origin(200, std::time::Duration::ZERO).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_unlisted_countries_get_451_json() {
    let o = ok_origin().await;
    let config = format!(
        "{TRUSTING_SERVER}nodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\ngeofence:\n  allow: [\"@EU\", US, KP]\n  deny: [KP]\n  unknown: deny\n",
        o.url()
    );
    let r = TestRouter::new(&config).await;
    assert_eq!(r.chat("DE", &chat_body("m", 3)).await.status, 200);
    assert_eq!(r.chat("us", &chat_body("m", 3)).await.status, 200);
    for country in ["KP", "BR"] {
        let reply = r.chat(country, &chat_body("m", 3)).await;
        assert_eq!(reply.status, 451, "{country}");
        assert_eq!(reply.json()["error"]["type"], "geofence_denied");
        assert_eq!(reply.header("x-edge-country"), country);
        assert_eq!(reply.header("x-edge-rule"), "geofence");
        assert_eq!(reply.header("x-edge-cache"), "BYPASS", "the router's own answers say so too");
    }
    let unknown = r.request("POST", "/v1/chat/completions", &[], &chat_body("m", 3).to_string()).await;
    assert_eq!((unknown.status, unknown.header("x-edge-country")), (451, "XX"));
    // A CDN's "XX" means it does not know: treated as unknown, not as a country.
    let xx = r.chat("XX", &chat_body("m", 3)).await;
    assert_eq!((xx.status, xx.json()["error"]["type"].as_str()), (451, Some("geofence_denied")));
    assert_eq!(o.hits(), 2, "refused requests never reach an origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_header_from_an_untrusted_peer_is_ignored() {
    let o = ok_origin().await;
    let config = format!(
        "server:\n  country_header: x-country\n  trusted_proxies: [\"10.9.9.9\"]\nnodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\ngeofence:\n  deny: [KP]\n",
        o.url()
    );
    let r = TestRouter::new(&config).await;
    let spoofed = r.chat("KP", &chat_body("m", 3)).await;
    assert_eq!((spoofed.status, spoofed.header("x-edge-country")), (200, "XX"), "a spoofed header is not believed");
    let sent = &o.seen()[0];
    assert!(!sent.headers.iter().any(|(n, _)| n == "x-country"), "the country header is not passed on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_bounded_fallback_never_crosses_jurisdictions() {
    let (eu_backup, us) = (ok_origin().await, ok_origin().await);
    let config = format!(
        "{TRUSTING_SERVER}residency:\n  jurisdictions: {{EU: [\"@EU\"], US: [US]}}\nnodes:\n\
         \x20 - {{id: eu-local, type: local, host: \"{}\", data_residency: EU}}\n\
         \x20 - {{id: us-cloud, type: cloud, host: \"{}\", data_residency: US}}\n\
         \x20 - {{id: eu-cloud, type: cloud, host: \"{}\", data_residency: EU}}\n\
         routing:\n  rules:\n    - {{name: local-first, match: {{}}, target: eu-local, fallback: [us-cloud, eu-cloud]}}\n",
        refused_addr().await,
        us.url(),
        eu_backup.url()
    );
    let r = TestRouter::new(&config).await;
    let reply = r.chat("FR", &chat_body("m", 3)).await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-attempts")), (200, "eu-cloud", "2"));
    assert!(us.hits() == 0, "EU data must not reach the US node");

    // A US client skips both EU nodes and lands on us-cloud directly.
    let reply = r.chat("US", &chat_body("m", 3)).await;
    assert_eq!((reply.node(), reply.header("x-edge-attempts")), ("us-cloud", "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_compliant_node_is_a_503_with_the_reason() {
    let us = ok_origin().await;
    let config = format!(
        "{TRUSTING_SERVER}residency:\n  jurisdictions: {{EU: [\"@EU\"]}}\nnodes:\n  - {{id: us-cloud, type: cloud, host: \"{}\", data_residency: global}}\n  - {{id: us-only, type: cloud, host: \"{}\"}}\nrouting:\n  rules:\n    - {{match: {{}}, target: us-only}}\n",
        us.url(),
        us.url()
    );
    let r = TestRouter::new(&config).await;
    let reply = r.chat("IT", &chat_body("m", 3)).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["type"], "residency_unavailable");
    assert!(reply.json()["error"]["message"].as_str().unwrap_or_default().contains("EU"));
    assert!(us.hits() == 0);
}
