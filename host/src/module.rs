//! The router module under wasmtime: one long-lived instance.
//!
//! All routing state (requests in flight per node, observed latencies) lives
//! inside this one instance, so every connection sees the same counts. Calls
//! take microseconds, so the instance sits behind a mutex rather than being
//! replicated per thread. Each call runs under an epoch deadline and the
//! instance's memory is bounded; if the module traps, it is instantiated
//! afresh with the same configuration and the request gets a 500.
//!
//! The host keeps what must outlive an instance: the spending each reply
//! reports and the operators' weights and drains. A fresh instance (after
//! a trap, or a reload with a new module build) gets them in
//! `Event::Restore`, so daily budgets are not reset by a reload.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edge_router::wire::{ABI_VERSION, Action, Configured, Control, Event, Notice, Reply, RequestRef, Restore, Spend};
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

pub use crate::module_cache::cache_dir;
use crate::module_cache::{cached_module, compiled, loaded};

/// wasmtime has its own error type; this keeps its full message in an anyhow error.
pub(crate) fn w<T>(result: wasmtime::Result<T>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow!("{e:?}"))
}

/// How often the engine's epoch advances.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Ticks a single call may run: a routing decision takes microseconds, so a
/// call still running after this is stuck.
const CALL_DEADLINE_TICKS: u64 = 100;
/// Memory the module may use.
const MEMORY_LIMIT: usize = 256 << 20;

/// A compiled router module, shareable between instances.
#[derive(Clone)]
pub struct RouterModule {
    engine: Engine,
    module: Module,
    /// The file it was read from, for reloading.
    path: Option<std::path::PathBuf>,
    /// Keeps the epoch thread alive; it stops when the last clone is dropped.
    _ticker: Arc<()>,
}

impl RouterModule {
    /// The engine every module is compiled for.
    pub(crate) fn engine() -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // For profiling the module with `perf` (see bench/README.md): names
        // its compiled functions in /tmp/perf-PID.map.
        if std::env::var_os("EDGE_ROUTER_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        w(Engine::new(&config))
    }

    /// Compiles the module from its bytes.
    pub fn compile(wasm: &[u8]) -> anyhow::Result<Self> {
        let engine = Self::engine()?;
        let module = loaded(&engine, &compiled(wasm)?)?;
        Self::of(engine, module)
    }

    fn of(engine: Engine, module: Module) -> anyhow::Result<Self> {
        let ticker = Arc::new(());
        let (alive, e) = (Arc::downgrade(&ticker), engine.clone());
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(EPOCH_TICK);
                e.increment_epoch();
            }
        })?;
        Ok(Self { engine, module, path: None, _ticker: ticker })
    }

    /// Reads and compiles a module file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        Self::from_file_hashed(path).map(|(module, _)| module)
    }

    /// Reads and compiles a module file; with the hex SHA-256 of the bytes
    /// compiled (the audit trail's), read once. The compiled code is kept in
    /// the cache [`cache_dir`] names, and taken from it when this module was
    /// compiled before by the same engine (see `docs/edge-box.md`).
    pub fn from_file_hashed(path: &std::path::Path) -> anyhow::Result<(Self, String)> {
        Self::from_file_cached(path, cache_dir().as_deref())
    }

    /// [`RouterModule::from_file_hashed`] with `cache` as the compiled-module cache, or none.
    pub fn from_file_cached(path: &std::path::Path, cache: Option<&std::path::Path>) -> anyhow::Result<(Self, String)> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read the router module {} (build it with scripts/build-module.sh)", path.display())
        })?;
        let sha256 = crate::sha256_hex(&bytes);
        let engine = Self::engine()?;
        let module = match cache {
            Some(dir) => cached_module(&engine, dir, &sha256, &bytes)?,
            None => loaded(&engine, &compiled(&bytes)?)?,
        };
        Ok((Self { path: Some(path.to_path_buf()), ..Self::of(engine, module)? }, sha256))
    }

    /// The file the module was read from, if it was read from one.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }
}

