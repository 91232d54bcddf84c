//! Converting between the `http` types the router and the exchange speak
//! and the platform's JavaScript objects.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use worker::{Headers, Response, ResponseBuilder};

/// What a response's body is.
pub enum Body {
    /// Bytes in memory.
    Fixed(Bytes),
    /// A JavaScript stream.
    Stream(worker::web_sys::ReadableStream),
    /// None.
    Empty,
}

/// `headers` as the platform's (values that are not text are left out:
/// the Headers object only takes text).
pub fn js_headers(headers: &HeaderMap) -> Headers {
    let out = Headers::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            let _ = out.append(name.as_str(), value);
        }
    }
    out
}

/// A response for the platform. A status that cannot have a body gets none
/// (a JavaScript `Response` with one throws).
pub fn response(status: StatusCode, headers: &HeaderMap, body: Body) -> Response {
    let builder = ResponseBuilder::new().with_status(status.as_u16()).with_headers(js_headers(headers));
    if matches!(status.as_u16(), 101 | 204 | 205 | 304) {
        return builder.empty();
    }
    match body {
        Body::Fixed(bytes) => builder.fixed(bytes.to_vec()),
        Body::Stream(stream) => builder.stream(stream),
        Body::Empty => builder.empty(),
    }
}

/// An `http` response with its body in memory, for the platform.
pub fn fixed(resp: http::Response<Bytes>) -> Response {
    let (parts, body) = resp.into_parts();
    response(parts.status, &parts.headers, Body::Fixed(body))
}
