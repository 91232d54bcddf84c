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

mod tokens {
    //! Tokens signed as identity providers sign them, with `ring`.
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

    pub struct Signers {
        rsa: RsaKeyPair,
        ec: EcdsaKeyPair,
        ed: Ed25519KeyPair,
        pub hmac: Vec<u8>,
    }

    impl Signers {
        pub fn new() -> Self {
            let rng = SystemRandom::new();
            let der = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/support/keys/jwt-test-rsa.pk8")).unwrap();
            let ec = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Self {
                rsa: RsaKeyPair::from_pkcs8(&der).unwrap(),
                ec: EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng).unwrap(),
                ed: Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap(),
                hmac: b"a shared secret of the test provider".to_vec(),
            }
        }

        /// The public keys, as a provider's JWKS lists them (the HMAC key is written in the config).
        pub fn jwks(&self) -> serde_json::Value {
            let rsa = signature::RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
            let point = self.ec.public_key().as_ref();
            serde_json::json!({"keys": [
                {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": B64.encode(&rsa.n), "e": B64.encode(&rsa.e)},
                {"kty": "EC", "kid": "e1", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])},
                {"kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": B64.encode(self.ed.public_key().as_ref())},
            ]})
        }

        pub fn sign(&self, alg: &str, kid: &str, claims: &serde_json::Value) -> String {
            let header = serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"});
            let signed = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
            let rng = SystemRandom::new();
            let signature = match alg {
                "RS256" => {
                    let mut out = vec![0; self.rsa.public().modulus_len()];
                    self.rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut out).unwrap();
                    out
                }
                "ES256" => self.ec.sign(&rng, signed.as_bytes()).unwrap().as_ref().to_vec(),
                "EdDSA" => self.ed.sign(signed.as_bytes()).as_ref().to_vec(),
                "HS256" => {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.hmac);
                    ring::hmac::sign(&key, signed.as_bytes()).as_ref().to_vec()
                }
                "none" => Vec::new(),
                other => panic!("{other}"),
            };
            format!("{signed}.{}", B64.encode(signature))
        }

        pub fn hmac_jwk(&self) -> String {
            format!("{{kty: oct, kid: h1, k: \"{}\"}}", B64.encode(&self.hmac))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_tokens_name_tenant_and_tier_and_bad_ones_get_401() {
    let (plain, gold) =
        (json_origin(200, std::time::Duration::ZERO).await, json_origin(200, std::time::Duration::ZERO).await);
    let signers = tokens::Signers::new();
    let dir = std::env::temp_dir().join(format!("edge-router-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, signers.jwks().to_string()).unwrap();
    let config = format!(
        "nodes:\n  - {{id: plain, type: cloud, host: \"{}\"}}\n  - {{id: gold, type: cloud, host: \"{}\"}}\n\
         routing:\n  rules:\n    - {{match: {{user_tier: gold}}, target: gold}}\n    - {{match: {{}}, target: plain}}\n\
         auth:\n  required: true\n  keys:\n    - {{sha256: \"{}\", tenant: beta}}\n\
         \x20 tenants:\n    acme: {{limits: {{requests_per_minute: 100}}}}\n\
         \x20 jwt:\n    jwks_file: \"{}\"\n    jwks: {{keys: [{}]}}\n    issuer: https://idp.example\n    audience: edge\n\
         \x20   tenant_claim: org\n    tier_claim: plan\n",
        plain.url(),
        gold.url(),
        sha256_hex("sk-beta"),
        jwks.display(),
        signers.hmac_jwk()
    );
    let r = TestRouter::new(&config).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |exp: u64, plan: Option<&str>| {
        let mut c =
            serde_json::json!({"iss": "https://idp.example", "aud": "edge", "exp": exp, "org": "acme", "sub": "u-1"});
        if let Some(p) = plan {
            c["plan"] = serde_json::json!(p);
        }
        c
    };
    let body = chat_body("m", 3).to_string();
    let call = |bearer: String| {
        let (r, body) = (&r, &body);
        async move {
            let auth = format!("Bearer {bearer}");
            let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
            r.request("POST", "/v1/chat/completions", &headers, body).await
        }
    };

    // Each algorithm's token is accepted; its claims name tenant and tier.
    let gold_token = call(signers.sign("RS256", "r1", &claims(now + 300, Some("gold")))).await;
    assert_eq!((gold_token.status, gold_token.node()), (200, "gold"), "{:?}", gold_token.body);
    assert_eq!(gold_token.header("x-ratelimit-limit-requests"), "100", "the tenant acme's limits");
    for (alg, kid) in [("ES256", "e1"), ("EdDSA", "d1"), ("HS256", "h1")] {
        let reply = call(signers.sign(alg, kid, &claims(now + 300, None))).await;
        assert_eq!((reply.status, reply.node()), (200, "plain"), "{alg}: {:?}", reply.body);
    }
    // A key works beside them.
    assert_eq!(call("sk-beta".into()).await.status, 200);

    // Tokens that do not pass are refused with the reason.
    let mut wrong_issuer = claims(now + 300, None);
    wrong_issuer["iss"] = serde_json::json!("https://other.example");
    let forged = {
        let t = signers.sign("ES256", "e1", &claims(now + 300, Some("gold")));
        let (signed, _) = t.rsplit_once('.').unwrap();
        format!("{signed}.{}", t.rsplit_once('.').unwrap().1.chars().rev().collect::<String>())
    };
    let cases = [
        (signers.sign("RS256", "r1", &claims(now - 3_600, None)), "expired"),
        (signers.sign("RS256", "r1", &wrong_issuer), "issuer"),
        (signers.sign("none", "r1", &claims(now + 300, None)), "not accepted"),
        (signers.sign("HS256", "r1", &claims(now + 300, None)), "no configured key"),
        (forged, "signature"),
    ];
    for (token, why) in cases {
        let reply = call(token).await;
        let message = reply.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert_eq!((reply.status, reply.header("www-authenticate")), (401, "Bearer"), "{why}: {message}");
        assert!(message.contains(why), "{why}: {message}");
    }
    assert!(
        plain.seen().iter().chain(gold.seen().iter()).all(|s| !s.headers.iter().any(|(n, _)| n == "authorization")),
        "no credential reaches an origin"
    );
    assert_eq!(plain.hits() + gold.hits(), 5, "refused tokens never reach an origin");
    let _ = std::fs::remove_dir_all(dir);
}