struct Live {
    store: Store<StoreLimits>,
    memory: Memory,
    input: TypedFunc<u32, u32>,
    configure: TypedFunc<u32, u64>,
    reconfigure: TypedFunc<u32, u64>,
    handle: TypedFunc<u32, u64>,
    /// The module's input buffer: it stays put until `er_input` is called again.
    input_at: usize,
    input_len: usize,
}

#[derive(Clone, Copy)]
enum Call {
    Configure,
    Reconfigure,
    Handle,
}

/// Events deferred before the batch is sent on its own.
const MAX_DEFERRED: usize = 64;

/// A configured router instance.
pub struct WasmRouter {
    module: RouterModule,
    live: Live,
    config: (String, String),
    /// Encoded events for the next call: deferred ones, then the one being handled.
    batch: Vec<u8>,
    deferred: usize,
    /// Buffers of `handle` and `defer`: the encoded event and the reply.
    scratch: (Vec<u8>, Vec<u8>),
    /// What a fresh instance must take over: spending and operators' changes.
    kept: Restore,
    /// The config's node ids, in its order: replies name nodes by index.
    node_ids: Vec<String>,
    /// The config's number of rules: replies name rules by index.
    rules: u32,
    /// Counts the configs the instance has taken: the index a reply names
    /// a node by is that of the config of this number.
    generation: u64,
}

impl WasmRouter {
    /// Instantiates the module and configures it; a refused config is an error carrying the module's explanation.
    pub fn new(module: &RouterModule, file: &str, text: &str) -> anyhow::Result<Self> {
        let mut live = instantiate(module)?;
        let (node_ids, rules) = configure(&mut live, file, text)?;
        Ok(Self {
            node_ids,
            rules,
            module: module.clone(),
            live,
            config: (file.into(), text.into()),
            batch: Vec::with_capacity(16 << 10),
            deferred: 0,
            scratch: (Vec::with_capacity(4096), Vec::with_capacity(4096)),
            kept: Restore::default(),
            generation: 0,
        })
    }

    /// Which config the instance runs: 0 for the first, one more for each
    /// [`reconfigure`](Self::reconfigure).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes the config `text` (of `file`) in place of the running one,
    /// keeping the router's state for the nodes that remain (see
    /// `docs/abi.md`). `host` is the host's own reading of the text: a
    /// module that reads its nodes or rules otherwise is put back on the
    /// running config (as [`check_layout`](Self::check_layout) refuses it
    /// at start). A config the module refuses changes nothing, and the
    /// error says why.
    pub fn reconfigure(&mut self, file: &str, text: &str, host: &edge_router::RouterConfig) -> anyhow::Result<()> {
        // Deferred events first: they are about the running config's exchanges.
        self.flush();
        let configured = configure_as(&mut self.live, Call::Reconfigure, file, text);
        let (node_ids, rules) = match configured {
            Ok(layout) => layout,
            Err(e) => {
                if e.downcast_ref::<Refused>().is_none() {
                    // A trap, not a refusal: the instance starts afresh under the running config.
                    self.rebuild();
                }
                return Err(e);
            }
        };
        let ids = host.nodes.iter().map(|n| n.id.as_str());
        if !ids.eq(node_ids.iter().map(String::as_str)) || usize::try_from(rules).ok() != Some(host.rules.len()) {
            let (old_file, old_text) = self.config.clone();
            if let Err(e) = configure_as(&mut self.live, Call::Reconfigure, &old_file, &old_text) {
                tracing::error!("the running config could not be put back in the module: {e:#}");
                self.rebuild();
            }
            bail!(
                "the router module reads the new config's nodes or rules otherwise than this host (module and \
                 host builds differ?); the running config stays"
            );
        }
        self.kept.spent.retain(|s| node_ids.contains(&s.node));
        self.kept.weights.retain(|(n, _)| node_ids.contains(n));
        self.kept.draining.retain(|n| node_ids.contains(n));
        (self.node_ids, self.rules) = (node_ids, rules);
        self.config = (file.into(), text.into());
        self.generation += 1;
        Ok(())
    }

