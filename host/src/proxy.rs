//! The request path: turn a client request into router events, carry out the
//! router's actions, and stream the chosen origin's answer back.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_cache::http::{Lookup, Revalidate};
use edge_router::RouterConfig;
use edge_router::error::{Explanation, RouterError};
use edge_router::facts::{BodyFacts, Endpoint};
use edge_router::geo::{Country, country_label};
use edge_router::hop::{connection_tokens, is_hop_by_hop, never_forwarded};
use edge_router::wire::{
    Action, BodyRef, CacheFill, CacheLookup, CacheStatus, Control, Event, Explain, Failure, Forward, ForwardBody,
    Header, HeaderRef, RequestRef, Usage,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use origin_fallback::{GOLDEN_GAMMA, counts_as_failure, mix64};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::cache::{EdgeCache, Entry, Fill, FillGuard};
use crate::lock;
use crate::module::{self, WasmRouter};
use crate::origins::{BoxError, Lease, Origins, ProxyBody};

thread_local! {
    /// Per-thread buffers for encoding events and copying out replies.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Everything a request needs, shared by all connections.
pub struct Shared {
    router: Mutex<WasmRouter>,
    config: RouterConfig,
    origins: Origins,
    next_id: AtomicU64,
    rng: AtomicU64,
    /// Per node: cancelled when a drain's time runs out, which cuts off the
    /// responses still streaming from it; then replaced by a fresh one.
    cut_offs: Vec<Mutex<CancellationToken>>,
    /// Per node: counts drains and undrains, so a drain's cut-off only
    /// happens if no later drain or undrain came.
    drain_generation: Vec<AtomicU64>,
    /// The edge cache's entries.
    cache: Arc<EdgeCache>,
    /// The nodes' ids, in the config's order (`Forward::node` indexes it),
    /// shared with the responses that name them rather than copied.
    node_ids: Vec<Arc<str>>,
}

impl Shared {
    /// Shared state for a configured router served by `config.server.workers`
    /// threads (one per CPU by default).
    pub fn new(router: WasmRouter, config: RouterConfig) -> anyhow::Result<Self> {
        router.check_layout(&config)?;
        let workers = config.server.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            |n| usize::from(n.get()),
        );
        let origins = Origins::new(&config, workers)?;
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        let cut_offs = config.nodes.iter().map(|_| Mutex::new(CancellationToken::new())).collect();
        let drain_generation = config.nodes.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            router: Mutex::new(router),
            origins,
            next_id: AtomicU64::new(1),
            rng: AtomicU64::new(seed),
            cut_offs,
            drain_generation,
            cache: Arc::new(EdgeCache::new(config.cache.memory.0)),
            node_ids: config.nodes.iter().map(|n| Arc::from(n.id.as_str())).collect(),
            config,
        })
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// How many worker threads serve connections.
    pub fn workers(&self) -> usize {
        self.origins.workers()
    }

    fn event(&self, event: &Event) -> Action {
        self.call(|encoded| module::encode(event, encoded))
    }

    /// A client request (an `Event::Request`, borrowed).
    fn request(&self, request: &RequestRef<'_>) -> Action {
        self.call(|encoded| module::encode_request(request, encoded))
    }

    /// Calls the module with the event `encode` writes.
    fn call(&self, encode: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>) -> Action {
        call_module(&self.router, encode)
            .map(|r| {
                module::log_notices(&r.notices);
                if !r.spent.is_empty() {
                    // Outside the call's lock, so replies may be kept out of
                    // order; `keep` only ever moves a node's record forward.
                    self.lock().keep(&r);
                }
                r.action
            })
            .unwrap_or_else(|e| {
                tracing::error!("router module call failed: {e:#}");
                internal_error()
            })
    }

    /// Lets the router reap exchanges its host lost track of (see `Event::Tick`).
    pub fn tick(&self) {
        self.event(&Event::Tick { now_ms: now_ms() });
    }

    /// The status report as JSON (`GET /admin/status`), with the cache store's counters.
    pub fn status(&self) -> (u16, Vec<Header>, Bytes) {
        let (status, headers, body) = answer(self.event(&Event::Status { now_ms: now_ms() }));
        let Ok(mut report) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (status, headers, body);
        };
        let s = self.cache.stats();
        report["cache_store"] = serde_json::json!({
            "hits": s.hits, "misses": s.misses, "evictions": s.evictions,
            "entries": s.entries, "bytes": s.bytes, "capacity": s.capacity,
        });
        (status, headers, Bytes::from(serde_json::to_vec_pretty(&report).unwrap_or_default()))
    }

    /// Drops cached entries whose key starts with `prefix`, or that `node`
    /// answered, or all of them; how many went.
    pub fn purge(&self, prefix: Option<&str>, node: Option<&str>) -> usize {
        self.cache
            .purge(&|key, entry| prefix.is_none_or(|p| key.starts_with(p)) && node.is_none_or(|n| entry.node == n))
    }

    /// Carries out an operator's change. A drain with a `cut_off` ends the
    /// node's remaining responses when that time has passed, unless the
    /// node was undrained or drained again in the meantime.
    pub fn control(self: &Arc<Self>, command: Control, cut_off: Option<Duration>) -> (u16, Vec<Header>, Bytes) {
        let (node, drains) = match &command {
            Control::SetWeight { node, .. } => (node.clone(), None),
            Control::Drain { node } => (node.clone(), Some(true)),
            Control::Undrain { node } => (node.clone(), Some(false)),
        };
        let index = self.config.node_index(&node);
        // The generation moves under the router lock, so concurrent drains
        // and undrains take effect in the order the module saw them.
        let mut router = self.lock();
        let action = router.control(command, now_ms()).unwrap_or_else(|e| {
            tracing::error!("router module call failed: {e:#}");
            internal_error()
        });
        let (Some(i), Some(drain), Action::Respond { status: 200, .. }) = (index, drains, &action) else {
            return answer(action);
        };
        let generation = self.drain_generation[i].fetch_add(1, Ordering::SeqCst) + 1;
        // A new drain or an undrain starts from a token not yet cancelled.
        let mut token = lock(&self.cut_offs[i]);
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        drop((token, router));
        if let Some(after) = cut_off.filter(|_| drain) {
            let shared = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let Some(shared) = shared.upgrade() else { return };
                let _router = shared.lock();
                if shared.drain_generation[i].load(Ordering::SeqCst) == generation {
                    tracing::warn!(node = %node, "drain time is up: cutting off the node's remaining responses");
                    // It stays cancelled until an undrain or a new drain, so a
                    // response whose head comes later is cut off at once too.
                    lock(&shared.cut_offs[i]).cancel();
                }
            });
        }
        answer(action)
    }

    /// Swaps in the module `module` (a new build), keeping spending,
    /// weights and drains.
    pub fn reload(&self, module: &crate::RouterModule) -> anyhow::Result<()> {
        self.lock().reload(module)
    }

    /// The file the running module was read from.
    pub fn module_path(&self) -> Option<std::path::PathBuf> {
        self.lock().module_path()
    }

    fn cut_off(&self, node: u32) -> Option<CancellationToken> {
        Some(lock(self.cut_offs.get(node as usize)?).clone())
    }

    /// Probes node `index` once (GET its `health_path` within
    /// `health_check.timeout`) and tells the router what it found.
    pub async fn probe(&self, index: usize) {
        let Some(node) = self.config.nodes.get(index) else { return };
        let ok = match self.probe_once(node).await {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(node = %node.id, "health probe failed: {why}");
                false
            }
        };
        self.event(&Event::Probed { node: node.id.clone(), ok, now_ms: now_ms() });
    }

    async fn probe_once(&self, node: &edge_router::config::Node) -> Result<(), String> {
        let client = self.origins.probe_client(&node.id).ok_or("no client")?;
        let url = format!("{}{}", node.base_url, node.health_path);
        let mut req = Request::get(&url).body(full(Bytes::new())).map_err(|e| e.to_string())?;
        self.origins.authorize(req.headers_mut(), node.api_key_env.as_deref());
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
            let status = resp.status().as_u16();
            // Read (a bounded amount of) the body so the connection can be reused.
            let _ = Limited::new(resp.into_body(), 1 << 20).collect().await;
            if counts_as_failure(status) { Err(format!("it answered {status}")) } else { Ok(()) }
        };
        match tokio::time::timeout(self.config.health_check.timeout.0, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}", self.config.health_check.timeout)),
        }
    }

    /// Queues an event whose answer is not needed (see `WasmRouter::defer`).
    fn defer(&self, event: &Event) {
        defer_event(&self.router, event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WasmRouter> {
        spin_lock(&self.router)
    }

    fn random(&self) -> u64 {
        // SplitMix64 over a shared counter: cheap, lock-free, uniform enough for weighted choice.
        mix64(self.rng.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed).wrapping_add(GOLDEN_GAMMA))
    }
}

