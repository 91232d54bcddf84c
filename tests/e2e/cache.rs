//! The AI-request cache through the real host and module: a repeated
//! deterministic question is answered at the edge, per tenant, until its
//! TTL; streams are replayed as streams; concurrent misses reach the origin
//! once; and clients can opt out.

use std::sync::Arc;
use std::time::Duration;

use edge_router_e2e::{
    FakeOrigin, Script, TRUSTING_SERVER, TestRouter, breaks_after_head_origin, fake_origin, json_origin_named,
    sha256_hex, sse_origin,
};

/// The fake origin: a chat completion ("Paris.") with a usage of 10 tokens, after `delay`.
async fn answering_origin(delay: Duration) -> FakeOrigin {
    let reply =
        fake_origin::Reply { text: Some("Paris.".into()), delay_ms: delay.as_millis() as u64, ..Default::default() };
    FakeOrigin::start("gpu", Script::always(reply)).await.expect("start the fake origin")
}

async fn hits(server: &FakeOrigin) -> usize {
    server.hits()
}

fn config(origin: &str, extra: &str) -> String {
    format!(
        "{TRUSTING_SERVER}nodes:\n  - {{id: gpu, type: local, host: \"{origin}\"}}\nrouting:\n  rules:\n    - {{name: main, match: {{}}, target: gpu}}\n{extra}"
    )
}