    /// Sends the deferred events on their own, keeping the spending they settle.
    fn flush(&mut self) {
        if self.deferred > 0 {
            let mut reply = Vec::new();
            match self.send(&mut reply).and_then(|()| decode(&reply)) {
                Ok(r) => {
                    log_notices(&r.notices);
                    self.keep(&r);
                }
                Err(e) => tracing::error!("router module call failed: {e:#}"),
            }
        }
    }

    /// Replaces the instance with one of `module` (a new build, say),
    /// configured the same way and handed the spending, weights and drains
    /// of the old one. Requests in flight lose their routing state, as
    /// after a trap. On error the old instance stays.
    pub fn reload(&mut self, module: &RouterModule) -> anyhow::Result<()> {
        // Deferred events first: spending they settle must not be lost.
        self.flush();
        let mut live = instantiate(module)?;
        let (node_ids, rules) = configure(&mut live, &self.config.0, &self.config.1)?;
        if (&node_ids, rules) != (&self.node_ids, self.rules) {
            bail!(
                "the new module reads the config's nodes or rules otherwise than the running one; replies name \
                 them by their place in the config, so it would send requests to the wrong nodes"
            );
        }
        hand_over(&mut live, &self.kept)?;
        self.live = live;
        self.module = module.clone();
        Ok(())
    }

    /// Refuses a module that reads `config` otherwise than the host: replies
    /// name nodes and rules by their place in the config, which the host
    /// looks up in its own reading of it.
    pub fn check_layout(&self, config: &edge_router::RouterConfig) -> anyhow::Result<()> {
        let ids = config.nodes.iter().map(|n| n.id.as_str());
        if !ids.eq(self.node_ids.iter().map(String::as_str))
            || usize::try_from(self.rules).ok() != Some(config.rules.len())
        {
            bail!(
                "the router module reads the config's nodes or rules otherwise than this host (module and host \
                 builds differ?): its nodes {:?} and {} rules, the host's {:?} and {} rules",
                self.node_ids,
                self.rules,
                config.nodes.iter().map(|n| &n.id).collect::<Vec<_>>(),
                config.rules.len()
            );
        }
        Ok(())
    }

    /// The file the running module was read from.
    pub fn module_path(&self) -> Option<std::path::PathBuf> {
        self.module.path().map(std::path::Path::to_path_buf)
    }

    /// Carries out an operator's change and remembers it for a reload.
    pub fn control(&mut self, command: Control, now_ms: u64) -> anyhow::Result<Action> {
        let action = self.handle(&Event::Control { command: command.clone(), now_ms })?;
        if matches!(action, Action::Respond { status: 200, .. }) {
            let kept = &mut self.kept;
            match command {
                Control::SetWeight { node, weight } => {
                    kept.weights.retain(|(n, _)| *n != node);
                    kept.weights.push((node, weight));
                }
                Control::Drain { node } => {
                    if !kept.draining.contains(&node) {
                        kept.draining.push(node);
                    }
                }
                Control::Undrain { node } => kept.draining.retain(|n| *n != node),
            }
        }
        Ok(action)
    }

    /// Keeps the spending a reply reported, for a fresh instance. Spending
    /// only grows within a day, so a record only ever moves forward: replies
    /// kept out of order cannot set it back.
    pub fn keep(&mut self, reply: &Reply) {
        for s in &reply.spent {
            let Some(node) = self.node_ids.get(s.node as usize) else {
                tracing::error!(
                    "the router module reported spending of node #{}, which the config does not have",
                    s.node
                );
                continue;
            };
            match self.kept.spent.iter_mut().find(|k| k.node == *node) {
                Some(k) if k.superseded_by(s.day, s.spent) => (k.day, k.spent) = (s.day, s.spent),
                Some(_) => {}
                None => self.kept.spent.push(Spend { node: node.clone(), day: s.day, spent: s.spent }),
            }
        }
    }