/// Tries at the module's lock before sleeping on it (tens of microseconds at most).
const SPIN: usize = 1000;

/// Takes a shared module's lock. A module call takes microseconds, so a
/// thread finding it taken spins a little before it sleeps: on a busy
/// proxy, sleeping and being woken cost more than the wait.
fn spin_lock(router: &Mutex<WasmRouter>) -> std::sync::MutexGuard<'_, WasmRouter> {
    // A panic while holding the lock cannot leave the module half-called:
    // `WasmRouter` rebuilds its instance on any failed call.
    for _ in 0..SPIN {
        match router.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(router)
}

/// Calls a shared module with the event `encode` writes, as the edge box
/// does for every request (`bench/src/hyper_floor.rs` does it the same way):
/// encoding and decoding happen in this thread's buffers, outside the lock,
/// which is held only for the module call itself.
pub fn call_module(
    router: &Mutex<WasmRouter>,
    encode: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<edge_router::wire::Reply> {
    BUFFERS.with_borrow_mut(|(encoded, reply)| {
        encode(encoded)?;
        spin_lock(router).handle_encoded(encoded, reply)?;
        module::decode(reply)
    })
}

/// Queues an event whose answer is not needed for a shared module's next
/// call (see `WasmRouter::defer`), encoded outside the lock.
pub fn defer_event(router: &Mutex<WasmRouter>, event: &Event) {
    BUFFERS.with_borrow_mut(|(encoded, _)| match module::encode(event, encoded) {
        Ok(()) => spin_lock(router).defer_encoded(encoded),
        Err(e) => tracing::error!("cannot encode an event for the router module: {e:#}"),
    });
}

fn internal_error() -> Action {
    let (status, headers, body) = RouterError::Internal("the routing module failed".into()).to_response(Vec::new());
    Action::Respond { status, headers, body }
}

/// The parts of a `Respond`; anything else is the router failing to answer.
fn answer(action: Action) -> (u16, Vec<Header>, Bytes) {
    match action {
        Action::Respond { status, headers, body } => (status, headers, Bytes::from(body)),
        _ => answer(internal_error()),
    }
}

/// Milliseconds since the Unix epoch, as the router's events carry them.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The client's country, believed only from a trusted proxy's header.
fn client_country(headers: &HeaderMap, peer: IpAddr, config: &RouterConfig) -> Option<Country> {
    let name = config.server.country_header.as_deref()?;
    if !config.trusted_proxies.iter().any(|b| b.contains(peer)) {
        return None;
    }
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(Country::parse)
}

/// What the edge box works out natively for the module's `Event::Request`.
pub struct HostReads<'a> {
    /// The client headers the router reads (`wire::router_reads`).
    pub headers: Vec<HeaderRef<'a>>,
    /// SHA-256 of the client key, if one is presented.
    pub key_sha256: Option<[u8; 32]>,
    /// What the buffered body of an API request says, unless it does not
    /// parse or the router will refuse the request before reading it.
    pub body_facts: Option<BodyFacts>,
}

