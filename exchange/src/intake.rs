//! A client's request on its way in: its body's size limit (declared or
//! counted as it arrives), whether it is read or left to stream, and what
//! is read of it for the router.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use edge_router::RouterConfig;
use edge_router::config::DurationSpec;
use edge_router::error::RouterError;
use edge_router::facts::{BodyFacts, Endpoint};
use edge_router::geo::Country;
use edge_router::wire::HeaderRef;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

/// The path and query of a request target (`/` when it has none).
pub fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The `Content-Length` a request declares, if it declares a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
}

/// Refuses a request whose declared body is over `limit`, before any of it is read.
pub fn check_declared(headers: &HeaderMap, limit: u64) -> Result<(), RouterError> {
    match declared_length(headers) {
        Some(n) if n > limit => Err(RouterError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Whether a request's body stays in its connection and streams to the
/// origin as it comes: a passthrough path with a body. The three API
/// endpoints' bodies are read first (the router's choice depends on them),
/// and so is any JSON body when `read_json` (a `pii` policy must look into
/// what a node gets: `/v1/messages/count_tokens` holds a whole prompt).
pub fn streams_body(endpoint: Endpoint, headers: &HeaderMap, read_json: bool) -> bool {
    !endpoint.is_api()
        && declared_length(headers) != Some(0)
        && (headers.contains_key(http::header::CONTENT_LENGTH) || headers.contains_key(http::header::TRANSFER_ENCODING))
        && !(read_json && is_json(headers))
}

/// Whether a body is declared JSON (`application/json`, or `…+json`).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let media = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        media == "application/json" || media.ends_with("+json")
    })
}

/// A client's request body as it came in.
#[derive(Debug)]
pub enum Intake<B> {
    /// Read whole (the three API endpoints, and bodiless requests).
    Whole(Bytes),
    /// Left in its connection, to stream to the origin as it comes.
    Streams(B),
}

/// Takes in a client's request body, the same on both hosts: a declared
/// length over `limit` (`server.max_body_bytes`) is refused before a byte is
/// read; a passthrough body stays in its connection ([`streams_body`]); any
/// other is read whole by `read` (given the body and the limit:
/// [`read_limited`], or the host's own whole read of a declared length),
/// which must end before `timer` (the host's sleep for `within`,
/// `server.client_timeout`) or the client gets 408.
pub async fn take_in<B, R, T>(
    endpoint: Endpoint,
    headers: &HeaderMap,
    (limit, within, read_json): (u64, DurationSpec, bool),
    body: B,
    read: impl FnOnce(B, u64) -> R,
    timer: impl FnOnce(Duration) -> T,
) -> Result<Intake<B>, RouterError>
where
    R: Future<Output = Result<Bytes, RouterError>>,
    T: Future<Output = ()>,
{
    check_declared(headers, limit)?;
    if streams_body(endpoint, headers, read_json) {
        return Ok(Intake::Streams(body));
    }
    let mut read = std::pin::pin!(read(body, limit));
    let mut timer = std::pin::pin!(timer(within.0));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(whole) = read.as_mut().poll(cx) {
            return Poll::Ready(whole.map(Intake::Whole));
        }
        timer.as_mut().poll(cx).map(|()| Err(RouterError::ClientTimeout(within.to_string())))
    })
    .await
}

/// What [`take_in`] holds a body to: `server.max_body_bytes` and
/// `server.client_timeout`; and whether JSON bodies are read whole (a
/// `pii` policy is on).
pub fn body_limits(config: &edge_router::RouterConfig) -> (u64, DurationSpec, bool) {
    (config.server.max_body_bytes, config.server.client_timeout, config.pii.is_on())
}

/// A streamed request body held to a size limit on its way to the origin,
/// which says how its upload stands in [`Upload`]: once more than the limit
/// has come, it ends with an error (which stops the upload). A request that
/// fails while its body is still coming may be the client's doing, and the
/// host then answers the client rather than blaming the node.
pub struct Capped<B> {
    inner: B,
    left: u64,
    upload: Upload,
}

/// What a [`Capped`] body ends with once it passed its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body is over the size limit")]
pub struct OverLimit;

/// How a streamed request body's upload stands; readable after the body
/// went into the request.
#[derive(Debug, Clone, Default)]
pub struct Upload(Arc<AtomicU8>);

/// [`Upload`]'s states: the body was last asked for more and had some (or
/// was not asked yet), had none yet (the client is slow), ended, went over
/// its limit, or broke off (the client's connection failed).
const MOVING: u8 = 0;
const WAITING: u8 = 1;
const ENDED: u8 = 2;
const OVER: u8 = 3;
const BROKEN: u8 = 4;