    /// Feeds one event, after any deferred ones, and returns the router's
    /// answer to it. A trap rebuilds the instance and is reported as an error.
    pub fn handle(&mut self, event: &Event) -> anyhow::Result<Action> {
        let (mut encoded, mut reply) = std::mem::take(&mut self.scratch);
        let result = encode(event, &mut encoded)
            .and_then(|()| self.handle_encoded(&encoded, &mut reply))
            .and_then(|()| decode(&reply));
        self.scratch = (encoded, reply);
        result.map(|r| {
            log_notices(&r.notices);
            self.keep(&r);
            r.action
        })
    }

    /// [`handle`](Self::handle) for an event already encoded with [`encode`]:
    /// the reply's bytes are copied to `reply`, for [`decode`]. Encoding and
    /// decoding need no access to the instance, so a host sharing it can do
    /// both outside its lock.
    pub fn handle_encoded(&mut self, event: &[u8], reply: &mut Vec<u8>) -> anyhow::Result<()> {
        self.batch.extend_from_slice(event);
        self.send(reply)
    }

    /// Queues an event whose answer the host does not need: a `ResponseHead`
    /// whose status the `Forward` did not ask about, a `BodyFailed` or a
    /// `Finished` (see `docs/abi.md`). It
    /// reaches the module before the next event handled, so every decision
    /// sees it; `MAX_DEFERRED` of them are sent on their own.
    pub fn defer(&mut self, event: &Event) {
        let (mut encoded, reply) = std::mem::take(&mut self.scratch);
        match encode(event, &mut encoded) {
            Ok(()) => self.defer_encoded(&encoded),
            Err(e) => tracing::error!("cannot encode an event for the router module: {e:#}"),
        }
        self.scratch = (encoded, reply);
    }

    /// [`defer`](Self::defer) for an event already encoded with [`encode`].
    pub fn defer_encoded(&mut self, event: &[u8]) {
        self.batch.extend_from_slice(event);
        self.deferred += 1;
        if self.deferred >= MAX_DEFERRED {
            self.flush();
        }
    }

    /// Sends the batch; copies the reply to its last event into `reply`.
    fn send(&mut self, reply: &mut Vec<u8>) -> anyhow::Result<()> {
        let result = call(&mut self.live, Call::Handle, &self.batch).and_then(|(ptr, len)| {
            let data = self.live.memory.data(&self.live.store);
            let bytes =
                data.get(ptr..ptr + len).ok_or_else(|| anyhow!("the module returned an out-of-bounds reply"))?;
            reply.clear();
            reply.extend_from_slice(bytes);
            Ok(())
        });
        self.batch.clear();
        self.deferred = 0;
        if result.is_err() {
            self.rebuild();
        }
        result
    }

    fn rebuild(&mut self) {
        match instantiate(&self.module)
            .and_then(|mut live| configure(&mut live, &self.config.0, &self.config.1).map(|_| live))
        {
            Ok(mut live) => {
                tracing::error!(
                    "the router module failed; it was restarted and requests in flight lost their routing state"
                );
                if let Err(e) = hand_over(&mut live, &self.kept) {
                    tracing::error!("the restarted router module did not take over spending and weights: {e:#}");
                }
                self.live = live;
            }
            Err(e) => tracing::error!("the router module failed and could not be restarted: {e:#}"),
        }
    }
}

/// Sends a fresh instance the state its predecessor left (`Event::Restore`).
fn hand_over(live: &mut Live, kept: &Restore) -> anyhow::Result<()> {
    let mut encoded = Vec::new();
    encode(&Event::Restore(kept.clone()), &mut encoded)?;
    call(live, Call::Handle, &encoded).map(drop)
}

/// Encodes an event for [`WasmRouter::handle_encoded`] or
/// [`WasmRouter::defer_encoded`], replacing what `into` held.
pub fn encode(event: &Event, into: &mut Vec<u8>) -> anyhow::Result<()> {
    into.clear();
    *into = edge_router::wire::encode_into(event, std::mem::take(into))?;
    Ok(())
}

/// [`encode`] for a request borrowed from the client's (the same bytes as
/// the `Event::Request` it stands for).
pub fn encode_request(request: &RequestRef<'_>, into: &mut Vec<u8>) -> anyhow::Result<()> {
    into.clear();
    *into = edge_router::wire::encode_request(request, std::mem::take(into))?;
    Ok(())
}