/// Reads a request for the module (`decision-cost` times this as the edge
/// box's share of a decision). SHA-256 is in hardware here and only in
/// software in the module, and reading the JSON body natively costs about a
/// third of what it does there. A body that does not parse is left to the
/// module, which explains what is wrong with it; so is one of a request the
/// router will refuse before it looks at the body (geofence, unknown key).
/// Only the headers the router reads go (the key headers only when there is
/// no digest to stand in for them). `headers` yields the client's headers
/// afresh at each call.
pub fn host_reads<'a, I>(
    config: &RouterConfig,
    headers: impl Fn() -> I,
    country: Option<Country>,
    endpoint: Endpoint,
    body: Option<&[u8]>,
) -> HostReads<'a>
where
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let key_sha256 = edge_router::auth::presented_key(headers()).map(edge_router::auth::key_digest);
    let hashed = key_sha256.is_some();
    let refused = config.geofence.check(country).is_err()
        || (config.auth.required && key_sha256.is_none_or(|d| config.auth.identify_digest(&d).is_none()));
    let body_facts = match body {
        Some(bytes) if endpoint != Endpoint::Other && !refused => edge_router::facts::parse_body(bytes).ok(),
        _ => None,
    };
    HostReads {
        headers: headers()
            .filter(|(n, _)| edge_router::wire::router_reads(n, hashed))
            .map(|(name, value)| HeaderRef { name, value })
            .collect(),
        key_sha256,
        body_facts,
    }
}

/// Handles one client request on worker thread `worker`.
pub async fn handle(shared: Arc<Shared>, worker: usize, req: Request<Incoming>, peer: IpAddr) -> Response<ProxyBody> {
    let config = &shared.config;
    let country = client_country(req.headers(), peer, config);
    let (parts, incoming) = req.into_parts();
    let endpoint = Endpoint::classify(parts.method.as_str(), path_and_query(&parts.uri));
    let limit = config.server.max_body_bytes;

    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return host_error(&RouterError::PayloadTooLarge { limit }, country);
    }
    // `original` is kept for fallbacks and model rewrites (the event borrows it).
    let (original, stream) = if endpoint == Endpoint::Other && declared != Some(0) && has_body(&parts.headers) {
        (None, Some(incoming))
    } else {
        match read_body(incoming, limit, config.server.client_timeout.0).await {
            Ok(bytes) => (Some(bytes), None),
            Err(e) => return host_error(&e, country),
        }
    };

    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let guard = FinishOnDrop { shared: shared.clone(), id, usage: None, armed: true };
    // The event borrows the client's headers and body: they are encoded
    // straight from the request, not copied first. The origin still gets all
    // headers but the hop-by-hop ones and the key.
    let client_headers = || parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let HostReads { headers, key_sha256, body_facts } =
        host_reads(config, client_headers, country, endpoint, original.as_deref());
    let country_code = country.as_ref().map(Country::as_str);
    let mut action = shared.request(&RequestRef {
        id,
        method: parts.method.as_str(),
        target: path_and_query(&parts.uri),
        headers,
        country: country_code,
        body: original.as_deref().map_or(BodyRef::Streamed, BodyRef::Buffered),
        now_ms: now_ms(),
        random: shared.random(),
        key_sha256,
        body_facts,
    });
    let original = original.unwrap_or_default();
    let mut pending = Pending {
        shared: shared.clone(),
        worker,
        id,
        guard,
        parts,
        original,
        stream,
        country,
        endpoint,
        filling: None,
        stale: None,
    };
    if let Action::Lookup(lookup) = &action {
        let miss = |shared: &Shared| shared.event(&Event::CacheMiss { id, now_ms: now_ms() });
        match look_up(&shared, lookup, &pending.parts.headers).await {
            Looked::Hit(hit) => {
                pending.guard.disarm();
                shared.defer(&Event::CacheHit { id, now_ms: now_ms() });
                return hit;
            }
            Looked::Stale { response, entry } => {
                // stale-while-revalidate: the client gets the stale answer
                // now, and the same exchange revalidates it in the background.
                pending.stale = Some(Stale { entry, if_error: true });
                let action = miss(&shared);
                tokio::spawn(async move {
                    let refreshed = pending.route(action).await;
                    let _ = refreshed.into_body().collect().await;
                });
                return response;
            }
            Looked::Revalidate { entry, if_error, leader } => {
                pending.stale = Some(Stale { entry, if_error });
                pending.filling = leader;
                action = miss(&shared);
            }
            Looked::Miss(leader) => {
                pending.filling = leader;
                action = miss(&shared);
            }
        }
    }
    pending.route(action).await
}