impl Upload {
    /// The client's answer when a request failed for its body rather than
    /// its node (`timed_out`: no head came within the node's `first_byte`,
    /// `within`): a body over `limit`, one that broke off, or one the node
    /// was still waiting for.
    pub fn fault(&self, limit: u64, timed_out: bool, within: Duration) -> Option<RouterError> {
        match self.0.load(Ordering::Relaxed) {
            OVER => Some(RouterError::PayloadTooLarge { limit }),
            BROKEN => Some(unreadable()),
            WAITING if timed_out => Some(RouterError::ClientTimeout(format!("{within:?}"))),
            _ => None,
        }
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

impl<B> Capped<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Self { inner, left: limit, upload: Upload::default() }
    }

    /// How the upload stands, as it goes.
    pub fn upload(&self) -> Upload {
        self.upload.clone()
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                self.upload.set(WAITING);
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                self.upload.set(BROKEN);
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(None) => {
                self.upload.set(ENDED);
                return Poll::Ready(None);
            }
        };
        if let Some(data) = frame.data_ref() {
            match self.left.checked_sub(data.len() as u64) {
                Some(left) => self.left = left,
                None => {
                    self.upload.set(OVER);
                    return Poll::Ready(Some(Err(Box::new(OverLimit))));
                }
            }
        }
        self.upload.set(if self.inner.is_end_stream() { ENDED } else { MOVING });
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose body broke off before it ended.
pub fn unreadable() -> RouterError {
    RouterError::BadRequest("the request body could not be read: the connection failed before it ended".into())
}

/// Reads a request body whole, refusing it as soon as more than `limit`
/// bytes have come (a chunked body is never read past the limit). The host
/// bounds the time it may take (`server.client_timeout`). A body that breaks
/// off is a 400 with a fixed message: what the host's stack said about it
/// (a JavaScript error and its stack, say) is not for the client.
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, RouterError>
where
    B: Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| unreadable())?;
        let Ok(data) = frame.into_data() else { continue };
        let total = first.as_ref().map_or(0, Bytes::len) + buf.len() + data.len();
        if total as u64 > limit {
            return Err(RouterError::PayloadTooLarge { limit });
        }
        // A body in one frame (the common case) is not copied.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

use edge_router::jwt::{Alg, KeyMaterial, KeySet, authenticate, looks_like_jwt};
use edge_router::limits::Limited;
use edge_router::wire::BearerToken;

/// A request's claim on its caller's rate limits.
pub struct LimitedRequest {
    /// The caller's tenant.
    pub tenant: Arc<str>,
    /// Its limited scopes, in the router's order.
    pub limited: Vec<Limited>,
    /// The tokens the request reserves.
    pub tokens: u64,
}

/// The rate-limited scopes of a request's caller, found as the router finds
/// them (its key, or its valid token's tenant, or `anonymous`), with the
/// tokens the request reserves: what a host asks a store shared by many
/// routers about (`state.redis`, the Workers build's `RateLimiter`).
/// `None` when the caller has no limits, or a refused token.
pub fn limited_request(
    config: &RouterConfig,
    key_sha256: Option<&[u8; 32]>,
    token: Option<&BearerToken>,
    endpoint: Endpoint,
    facts: Option<&BodyFacts>,
) -> Option<LimitedRequest> {
    let key = match token {
        Some(_) => None,
        None => key_sha256.and_then(|d| config.auth.identify_digest(d)),
    };
    let tenant: Arc<str> = match (token, key) {
        (Some(BearerToken::Valid { tenant, .. }), _) => tenant.as_str().into(),
        (Some(BearerToken::Refused(_)), _) => return None,
        (None, Some(k)) => k.principal.tenant.clone(),
        (None, None) => edge_router::auth::Principal::anonymous().tenant,
    };
    let limited = config.auth.limited(key, &tenant);
    let tokens = facts.map_or(0, |f| edge_router::facts::estimated_tokens(endpoint, f, &config.requests));
    (!limited.is_empty()).then_some(LimitedRequest { tenant, limited, tokens })
}

/// What the end of an exchange means for the tokens its request reserved
/// in a store shared by many routers: the request's id, the tokens it
/// used (none for a cache hit; `None` when the answer reported no `usage`,
/// and the reservation stands) and when. `None` for any other event.
pub fn tokens_used(event: &edge_router::wire::Event) -> Option<(u64, Option<u64>, u64)> {
    use edge_router::wire::Event;
    match event {
        Event::Finished { id, usage, now_ms } => Some((*id, usage.map(|u| u.total()), *now_ms)),
        Event::CacheHit { id, now_ms } => Some((*id, Some(0), *now_ms)),
        _ => None,
    }
}

