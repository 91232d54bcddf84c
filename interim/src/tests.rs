//! A real hyper server on loopback, a raw client reading its bytes.
// Tests of a host crate: a real server, real waits.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Serves one connection: each request gets a `103` with a `link`, then,
/// after a pause in which the service waits, its `200`.
async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (io, interim) = wrap(TokioIo::new(stream));
        let service = service_fn(move |_req| {
            let interim = interim.clone();
            async move {
                let mut hints = HeaderMap::new();
                hints.insert("link", HeaderValue::from_static("</style.css>; rel=preload; as=style"));
                assert!(!interim.send(StatusCode::EARLY_HINTS, &hints), "not armed yet: nothing is sent");
                interim.arm();
                assert!(!interim.send(StatusCode::CONTINUE, &hints), "100 is hyper's own");
                assert!(!interim.send(StatusCode::OK, &hints), "not an interim status");
                assert!(interim.send(StatusCode::EARLY_HINTS, &hints));
                // The service waits (for an origin, say): the 103 goes out meanwhile.
                tokio::time::sleep(Duration::from_millis(300)).await;
                interim.disarm();
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        });
        let _ = http1::Builder::new().serve_connection(io, service).await;
    });
    addr
}

async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the connection closed: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn an_interim_response_goes_out_before_the_final_one_while_the_service_waits() {
    let addr = server().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..2 {
        stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut got = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(250), read_until(&mut stream, &mut got, b"\r\n\r\n")).await;
        assert!(early.is_ok(), "the 103 came while the service still waited");
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n"),
            "{text}"
        );
        read_until(&mut stream, &mut got, b"done").await;
        let text = String::from_utf8_lossy(&got).into_owned();
        let final_at = text.find("HTTP/1.1 200 OK").expect("then the final response");
        assert!(final_at > 0 && text.ends_with("done"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 103").count(), 1, "once: {text}");
    }
}

use hyper::rt::Write as _;

/// A transport that takes at most three bytes a write, keeping them.
struct Trickle(Vec<u8>);

impl hyper::rt::Write for Trickle {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(3);
        self.0.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn an_interim_response_never_lands_inside_a_message_hyper_wrote_in_part() {
    let (mut io, interim) = wrap(Trickle(Vec::new()));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let message: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut written = 0;
    let mut write = |io: &mut InterimIo<Trickle>, buf: &[u8]| match Pin::new(io).poll_write(&mut cx, buf) {
        Poll::Ready(Ok(n)) => n,
        other => panic!("the write did not complete: {other:?}"),
    };
    written += write(&mut io, &message[written..]);
    assert_eq!(written, 3, "the transport took part of the message");
    interim.arm();
    assert!(interim.send(StatusCode::EARLY_HINTS, &HeaderMap::new()));
    while written < message.len() {
        written += write(&mut io, &message[written..]);
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready(), "the transport never waits");
    let out = String::from_utf8(io.inner.0.clone()).expect("text");
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n");
}

#[test]
fn interim_responses_a_client_does_not_read_are_bounded() {
    let (_io, interim) = wrap(Vec::<u8>::new());
    interim.arm();
    let mut hints = HeaderMap::new();
    hints.insert("link", HeaderValue::from_static("</style.css>; rel=preload; as=style"));
    let sent = (0..100_000).take_while(|_| interim.send(StatusCode::PROCESSING, &hints)).count();
    let queued = interim.0.queued.lock().expect("lock").len();
    let head = queued / sent;
    assert!(sent < 100_000 && queued <= MAX_QUEUED, "{sent} sent, {queued} bytes queued");
    assert!(queued + head > MAX_QUEUED, "refused only once the next would not fit: {queued} bytes queued");
}