/// A stored entry being revalidated.
struct Stale {
    entry: Arc<Entry>,
    /// Whether an error may be answered with it (`stale-if-error`).
    if_error: bool,
}

/// A request on its way to an origin.
struct Pending {
    shared: Arc<Shared>,
    worker: usize,
    id: u64,
    guard: FinishOnDrop,
    parts: http::request::Parts,
    /// The buffered body, kept for fallbacks and model rewrites.
    original: Bytes,
    /// The body still in the connection (passthrough paths).
    stream: Option<Incoming>,
    country: Option<Country>,
    endpoint: Endpoint,
    /// Held while this request fills its cache key; dropped when that ends.
    filling: Option<FillGuard>,
    /// The cached entry this request revalidates, if it does.
    stale: Option<Stale>,
}

impl Pending {
    /// Carries out the router's actions until there is a response.
    async fn route(mut self, mut action: Action) -> Response<ProxyBody> {
        let shared = self.shared.clone();
        let id = self.id;
        loop {
            let forward = match action {
                Action::Respond { status, headers, body } => {
                    if let Some(stale) = self.stale.take().filter(|s| s.if_error && status >= 500) {
                        return self.serve_stale(&stale.entry, None);
                    }
                    return respond(status, &headers, Bytes::from(body));
                }
                Action::Forward(f) => f,
                Action::Deliver(_) | Action::Lookup(_) | Action::Done => {
                    let e = RouterError::Internal("the router gave no answer for this request".into());
                    return host_error(&e, self.country);
                }
            };
            let found = shared.node_ids.get(forward.node as usize).cloned();
            let (Some(node), Some(explained)) = (found, forward.explain(&shared.config, self.country)) else {
                // A node this host does not know: not expected, since a module
                // that reads the config otherwise is refused at start and at
                // reload. Treated as the node being unreachable.
                tracing::error!(
                    "the router module named node #{}, which this host's config does not have",
                    forward.node
                );
                action = shared.event(&Event::OriginFailed { id, failure: Failure::Connect, now_ms: now_ms() });
                continue;
            };
            let conditional = self
                .stale
                .as_ref()
                .and_then(|s| s.entry.meta.as_ref())
                .map(edge_cache::http::conditional_headers)
                .unwrap_or_default();
            let sent = tokio::time::Instant::now();
            let sent_ms = now_ms();
            let outcome =
                send(&shared, self.worker, &forward, &self.parts, &self.original, &mut self.stream, &conditional).await;
            action = match outcome {
                Ok((resp, lease)) => {
                    // A response without a body (HEAD, 204, 304, length 0) frees its connection now.
                    let lease = if resp.body().is_end_stream() {
                        lease.release();
                        None
                    } else {
                        Some(lease)
                    };
                    let status = resp.status().as_u16();
                    let retry_after_s = if matches!(status, 429 | 503) { retry_after(resp.headers()) } else { None };
                    let head = Event::ResponseHead { id, status, retry_after_s, now_ms: now_ms() };
                    let limits = BodyLimits::of(&forward, sent);
                    let explain = if forward.asks_about(status) {
                        match shared.event(&head) {
                            Action::Deliver(explain) => explain,
                            other => {
                                action = other;
                                continue;
                            }
                        }
                    } else {
                        // The router's answer is known: deliver now, tell it later.
                        shared.defer(&head);
                        explained
                    };
                    self.invalidate(&node, status, resp.headers());
                    if let Some(stale) = self.stale.take() {
                        if status == 304 {
                            let key = forward.fill.as_ref().map(|f| f.key.as_str());
                            return self.revalidated(&stale.entry, resp.headers(), sent_ms, &explain, key);
                        }
                        if stale.if_error && status >= 500 {
                            return self.serve_stale(&stale.entry, Some(&explain));
                        }
                    }
                    let cut_off = shared.cut_off(forward.node);
                    let meter = forward.meter.then(Vec::new);
                    let capture =
                        forward.fill.and_then(|fill| self.capture(fill, &resp, &explain, sent_ms, forward.node));
                    let watch = Watch { node, cut_off, meter, capture, lease };
                    return deliver(resp, &explain, limits, watch, self.guard);
                }
                Err(failure) => {
                    tracing::debug!(node = %node, attempt = forward.attempt, "origin failed: {}", failure.describe());
                    shared.event(&Event::OriginFailed { id, failure, now_ms: now_ms() })
                }
            };
        }
    }