/// What a host works out for the router's `Event::Request` besides the
/// request itself.
pub struct HostReads<'a> {
    /// The client headers the router reads (`wire::router_reads`).
    pub headers: Vec<HeaderRef<'a>>,
    /// SHA-256 of the client key, if one is presented.
    pub key_sha256: Option<[u8; 32]>,
    /// What the buffered body of an API request says, unless it does not
    /// parse or the router will refuse the request before reading it.
    pub body_facts: Option<BodyFacts>,
    /// The model the client asked for, kept only when the answer is to name
    /// it again (`model_routing.restore_requested_model`).
    pub requested_model: Option<String>,
}

/// Reads a request for the router (`decision-cost` times this as the edge
/// box's share of a decision). Natively SHA-256 is in hardware and reading
/// the JSON body costs about a third of what it does in the module. A body
/// that does not parse is left to the router, which explains what is wrong
/// with it; so is one of a request the router will refuse before it looks
/// at the body (geofence, unknown key). Only the headers the router reads
/// go (the key headers only when there is no digest to stand in for them).
pub fn host_reads<'a>(
    config: &RouterConfig,
    headers: &'a HeaderMap,
    country: Option<Country>,
    endpoint: Endpoint,
    body: Option<&[u8]>,
    token: Option<&BearerToken>,
) -> HostReads<'a> {
    host_reads_of(config, || headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), country, endpoint, body, token)
}

/// What a JWT bearer token in `headers` says (`auth.jwt`), checked with
/// `keys` and the host's signature check `verify` at `now_ms`; `None`
/// when JWTs are not accepted or the credential is not one (an API key).
pub fn read_token(
    config: &RouterConfig,
    headers: &HeaderMap,
    keys: &KeySet,
    now_ms: u64,
    verify: impl Fn(Alg, &KeyMaterial, &[u8], &[u8]) -> bool,
) -> Option<BearerToken> {
    let rules = config.auth.jwt.as_ref()?;
    let presented = edge_router::auth::presented_key(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))?;
    if !looks_like_jwt(presented) {
        return None;
    }
    Some(match authenticate(presented, keys, rules, now_ms, verify) {
        Ok(id) => BearerToken::Valid { tenant: id.tenant, tier: id.tier },
        Err(why) => BearerToken::Refused(why),
    })
}

