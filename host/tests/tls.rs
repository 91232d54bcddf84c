//! HTTPS on the edge box, through the real binary: certificates made here
//! (rcgen) by a CA of the test's own, a real rustls client over HTTP/1.1 and
//! over HTTP/2 (chosen by ALPN), each with a stream that must arrive as it
//! is sent; the certificate chosen by SNI; HSTS; a renewed certificate put
//! in force by a reload while an open connection goes on; a key that is not
//! the certificate's refused by `check` and by a reload.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_origin::{FakeOrigin, Reply, Script};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

mod common;

use common::EdgeBox;

/// A CA, and leaf certificates it signs.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "edge-router test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("CA").der().clone();
        Self { params, key, der }
    }

    /// A certificate for `names` and its key, as PEM.
    fn leaf(&self, names: &[&str]) -> (String, String, CertificateDer<'static>) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// What a connection negotiated, and the certificate it was shown.
struct Connected {
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    certificate: CertificateDer<'static>,
}

/// A TLS connection to `addr` naming `sni`, offering `alpn`.
async fn connect(
    ca: &CertificateDer<'static>,
    addr: &str,
    sni: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Connected) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("https://")).await.expect("tcp");
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    let (_, session) = tls.get_ref();
    let connected = Connected {
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        version: session.protocol_version(),
        certificate: session.peer_certificates().and_then(|c| c.first()).expect("a certificate").clone().into_owned(),
    };
    (tls, connected)
}