    /// What of the response is kept for the cache, if it may be stored: an
    /// AI answer when it is a `200`; a `GET` of a passthrough path when RFC
    /// 9111 allows, judged on the request as the origin saw it (with the
    /// node's key if it has one, without the client's credentials).
    fn capture(
        &mut self,
        fill: CacheFill,
        resp: &Response<Incoming>,
        explain: &Explain,
        sent_ms: u64,
        node: u32,
    ) -> Option<Capture> {
        let meta = if fill.http {
            if self.parts.method != http::Method::GET {
                return None;
            }
            let mut request = text_pairs(&self.parts.headers, |n| !never_forwarded(n));
            // Only here: looking the node's pool up for every response would be wasted.
            if self.shared.origins.pool(self.worker, node).is_some_and(|p| p.has_key()) {
                request.push(("authorization".into(), "Bearer (the node's key)".into()));
            }
            let response = text_pairs(resp.headers(), |_| true);
            let status = resp.status().as_u16();
            Some(edge_cache::http::storable("GET", &request, status, &response, sent_ms, now_ms()).ok()?)
        } else if resp.status() == StatusCode::OK {
            None
        } else {
            return None;
        };
        Some(Capture::new(&self.shared, fill, explain, meta, self.filling.take()))
    }

    /// A `304` confirmed the stale entry: it is freshened (RFC 9111
    /// §4.3.4), stored again and served.
    fn revalidated(
        self,
        entry: &Entry,
        not_modified: &HeaderMap,
        sent_ms: u64,
        explain: &Explain,
        key: Option<&str>,
    ) -> Response<ProxyBody> {
        let Some(mut meta) = entry.meta.clone() else { return self.serve_stale(entry, Some(explain)) };
        edge_cache::http::freshen(&mut meta, &text_pairs(not_modified, |_| true), sent_ms, now_ms());
        let mut headers = entry.headers.clone();
        for (name, value) in &owned(not_modified) {
            if edge_cache::http::replaced_by_304(name.as_str()) && !is_hop_by_hop(name.as_str(), &[]) {
                headers.insert(name.clone(), value.clone());
            }
        }
        let fresh = Entry {
            status: entry.status,
            headers,
            body: entry.body.clone(),
            node: entry.node.clone(),
            model: entry.model.clone(),
            stored_ms: now_ms(),
            expires_ms: entry.expires_ms,
            tokens: entry.tokens,
            meta: Some(meta),
        };
        let age = fresh.meta.as_ref().map_or(0, |m| m.age_s(now_ms()));
        let response = cached_response(&fresh, &Explain { cache: CacheStatus::Revalidated, ..explain.clone() }, age);
        if let Some(key) = key {
            self.shared.cache.put(key.to_string(), fresh);
        }
        response
    }

    /// Answers with the stale entry (`stale-if-error`).
    fn serve_stale(self, entry: &Entry, explain: Option<&Explain>) -> Response<ProxyBody> {
        let explain = explain.cloned().unwrap_or_else(|| Explain {
            node: entry.node.clone(),
            rule: "passthrough".into(),
            attempts: 0,
            country: country_label(self.country),
            model: None,
            cache: CacheStatus::Stale,
        });
        let age = entry.meta.as_ref().map_or(0, |m| m.age_s(now_ms()));
        cached_response(entry, &Explain { cache: CacheStatus::Stale, ..explain }, age)
    }

    /// A successful unsafe request through a passthrough path drops what the
    /// cache holds for its target, and for same-origin `Location` and
    /// `Content-Location` (RFC 9111 §4.4).
    fn invalidate(&self, node: &str, status: u16, response: &HeaderMap) {
        let method = self.parts.method.as_str();
        if self.endpoint != Endpoint::Other || matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE") {
            return;
        }
        let origin = format!("http/{node}");
        let target = path_and_query(&self.parts.uri);
        let locations = text_pairs(response, |n| n == "location" || n == "content-location");
        for key in edge_cache::http::invalidated(method, status, &origin, target, &locations) {
            self.shared.cache.remove(&key);
        }
    }
}

/// A copy of `headers` that shares no memory with them. Parsed header names
/// and values are slices of the connection's read buffer; a cached entry
/// holding such slices would keep the whole buffer (kilobytes) alive.
fn owned(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let name = HeaderName::from_bytes(n.as_str().as_bytes()).ok()?;
            Some((name, HeaderValue::from_bytes(v.as_bytes()).ok()?))
        })
        .collect()
}

