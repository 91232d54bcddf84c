//! The request path of the edge box: a client request becomes router
//! events, the router's actions are carried out, and the chosen origin's
//! answer streams back. What happens to the bytes of the exchange is the
//! `exchange` crate's; this module does the I/O around it.
//!
//! - [`call`]: calls into the router module (encoding outside its lock).
//! - [`ingress`]: a client request up to the router's first action.
//! - [`lookup`]: the edge cache's lookups, single flight, and its answers.
//! - [`route`]: the action loop: forwards, fallbacks, and the answer's plan.
//! - [`body`]: a streamed answer driven through the exchange's watchdog.
//! - [`recorded`]: each request's record, closed when its response is over.
//! - [`operate`]: what operators and timers ask: status, drains, purges,
//!   reloads, health probes.

mod body;
mod call;
mod ingress;
mod lookup;
mod operate;
mod recorded;
mod route;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use edge_router::RouterConfig;
use origin_fallback::{GOLDEN_GAMMA, mix64};
use tokio_util::sync::CancellationToken;

use crate::cache::EdgeCache;
use crate::module::WasmRouter;
use crate::origins::Origins;
use crate::signals::Signals;

pub use call::{call_module, defer_event};
pub use ingress::handle;

/// Where a request comes from: the worker thread serving its connection,
/// the peer, and the connection's channel for interim (1xx) responses.
pub struct Client {
    /// The worker thread (its origin connection pools are used).
    pub worker: usize,
    /// The peer's address.
    pub peer: std::net::IpAddr,
    /// Sends an origin's interim responses on to the client.
    pub interim: interim::Interim,
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
    /// Metrics, access log and routing log.
    pub(crate) signals: Arc<Signals>,
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
            next_id: AtomicU64::new(mix64(seed)),
            rng: AtomicU64::new(seed),
            cut_offs,
            drain_generation,
            cache: Arc::new(EdgeCache::new(config.cache.memory.0)),
            node_ids: config.nodes.iter().map(|n| Arc::from(n.id.as_str())).collect(),
            signals: Arc::new(Signals::new(&config)?),
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

    /// A new request's id: unique in this process (a bijective mix of a
    /// counter), and unlike any other process's (the counter starts from a
    /// seed), so that logs and `x-request-id` name one request.
    pub fn request_id(&self) -> u64 {
        mix64(self.next_id.fetch_add(1, Ordering::Relaxed)).max(1)
    }

    fn random(&self) -> u64 {
        // SplitMix64 over a shared counter: cheap, lock-free, uniform enough for weighted choice.
        mix64(self.rng.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed).wrapping_add(GOLDEN_GAMMA))
    }
}

/// Milliseconds since the Unix epoch, as the router's events carry them.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
