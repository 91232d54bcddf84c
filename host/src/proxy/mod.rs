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
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use edge_router::RouterConfig;
use edge_router::jwt::KeySet;
use origin_fallback::{GOLDEN_GAMMA, mix64};
use tokio_util::sync::CancellationToken;

use crate::cache::EdgeCache;
use crate::geoip::GeoIp;
use crate::lock;
use crate::module::WasmRouter;
use crate::origins::Origins;
use crate::signals::Signals;

pub use call::{call_module, defer_event};
pub use ingress::handle;
pub use operate::{ReloadError, Reloaded};

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

/// What the host runs one config with: the config, its origins' connection
/// pools, and per node the control of a drain. A request keeps the
/// generation it started under to its end, so a reload never changes what
/// a request in flight, or its stream, uses.
pub struct Generation {
    /// Counts the configs loaded: the module's own count of the config it
    /// runs (`WasmRouter::generation`), so an action's node index is read
    /// in the config it was given in.
    pub number: u64,
    pub config: RouterConfig,
    origins: Origins,
    /// Per node, in the config's order: its drain's cut-off, carried to the
    /// next generation for a node that remains.
    controls: Vec<Arc<NodeControl>>,
    /// The nodes' ids, in the config's order (`Forward::node` indexes it),
    /// shared with the responses that name them rather than copied.
    node_ids: Vec<Arc<str>>,
    /// Where the config came from, and when.
    pub source: ConfigSource,
}

/// Where a running config came from: for `status`, and for a reload.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file it was read from; `None` for a config given as text (the demo, tests).
    pub path: Option<std::path::PathBuf>,
    /// The name it is reported under (the path as given).
    pub name: String,
    /// SHA-256 of its text, in hex.
    pub sha256: String,
    /// When it was loaded, in milliseconds since the Unix epoch.
    pub loaded_ms: u64,
}

impl ConfigSource {
    /// The source of `text`, read now from `path` (if from a file) as `name`.
    pub fn new(path: Option<std::path::PathBuf>, name: &str, text: &str) -> Self {
        let sha256 = crate::sha256_hex(text.as_bytes());
        Self { path, name: name.to_string(), sha256, loaded_ms: now_ms() }
    }
}

/// An operator's hold on a node: the cut-off of its drain.
#[derive(Default)]
pub(crate) struct NodeControl {
    /// Cancelled when a drain's time runs out, which cuts off the responses
    /// still streaming from the node; then replaced by a fresh one.
    cut_off: Mutex<CancellationToken>,
    /// Counts drains and undrains, so a drain's cut-off only happens if no
    /// later drain or undrain came.
    drains: AtomicU64,
}

impl Generation {
    /// Generation `number` of the host, for `config` (which the module, at
    /// the same number, runs too), with `workers` threads' pools; a node
    /// of `before` keeps its drain's control.
    fn new(
        number: u64,
        config: RouterConfig,
        workers: usize,
        source: ConfigSource,
        before: Option<&Generation>,
    ) -> anyhow::Result<Self> {
        let origins = Origins::new(&config, workers)?;
        let controls = config
            .nodes
            .iter()
            .map(|n| {
                let kept = before.and_then(|b| Some(b.controls[b.config.node_index(&n.id)?].clone()));
                kept.unwrap_or_default()
            })
            .collect();
        Ok(Self {
            number,
            origins,
            controls,
            node_ids: config.nodes.iter().map(|n| Arc::from(n.id.as_str())).collect(),
            source,
            config,
        })
    }

    /// The token a drain of node `node` (its index) cancels when its time runs out.
    pub(super) fn cut_off(&self, node: u32) -> Option<CancellationToken> {
        Some(lock(&self.controls.get(node as usize)?.cut_off).clone())
    }
}