fn question(temperature: f64) -> serde_json::Value {
    serde_json::json!({"model": "m", "temperature": temperature,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_question_is_a_hit_after_a_miss_and_reports_what_it_saved() {
    let origin = answering_origin(Duration::ZERO).await;
    let r = TestRouter::new(&config(&origin.url(), "")).await;
    let first = r.chat("US", &question(0.0)).await;
    assert_eq!((first.status, first.header("x-edge-cache")), (200, "MISS"));
    // Key order and number spelling do not matter.
    let same = serde_json::json!({"messages": [{"content": "What is the capital of France?", "role": "user"}],
        "temperature": 0, "model": "m"});
    let second = r.chat("US", &same).await;
    assert_eq!((second.status, second.header("x-edge-cache")), (200, "HIT"));
    assert_eq!(second.body, first.body, "the same answer");
    assert_eq!((second.node(), second.header("x-edge-attempts")), ("gpu", "0"));
    assert_eq!(second.header("x-edge-cache-tokens-saved"), "10", "from the answer's usage");
    assert!(second.header("age").parse::<u64>().is_ok());
    assert_eq!(hits(&origin).await, 1);

    // A sampled request bypasses the cache; a client's no-store too.
    let sampled = r.chat("US", &question(0.8)).await;
    assert_eq!(sampled.header("x-edge-cache"), "BYPASS");
    let no_store = r.chat_with("US", &question(0.0), &[("cache-control", "no-store")]).await;
    assert_eq!(no_store.header("x-edge-cache"), "BYPASS");
    // no-cache refreshes: it goes to the origin and stores the new answer.
    let refreshed = r.chat_with("US", &question(0.0), &[("cache-control", "no-cache")]).await;
    assert_eq!(refreshed.header("x-edge-cache"), "MISS");
    assert_eq!(hits(&origin).await, 4);
    assert_eq!(r.chat("US", &question(0.0)).await.header("x-edge-cache"), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_expire_with_their_ttl() {
    let origin = answering_origin(Duration::ZERO).await;
    let r = TestRouter::new(&config(&origin.url(), "").replace("target: gpu}", "target: gpu, cache_ttl: 1s}")).await;
    assert_eq!(r.chat("US", &question(0.0)).await.header("x-edge-cache"), "MISS");
    assert_eq!(r.chat("US", &question(0.0)).await.header("x-edge-cache"), "HIT");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(r.chat("US", &question(0.0)).await.header("x-edge-cache"), "MISS", "expired after its 1s TTL");
    assert_eq!(hits(&origin).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_never_sees_anothers_cached_answer_unless_the_cache_is_shared() {
    let origin = answering_origin(Duration::ZERO).await;
    let keys = format!(
        "auth:\n  keys:\n    - {{sha256: \"{}\", tenant: acme}}\n    - {{sha256: \"{}\", tenant: globex}}\n",
        sha256_hex("key-acme"),
        sha256_hex("key-globex")
    );
    let ask = |r: &Arc<TestRouter>, key: &'static str| {
        let r = r.clone();
        async move {
            let auth = format!("Bearer {key}");
            r.chat_with("US", &question(0.0), &[("authorization", auth.as_str())])
                .await
                .header("x-edge-cache")
                .to_string()
        }
    };
    let r = Arc::new(TestRouter::new(&config(&origin.url(), &keys)).await);
    assert_eq!(ask(&r, "key-acme").await, "MISS");
    assert_eq!(ask(&r, "key-acme").await, "HIT");
    assert_eq!(ask(&r, "key-globex").await, "MISS", "globex does not get acme's answer");
    assert_eq!(hits(&origin).await, 2);

    let shared = answering_origin(Duration::ZERO).await;
    let r = Arc::new(TestRouter::new(&config(&shared.url(), &format!("{keys}cache: {{shared: true}}\n"))).await);
    assert_eq!(ask(&r, "key-acme").await, "MISS");
    assert_eq!(ask(&r, "key-globex").await, "HIT", "a shared cache serves everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_cached_as_it_passes_and_replayed_as_the_same_events() {
    let origin = sse_origin(4, Duration::from_millis(20)).await;
    let r = TestRouter::new(&config(&origin.url(), "")).await;
    let mut body = question(0.0);
    body["stream"] = serde_json::json!(true);
    let live = r.chat("US", &body).await;
    assert_eq!((live.header("x-edge-cache"), live.header("content-type")), ("MISS", "text/event-stream"));
    let replay = r.chat("US", &body).await;
    assert_eq!((replay.header("x-edge-cache"), replay.header("content-type")), ("HIT", "text/event-stream"));
    let events = |b: &[u8]| {
        String::from_utf8_lossy(b).split("\n\n").filter(|e| !e.is_empty()).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(events(&replay.body), events(&live.body));
    assert_eq!(events(&replay.body).len(), 4);
    // The saving is the usage the stream reported (5 + 5 tokens), not the estimate.
    assert_eq!(replay.header("x-edge-cache-tokens-saved"), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_broke_off_is_never_stored() {
    let origin = breaks_after_head_origin().await;
    let r = TestRouter::new(&config(&origin, "")).await;
    let mut body = question(0.0);
    body["stream"] = serde_json::json!(true);
    for _ in 0..2 {
        let resp =
            r.send("POST", "/v1/chat/completions", &[("content-type", "application/json")], &body.to_string()).await;
        assert_eq!(resp.headers()["x-edge-cache"], "MISS", "never a HIT of the broken answer");
        assert!(http_body_util::BodyExt::collect(resp.into_body()).await.is_err(), "it reaches the client as broken");
    }
}

/// `n` tasks asking `r` the same deterministic question at once.
fn ask_at_once(r: &Arc<TestRouter>, n: usize) -> Vec<tokio::task::JoinHandle<edge_router_e2e::Reply>> {
    (0..n)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.chat("US", &question(0.0)).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_misses_reach_the_origin_once() {
    let origin = answering_origin(Duration::from_millis(300)).await;
    let r = Arc::new(TestRouter::new(&config(&origin.url(), "")).await);
    let asks = ask_at_once(&r, 8);
    let mut statuses = Vec::new();
    for ask in asks {
        let reply = tokio::time::timeout(Duration::from_secs(5), ask).await.expect("no hang").expect("task");
        statuses.push((reply.status, reply.header("x-edge-cache").to_string()));
    }
    assert_eq!(hits(&origin).await, 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|(s, c)| *s == 200 && c == "MISS").count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|(s, c)| *s == 200 && c == "HIT").count(), 7, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_wakes_the_waiters_who_then_try_on_their_own() {
    let origin = json_origin_named("gpu", 500, Duration::from_millis(200)).await;
    let r = Arc::new(TestRouter::new(&config(&origin.url(), "health_check: {unhealthy_threshold: 100}\n")).await);
    let asks = ask_at_once(&r, 4);
    for ask in asks {
        let reply = tokio::time::timeout(Duration::from_secs(5), ask).await.expect("nobody hangs").expect("task");
        assert_eq!((reply.status, reply.header("x-edge-cache")), (500, "MISS"), "the origin's error, uncached");
    }
    assert_eq!(hits(&origin).await, 4, "each waiter tried on its own after the failed fill");
}

mod http_caching {
    //! RFC 9111 caching of `GET`s on passthrough paths, through the host.

    use std::time::Duration;

    use edge_router_e2e::fake_origin::Reply;
    use edge_router_e2e::{FakeOrigin, Route, Script, TestRouter};

    fn config(origin: &str) -> String {
        format!("nodes:\n  - {{id: web, type: cloud, host: \"{origin}\"}}\nrouting:\n  passthrough: web\n")
    }

    async fn get(r: &TestRouter) -> edge_router_e2e::Reply {
        r.request("GET", "/v1/files", &[], "").await
    }

    async fn hits(server: &FakeOrigin) -> usize {
        server.hits()
    }

    /// A 200 with `cache-control` and an `ETag`, whose body is a model list.
    fn ok(cache_control: &str) -> Reply {
        Reply {
            headers: [("cache-control".to_string(), cache_control.to_string())].into(),
            etag: Some("\"v1\"".into()),
            body: Some("{\"data\":[\"m\"]}".into()),
            ..Reply::default()
        }
    }

    fn status(status: u16, cache_control: Option<&str>) -> Reply {
        let headers = cache_control.map(|c| [("cache-control".to_string(), c.to_string())].into()).unwrap_or_default();
        Reply { status: Some(status), headers, ..Reply::default() }
    }

    async fn origin(script: Script) -> FakeOrigin {
        FakeOrigin::start("web", script).await.expect("start the fake origin")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc9111_a_fresh_get_is_served_from_the_cache_with_its_age() {
        let origin = origin(Script::always(ok("max-age=60"))).await;
        let r = TestRouter::new(&config(&origin.url())).await;
        let first = get(&r).await;
        assert_eq!((first.status, first.header("x-edge-cache")), (200, "MISS"));
        let second = get(&r).await;
        assert_eq!((second.status, second.header("x-edge-cache"), second.header("age")), (200, "HIT", "0"));
        assert_eq!(second.body, first.body);
        // A HEAD is answered from the stored GET, without a body (RFC 9110 §9.3.2).
        let head = r.request("HEAD", "/v1/files", &[], "").await;
        assert_eq!((head.status, head.header("x-edge-cache"), head.body.len()), (200, "HIT", 0));
        assert_eq!(hits(&origin).await, 1);
        // A client's no-cache makes the cache revalidate first (RFC 9111 §5.2.1.4).
        let checked = r.request("GET", "/v1/files", &[("cache-control", "no-cache")], "").await;
        assert_ne!(checked.header("x-edge-cache"), "HIT");
        assert_eq!(hits(&origin).await, 2);
    }

    /// A stale entry revalidated by a `304` whose `cache-control` is `says`:
    /// what the next `GET` gets from the cache, and how many requests the
    /// origin got in all.
    async fn after_a_304_saying(says: &str) -> (String, usize) {
        // A matching If-None-Match gets the 304.
        let not_modified = Route {
            header: Some(["if-none-match".into(), "\"v1\"".into()]),
            reply: status(304, Some(says)),
            ..Route::default()
        };
        let origin = origin(Script { routes: vec![not_modified], ..Script::always(ok("max-age=1")) }).await;
        let r = TestRouter::new(&config(&origin.url())).await;
        assert_eq!(get(&r).await.header("x-edge-cache"), "MISS");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let revalidated = get(&r).await;
        assert_eq!((revalidated.status, revalidated.header("x-edge-cache")), (200, "REVALIDATED"));
        assert_eq!(revalidated.body, "{\"data\":[\"m\"]}", "the stored body, confirmed");
        let after = get(&r).await.header("x-edge-cache").to_string();
        (after, hits(&origin).await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc9111_4_3_a_stale_entry_is_revalidated_and_a_304_refreshes_it() {
        let (after, hits) = after_a_304_saying("max-age=60").await;
        assert_eq!((after.as_str(), hits), ("HIT", 2), "the 304's max-age=60 now applies");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc9111_5_2_2_7_a_304_that_makes_the_entry_private_is_served_and_not_kept() {
        let (after, hits) = after_a_304_saying("private, max-age=60").await;
        assert_eq!((after.as_str(), hits), ("MISS", 3), "dropped: not served to others from the shared cache");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc5861_stale_if_error_serves_the_stale_entry_when_the_origin_is_down() {
        let responses = vec![ok("max-age=1, stale-if-error=60"), status(503, None)];
        let origin = origin(Script { responses, ..Script::default() }).await;
        let r = TestRouter::new(&config(&origin.url())).await;
        assert_eq!(get(&r).await.header("x-edge-cache"), "MISS");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let stale = get(&r).await;
        assert_eq!((stale.status, stale.header("x-edge-cache")), (200, "STALE"));
        assert_eq!(stale.body, "{\"data\":[\"m\"]}");
        assert!(stale.header("age").parse::<u64>().is_ok_and(|a| a >= 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc5861_stale_while_revalidate_answers_at_once_and_refreshes_behind() {
        let origin = origin(Script::always(ok("max-age=1, stale-while-revalidate=30"))).await;
        let r = TestRouter::new(&config(&origin.url())).await;
        assert_eq!(get(&r).await.header("x-edge-cache"), "MISS");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(get(&r).await.header("x-edge-cache"), "STALE");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hits(&origin).await, 2, "revalidated in the background");
        assert_eq!(get(&r).await.header("x-edge-cache"), "HIT");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rfc9111_no_store_is_honoured_and_unsafe_methods_invalidate() {
        let route = |method: &str, path: Option<&str>, reply: Reply| Route {
            method: Some(method.into()),
            path: path.map(Into::into),
            reply,
            ..Route::default()
        };
        let routes = vec![
            route("GET", Some("/private"), status(200, Some("no-store, max-age=60"))),
            route("GET", Some("/v1/files"), ok("max-age=60")),
            route("POST", None, status(201, None)),
        ];
        let origin = origin(Script { routes, ..Script::default() }).await;
        let r = TestRouter::new(&config(&origin.url())).await;
        for _ in 0..2 {
            let reply = r.request("GET", "/private", &[], "").await;
            assert_eq!(reply.header("x-edge-cache"), "MISS", "no-store: never stored (RFC 9111 §5.2.2.5)");
        }
        assert_eq!(get(&r).await.header("x-edge-cache"), "MISS");
        assert_eq!(get(&r).await.header("x-edge-cache"), "HIT");
        // RFC 9111 §4.4: a successful POST to the URI drops the stored response.
        let posted = r.request("POST", "/v1/files", &[("content-type", "application/json")], "{}").await;
        assert_eq!((posted.status, posted.header("x-edge-cache")), (201, "BYPASS"));
        assert_eq!(get(&r).await.header("x-edge-cache"), "MISS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_to_another_model_answers_the_client_but_is_not_kept() {
    let down = edge_router_e2e::refused_addr().await;
    let ask = serde_json::json!({"model": "auto", "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    // `auto` is asked of each node as its own model: `big` first.
    let router = |fallback: &str, model: &str| {
        let config = format!(
            "{TRUSTING_SERVER}nodes:\n  - {{id: big, type: cloud, host: \"{down}\", models: [big]}}\n  \
             - {{id: backup, type: edge, host: \"{fallback}\", models: [{model}]}}\nrouting:\n  rules:\n    \
             - {{name: main, match: {{}}, target: big, fallback: [backup]}}\n"
        );
        async move { TestRouter::new(&config).await }
    };
    let small = answering_origin(Duration::ZERO).await;
    let r = router(&small.url(), "small").await;
    let first = r.chat("US", &ask).await;
    assert_eq!((first.status, first.node(), first.header("x-edge-model")), (200, "backup", "small"));
    let second = r.chat("US", &ask).await;
    assert_eq!(second.header("x-edge-cache"), "MISS", "the small model's answer is not kept as the big one's");
    assert_eq!(hits(&small).await, 2);

    // A node serving the same model answers alike: its answer is kept.
    let twin = answering_origin(Duration::ZERO).await;
    let r = router(&twin.url(), "big").await;
    assert_eq!(r.chat("US", &ask).await.header("x-edge-cache"), "MISS");
    assert_eq!(r.chat("US", &ask).await.header("x-edge-cache"), "HIT");
    assert_eq!(hits(&twin).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_is_asked_for_uncompressed_and_keeps_no_cookie() {
    let reply = fake_origin::Reply {
        text: Some("Paris.".into()),
        headers: [("set-cookie".to_string(), "__cf_bm=for-one-client".to_string())].into(),
        ..Default::default()
    };
    let origin = FakeOrigin::start("gpu", Script::always(reply)).await.expect("start the fake origin");
    let r = TestRouter::new(&config(&origin.url(), "")).await;
    let gzip = [("accept-encoding", "gzip, deflate")];
    let first = r.chat_with("US", &question(0.0), &gzip).await;
    assert_eq!((first.header("x-edge-cache"), first.header("set-cookie")), ("MISS", "__cf_bm=for-one-client"));
    let asked = |i: usize| {
        let seen = origin.seen();
        seen[i].headers.iter().find(|(n, _)| n == "accept-encoding").map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert_eq!(asked(0), "identity", "any client may be served it next, gzip or not");
    let second = r.chat("US", &question(0.0)).await;
    assert_eq!((second.header("x-edge-cache"), second.header("set-cookie")), ("HIT", ""), "the cookie was for one");
    assert_eq!(second.body, first.body);
    // A request whose answer is not kept asks as the client did.
    assert_eq!(r.chat_with("US", &question(0.8), &gzip).await.header("x-edge-cache"), "BYPASS");
    assert_eq!(asked(1), "gzip, deflate");

    // A node that compresses anyway: its answer goes as it came, and is not kept.
    let compressed = fake_origin::Reply {
        body: Some("not readable as it is".into()),
        headers: [("content-type", "application/json"), ("content-encoding", "gzip")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .into(),
        ..Default::default()
    };
    let origin = FakeOrigin::start("gz", Script::always(compressed)).await.expect("start the fake origin");
    let r = TestRouter::new(&config(&origin.url(), "")).await;
    for _ in 0..2 {
        let reply = r.chat("US", &question(0.0)).await;
        assert_eq!((reply.header("x-edge-cache"), reply.header("content-encoding")), ("MISS", "gzip"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_go_on_their_own_as_soon_as_an_answer_is_too_large_to_keep() {
    // A 64 KiB cache keeps answers of up to about 28 KiB; this one streams
    // 40 KB pieces, 200 ms apart, for 4 s.
    let reply = fake_origin::Reply {
        text: Some("a".repeat(800_000)),
        piece_chars: Some(40_000),
        gap_ms: 200,
        sse: Some(true),
        ..Default::default()
    };
    let origin = FakeOrigin::start("gpu", Script::always(reply)).await.expect("start the fake origin");
    let r = Arc::new(TestRouter::new(&config(&origin.url(), "cache: {memory: 64KiB}\n")).await);
    let asks = ask_at_once(&r, 4);
    // Those waiting for the first answer to be stored do not wait for its end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hits(&origin).await, 4, "the waiters asked the node while the first answer still streamed");
    for ask in asks {
        let reply = tokio::time::timeout(Duration::from_secs(20), ask).await.expect("no hang").expect("task");
        assert_eq!((reply.status, reply.header("x-edge-cache")), (200, "MISS"));
    }
}