/// Decodes a reply copied out by [`WasmRouter::handle_encoded`].
pub fn decode(reply: &[u8]) -> anyhow::Result<Reply> {
    postcard::from_bytes::<Reply>(reply).map_err(|e| anyhow!("the module returned a malformed reply: {e}"))
}

/// Logs the module's health changes, once each (as `exchange::notices` words them).
pub fn log_notices(notices: &[Notice]) {
    for notice in notices {
        match exchange::notices::describe(notice) {
            (exchange::notices::Level::Error, about, message) => tracing::error!("{about}: {message}"),
            (exchange::notices::Level::Warn, node, message) => tracing::warn!(node = %node, "{message}"),
            (exchange::notices::Level::Info, node, message) => tracing::info!(node = %node, "{message}"),
        }
    }
}

fn instantiate(module: &RouterModule) -> anyhow::Result<Live> {
    let limits = StoreLimitsBuilder::new().memory_size(MEMORY_LIMIT).instances(1).build();
    let mut store = Store::new(&module.engine, limits);
    store.limiter(|l| l);
    store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    let instance =
        w(Instance::new(&mut store, &module.module, &[])).context("the router module does not instantiate")?;
    let version: u32 = w(w(instance.get_typed_func::<(), u32>(&mut store, "er_abi_version"))?.call(&mut store, ()))?;
    if version != ABI_VERSION {
        bail!(
            "the router module speaks ABI version {version}, this host speaks {ABI_VERSION}: build the module and \
             the host from the same source (scripts/build-module.sh, cargo build -p edge-router-host)"
        );
    }
    let memory =
        instance.get_memory(&mut store, "memory").ok_or_else(|| anyhow!("the router module exports no memory"))?;
    Ok(Live {
        memory,
        input: w(instance.get_typed_func(&mut store, "er_input"))?,
        configure: w(instance.get_typed_func(&mut store, "er_configure"))?,
        reconfigure: w(instance.get_typed_func(&mut store, "er_reconfigure"))?,
        handle: w(instance.get_typed_func(&mut store, "er_handle"))?,
        store,
        input_at: 0,
        input_len: 0,
    })
}

/// A config the module refused: the text says why (file, line, column).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Configures the instance; returns the config's node ids and number of rules, as the module read them.
fn configure(live: &mut Live, file: &str, text: &str) -> anyhow::Result<(Vec<String>, u32)> {
    configure_as(live, Call::Configure, file, text)
}

/// [`configure`] with `er_configure` or `er_reconfigure`.
fn configure_as(live: &mut Live, how: Call, file: &str, text: &str) -> anyhow::Result<(Vec<String>, u32)> {
    let message = postcard::to_allocvec(&(file, text))?;
    let (ptr, len) = call(live, how, &message)?;
    let bytes = live.memory.data(&live.store).get(ptr..ptr + len).ok_or_else(|| anyhow!("out-of-bounds reply"))?;
    match postcard::from_bytes::<Configured>(bytes)? {
        Configured::Ok { node_ids, rules } => Ok((node_ids, rules)),
        Configured::Refused(why) => Err(Refused(why).into()),
    }
}