/// Header fields as lower-case name and text value pairs (non-text values are skipped).
fn text_pairs(headers: &HeaderMap, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| keep(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// A `retry-after` in seconds: delta-seconds, or an HTTP date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(u32::try_from(seconds).unwrap_or(u32::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    Some(u32::try_from(wait.as_secs()).unwrap_or(u32::MAX))
}

/// What the cache had for a request.
enum Looked {
    /// A fresh answer: serve it.
    Hit(Response<ProxyBody>),
    /// A stale answer to serve now and revalidate in the background.
    Stale { response: Response<ProxyBody>, entry: Arc<Entry> },
    /// A stale entry to revalidate before use; `leader` if this request fills the key.
    Revalidate { entry: Arc<Entry>, if_error: bool, leader: Option<FillGuard> },
    /// Nothing: go to the origin, filling the key if `Some`.
    Miss(Option<FillGuard>),
}

/// Looks a request's answer up in the cache. On a miss this request leads
/// the fill of its key, or waits for the fill under way and looks again
/// (going to the origin on its own, without filling, if that fill failed).
async fn look_up(shared: &Arc<Shared>, lookup: &CacheLookup, request: &HeaderMap) -> Looked {
    let mut waited = false;
    loop {
        let now = now_ms();
        if let Some(entry) = shared.cache.get(&lookup.key, now) {
            let Some(meta) = entry.meta.as_ref() else {
                let age = now.saturating_sub(entry.stored_ms) / 1000;
                return Looked::Hit(cached_response(&entry, &lookup.explain, age));
            };
            match edge_cache::http::lookup(&text_pairs(request, |_| true), meta, now) {
                Lookup::Fresh { age_s } => return Looked::Hit(cached_response(&entry, &lookup.explain, age_s)),
                Lookup::Stale { age_s, revalidate: Revalidate::InBackground } => {
                    let explain = Explain { cache: CacheStatus::Stale, ..lookup.explain.clone() };
                    let response = cached_response(&entry, &explain, age_s);
                    return Looked::Stale { response, entry };
                }
                Lookup::Stale { revalidate: Revalidate::First { if_error }, .. } => {
                    let leader = match shared.cache.fill(&lookup.key) {
                        Fill::Leader(guard) => Some(guard),
                        Fill::Follower(_) => None,
                    };
                    return Looked::Revalidate { entry, if_error, leader };
                }
                Lookup::Miss => {}
            }
        }
        if waited {
            return Looked::Miss(None);
        }
        match shared.cache.fill(&lookup.key) {
            Fill::Leader(guard) => return Looked::Miss(Some(guard)),
            Fill::Follower(mut done) => {
                // Returns when the leader's guard is dropped: stored or failed.
                let _ = done.changed().await;
                waited = true;
            }
        }
    }
}

/// A response from the cache: the stored head and body, this request's
/// explanation (with the node that answered originally), its `age`, and
/// for an AI answer the tokens it saved.
fn cached_response(entry: &Entry, explain: &Explain, age_s: u64) -> Response<ProxyBody> {
    let mut resp = Response::new(full(entry.body.clone()));
    *resp.status_mut() = entry.status;
    *resp.headers_mut() = entry.headers.clone();
    let explain = Explain { node: entry.node.clone(), model: entry.model.clone(), ..explain.clone() };
    let headers = resp.headers_mut();
    explain.for_each_header(|name, value| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    });
    headers.insert(http::header::AGE, HeaderValue::from(age_s));
    if entry.meta.is_none() {
        let saved = HeaderName::from_static(edge_router::error::headers::TOKENS_SAVED);
        headers.insert(saved, HeaderValue::from(entry.tokens));
    }
    resp
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::CONTENT_LENGTH) || headers.contains_key(http::header::TRANSFER_ENCODING)
}

async fn read_body(body: Incoming, limit: u64, within: Duration) -> Result<Bytes, RouterError> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(within, limited.collect()).await {
        Err(_) => Err(RouterError::ClientTimeout(format!("{}s", within.as_secs()))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(RouterError::PayloadTooLarge { limit }),
        Ok(Err(e)) => Err(RouterError::BadRequest(format!("the request body could not be read: {e}"))),
    }
}

async fn send(
    shared: &Shared,
    worker: usize,
    f: &Forward,
    client: &http::request::Parts,
    original: &Bytes,
    stream: &mut Option<Incoming>,
    extra: &[(String, String)],
) -> Result<(Response<Incoming>, Lease), Failure> {
    let Some(pool) = shared.origins.pool(worker, f.node) else {
        return Err(Failure::Connect);
    };
    // Before the body: a streamed one can be taken only once.
    let target = pool.target(&client.uri).map_err(|_| Failure::Connect)?;
    let body: ProxyBody = match &f.body {
        ForwardBody::RewriteModel(model) => match edge_router::model::rewrite_body(original, model) {
            Some(b) => full(Bytes::from(b)),
            None => full(original.clone()),
        },
        ForwardBody::Original => match stream.take() {
            Some(incoming) => {
                let limit = usize::try_from(shared.config.server.max_body_bytes).unwrap_or(usize::MAX);
                Limited::new(incoming, limit).boxed()
            }
            None => full(original.clone()),
        },
    };
    let mut req =
        Request::builder().method(client.method.clone()).uri(target).body(body).map_err(|_| Failure::Connect)?;
    let headers = req.headers_mut();
    let country_header = shared.config.server.country_header.as_deref();
    for (name, value) in &client.headers {
        let removed = never_forwarded(name.as_str())
            || f.remove_headers.binary_search_by(|r| r.as_str().cmp(name.as_str())).is_ok()
            || country_header.is_some_and(|c| name.as_str().eq_ignore_ascii_case(c));
        if !removed {
            headers.append(name, value.clone());
        }
    }
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(n, v);
        }
    }
    tokio::time::timeout(Duration::from_millis(f.first_byte_timeout_ms), pool.send(req))
        .await
        .unwrap_or(Err(Failure::Timeout))
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn respond(status: u16, headers: &[Header], body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_headers(resp.headers_mut(), headers);
    resp
}