fn chat(stream: bool) -> http::Request<Full<Bytes>> {
    let body = serde_json::json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    http::Request::post("/v1/chat/completions")
        .header("host", "api.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

/// Reads a streamed answer; when its first and last chunks came, from the request.
async fn read_stream(resp: http::Response<hyper::body::Incoming>, sent: Instant) -> (String, Duration, Duration) {
    let mut body = resp.into_body();
    let (mut text, mut first) = (String::new(), None);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            first.get_or_insert_with(|| sent.elapsed());
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    (text, first.expect("some data"), sent.elapsed())
}

fn config(origin: &str, certs: &[(String, String)]) -> String {
    let list: Vec<String> = certs.iter().map(|(c, k)| format!("      - {{cert: \"{c}\", key: \"{k}\"}}")).collect();
    format!(
        "server:
  tls:
    certificates:
{}
    hsts: {{max_age: 365d, include_subdomains: true}}
admin: {{listen: \"127.0.0.1:0\"}}
monitoring: {{access_log: off}}
nodes:
  - {{id: gpu, type: local, host: \"{origin}\", models: [m]}}
",
        list.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_http1_and_http2_with_sni_hsts_and_certificates_renewed_by_a_reload() {
    // Ten chunks, 100 ms apart: a stream of one second.
    let words = ["word"; 10].join(" ");
    let streamed = Reply { sse: Some(true), text: Some(words), gap_ms: 100, ..Reply::default() };
    let origin = FakeOrigin::start("gpu", Script::always(streamed)).await.expect("origin");
    let dir = std::env::temp_dir().join(format!("edge-router-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = Ca::new();
    let (api_pem, api_key, api_der) = ca.leaf(&["api.test", "localhost"]);
    let (edge_pem, edge_key, edge_der) = ca.leaf(&["*.edge.test"]);
    let certs = [
        (write(&dir, "api.pem", &api_pem), write(&dir, "api.key", &api_key)),
        (write(&dir, "edge.pem", &edge_pem), write(&dir, "edge.key", &edge_key)),
    ];
    let edge = EdgeBox::start_as("tls.yaml", &config(&origin.url(), &certs));
    assert!(edge.addr.starts_with("https://"), "{}", edge.addr);

    // HTTP/1.1: a stream arrives as it is sent, with HSTS.
    let (tls, seen) = connect(&ca.der, &edge.addr, "api.test", &[b"http/1.1"]).await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(matches!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)));
    assert_eq!(seen.certificate, api_der, "SNI api.test gets its certificate");
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("h1");
    tokio::spawn(conn);
    let sent = Instant::now();
    let resp = h1.send_request(chat(true)).await.expect("answer");
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let hsts = resp.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(hsts.as_deref(), Some("max-age=31536000; includeSubDomains"));
    let (text, first, all) = read_stream(resp, sent).await;
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(all - first >= Duration::from_millis(600), "chunks came as sent: first at {first:?}, end at {all:?}");

    // HTTP/2 by ALPN: the same, and a wildcard name gets the other certificate.
    let (tls, seen) = connect(&ca.der, &edge.addr, "fra.edge.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(seen.certificate, edge_der, "SNI fra.edge.test gets the wildcard certificate");
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2");
    tokio::spawn(conn);
    let mut request = chat(true);
    *request.uri_mut() = "https://fra.edge.test/v1/chat/completions".parse().expect("uri");
    let sent = Instant::now();
    let resp = h2.send_request(request).await.expect("answer");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("strict-transport-security"));
    let (text, first, all) = read_stream(resp, sent).await;
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(all - first >= Duration::from_millis(600), "chunks came as sent over HTTP/2: {first:?} … {all:?}");

    // A name no certificate covers gets the first.
    assert_eq!(connect_any(&edge.addr, "other.test").await, api_der);

    // `check` reads the files as serving does.
    let config_path = edge.path.display().to_string();
    let (ok, out, err) = check(&config_path);
    assert!(ok, "{err}");
    assert!(out.contains("api.pem: api.test, localhost (expires 4096-01-01T00:00:00.000Z)"), "{out}");
    assert!(out.contains("edge.pem: *.edge.test (expires"), "{out}");

    // Renewed: new files, the same config. A reload puts them in force for
    // new connections; the HTTP/2 connection opened before goes on.
    let (renewed_pem, renewed_key, renewed_der) = ca.leaf(&["api.test", "localhost"]);
    write(&dir, "api.pem", &renewed_pem);
    write(&dir, "api.key", &renewed_key);
    edge.ok(&["reload"]);
    let (_, seen) = connect(&ca.der, &edge.addr, "api.test", &[b"http/1.1"]).await;
    assert_eq!(seen.certificate, renewed_der, "the renewed certificate serves new connections");
    let mut request = chat(false);
    *request.uri_mut() = "https://fra.edge.test/v1/chat/completions".parse().expect("uri");
    let resp = h2.send_request(request).await.expect("the open connection goes on");
    assert_eq!(resp.status(), 200);

    // A key that is not the certificate's: `check` says so, and a reload is
    // refused with the renewed certificate still in force.
    let (_, stranger_key, _) = ca.leaf(&["api.test"]);
    write(&dir, "api.key", &stranger_key);
    let (ok, _, err) = check(&config_path);
    assert!(!ok && err.contains("api.key is not the key of"), "{err}");
    let (ok, _, err) = edge.cli(&["reload"], common::TOKEN);
    assert!(!ok && err.contains("is not the key of"), "{err}");
    let (_, seen) = connect(&ca.der, &edge.addr, "api.test", &[b"http/1.1"]).await;
    assert_eq!(seen.certificate, renewed_der);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The certificate the box shows a client naming `sni`, whatever it is.
async fn connect_any(addr: &str, sni: &str) -> CertificateDer<'static> {
    // The default certificate does not cover `sni`: the client is told to
    // trust it anyway, to see which one the box chose.
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr.trim_start_matches("https://")).await.expect("tcp");
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().and_then(|c| c.first()).expect("a certificate").clone().into_owned()
}

/// `edge-router check FILE`: whether it passed, and what it printed.
fn check(path: &str) -> (bool, String, String) {
    let out = std::process::Command::new(common::BIN).args(["check", path]).output().expect("check runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_https_with_a_certificate_it_makes() {
    use std::io::BufRead;
    let mut demo = std::process::Command::new(common::BIN)
        .args(["demo", "--tls", "--listen", "127.0.0.1:0", "--module"])
        .arg(edge_router_host::default_module_path())
        .env_remove("EDGE_ROUTER_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the demo starts");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines().map_while(Result::ok);
    let (mut url, mut ca_file) = (None, None);
    for line in lines.by_ref() {
        if let Some(rest) = line.split("router on ").nth(1) {
            url = rest.split(',').next().map(str::to_string);
        }
        if let Some(rest) = line.split("--cacert ").nth(1) {
            ca_file = rest.split(' ').next().map(str::to_string);
            break;
        }
    }
    let (url, ca_file) = (url.expect("the demo's address"), ca_file.expect("curl commands with --cacert"));
    assert!(url.starts_with("https://localhost:"), "{url}");
    let ca = CertificateDer::from_pem_file(&ca_file).expect("the demo's certificate");
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        let key = std::path::Path::new(&ca_file).with_extension("key");
        std::fs::metadata(&key).expect("the demo's key").permissions().mode()
    };
    let addr = url.replace("https://localhost", "127.0.0.1");
    let (tls, seen) = connect(&ca, &addr, "localhost", &[b"h2"]).await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2");
    tokio::spawn(conn);
    let body = r#"{"model":"llama-3-8b","messages":[{"role":"user","content":"Say hello"}]}"#;
    let request = http::Request::post(format!("{url}/v1/chat/completions"))
        .header("x-demo-country", "DE")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = h2.send_request(request).await.expect("answer");
    drop(h2);
    // Stopped as an operator stops it: the key must not outlive the demo.
    let term = std::process::Command::new("kill").args(["-TERM", &demo.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        match demo.try_wait().expect("the demo's status") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    if exited.is_none() {
        let _ = demo.kill();
        let _ = demo.wait();
    }
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("x-edge-node").and_then(|v| v.to_str().ok()), Some("local-gpu"));
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM runs");
    let exited = exited.expect("the demo stops within 20 s of SIGTERM");
    assert!(exited.success(), "the demo exits cleanly on SIGTERM: {exited}");
    let folder = std::path::Path::new(&ca_file).parent().expect("the certificate's folder");
    assert!(!folder.exists(), "{} outlives the demo", folder.display());
    assert_eq!(key_mode & 0o077, 0, "the key is the user's only: {key_mode:o}");
}

/// A box serving `api.test` over HTTPS from `origin`, with `client_timeout:
/// 500ms` and the config made by `edit`; its CA, and its certificate's
/// folder (`name` in it), which the caller removes.
fn api_box(name: &str, origin: &str, edit: impl FnOnce(String) -> String) -> (EdgeBox, Ca, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("edge-router-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = Ca::new();
    let (pem, key, _) = ca.leaf(&["api.test"]);
    let certs = [(write(&dir, "api.pem", &pem), write(&dir, "api.key", &key))];
    let config = config(origin, &certs).replacen("server:\n", "server:\n  client_timeout: 500ms\n", 1);
    let edge = EdgeBox::start_as(&format!("tls-{name}.yaml"), &edit(config));
    (edge, ca, dir)
}

/// An HTTP/2 connection to `edge` as `api.test`, and the task running it.
async fn h2_to(
    ca: &Ca,
    edge: &EdgeBox,
) -> (hyper::client::conn::http2::SendRequest<Full<Bytes>>, tokio::task::JoinHandle<hyper::Result<()>>) {
    let (tls, _) = connect(&ca.der, &edge.addr, "api.test", &[b"h2"]).await;
    let (h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2");
    (h2, tokio::spawn(conn))
}

/// A chat request to `api.test` over `h2`.
fn ask_h2(
    h2: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    stream: bool,
) -> impl std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>> + use<> {
    let mut request = chat(stream);
    *request.uri_mut() = "https://api.test/v1/chat/completions".parse().expect("uri");
    h2.send_request(request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_and_a_long_stream_on_it_is_not() {
    // Fifteen chunks, 100 ms apart: a stream three times the 500 ms timeout.
    let words = ["word"; 15].join(" ");
    let streamed = Reply { sse: Some(true), text: Some(words), gap_ms: 100, ..Reply::default() };
    let origin = FakeOrigin::start("gpu", Script::always(streamed)).await.expect("origin");
    let (edge, ca, dir) = api_box("idle", &origin.url(), |config| config);
    let (mut h2, connection) = h2_to(&ca, &edge).await;
    let sent = Instant::now();
    let resp = ask_h2(&mut h2, true).await.expect("answer");
    let (text, _, all) = read_stream(resp, sent).await;
    assert!(text.contains("data: [DONE]") && all >= Duration::from_millis(1_400), "the whole stream, {all:?}: {text}");
    // Then nothing: the box closes the connection after the timeout.
    let closed = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(closed.is_ok(), "the idle connection is still open after 5 s");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_takes_nothing_of_a_stream_is_cut_off_and_frees_the_node() {
    // 4 MiB: far more than the 64 KiB an HTTP/2 stream's window lets through.
    let big = Reply { body: Some("x".repeat(4 << 20)), ..Reply::default() };
    let origin = FakeOrigin::start("gpu", Script::always(big)).await.expect("origin");
    let (edge, ca, dir) = api_box("starved", &origin.url(), |config| {
        config.replace("models: [m]}", "models: [m], max_concurrent: 1}") + "cache: {enabled: false}\n"
    });
    // The answer's head comes; the client keeps its connection but reads
    // nothing of the body, so the stream's window stays shut.
    let (mut starving, connection) = h2_to(&ca, &edge).await;
    let held = ask_h2(&mut starving, false).await.expect("answer");
    assert_eq!(held.status(), 200);
    let (mut other, _other_connection) = h2_to(&ca, &edge).await;
    let meanwhile = ask_h2(&mut other, false).await.expect("answer");
    assert_eq!(meanwhile.status(), 429, "the node's one slot is held");
    // Within a few timeouts the box closes that connection, and the slot is free.
    let start = Instant::now();
    loop {
        let resp = ask_h2(&mut other, false).await.expect("answer");
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 429);
        assert!(start.elapsed() < Duration::from_secs(10), "the slot is still held after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(closed.is_ok(), "the starving connection is still open");
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}
