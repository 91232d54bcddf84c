//! Forwarding to origins with `fetch`, and passing their answers through.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{Either, LocalBoxFuture, select};
use futures_util::{FutureExt, StreamExt};
use worker::wasm_bindgen::JsValue;
use worker::{AbortController, ByteStream, Context, Delay, Env, Fetch, Headers, Request, Response};

use super::state::Generation;
use super::{cache, now_ms, respond, router_error};
use crate::error::RouterError;
use crate::geo::Country;
use crate::hop::{connection_tokens, is_hop_by_hop, never_forwarded};
use crate::wire::{Action, CacheStatus, Event, Explain, Failure, Forward, ForwardBody, Header, Usage};

/// How much of a metered body's end is kept to find its `usage`.
const METER_TAIL: usize = 16 << 10;

/// Work that must finish after the response went out (cache stores, budget
/// settlements): queued here, run under `ctx.waitUntil`.
#[derive(Clone)]
pub struct Later(futures_channel::mpsc::UnboundedSender<LocalBoxFuture<'static, ()>>);

impl Later {
    /// Opens the queue; it is drained until every handle is dropped.
    pub fn open(ctx: &Context) -> Self {
        let (tx, rx) = futures_channel::mpsc::unbounded::<LocalBoxFuture<'static, ()>>();
        ctx.wait_until(rx.for_each(|job| job));
        Self(tx)
    }

    pub fn run(&self, job: impl Future<Output = ()> + 'static) {
        let _ = self.0.unbounded_send(job.boxed_local());
    }
}

/// Tells the router the exchange is over when dropped: after the body went
/// through, or when the client went away before.
pub struct Finish {
    generation: Rc<Generation>,
    id: u64,
    usage: Option<Usage>,
    later: Later,
    env: Env,
    /// Cleared when another event (`CacheHit`) ends the exchange instead.
    armed: bool,
}

impl Finish {
    pub fn new(generation: Rc<Generation>, id: u64, later: Later, env: Env) -> Self {
        Self { generation, id, usage: None, later, env, armed: true }
    }

    /// The exchange ended some other way (a cache hit): no `Finished`.
    pub fn disarm(mut self) {
        self.armed = false;
    }

    fn body_failed(&self, failure: Failure) {
        self.generation.handle(Event::BodyFailed { id: self.id, failure, now_ms: now_ms() });
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.generation.handle(Event::Finished { id: self.id, usage: self.usage, now_ms: now_ms() });
        super::budget::settle(&self.generation, &self.env, &self.later);
    }
}

/// What became of a request sent to a node.
enum Sent {
    Answered(Response),
    Failed(Failure),
    /// `fetch` refused the request itself.
    Unsendable(String),
}

/// Statuses whose responses have no body (a JS `Response` with one throws).
pub fn null_body_status(status: u16) -> bool {
    matches!(status, 101 | 204 | 205 | 304)
}

/// A stored passthrough entry this request revalidates.
pub struct Stale {
    pub entry: cache::Entry,
    /// Whether an error may be answered with it (`stale-if-error`).
    pub if_error: bool,
}

/// A request on its way to origins.
pub struct Exchange {
    pub generation: Rc<Generation>,
    pub env: Env,
    pub later: Later,
    pub id: u64,
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<Header>,
    /// The buffered body, kept for fallbacks and model rewrites.
    pub original: Rc<[u8]>,
    /// The body still in the connection (passthrough paths).
    pub stream: Option<worker::web_sys::ReadableStream>,
    pub country: Option<Country>,
    pub finish: Option<Finish>,
    pub stale: Option<Stale>,
}

impl Exchange {
    /// The cache answered: the exchange is over.
    pub fn cache_hit(mut self) {
        if let Some(finish) = self.finish.take() {
            finish.disarm();
        }
        self.generation.handle(Event::CacheHit { id: self.id, now_ms: now_ms() });
    }

    /// Carries out the router's actions until there is a response.
    pub async fn route(mut self, mut action: Action) -> worker::Result<Response> {
        let id = self.id;
        loop {
            let forward = match action {
                Action::Respond { status, headers, body } => {
                    if let Some(stale) = self.stale.take().filter(|s| s.if_error && status >= 500) {
                        let explain = Explain {
                            node: stale.entry.node().to_string(),
                            rule: "passthrough".into(),
                            attempts: 0,
                            country: crate::geo::country_label(self.country),
                            model: None,
                            cache: CacheStatus::Stale,
                        };
                        return Ok(stale.entry.serve_stale(&explain, self.head_only()));
                    }
                    return Ok(respond(status, &headers, body));
                }
                Action::Forward(f) => f,
                Action::Deliver(_) | Action::Lookup(_) | Action::Done => {
                    let e = RouterError::Internal("the router gave no answer for this request".into());
                    return Ok(router_error(&e, self.country));
                }
            };
            // Reservations released so far are settled before a new one is made.
            super::budget::settle(&self.generation, &self.env, &self.later);
            if let Some(refused) = super::budget::reserve(&self.generation, &self.env, id, &forward).await {
                action = refused;
                continue;
            }
            let sent_ms = now_ms();
            action = match self.send(&forward).await {
                Sent::Unsendable(why) => {
                    let e = RouterError::BadRequest(format!("the request cannot be forwarded from a Worker: {why}"));
                    return Ok(router_error(&e, self.country));
                }
                Sent::Answered(resp) => {
                    let status = resp.status_code();
                    let retry_after_s = if matches!(status, 429 | 503) { retry_after(resp.headers()) } else { None };
                    let head = Event::ResponseHead { id, status, retry_after_s, now_ms: now_ms() };
                    match self.generation.handle(head) {
                        Action::Deliver(explain) => return Ok(self.answer(resp, explain, &forward, sent_ms)),
                        other => other,
                    }
                }
                Sent::Failed(failure) => self.generation.handle(Event::OriginFailed { id, failure, now_ms: now_ms() }),
            };
        }
    }

    fn head_only(&self) -> bool {
        self.method == "HEAD"
    }

    /// What the client gets once a node answered and the router said to
    /// deliver: a revalidated or stale cache entry, or the node's answer.
    fn answer(mut self, resp: Response, explain: Explain, forward: &Forward, sent_ms: u64) -> Response {
        let status = resp.status_code();
        self.invalidate(&explain.node, status, resp.headers());
        if let Some(stale) = self.stale.take() {
            if status == 304 {
                let not_modified: Vec<(String, String)> = resp.headers().entries().collect();
                let key = forward.fill.as_ref().map(|f| f.key.clone());
                let (response, store) =
                    stale.entry.revalidated(&not_modified, sent_ms, &explain, self.head_only(), key);
                if let Some(store) = store {
                    self.later.run(store);
                }
                return response;
            }
            if stale.if_error && status >= 500 {
                return stale.entry.serve_stale(&explain, self.head_only());
            }
        }
        self.deliver(resp, explain, forward, sent_ms)
    }

    /// A successful unsafe request through a passthrough path drops what the
    /// cache holds for its target, and for same-origin `Location` and
    /// `Content-Location` (RFC 9111 §4.4).
    fn invalidate(&self, node: &str, status: u16, response: &Headers) {
        let method = self.method.as_str();
        if crate::facts::Endpoint::classify(method, &self.target) != crate::facts::Endpoint::Other
            || matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
        {
            return;
        }
        let locations: Vec<(String, String)> =
            response.entries().filter(|(n, _)| n == "location" || n == "content-location").collect();
        let keys = edge_cache::http::invalidated(method, status, &format!("http/{node}"), &self.target, &locations);
        if !keys.is_empty() {
            self.later.run(cache::remove(keys));
        }
    }

    /// Whether requests to node `node` (its index) carry its key (it names an `api_key_env`).
    fn node_has_key(&self, node: u32) -> bool {
        self.generation.router.borrow().config().node_at(node).is_some_and(|n| n.api_key_env.is_some())
    }

    async fn send(&mut self, f: &Forward) -> Sent {
        let headers = Headers::new();
        let (country_header, node) = {
            let router = self.generation.router.borrow();
            let config = router.config();
            let node = config.node_at(f.node).map(|n| (n.id.clone(), n.url_for(&self.target), n.api_key_env.clone()));
            (config.server.country_header.clone(), node)
        };
        // The router only forwards to nodes of its config.
        let Some((node, url, credential)) = node else { return Sent::Failed(Failure::Connect) };
        for h in &self.headers {
            let removed = never_forwarded(&h.name)
                || f.remove_headers.binary_search(&h.name).is_ok()
                || country_header.as_deref().is_some_and(|c| h.name.eq_ignore_ascii_case(c));
            if let (false, Ok(value)) = (removed, std::str::from_utf8(&h.value)) {
                let _ = headers.append(&h.name, value);
            }
        }
        if let Some(stale) = &self.stale {
            for (name, value) in stale.entry.conditional_headers() {
                let _ = headers.set(&name, &value);
            }
        }
        if let Some(name) = &credential {
            match self.env.secret(name) {
                Ok(secret) => {
                    let _ = headers.set("authorization", &format!("Bearer {secret}"));
                }
                // The name is configuration, never the value.
                Err(_) => {
                    worker::console_error!("edge-router: node {node} needs the secret {name}, which is not set")
                }
            }
        }
        let body: Option<JsValue> = match &f.body {
            ForwardBody::RewriteModel(model) => {
                let bytes = crate::model::rewrite_body(&self.original, model).unwrap_or_else(|| self.original.to_vec());
                Some(worker::js_sys::Uint8Array::from(bytes.as_slice()).into())
            }
            ForwardBody::Original => match self.stream.take() {
                Some(stream) => Some(stream.into()),
                None if self.original.is_empty() && matches!(self.method.as_str(), "GET" | "HEAD") => None,
                None => Some(worker::js_sys::Uint8Array::from(&self.original[..]).into()),
            },
        };
        // web_sys directly: worker's own Method turns methods it does not
        // know into GET, and the edge box forwards any method.
        let init = worker::web_sys::RequestInit::new();
        init.set_method(&self.method);
        init.set_headers(&headers.0);
        if let Some(body) = &body {
            init.set_body(body);
        }
        init.set_redirect(worker::web_sys::RequestRedirect::Manual);
        let request = match worker::web_sys::Request::new_with_str_and_init(&url, &init) {
            Ok(request) => Request::from(request),
            // The client's request is one fetch cannot send (a GET with a
            // body, TRACE…): not the node's fault.
            Err(e) => return Sent::Unsendable(format!("{e:?}")),
        };
        let abort = AbortController::default();
        let signal = abort.signal();
        let fetch = Fetch::Request(request);
        let sent = Box::pin(fetch.send_with_signal(&signal));
        let limit = Box::pin(Delay::from(Duration::from_millis(f.first_byte_timeout_ms)));
        match select(sent, limit).await {
            Either::Left((Ok(resp), _)) => Sent::Answered(resp),
            // Workers do not say whether the connection was made; the
            // router falls back on either, and the edge box reports the
            // same for a refused connection.
            Either::Left((Err(e), _)) => {
                worker::console_warn!("edge-router: node {node} failed: {e}");
                Sent::Failed(Failure::Connect)
            }
            Either::Right(((), _)) => {
                abort.abort();
                Sent::Failed(Failure::Timeout)
            }
        }
    }

    /// Streams the origin's answer to the client with the explanation headers.
    fn deliver(mut self, mut resp: Response, explain: Explain, forward: &Forward, sent_ms: u64) -> Response {
        let status = resp.status_code();
        let origin_headers = resp.headers();
        let tokens = connection_tokens(
            origin_headers.get("connection").ok().flatten().iter().map(|v| v.as_bytes()).collect::<Vec<_>>(),
        );
        let out = Headers::new();
        let all: Vec<(String, String)> = origin_headers.entries().collect();
        let mut kept: Vec<(String, String)> = Vec::new();
        for (name, value) in &all {
            if !is_hop_by_hop(name, &tokens) {
                let _ = out.append(name, value);
                kept.push((name.clone(), value.clone()));
            }
        }
        explain.for_each_header(|name, value| {
            let _ = out.set(name, value);
        });
        let sse = kept.iter().any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream"));
        let capture = match forward.fill.clone() {
            Some(fill) if fill.http && self.method == "GET" => {
                // Judged on the request as the origin saw it: with the node's
                // key if it has one, without the client's credentials.
                let mut request = cache::text_pairs(self.headers.iter().filter(|h| !never_forwarded(&h.name)));
                if self.node_has_key(forward.node) {
                    request.push(("authorization".into(), "Bearer (the node's key)".into()));
                }
                edge_cache::http::storable("GET", &request, status, &all, sent_ms, now_ms())
                    .ok()
                    .map(|stored| cache::Capture::http(fill.key, stored, &explain))
            }
            Some(fill) if !fill.http && status == 200 => {
                Some(cache::Capture::ai(fill.key, fill.ttl_s, fill.estimated_tokens, kept, &explain))
            }
            _ => None,
        };
        let inner = if null_body_status(status) || self.head_only() { Err(()) } else { resp.stream().map_err(|_| ()) };
        let Ok(inner) = inner else {
            // No body (a HEAD, a 204): nothing to pass through.
            drop(self.finish.take());
            return Response::builder().with_status(status).with_headers(out).empty();
        };
        let body = Tracked {
            inner,
            finish: self.finish.take(),
            idle_ms: forward.idle_timeout_ms,
            deadline_ms: sent_ms.saturating_add(forward.total_timeout_ms),
            meter: forward.meter.then(Vec::new),
            capture,
            later: self.later.clone(),
            sse,
            node: explain.node.clone(),
            ended: false,
        };
        let stream = futures_util::stream::unfold(body, Tracked::next_chunk);
        match Response::builder().with_status(status).with_headers(out).from_stream(stream) {
            Ok(resp) => resp,
            Err(e) => {
                let e = RouterError::Internal(format!("the response could not be passed on: {e}"));
                router_error(&e, self.country)
            }
        }
    }
}

/// An origin's response body on its way to the client, chunk by chunk.
/// A body that stalls longer than the node's `idle` limit, or outlasts its
/// `total` limit, is cut off and counted against the node; an SSE stream
/// then ends with an `event: error` so the client sees why.
struct Tracked {
    inner: ByteStream,
    finish: Option<Finish>,
    idle_ms: u64,
    deadline_ms: u64,
    meter: Option<Vec<u8>>,
    capture: Option<cache::Capture>,
    later: Later,
    sse: bool,
    node: String,
    ended: bool,
}

type Chunk = Result<Vec<u8>, worker::Error>;

impl Tracked {
    async fn next_chunk(mut self) -> Option<(Chunk, Self)> {
        if self.ended {
            return None;
        }
        let wait = self.idle_ms.min(self.deadline_ms.saturating_sub(now_ms()));
        let delay = Box::pin(Delay::from(Duration::from_millis(wait)));
        match select(self.inner.next(), delay).await {
            Either::Left((Some(Ok(chunk)), _)) => {
                self.keep(&chunk);
                Some((Ok(chunk), self))
            }
            Either::Left((None, _)) => {
                self.complete();
                None
            }
            Either::Left((Some(Err(e)), _)) => {
                // As on the edge box: the body ends with an error, which
                // closes the client's stream short.
                worker::console_warn!("edge-router: node {} broke off its response: {e}", self.node);
                self.fail(Failure::Reset);
                self.ended = true;
                Some((Err(e), self))
            }
            Either::Right(((), _)) => {
                self.fail(Failure::Timeout);
                let (kind, message) = if now_ms() >= self.deadline_ms {
                    (
                        "upstream_timeout",
                        format!("node {} did not finish its response within its total time limit", self.node),
                    )
                } else {
                    let idle = self.idle_ms as f64 / 1000.0;
                    ("upstream_stall", format!("node {} sent nothing for {idle}s; the response was cut off", self.node))
                };
                self.end_early(kind, message)
            }
        }
    }

    fn keep(&mut self, chunk: &[u8]) {
        if let Some(tail) = &mut self.meter {
            tail.extend_from_slice(chunk);
            if tail.len() > 2 * METER_TAIL {
                tail.drain(..tail.len() - METER_TAIL);
            }
        }
        if let Some(capture) = &mut self.capture
            && !capture.keep(chunk)
        {
            self.capture = None;
        }
    }

    fn complete(&mut self) {
        self.ended = true;
        if let (Some(finish), Some(tail)) = (&mut self.finish, &self.meter) {
            finish.usage = crate::usage::find_usage(tail);
        }
        if let Some(capture) = self.capture.take() {
            self.later.run(capture.store());
        }
        drop(self.finish.take());
    }

    fn fail(&mut self, failure: Failure) {
        self.capture = None;
        if let Some(finish) = &self.finish {
            finish.body_failed(failure);
        }
        drop(self.finish.take());
    }

    fn end_early(mut self, kind: &str, message: String) -> Option<(Chunk, Self)> {
        worker::console_warn!("edge-router: {message}");
        self.ended = true;
        if !self.sse {
            return Some((Err(worker::Error::RustError(message)), self));
        }
        Some((Ok(crate::error::sse_error_event(kind, &message).into_bytes()), self))
    }
}

/// A `retry-after` in seconds: delta-seconds, or an HTTP date.
fn retry_after(headers: &Headers) -> Option<u32> {
    let value = headers.get("retry-after").ok().flatten()?;
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(u32::try_from(seconds).unwrap_or(u32::MAX));
    }
    let at = worker::js_sys::Date::parse(value);
    if at.is_nan() {
        return None;
    }
    let wait_ms = (at as u64).saturating_sub(now_ms());
    Some(u32::try_from(wait_ms / 1000).unwrap_or(u32::MAX))
}