/// Sets each of `headers` on `map` (names or values HTTP refuses are skipped).
pub(crate) fn set_headers(map: &mut HeaderMap, headers: &[Header]) {
    for h in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(&h.value)) {
            map.insert(n, v);
        }
    }
}

/// An error the host answers itself (before the router saw the request).
pub fn host_error(error: &RouterError, country: Option<Country>) -> Response<ProxyBody> {
    let country = country_label(country);
    let extra = Explanation { node: "-", rule: "-", attempts: 0, country: &country }.headers();
    let (status, headers, body) = error.to_response(extra);
    respond(status, &headers, Bytes::from(body))
}

/// Time limits of a response body.
struct BodyLimits {
    /// Longest gap between chunks.
    idle: Duration,
    /// When the whole exchange must be over.
    deadline: tokio::time::Instant,
}

impl BodyLimits {
    fn of(f: &Forward, sent: tokio::time::Instant) -> Self {
        Self {
            idle: Duration::from_millis(f.idle_timeout_ms),
            deadline: sent + Duration::from_millis(f.total_timeout_ms),
        }
    }
}

/// What a delivered body is watched for besides its time limits.
struct Watch {
    /// Node id, for messages.
    node: Arc<str>,
    /// Cancelled when a drain of the node runs out of time.
    cut_off: Option<CancellationToken>,
    /// The body's tail, kept to find its `usage` at the end (metered nodes only).
    meter: Option<Vec<u8>>,
    /// The whole body, kept to store in the cache when it ends well.
    capture: Option<Capture>,
    /// The origin connection, given back when the body has been read to the end.
    lease: Option<Lease>,
}

/// A response being kept for the cache as it streams to the client. It is
/// stored only if the whole body went through; dropped any other way (too
/// large, broken off, cut), it stores nothing, and its fill guard wakes the
/// requests waiting for it.
struct Capture {
    cache: Arc<EdgeCache>,
    fill: CacheFill,
    status: StatusCode,
    headers: HeaderMap,
    node: String,
    model: Option<String>,
    /// RFC 9111 metadata of a passthrough `GET`.
    meta: Option<edge_cache::Stored>,
    body: Vec<u8>,
    _guard: Option<FillGuard>,
}

impl Capture {
    fn new(
        shared: &Shared,
        fill: CacheFill,
        explain: &Explain,
        meta: Option<edge_cache::Stored>,
        guard: Option<FillGuard>,
    ) -> Self {
        Self {
            cache: shared.cache.clone(),
            fill,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            node: explain.node.clone(),
            model: explain.model.clone(),
            meta,
            body: Vec::new(),
            _guard: guard,
        }
    }

    /// Adds a chunk; false once the body is too large to store.
    fn keep(&mut self, data: &[u8]) -> bool {
        self.body.extend_from_slice(data);
        self.body.len() <= self.cache.max_entry()
    }

    fn store(self) {
        let now = now_ms();
        let tokens = edge_router::usage::find_usage(&self.body).map_or(self.fill.estimated_tokens, Usage::total);
        let entry = Entry {
            status: self.status,
            headers: self.headers,
            body: Bytes::from(self.body),
            node: self.node,
            model: self.model,
            stored_ms: now,
            expires_ms: if self.meta.is_some() {
                u64::MAX
            } else {
                now.saturating_add(self.fill.ttl_s.saturating_mul(1000))
            },
            tokens,
            meta: self.meta,
        };
        self.cache.put(self.fill.key, entry);
    }
}

/// How much of a metered body's end is kept: the last SSE chunks, or the
/// end of a JSON response, where servers put `usage`.
const METER_TAIL: usize = 16 << 10;

fn deliver(
    resp: Response<Incoming>,
    explain: &Explain,
    limits: BodyLimits,
    watch: Watch,
    finish: FinishOnDrop,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let tokens = connection_tokens(parts.headers.get_all(http::header::CONNECTION).iter().map(HeaderValue::as_bytes));
    let hop: Vec<HeaderName> = parts.headers.keys().filter(|n| is_hop_by_hop(n.as_str(), &tokens)).cloned().collect();
    for name in hop {
        parts.headers.remove(name);
    }
    let mut capture = watch.capture;
    if let Some(c) = &mut capture {
        c.status = parts.status;
        c.headers = owned(&parts.headers);
    }
    explain.for_each_header(|name, value| {
        if let Ok(value) = HeaderValue::from_str(value) {
            parts.headers.insert(HeaderName::from_static(name), value);
        }
    });
    let sse =
        parts.headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let timer = Box::pin(tokio::time::sleep_until(limits.deadline.min(tokio::time::Instant::now() + limits.idle)));
    let tracked = Tracked {
        inner: body,
        finish: Some(finish),
        timer,
        limits,
        node: watch.node,
        cut_off: watch.cut_off,
        cut_wait: None,
        meter: watch.meter,
        capture,
        lease: watch.lease,
        sse,
        ended: false,
    };
    Response::from_parts(parts, tracked.boxed())
}

