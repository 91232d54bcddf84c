//! Bad input gets a clear error; secrets stay where they belong; other paths pass through.

use edge_router_e2e::fake_origin::Reply;
use edge_router_e2e::{FakeOrigin, Route, Script, TestRouter, chat_body, sha256_hex};
use serde_json::json;
/// The fake origin: chat completions, and a file list at `GET /v1/files`.
async fn ok_origin() -> FakeOrigin {
    let models = Route {
        method: Some("GET".into()),
        path: Some("/v1/files".into()),
        reply: Reply {
            body: Some(json!({"data": []}).to_string()),
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            ..Reply::default()
        },
        ..Route::default()
    };
    let script = Script { routes: vec![models], ..Script::default() };
    FakeOrigin::start("n", script).await.expect("start the fake origin")
}

fn one_node(o: &FakeOrigin, extra: &str) -> String {
    format!("{extra}nodes:\n  - {{id: n, type: cloud, host: \"{}\", api_key_env: E2E_ORIGIN_KEY}}\n", o.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_400_in_openai_error_shape() {
    let o = ok_origin().await;
    let r = TestRouter::new(&one_node(&o, "")).await;
    for (body, needle) in [
        ("{\"model\": \"m\", \"messages\": [", "not valid JSON"),
        ("{\"model\": \"m\", \"stream\": \"yes\"}", "expected shape"),
        ("{\"messages\": []}", "needs a `model`"),
        ("", "is empty"),
        ("[\"auto\",null,null,null,null,null,null]", "must be a JSON object"),
    ] {
        let reply = r.request("POST", "/v1/chat/completions", &[("content-type", "application/json")], body).await;
        assert_eq!(reply.status, 400, "{body}");
        let err = &reply.json()["error"];
        assert_eq!(err["type"], "invalid_request_error");
        assert!(err["message"].as_str().unwrap_or_default().contains(needle), "{body}: {err}");
        assert_eq!(reply.header("x-edge-attempts"), "0");
    }
    assert!(o.hits() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_whether_declared_or_chunked() {
    let o = ok_origin().await;
    let r = TestRouter::new(&one_node(&o, "server:\n  max_body_bytes: 1000\n")).await;
    let big = chat_body("m", 400).to_string();
    let reply = r.request("POST", "/v1/chat/completions", &[], &big).await;
    assert_eq!((reply.status, reply.json()["error"]["type"].as_str()), (413, Some("request_too_large")));

    // Without a content-length the limit is enforced while reading.
    let chunked = r.request("POST", "/v1/chat/completions", &[("transfer-encoding", "chunked")], &big).await;
    assert_eq!(chunked.status, 413);
    let fits = r.request("POST", "/v1/chat/completions", &[], &chat_body("m", 10).to_string()).await;
    assert_eq!(fits.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_are_never_forwarded_and_origin_keys_are_added() {
    // SAFETY: set before the router starts; no other test reads this variable.
    unsafe { std::env::set_var("E2E_ORIGIN_KEY", "origin-secret") };
    let o = ok_origin().await;
    let key = sha256_hex("sk-client");
    let auth = format!("auth:\n  required: true\n  keys: [{{sha256: \"{key}\", tenant: t1}}]\n");
    let r = TestRouter::new(&one_node(&o, &auth)).await;

    let denied = r.chat_with("US", &chat_body("m", 3), &[("authorization", "Bearer sk-wrong")]).await;
    assert_eq!((denied.status, denied.json()["error"]["type"].as_str()), (401, Some("authentication_error")));
    assert!(!String::from_utf8_lossy(&denied.body).contains("sk-wrong"), "keys are not echoed");

    let ok = r
        .chat_with(
            "US",
            &chat_body("m", 3),
            &[("authorization", "Bearer sk-client"), ("x-api-key", "sk-client"), ("api-key", "sk-client")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let sent = &o.seen()[0];
    let header = |name: &str| sent.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("authorization"), Some("Bearer origin-secret"));
    assert!(header("x-api-key").is_none() && header("api-key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_pass_through_to_the_configured_node_or_get_404() {
    let o = ok_origin().await;
    let r = TestRouter::new(&format!("{}routing:\n  passthrough: n\n", one_node(&o, ""))).await;
    let reply = r.request("GET", "/v1/files", &[], "").await;
    assert_eq!((reply.status, reply.node(), reply.header("x-edge-rule")), (200, "n", "passthrough"));
    assert_eq!(reply.json(), json!({"data": []}));

    let r = TestRouter::new(&one_node(&o, "")).await;
    let reply = r.request("GET", "/v1/files", &[], "").await;
    assert_eq!((reply.status, reply.json()["error"]["type"].as_str()), (404, Some("not_found_error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_refused_with_file_line_and_reason() {
    let cases = [
        (
            "nodes:\n  - {id: a, type: cloud, host: \"http://x\", colour: red}\n",
            "test.yaml:2:",
            "unknown field `colour`",
        ),
        (
            "nodes:\n  - {id: a, type: cloud, host: \"http://x\"}\nrouting:\n  rules:\n    - {match: {}, target: b}\n",
            "test.yaml:5:",
            "`b` is not the id of any node",
        ),
        (
            "nodes:\n  - {id: a, type: cloud, host: \"http://x\"}\n  - {id: a, type: cloud, host: \"http://y\"}\n",
            "test.yaml:3:",
            "already used by the node on line 2",
        ),
        (
            "nodes:\n  - id: a\n    type: cloud\n    host: \"http://x\"\n    cache_ttl: 5 minutes\n",
            "test.yaml:5:",
            "is not a duration",
        ),
        ("nodes:\n  - {id: a, type: cloud, host: \"ftp://x\"}\n", "test.yaml:2:", "scheme must be http or https"),
        ("nodes:\n  - {id: a, type: cloud, host: \"http://x/v1#top\"}\n", "test.yaml:2:", "cannot carry a fragment"),
        ("nodes: [\n", "test.yaml:", "not valid YAML"),
    ];
    for (config, location, reason) in cases {
        let err = match TestRouter::start(config).await {
            Ok(_) => panic!("accepted an invalid config:\n{config}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(location) && err.contains(reason), "expected {location} … {reason}, got: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = ok_origin().await;
    let r = TestRouter::new(&one_node(&o, "server:\n  client_timeout: 300ms\n")).await;
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"model\":";
    s.write_all(head.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the router must not wait forever for a stalled client");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(o.hits() == 0);
}

/// Reads `s` until the router closes it, at most `limit` after `since`:
/// what it sent, and when it closed (after `since`). Panics if the
/// connection is still open then.
async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    since: std::time::Instant,
    limit: std::time::Duration,
) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((since + limit).into(), s.read(&mut buf)).await {
            Err(_) => {
                panic!("the connection is still open after {limit:?}; read so far: {}", String::from_utf8_lossy(&got))
            }
            Ok(Ok(0) | Err(_)) => return (got, since.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_head_is_cut_off_after_client_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_millis(400);
    let o = ok_origin().await;
    let r = TestRouter::new(&one_node(&o, "server:\n  client_timeout: 400ms\n")).await;

    // Half a head, then nothing: a slowloris holds the connection open.
    let since = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    let (got, took) = read_until_closed(&mut s, since, std::time::Duration::from_secs(5)).await;
    assert!(took >= timeout, "cut off after {took:?}, before client_timeout");
    assert!(got.is_empty(), "nothing is answered to half a head: {}", String::from_utf8_lossy(&got));

    // A head sent a byte at a time keeps no connection open past the
    // timeout either: the time runs from the head's first byte, not its last.
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
    let trickle = tokio::spawn(async move {
        for b in b"GET /v1/files HTTP/1.1\r\nhost: x\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                return Err(s);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(s)
    });
    let mut s = match tokio::time::timeout(std::time::Duration::from_secs(5), trickle).await {
        Ok(Ok(Err(s))) => s,
        Ok(Ok(Ok(_))) => panic!("a head trickled over 7 s was read whole with a client_timeout of {timeout:?}"),
        Ok(Err(e)) => panic!("the trickling writer failed: {e}"),
        Err(_) => panic!("the connection of a trickled head is still open after 5 s"),
    };
    let (got, _) = read_until_closed(&mut s, std::time::Instant::now(), std::time::Duration::from_secs(5)).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(o.hits() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_whose_next_head_does_not_come_is_closed() {
    use tokio::io::AsyncWriteExt;
    let o = ok_origin().await;
    // A second of slack for the second request on a loaded machine.
    let config = format!("{}routing:\n  passthrough: n\n", one_node(&o, "server:\n  client_timeout: 1s\n"));
    let r = TestRouter::new(&config).await;
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
    let ask = b"GET /v1/files HTTP/1.1\r\nhost: x\r\n\r\n";
    s.write_all(ask).await.expect("write");
    // The first answer comes, and the connection stays open for a second
    // request sent within the timeout ...
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("{\"data\":[]}") {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the first answer within 5 s")
            .expect("read");
        assert!(n > 0, "closed before the first answer: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // (The router's wait for the next head starts once it has answered this.)
    let since = std::time::Instant::now();
    s.write_all(ask).await.expect("a second request on the kept-alive connection");
    // ... and is closed once no head has come for client_timeout after it.
    let (second, took) = read_until_closed(&mut s, since, std::time::Duration::from_secs(5)).await;
    let second = String::from_utf8_lossy(&second);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(took >= std::time::Duration::from_secs(1), "closed after {took:?}, before client_timeout");
    assert_eq!(o.hits(), 2);
}

#[test]
fn a_module_that_reads_the_config_otherwise_than_the_host_is_refused() {
    // Replies name nodes and rules by their place in the config, which the
    // host looks up in its own reading: the two must agree.
    let config = |nodes: [&str; 2], rules: &str| {
        let nodes: String =
            nodes.iter().map(|id| format!("  - {{id: {id}, type: cloud, host: \"http://127.0.0.1:9\"}}\n")).collect();
        format!("nodes:\n{nodes}routing:\n  rules:\n{rules}")
    };
    let rule = "    - {match: {type: \"*\"}, target: a}\n";
    let text = config(["a", "b"], rule);
    let router = edge_router_host::WasmRouter::new(edge_router_e2e::module(), "test.yaml", &text).expect("configures");
    let host = |text: &str| edge_router::RouterConfig::load("test.yaml", text).expect("a valid config");
    router.check_layout(&host(&text)).expect("the same config is the same layout");
    for other in [config(["b", "a"], rule), config(["a", "b"], &format!("{rule}{rule}"))] {
        let err = router.check_layout(&host(&other)).expect_err("another layout");
        assert!(format!("{err:#}").contains("otherwise than this host"), "{err:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_is_cut_off_and_frees_the_node() {
    use tokio::io::AsyncWriteExt;
    // An answer far larger than what the sockets between can hold.
    let big = Reply { body: Some("x".repeat(32 << 20)), ..Reply::default() };
    let o = FakeOrigin::start("n", Script::always(big)).await.expect("start the fake origin");
    let config = format!(
        "server:\n  client_timeout: 1s\nnodes:\n  - {{id: n, type: cloud, host: \"{}\", max_concurrent: 1}}\n",
        o.url()
    );
    let r = TestRouter::new(&config).await;
    // temperature 1: sampled, so the cache stays out of it.
    let body = json!({"model": "m", "temperature": 1, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut s = tokio::net::TcpStream::connect(r.addr()).await.expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(format!("{head}{body}").as_bytes()).await.expect("write");
    // The client reads nothing. While its answer waits, the node's one slot is taken ...
    let start = std::time::Instant::now();
    while o.hits() == 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the request never reached the node");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let meanwhile = r.chat("US", &chat_body("m", 5)).await;
    assert_eq!(meanwhile.status, 429, "{}", String::from_utf8_lossy(&meanwhile.body));
    // ... until the connection is closed, a client timeout after its writes
    // stopped: what the client reads then ends short of the answer.
    loop {
        let after = r.chat("US", &chat_body("m", 5)).await;
        if after.status == 200 {
            break;
        }
        assert_eq!(after.status, 429, "{}", String::from_utf8_lossy(&after.body));
        assert!(start.elapsed() < std::time::Duration::from_secs(15), "the slot is still taken after 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (got, _) = read_until_closed(&mut s, std::time::Instant::now(), std::time::Duration::from_secs(10)).await;
    assert!(got.starts_with(b"HTTP/1.1 200") && got.len() < 32 << 20, "{} bytes came", got.len());
}
