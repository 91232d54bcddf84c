//! The IP database of the edge box: read at start, checked by `check`, and
//! read again at every reload, a bad file refused with the running one kept.
#![allow(clippy::disallowed_methods)]

mod common;
#[allow(dead_code)]
#[path = "../../tests/support/mmdb.rs"]
mod mmdb;

use bytes::Bytes;
use common::{EdgeBox, client};
use http_body_util::Full;

fn database_of(country: &str) -> Vec<u8> {
    mmdb::database("GeoLite2-Country", &[("198.51.100.0/24", mmdb::maxmind_country(country))])
}

async fn country_of(edge: &EdgeBox, forwarded: &str) -> String {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let req = http::Request::post(format!("{}/v1/chat/completions", edge.addr))
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client().request(req).await.expect("the router answers");
    resp.headers().get("x-edge-country").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_database_is_checked_and_read_again_at_every_reload() {
    let origin = fake_origin::FakeOrigin::start("n", fake_origin::Script::default()).await.expect("origin");
    let dir = std::env::temp_dir().join(format!("edge-router-geoip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("countries.mmdb");
    std::fs::write(&db, database_of("DE")).expect("database written");
    let config = format!(
        "server:\n  trusted_proxies: [127.0.0.1]\n  geoip_database: \"{}\"\nadmin: {{listen: \"127.0.0.1:0\"}}\nnodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\n",
        db.display(),
        origin.url()
    );

    let edge = EdgeBox::start_as("geoip.yaml", &config);
    let checked = std::process::Command::new(common::BIN).args(["check"]).arg(&edge.path).output().expect("check runs");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("IP database:") && said.contains("GeoLite2-Country"), "{said}");
    assert_eq!(country_of(&edge, "198.51.100.7").await, "DE");

    // A new database under the same config: the reload reads it.
    std::fs::write(&db, database_of("FR")).expect("database written");
    edge.ok(&["reload"]);
    assert_eq!(country_of(&edge, "198.51.100.7").await, "FR");

    // A damaged one is refused, and the running one stays.
    std::fs::write(&db, b"damaged").expect("database written");
    let (ok, _, stderr) = edge.cli(&["reload"], common::TOKEN);
    assert!(!ok && stderr.contains("server.geoip_database"), "{stderr}");
    assert_eq!(country_of(&edge, "198.51.100.7").await, "FR");
    let checked = std::process::Command::new(common::BIN).args(["check"]).arg(&edge.path).output().expect("check runs");
    assert!(!checked.status.success(), "check refuses a damaged database");
    let _ = std::fs::remove_dir_all(dir);
}
