//! Keys, tenants, allow-lists and rate limits through the real edge box:
//! what a client sees, and what never reaches an origin.

use edge_router_e2e::{TRUSTING_SERVER, TestRouter, chat_body, json_origin, sha256_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_addresses_and_a_tenants_limits_as_a_client_sees_them() {
    let o = json_origin(200, std::time::Duration::ZERO).await;
    let config = format!(
        "{TRUSTING_SERVER}nodes:\n  - {{id: n, type: cloud, host: \"{}\"}}\nauth:\n  required: true\n  keys:\n\
         \x20   - {{sha256: \"{}\", tenant: acme, name: ci, allow_ips: [198.51.100.0/24]}}\n\
         \x20   - {{sha256: \"{}\", tenant: acme, name: retired, not_after: \"2020-01-01\"}}\n\
         \x20 tenants:\n    acme: {{limits: {{requests_per_minute: 3, tokens_per_minute: 100000}}}}\n",
        o.url(),
        sha256_hex("sk-ci"),
        sha256_hex("sk-retired")
    );
    let r = TestRouter::new(&config).await;
    let body = chat_body("m", 3).to_string();
    let call = |key: &'static str, forwarded: &'static str| {
        let (r, body) = (&r, &body);
        async move {
            let auth = format!("Bearer {key}");
            let headers = [
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
                ("x-forwarded-for", forwarded),
            ];
            r.request("POST", "/v1/chat/completions", &headers, body).await
        }
    };

    let ok = call("sk-ci", "198.51.100.7").await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!((ok.header("x-ratelimit-limit-requests"), ok.header("x-ratelimit-remaining-requests")), ("3", "2"));
    assert_eq!(ok.header("x-ratelimit-limit-tokens"), "100000");
    assert!(ok.header("x-ratelimit-reset-requests").ends_with('s'), "{:?}", ok.headers);

    // Another address is refused, and so is a peer nobody trusts claiming the right one.
    let elsewhere = call("sk-ci", "203.0.113.1").await;
    assert_eq!((elsewhere.status, elsewhere.json()["error"]["type"].as_str()), (403, Some("permission_denied")));
    let spoofer: std::net::IpAddr = [127, 0, 0, 9].into();
    let headers =
        [("content-type", "application/json"), ("authorization", "Bearer sk-ci"), ("x-forwarded-for", "198.51.100.7")];
    let spoofed = r.request_from(spoofer, "POST", "/v1/chat/completions", &headers, &body).await;
    assert_eq!(spoofed.status, 403);

    // A retired key gets 401, and says why.
    let retired = call("sk-retired", "198.51.100.7").await;
    assert_eq!(retired.status, 401);
    assert!(retired.json()["error"]["message"].as_str().unwrap().contains("expired"));

    // Two more fit the tenant's three a minute; the next is refused as OpenAI refuses it.
    assert_eq!(call("sk-ci", "198.51.100.7").await.status, 200);
    assert_eq!(call("sk-ci", "198.51.100.7").await.status, 200);
    let limited = call("sk-ci", "198.51.100.7").await;
    assert_eq!((limited.status, limited.json()["error"]["type"].as_str()), (429, Some("rate_limited")));
    let wait: u64 = limited.header("retry-after").parse().expect("retry-after in seconds");
    assert!((1..=20).contains(&wait), "{wait}");
    assert_eq!(limited.header("x-ratelimit-remaining-requests"), "0");
    assert!(limited.json()["error"]["message"].as_str().unwrap().contains("tenant acme"));
    assert_eq!(o.hits(), 3, "only the requests admitted reached the origin");
}