/// Everything a request needs, shared by all connections.
pub struct Shared {
    router: Mutex<WasmRouter>,
    /// The config in force and what the host runs it with. Replaced (under
    /// the router's lock, with the module's config) by a reload.
    current: RwLock<Arc<Generation>>,
    next_id: AtomicU64,
    rng: AtomicU64,
    /// How many worker threads serve connections (each has its own pools).
    workers: usize,
    /// The edge cache's entries.
    cache: Arc<EdgeCache>,
    /// Metrics, access log and routing log.
    pub(crate) signals: Arc<Signals>,
    /// Held through a config reload: one at a time.
    reloading: Mutex<()>,
    /// The nodes whose health is probed (`Shared::watch_health`).
    watched: Mutex<std::collections::HashSet<String>>,
    /// HTTPS (`server.tls`), read again at every reload; each new
    /// connection takes what is in force when it comes.
    tls: RwLock<Option<Arc<crate::tls::Tls>>>,
    /// The IP database (`server.geoip_database`), read again at every
    /// reload; each request takes what is in force when it comes.
    geoip: RwLock<Option<Arc<GeoIp>>>,
    /// The keys JWT bearer tokens are checked with (`auth.jwt`), read
    /// again at every reload.
    jwt_keys: RwLock<Option<Arc<KeySet>>>,
    /// The store a fleet of boxes shares rate limits in (`state.redis`),
    /// set up at start.
    pub(crate) fleet: Option<Arc<crate::fleet::FleetStore>>,
}

/// The files a config names beside itself, read and checked: its
/// certificates and its IP database.
pub(crate) struct Files {
    tls: Option<crate::tls::Tls>,
    geoip: Option<GeoIp>,
    jwt_keys: Option<KeySet>,
}

impl Files {
    /// Reads the files `config` names; the error says which setting's file is wrong.
    pub(crate) fn load(config: &RouterConfig) -> anyhow::Result<Self> {
        let tls = config.server.tls.as_ref().map(crate::tls::load).transpose().context("server.tls")?;
        if let Some(tls) = &tls {
            tls.warn_of_expiry();
        }
        let geoip =
            config.server.geoip_database.as_deref().map(GeoIp::load).transpose().context("server.geoip_database")?;
        if let Some(geoip) = &geoip {
            geoip.warn_if_stale();
        }
        let jwt_keys = crate::jwt::load(config).context("auth.jwt.jwks_file")?;
        Ok(Self { tls, geoip, jwt_keys })
    }
}

impl Shared {
    /// Shared state for a configured router served by `config.server.workers`
    /// threads (one per CPU by default), the config coming from `source`.
    pub fn new(router: WasmRouter, config: RouterConfig, source: ConfigSource) -> anyhow::Result<Self> {
        router.check_layout(&config)?;
        let workers = config.server.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            |n| usize::from(n.get()),
        );
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        let number = router.generation();
        let files = Files::load(&config)?;
        Ok(Self {
            tls: RwLock::new(files.tls.map(Arc::new)),
            geoip: RwLock::new(files.geoip.map(Arc::new)),
            jwt_keys: RwLock::new(files.jwt_keys.map(Arc::new)),
            fleet: crate::fleet::FleetStore::new(&config.state).context("state")?.map(Arc::new),
            router: Mutex::new(router),
            next_id: AtomicU64::new(mix64(seed)),
            rng: AtomicU64::new(seed),
            workers: workers.max(1),
            cache: Arc::new(EdgeCache::new(config.cache.memory.0)),
            signals: Arc::new(Signals::new(&config)?),
            reloading: Mutex::new(()),
            watched: Mutex::new(std::collections::HashSet::new()),
            current: RwLock::new(Arc::new(Generation::new(number, config, workers, source, None)?)),
        })
    }

    /// The config in force and what the host runs it with.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// What HTTPS is served with, if it is.
    pub fn tls(&self) -> Option<Arc<crate::tls::Tls>> {
        self.tls.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The IP database in force.
    pub fn geoip(&self) -> Option<Arc<GeoIp>> {
        self.geoip.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Puts `files` in force for the connections and requests to come.
    pub(crate) fn set_files(&self, files: Files) {
        *self.tls.write().unwrap_or_else(std::sync::PoisonError::into_inner) = files.tls.map(Arc::new);
        *self.geoip.write().unwrap_or_else(std::sync::PoisonError::into_inner) = files.geoip.map(Arc::new);
        *self.jwt_keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = files.jwt_keys.map(Arc::new);
    }

    /// The keys JWT bearer tokens are checked with, if tokens are accepted.
    pub fn jwt_keys(&self) -> Option<Arc<KeySet>> {
        self.jwt_keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// How many worker threads serve connections.
    pub fn workers(&self) -> usize {
        self.workers
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
