//! Converting between the `http` types the router and the exchange speak
//! and the platform's JavaScript objects.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use worker::{Headers, Response, ResponseBuilder};

use crate::stream::JsBody;

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

/// Header fields from the platform's, as `http` ones. A field `http` cannot
/// hold (a name that is not a token) is left out: the platform itself only
/// hands over what it parsed as HTTP.
pub fn http_headers(from: &Headers) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in from.entries() {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value.as_bytes())) {
            out.append(n, v);
        }
    }
    out
}

/// A client's request head as `http` parts: method, URL and header fields.
/// The body stays the platform's stream, so that a body the router only
/// passes on reaches `fetch` as it came, and one it reads is read once.
/// `None` for a method or URL `http` cannot hold (the platform parsed both,
/// so only a hostile one could be).
pub fn request_head(req: &worker::web_sys::Request) -> Option<http::request::Parts> {
    let method = http::Method::from_bytes(req.method().as_bytes()).ok()?;
    let uri: http::Uri = req.url().parse().ok()?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = http_headers(&Headers(req.headers()));
    Some(parts)
}

/// An origin's response as an `http` one: its status, header fields and body
/// stream (what the exchange reads of it, and no more crossings into
/// JavaScript than that takes).
pub fn http_response(resp: Response) -> Option<http::Response<JsBody>> {
    let mut out = http::Response::new(JsBody::empty());
    *out.status_mut() = StatusCode::from_u16(resp.status_code()).ok()?;
    *out.headers_mut() = http_headers(resp.headers());
    let raw: worker::web_sys::Response = resp.into();
    if let Some(stream) = raw.body() {
        *out.body_mut() = JsBody::new(&stream);
    }
    Some(out)
}
