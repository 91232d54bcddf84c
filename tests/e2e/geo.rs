//! Geofencing, residency, and the trust placed in the country header, in
//! `X-Forwarded-For` and in the IP database.

use edge_router_e2e::mmdb::{database, ip_location_db_country, maxmind_country};
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

/// A country database of test networks, in both record shapes in use, in a
/// file of its own.
fn country_database(dir: &std::path::Path) -> String {
    let db = database(
        "GeoLite2-Country",
        &[
            ("198.51.100.0/24", maxmind_country("DE")),
            ("203.0.113.0/24", ip_location_db_country("KP")),
            ("2001:db8::/32", maxmind_country("FR")),
            ("127.0.0.7/32", ip_location_db_country("BR")),
        ],
    );
    let path = dir.join("countries.mmdb");
    std::fs::write(&path, db).expect("database written");
    path.display().to_string()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-router-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_country_comes_from_a_trusted_header_then_the_ip_database_of_the_forwarded_address() {
    let o = ok_origin().await;
    let dir = temp_dir("geoip");
    let config = format!(
        "server:\n  country_header: x-country\n  trusted_proxies: [127.0.0.1]\n  geoip_database: \"{}\"\nnodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\ngeofence:\n  deny: [KP]\n",
        country_database(&dir),
        o.url()
    );
    let r = TestRouter::new(&config).await;
    let body = chat_body("m", 3).to_string();
    let ask = |headers: Vec<(&'static str, &'static str)>| {
        let (r, body) = (&r, &body);
        async move {
            let mut all = vec![("content-type", "application/json")];
            all.extend(headers);
            let reply = r.request("POST", "/v1/chat/completions", &all, body).await;
            (reply.status, reply.header("x-edge-country").to_string())
        }
    };
    let country = |c: &str| (200, c.to_string());
    // The trusted proxy's header comes first...
    assert_eq!(ask(vec![("x-country", "US"), ("x-forwarded-for", "198.51.100.7")]).await, country("US"));
    // ...and without it, or with its XX, the database places the forwarded address.
    assert_eq!(ask(vec![("x-forwarded-for", "198.51.100.7")]).await, country("DE"));
    assert_eq!(ask(vec![("x-country", "XX"), ("x-forwarded-for", "198.51.100.7")]).await, country("DE"));
    assert_eq!(ask(vec![("x-forwarded-for", "[2001:db8::1]:443")]).await, country("FR"));
    // The hop the trusted proxy appended is the client, not what the client wrote before it.
    assert_eq!(ask(vec![("x-forwarded-for", "198.51.100.9, 203.0.113.5")]).await, (451, "KP".to_string()));
    assert_eq!(ask(vec![("x-forwarded-for", "203.0.113.5, 198.51.100.9")]).await, country("DE"));
    // A hop that is no address vouches for nobody: the country is unknown.
    assert_eq!(ask(vec![("x-forwarded-for", "unknown")]).await, country("XX"));
    // An address the database does not hold is of unknown country.
    assert_eq!(ask(vec![("x-forwarded-for", "192.0.2.1")]).await, country("XX"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_is_placed_by_its_own_address_whatever_it_claims() {
    let o = ok_origin().await;
    let dir = temp_dir("geoip-spoof");
    let config = format!(
        "server:\n  country_header: x-country\n  trusted_proxies: [127.0.0.1]\n  geoip_database: \"{}\"\nnodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\ngeofence:\n  deny: [KP]\n",
        country_database(&dir),
        o.url()
    );
    let r = TestRouter::new(&config).await;
    let spoofer: std::net::IpAddr = [127, 0, 0, 7].into();
    let headers = [("content-type", "application/json"), ("x-country", "DE"), ("x-forwarded-for", "198.51.100.7")];
    let reply = r.request_from(spoofer, "POST", "/v1/chat/completions", &headers, &chat_body("m", 3).to_string()).await;
    assert_eq!((reply.status, reply.header("x-edge-country")), (200, "BR"), "neither header is believed");
    // Nor can it claim a denied country's address to be refused in another's name.
    let headers = [("content-type", "application/json"), ("x-forwarded-for", "203.0.113.5")];
    let reply = r.request_from(spoofer, "POST", "/v1/chat/completions", &headers, &chat_body("m", 3).to_string()).await;
    assert_eq!((reply.status, reply.header("x-edge-country")), (200, "BR"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_no_ip_database_is_refused_at_start() {
    let dir = temp_dir("geoip-bad");
    let path = dir.join("not.mmdb");
    std::fs::write(&path, b"not a database").unwrap();
    let config = format!(
        "server:\n  geoip_database: \"{}\"\nnodes:\n  - {{id: n, type: cloud, host: \"http://127.0.0.1:9\"}}\n",
        path.display()
    );
    let err = TestRouter::start(&config).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("server.geoip_database") && text.contains("not a MaxMind DB"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