/// Copies `input` into the module and calls `func`; returns the reply's location in memory.
fn call(live: &mut Live, func: Call, input: &[u8]) -> anyhow::Result<(usize, usize)> {
    let len = u32::try_from(input.len()).context("message too large for the module")?;
    live.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    if input.len() > live.input_len {
        let want = len.max(16 << 10);
        live.input_at = w(live.input.call(&mut live.store, want))? as usize;
        live.input_len = want as usize;
    }
    live.memory.write(&mut live.store, live.input_at, input).map_err(|e| anyhow!("{e}"))?;
    let packed = match func {
        Call::Configure => w(live.configure.call(&mut live.store, len))?,
        Call::Reconfigure => w(live.reconfigure.call(&mut live.store, len))?,
        Call::Handle => w(live.handle.call(&mut live.store, len))?,
    };
    Ok(((packed >> 32) as usize, (packed & 0xffff_ffff) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module that exports only `er_abi_version`, answering `version`.
    fn module_of_version(version: u8) -> Vec<u8> {
        assert!(version < 64, "one LEB128 byte");
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend_from_slice(&[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f]); // type () -> i32
        wasm.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]); // one function of that type
        let name = b"er_abi_version";
        wasm.extend_from_slice(&[0x07, (name.len() + 4) as u8, 0x01, name.len() as u8]);
        wasm.extend_from_slice(name);
        wasm.extend_from_slice(&[0x00, 0x00]); // exported function 0
        wasm.extend_from_slice(&[0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, version, 0x0b]); // i32.const version
        wasm
    }

    #[test]
    fn compiled_modules_are_cached_whole_and_only_where_no_one_else_writes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("edge-router-module-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cache = dir.join("cache");
        let config = "nodes:\n  - {id: a, type: local, host: \"http://a\"}\n";
        // What a module says of its ABI version, when run: tells which module was loaded.
        let version_of = |m: &RouterModule| {
            let e = WasmRouter::new(m, "t.yaml", config).err().map(|e| format!("{e:#}")).unwrap_or_default();
            e.split("ABI version ").nth(1).and_then(|v| v.split(',').next()).unwrap_or_default().to_string()
        };
        let (v1, v2) = (ABI_VERSION as u8 + 1, ABI_VERSION as u8 + 2);
        let (a, b) = (dir.join("a.wasm"), dir.join("b.wasm"));
        std::fs::write(&a, module_of_version(v1)).unwrap();
        std::fs::write(&b, module_of_version(v2)).unwrap();
        let load = |file: &std::path::Path| RouterModule::from_file_cached(file, Some(&cache)).expect("loads");
        let cached = |sha: &str| {
            let names: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
            names.into_iter().find(|p| p.file_name().unwrap().to_string_lossy().starts_with(sha)).expect("cached")
        };

        let (first, sha_a) = load(&a);
        assert_eq!(version_of(&first), v1.to_string());
        let file_a = cached(&sha_a);
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the cache is the user's alone");
        let written = std::fs::read(&file_a).unwrap();

        // The cache is read: a's compiled code put in b's place is what b loads as.
        let (_, sha_b) = load(&b);
        let file_b = cached(&sha_b);
        std::fs::copy(&file_a, &file_b).unwrap();
        assert_eq!(version_of(&load(&b).0), v1.to_string(), "taken from the cache, not compiled");
        // ... but not from a directory others may write to: b is compiled again, and the
        // directory (perhaps a shared one the operator named) is left as it is, unwritten.
        std::fs::copy(&file_a, &file_b).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(version_of(&load(&b).0), v2.to_string());
        assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o777);
        assert_eq!(std::fs::read(&file_b).unwrap(), written, "not written either");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A damaged file is compiled again and written whole.
        let mut damaged = written.clone();
        damaged[written.len() / 2] ^= 0xff;
        std::fs::write(&file_a, &damaged).unwrap();
        assert_eq!(version_of(&load(&a).0), v1.to_string());
        assert_eq!(std::fs::read(&file_a).unwrap(), written);
        std::fs::write(&file_a, &written[..10]).unwrap();
        assert_eq!(version_of(&load(&a).0), v1.to_string(), "a torn file too");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_module_of_another_abi_version_is_refused_at_load_with_both_versions() {
        let config = "nodes:\n  - {id: a, type: local, host: \"http://a\"}\n";
        let other = ABI_VERSION as u8 + 1;
        let module = RouterModule::compile(&module_of_version(other)).expect("a valid wasm module");
        let error = match WasmRouter::new(&module, "t.yaml", config) {
            Ok(_) => panic!("a module of ABI version {other} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains(&format!("ABI version {other}, this host speaks {ABI_VERSION}")),
            "the error names both versions: {error}"
        );
        // The same module at this host's version gets past the check (and
        // is then refused for what it lacks, not for its version).
        let same = RouterModule::compile(&module_of_version(ABI_VERSION as u8)).expect("valid");
        let error = WasmRouter::new(&same, "t.yaml", config).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(!error.contains("ABI version"), "{error}");
    }
}
