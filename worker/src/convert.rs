//! Converting between the `http` types the router and the exchange speak
//! and the platform's JavaScript objects.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wasm_bindgen::prelude::*;
use worker::js_sys::Uint8Array;
use worker::web_sys::{self, ResponseInit};
use worker::{Headers, ResponseBuilder};

use crate::stream::JsBody;

// Header fields cross between Rust and JavaScript as one string each way:
// `name\nvalue\n` per field (neither may hold a line break: `Headers`
// refuses one, and so do `http`'s types), where field by field each name
// and value was a crossing and a string conversion of its own. A field the
// platform's `Headers` will not take is left out, as `append` refuses it
// (an exception must not unwind through the module).
#[wasm_bindgen(inline_js = "
export function header_lines(headers) {
  let lines = '';
  for (const [name, value] of headers) lines += name + '\\n' + value + '\\n';
  return lines;
}
export function headers_of(lines) {
  const headers = new Headers();
  const parts = lines.split('\\n');
  for (let i = 0; i + 1 < parts.length; i += 2) {
    try { headers.append(parts[i], parts[i + 1]); } catch {}
  }
  return headers;
}
")]
extern "C" {
    fn header_lines(headers: &web_sys::Headers) -> String;
    fn headers_of(lines: &str) -> web_sys::Headers;
}

/// What a response's body is.
pub enum Body {
    /// Bytes in memory.
    Fixed(Bytes),
    /// A JavaScript stream.
    Stream(worker::web_sys::ReadableStream),
    /// An origin's answer, chunk by chunk through the exchange's watchdog.
    Watched(LocalBoxStream<'static, Result<Bytes, worker::Error>>),
    /// None.
    Empty,
}

/// A response on its way out: the `http` head the exchange made (with its
/// extensions, which the request's record reads) and its body. It becomes
/// the platform's only at the end ([`to_platform`]).
pub type Answer = http::Response<Body>;

/// `headers` as the platform's (values that are not text are left out:
/// the Headers object only takes text).
pub fn js_headers(headers: &HeaderMap) -> web_sys::Headers {
    let mut lines = String::with_capacity(headers.len() * 48);
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            lines.push_str(name.as_str());
            lines.push('\n');
            lines.push_str(value);
            lines.push('\n');
        }
    }
    headers_of(&lines)
}

/// An answer of `status`, `headers` and `body`.
pub fn response(status: StatusCode, headers: &HeaderMap, body: Body) -> Answer {
    let mut answer = http::Response::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers.clone();
    answer
}

/// An answer with its body in memory.
pub fn fixed(resp: http::Response<Bytes>) -> Answer {
    resp.map(Body::Fixed)
}

/// The answer as the platform's response, built with the platform's own
/// types (`worker::Response` reads and sets more of a response's properties
/// on the way, each a crossing). A status that cannot have a body gets none
/// (a JavaScript `Response` with one throws).
pub fn to_platform(answer: Answer) -> worker::Result<web_sys::Response> {
    let (parts, body) = answer.into_parts();
    let headers = js_headers(&parts.headers);
    let init = ResponseInit::new();
    init.set_status(parts.status.as_u16());
    init.set_headers(&headers);
    let made = match body {
        _ if matches!(parts.status.as_u16(), 101 | 204 | 205 | 304) => {
            web_sys::Response::new_with_opt_str_and_init(None, &init)
        }
        Body::Fixed(bytes) => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&Uint8Array::from(&bytes[..])), &init)
        }
        Body::Stream(stream) => web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init),
        Body::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init),
        Body::Watched(chunks) => {
            let builder = ResponseBuilder::new().with_status(parts.status.as_u16()).with_headers(Headers(headers));
            return builder.from_stream(chunks).map(Into::into);
        }
    };
    made.map_err(Into::into)
}

/// Header fields from the platform's, as `http` ones. A field `http` cannot
/// hold (a name that is not a token) is left out: the platform itself only
/// hands over what it parsed as HTTP.
pub fn http_headers(from: &web_sys::Headers) -> HeaderMap {
    let lines = header_lines(from);
    let mut out = HeaderMap::new();
    let mut parts = lines.split('\n');
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
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
    parts.headers = http_headers(&req.headers());
    Some(parts)
}

/// An origin's response as an `http` one: its status, header fields and body
/// stream (what the exchange reads of it, and no more crossings into
/// JavaScript than that takes).
pub fn http_response(resp: &web_sys::Response) -> Option<http::Response<JsBody>> {
    let mut out = http::Response::new(JsBody::empty());
    *out.status_mut() = StatusCode::from_u16(resp.status()).ok()?;
    *out.headers_mut() = http_headers(&resp.headers());
    if let Some(stream) = resp.body() {
        *out.body_mut() = JsBody::new(&stream);
    }
    Some(out)
}

/// The largest answer read whole before it is passed on ([`whole_if_small`]).
const WHOLE_UP_TO: u64 = 64 << 10;

/// An answer whose body is watched, and declared no longer than
/// [`WHOLE_UP_TO`], read through the watchdog to its end here and handed to
/// the platform in one piece: passing it as a stream instead costs a
/// JavaScript stream fed from Rust, a promise and two crossings per chunk
/// and one more at its end, about a tenth of the Worker's CPU per chat
/// completion (`bench/worker.sh`). An event stream, and an answer without a
/// declared length (a translated one), go on as they come; so does the rest
/// of one that turns out longer than declared (`fetch` may have decoded it).
/// One that breaks off, or that the watchdog cuts off, still ends short
/// with an error: what was read, then the error.
pub async fn whole_if_small(answer: Answer) -> Answer {
    let small = exchange::intake::declared_length(answer.headers()).is_some_and(|n| n <= WHOLE_UP_TO);
    if !small || exchange::head::is_sse(answer.headers()) {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let Body::Watched(mut chunks) = body else { return http::Response::from_parts(parts, body) };
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                whole.extend_from_slice(&bytes);
                if whole.len() as u64 > WHOLE_UP_TO {
                    let read = futures_util::stream::iter([Ok(Bytes::from(whole))]);
                    return http::Response::from_parts(parts, Body::Watched(read.chain(chunks).boxed_local()));
                }
            }
            Err(e) => {
                let short = futures_util::stream::iter([Ok(Bytes::from(whole)), Err(e)]);
                return http::Response::from_parts(parts, Body::Watched(short.boxed_local()));
            }
        }
    }
    http::Response::from_parts(parts, Body::Fixed(Bytes::from(whole)))
}
