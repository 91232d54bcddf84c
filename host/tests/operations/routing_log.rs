use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_log_follows_requests_and_a_slow_reader_misses_records_without_slowing_the_proxy() {
    let origin = FakeOrigin::start("gpu", Script::default()).await.expect("start");
    let config = format!(
        "admin: {{listen: \"127.0.0.1:0\"}}
server: {{country_header: x-country, trusted_proxies: [127.0.0.1]}}
geofence: {{deny: [KP]}}
monitoring: {{access_log: \"off\"}}
nodes:
  - {{id: gpu, type: local, host: \"{}\", models: [llama-3-8b]}}
",
        origin.url()
    );
    let edge = EdgeBox::start_as("routing-log.yaml", &config);
    let (addr, client) = (edge.addr.clone(), client());

    // `routing-log --follow --node gpu` prints what gpu serves, as it does.
    let mut follower = Command::new(BIN)
        .args(["routing-log", "--follow", "--node", "gpu", "--admin", &edge.admin])
        .env("EDGE_ROUTER_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower is subscribed once a request it would print comes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, None).await, 200);
        if let Ok(line) = printed.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "routing-log --follow printed nothing");
    };
    assert!(first.contains("-> gpu") && first.contains(" 200 "), "{first}");
    assert_eq!(send(&client, &addr, "KP", "llama-3-8b", false, None).await, 451);
    assert_eq!(send(&client, &addr, "DE", "llama-3-8b", false, None).await, 200);
    let next = printed.recv_timeout(Duration::from_secs(10)).expect("the next request is printed");
    assert!(next.contains("-> gpu") && next.contains(" DE "), "the refused request (node -) is not: {next}");
    let _ = follower.kill();
    let _ = follower.wait();

    // Without --follow: the latest records, here as JSON.
    let recent = edge.ok(&["routing-log", "--json"]);
    let records: Vec<serde_json::Value> = recent.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(records.iter().any(|r| r["refusal"] == "geofence"), "{recent}");

    // A reader that reads nothing: the proxy goes on at full speed, and
    // when the reader reads again it is told how many records it missed.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut slow =
        socket.connect(edge.admin.trim_start_matches("http://").parse().expect("an address")).await.expect("connect");
    let request = format!("GET /admin/routing-log HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    slow.write_all(request.as_bytes()).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Until the reader has missed records: rounds of 2000 refused requests.
    // The follower counts a miss only when it takes a record again, so the
    // rounds go on until, whatever the counter says, more lines have been
    // made than everything between the proxy and the reader can hold: the
    // box's socket buffer (at most tcp_wmem's largest), hyper's write
    // buffer (about 400 KiB), the reader's small one, and the follower's
    // queues.
    let line = records.iter().find(|r| r["refusal"] == "geofence").map_or(0, |r| r.to_string().len());
    assert!(line > 100, "a refused request's record is a line of {line} bytes");
    let send_buffer = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().last().and_then(|n| n.parse::<usize>().ok()))
        .unwrap_or(4 << 20);
    let queues = (edge_router_host::signals::ROUTING_LOG_QUEUE + edge_router_host::signals::LINES_AHEAD) * line;
    let held = send_buffer + (1 << 20) + 2 * 4096 + queues;
    let enough = u32::try_from(held / line * 5 / 4).expect("a count of requests");
    let started = Instant::now();
    let mut sent = 0u32;
    while sent < enough {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (client, addr) = (client.clone(), addr.clone());
                tokio::spawn(async move {
                    for _ in 0..500 {
                        assert_eq!(send(&client, &addr, "KP", "llama-3-8b", false, None).await, 451);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("the requests went through");
        }
        sent += 2000;
        if total(&scrape(&client, &edge.admin, TOKEN).await.1, "edge_router_routing_log_missed_total", &[]) > 0.0 {
            break;
        }
    }
    let took = started.elapsed();
    // Everything read is searched once: the reader takes megabytes in
    // small reads, and searching all of them again after each read took
    // longer than the deadline on a busy machine.
    let marker = b"{\"missed\":";
    let (mut seen, mut searched, mut buf) = (Vec::new(), 0, vec![0u8; 64 << 10]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let missed: Option<u64> = loop {
        let at = seen[searched..].windows(marker.len()).position(|w| w == marker).map(|p| searched + p);
        if let Some(number) = at.map(|at| &seen[at + marker.len()..])
            && let Some(end) = number.iter().position(|&b| b == b'}')
        {
            break std::str::from_utf8(&number[..end]).ok().and_then(|n| n.parse().ok());
        }
        searched = at.unwrap_or(seen.len().saturating_sub(marker.len()));
        if Instant::now() > deadline {
            break None;
        }
        match tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break None,
        }
    };
    let missed = missed.unwrap_or_else(|| {
        panic!("the slow reader was told it missed records ({took:?} for {sent} requests, {} bytes read)", seen.len())
    });
    assert!(missed > 0 && missed < u64::from(sent), "{missed}");
    let (_, text) = scrape(&client, &edge.admin, TOKEN).await;
    assert!(total(&text, "edge_router_routing_log_missed_total", &[]) >= missed as f64, "{text}");
    // Every request was answered and counted, whatever the reader did.
    assert_eq!(total(&text, "edge_router_requests_total", &[("refusal", "geofence")]), f64::from(sent + 1));
}