/// Tells the router an exchange is over when dropped: after the response
/// body ended, or when the client went away at any point before.
struct FinishOnDrop {
    shared: Arc<Shared>,
    id: u64,
    /// The `usage` the body reported, once it ended.
    usage: Option<Usage>,
    /// Cleared when another event (`CacheHit`) ends the exchange instead.
    armed: bool,
}

impl FinishOnDrop {
    /// The exchange ends some other way: no `Finished` on drop.
    fn disarm(mut self) {
        self.armed = false;
    }

    /// Tells the router the body broke off; `Finished` follows on drop.
    fn body_failed(&self, failure: Failure) {
        self.shared.defer(&Event::BodyFailed { id: self.id, failure, now_ms: now_ms() });
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.shared.defer(&Event::Finished { id: self.id, usage: self.usage, now_ms: now_ms() });
        }
    }
}

/// An origin response body passed through frame by frame, so SSE chunks
/// reach the client as they arrive. The exchange finishes at its end, with
/// the `usage` found in the body's tail if the node is metered.
///
/// A body that stalls longer than the node's `idle` limit, or outlasts its
/// `total` limit, is cut off and reported to the router as a node failure.
/// A drain whose time ran out cuts it off too (not a failure). An SSE
/// stream then ends with an `event: error` carrying an OpenAI-shaped error
/// (which OpenAI's SDKs raise as an API error), so the client sees why
/// instead of hanging; any other body ends with an error, which closes the
/// client connection before the declared length.
struct Tracked {
    inner: Incoming,
    finish: Option<FinishOnDrop>,
    timer: Pin<Box<tokio::time::Sleep>>,
    limits: BodyLimits,
    node: Arc<str>,
    cut_off: Option<CancellationToken>,
    /// Waits for `cut_off`; made only once the body has had to wait.
    cut_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    meter: Option<Vec<u8>>,
    capture: Option<Capture>,
    lease: Option<Lease>,
    sse: bool,
    ended: bool,
}

impl Tracked {
    fn fail(&mut self, failure: Failure) {
        if let Some(finish) = self.finish.take() {
            finish.body_failed(failure);
        }
    }

    /// The body ends early: what the client gets instead of more of it.
    fn end_early(&mut self, kind: &str, message: String) -> Result<Frame<Bytes>, BoxError> {
        tracing::warn!(node = %self.node, "{message}");
        self.ended = true;
        self.capture = None;
        if !self.sse {
            return Err(message.into());
        }
        Ok(Frame::data(Bytes::from(edge_router::error::sse_error_event(kind, &message))))
    }

    /// A drain of the node ran out of time (not the node's failure).
    fn drained(&mut self) -> Result<Frame<Bytes>, BoxError> {
        self.cut_off = None;
        self.cut_wait = None;
        let message = format!("node {} is drained and its drain time ran out; the response was cut off", self.node);
        self.end_early("node_drained", message)
    }

    /// A time limit ran out.
    fn timed_out(&mut self) -> Result<Frame<Bytes>, BoxError> {
        let total = tokio::time::Instant::now() >= self.limits.deadline;
        let (kind, message) = if total {
            ("upstream_timeout", format!("node {} did not finish its response within its total time limit", self.node))
        } else {
            let idle = self.limits.idle.as_secs_f64();
            ("upstream_stall", format!("node {} sent nothing for {idle}s; the response was cut off", self.node))
        };
        self.fail(Failure::Timeout);
        self.end_early(kind, message)
    }

    /// The whole body went through: the exchange finishes with the usage it reported.
    fn complete(&mut self) {
        if let Some(mut finish) = self.finish.take() {
            finish.usage = self.meter.as_deref().and_then(edge_router::usage::find_usage);
        }
        if let Some(capture) = self.capture.take() {
            capture.store();
        }
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
        self.ended = true;
    }

    /// Keeps the last `METER_TAIL` bytes (at most twice that are held).
    fn keep_tail(&mut self, data: &Bytes) {
        if let Some(tail) = &mut self.meter {
            tail.extend_from_slice(data);
            if tail.len() > 2 * METER_TAIL {
                tail.drain(..tail.len() - METER_TAIL);
            }
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.cut_off.as_ref().is_some_and(CancellationToken::is_cancelled) {
            return Poll::Ready(Some(self.drained()));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = self.limits.deadline.min(tokio::time::Instant::now() + self.limits.idle);
                self.timer.as_mut().reset(next);
                if let Some(data) = frame.data_ref() {
                    self.keep_tail(data);
                    if let Some(capture) = &mut self.capture
                        && !capture.keep(data)
                    {
                        self.capture = None;
                    }
                }
                // A body of known length is complete with its last frame;
                // hyper does not poll it again.
                if self.inner.is_end_stream() {
                    self.complete();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(node = %self.node, "the response body broke off: {e}");
                self.capture = None;
                self.fail(Failure::Reset);
                self.ended = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                self.complete();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.cut_wait.is_none()
                    && let Some(token) = &self.cut_off
                {
                    self.cut_wait = Some(Box::pin(token.clone().cancelled_owned()));
                }
                if let Some(wait) = self.cut_wait.as_mut()
                    && wait.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(self.drained()));
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(self.timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