/// [`host_reads`] of headers in any form: `pairs` yields them (lower-case
/// names and values) afresh at each call (`decision-cost` reads the same
/// header list the native router gets).
pub fn host_reads_of<'a, I>(
    config: &RouterConfig,
    pairs: impl Fn() -> I,
    country: Option<Country>,
    endpoint: Endpoint,
    body: Option<&[u8]>,
    token: Option<&BearerToken>,
) -> HostReads<'a>
where
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    // A token stands in for a key: then no key is looked for, nor sent.
    let key_sha256 = match token {
        Some(_) => None,
        None => edge_router::auth::presented_key(pairs()).map(edge_router::auth::key_digest),
    };
    let hashed = key_sha256.is_some() || token.is_some();
    let unknown_key = key_sha256.is_none_or(|d| config.auth.identify_digest(&d).is_none());
    let refused = config.geofence.check(country).is_err()
        || matches!(token, Some(BearerToken::Refused(_)))
        || (config.auth.required && token.is_none() && unknown_key);
    let body_facts = match body {
        Some(bytes) if endpoint.is_api() && !refused => edge_router::facts::parse_body(bytes).ok(),
        _ => None,
    };
    let requested_model =
        body_facts.as_ref().filter(|_| config.model_routing.restore_requested_model).and_then(|f| f.model.clone());
    HostReads {
        headers: pairs()
            .filter(|(n, _)| edge_router::wire::router_reads(n, hashed))
            .map(|(name, value)| HeaderRef { name, value })
            .collect(),
        key_sha256,
        body_facts,
        requested_model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::Full;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The bodies here are ready at once: one poll with a no-op waker is enough.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a ready body left the read pending"),
        }
    }

    /// A body of `chunks`, counting the frames read of it.
    #[derive(Debug)]
    struct Chunks(std::collections::VecDeque<&'static [u8]>, std::rc::Rc<std::cell::Cell<usize>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            let next = self.0.pop_front();
            self.1.set(self.1.get() + usize::from(next.is_some()));
            std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(Bytes::from_static(c)))))
        }
    }

    fn chunked(chunks: &[&'static [u8]]) -> (Chunks, std::rc::Rc<std::cell::Cell<usize>>) {
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        (Chunks(chunks.iter().copied().collect(), read.clone()), read)
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_all_read() {
        let (body, read) = chunked(&[b"12345", b"67890", b"never read"]);
        assert_eq!(block_on(read_limited(body, 8)), Err(RouterError::PayloadTooLarge { limit: 8 }));
        assert_eq!(read.get(), 2, "reading stopped at the chunk that went over");
        let fits = block_on(read_limited(chunked(&[b"1234", b"5678"]).0, 8));
        assert_eq!(fits.as_deref(), Ok(&b"12345678"[..]));
        let one = block_on(read_limited(Full::new(Bytes::from_static(b"whole")), 8));
        assert_eq!(one.as_deref(), Ok(&b"whole"[..]));
    }

    #[test]
    fn a_streamed_body_over_the_limit_ends_with_an_error_and_says_so() {
        let (body, read) = chunked(&[b"12345", b"67890", b"never read"]);
        let capped = Capped::new(body, 8);
        let upload = capped.upload();
        let collected = block_on(capped.collect());
        let e = collected.expect_err("the body ends with an error");
        assert!(e.is::<OverLimit>(), "{e}");
        let within = Duration::from_secs(60);
        assert_eq!(upload.fault(8, false, within), Some(RouterError::PayloadTooLarge { limit: 8 }));
        assert_eq!(read.get(), 2, "nothing is read past the chunk that went over");
        let fits = Capped::new(chunked(&[b"1234", b"5678"]).0, 8);
        let upload = fits.upload();
        assert_eq!(block_on(fits.collect()).map(|c| c.to_bytes()).ok().as_deref(), Some(&b"12345678"[..]));
        assert_eq!(upload.fault(8, true, within), None, "a body at the limit is not over it, and it ended");
    }

    #[test]
    fn a_body_is_taken_in_the_same_way_on_both_hosts() {
        let limits = (8, DurationSpec(Duration::from_secs(30)), false);
        let ready = |_: Duration| std::future::ready(());
        let never = |_: Duration| std::future::pending::<()>();
        let read_all = |b: Chunks, limit| read_limited(b, limit);
        let mut declared = HeaderMap::new();
        declared.insert("content-length", HeaderValue::from_static("9"));
        let refused = block_on(take_in(Endpoint::Other, &declared, limits, chunked(&[]).0, read_all, never));
        assert!(matches!(refused, Err(RouterError::PayloadTooLarge { limit: 8 })), "{refused:?}");

        declared.insert("content-length", HeaderValue::from_static("4"));
        let (body, read) = chunked(&[b"1234"]);
        let passed = block_on(take_in(Endpoint::Other, &declared, limits, body, read_all, never));
        assert!(matches!(passed, Ok(Intake::Streams(_))), "a passthrough body streams");
        assert_eq!(read.get(), 0, "and none of it is read here");

        let whole =
            block_on(take_in(Endpoint::ChatCompletions, &declared, limits, chunked(&[b"1234"]).0, read_all, ready));
        assert!(matches!(whole, Ok(Intake::Whole(ref b)) if b == "1234"), "a body already in wins over the timer");

        let slow = |_: Chunks, _| std::future::pending::<Result<Bytes, RouterError>>();
        let late = block_on(take_in(Endpoint::ChatCompletions, &declared, limits, chunked(&[]).0, slow, ready));
        assert!(matches!(late, Err(RouterError::ClientTimeout(ref t)) if t == "30s"), "{late:?}");
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_unread() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("9"));
        assert_eq!(check_declared(&h, 8), Err(RouterError::PayloadTooLarge { limit: 8 }));
        assert_eq!(check_declared(&h, 9), Ok(()));
        assert!(streams_body(Endpoint::Other, &h, false));
        assert!(!streams_body(Endpoint::ChatCompletions, &h, false), "API bodies are read first");
        let mut json = h.clone();
        json.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json; charset=utf-8"));
        assert!(streams_body(Endpoint::Other, &json, false));
        assert!(!streams_body(Endpoint::Other, &json, true), "a JSON body is read for a pii policy");
        h.insert("content-length", HeaderValue::from_static("0"));
        assert!(!streams_body(Endpoint::Other, &h, false), "nothing to stream");
    }
}
