//! The router module under wasmtime: one long-lived instance.
//!
//! All routing state (requests in flight per node, observed latencies) lives
//! inside this one instance, so every connection sees the same counts. Calls
//! take microseconds, so the instance sits behind a mutex rather than being
//! replicated per thread. Each call runs under an epoch deadline and the
//! instance's memory is bounded; if the module traps, it is instantiated
//! afresh with the same configuration and the request gets a 500.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edge_router::wire::{Action, Configured, Event};
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

/// wasmtime has its own error type; this keeps its full message in an anyhow error.
fn w<T>(result: wasmtime::Result<T>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow!("{e:?}"))
}

/// The ABI version this host speaks (see `docs/abi.md`).
const ABI_VERSION: u32 = 1;
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
    /// Keeps the epoch thread alive; it stops when the last clone is dropped.
    _ticker: Arc<()>,
}

impl RouterModule {
    /// Compiles the module from its bytes.
    pub fn compile(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = w(Engine::new(&config))?;
        let module = w(Module::new(&engine, wasm)).context("the router module does not compile")?;
        let ticker = Arc::new(());
        let (alive, e) = (Arc::downgrade(&ticker), engine.clone());
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(EPOCH_TICK);
                e.increment_epoch();
            }
        })?;
        Ok(Self { engine, module, _ticker: ticker })
    }

    /// Reads and compiles a module file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read the router module {} (build it with scripts/build-module.sh)", path.display())
        })?;
        Self::compile(&bytes)
    }
}

struct Live {
    store: Store<StoreLimits>,
    memory: Memory,
    input: TypedFunc<u32, u32>,
    configure: TypedFunc<u32, u64>,
    handle: TypedFunc<u32, u64>,
}

/// A configured router instance.
pub struct WasmRouter {
    module: RouterModule,
    live: Live,
    config: (String, String),
    scratch: Vec<u8>,
}

impl WasmRouter {
    /// Instantiates the module and configures it; a refused config is an error carrying the module's explanation.
    pub fn new(module: &RouterModule, file: &str, text: &str) -> anyhow::Result<Self> {
        let mut live = instantiate(module)?;
        configure(&mut live, file, text)?;
        Ok(Self { module: module.clone(), live, config: (file.into(), text.into()), scratch: Vec::with_capacity(4096) })
    }

    /// Feeds one event and returns the router's action. A trap rebuilds the instance and is reported as an error.
    pub fn handle(&mut self, event: &Event) -> anyhow::Result<Action> {
        self.scratch.clear();
        let encoded = postcard::to_extend(event, std::mem::take(&mut self.scratch))?;
        let handle = self.live.handle.clone();
        let result = call(&mut self.live, &handle, &encoded).and_then(|(ptr, len)| {
            let data = self.live.memory.data(&self.live.store);
            let bytes =
                data.get(ptr..ptr + len).ok_or_else(|| anyhow!("the module returned an out-of-bounds reply"))?;
            postcard::from_bytes::<Action>(bytes).map_err(|e| anyhow!("the module returned a malformed action: {e}"))
        });
        self.scratch = encoded;
        if result.is_err() {
            self.rebuild();
        }
        result
    }

    fn rebuild(&mut self) {
        match instantiate(&self.module)
            .and_then(|mut live| configure(&mut live, &self.config.0, &self.config.1).map(|()| live))
        {
            Ok(live) => {
                tracing::error!(
                    "the router module failed; it was restarted and requests in flight lost their routing state"
                );
                self.live = live;
            }
            Err(e) => tracing::error!("the router module failed and could not be restarted: {e:#}"),
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
        bail!("the router module speaks ABI version {version}, this host speaks {ABI_VERSION}");
    }
    let memory =
        instance.get_memory(&mut store, "memory").ok_or_else(|| anyhow!("the router module exports no memory"))?;
    Ok(Live {
        memory,
        input: w(instance.get_typed_func(&mut store, "er_input"))?,
        configure: w(instance.get_typed_func(&mut store, "er_configure"))?,
        handle: w(instance.get_typed_func(&mut store, "er_handle"))?,
        store,
    })
}

fn configure(live: &mut Live, file: &str, text: &str) -> anyhow::Result<()> {
    let message = postcard::to_allocvec(&(file, text))?;
    let configure = live.configure.clone();
    let (ptr, len) = call(live, &configure, &message)?;
    let bytes = live.memory.data(&live.store).get(ptr..ptr + len).ok_or_else(|| anyhow!("out-of-bounds reply"))?;
    match postcard::from_bytes::<Configured>(bytes)? {
        Configured::Ok { .. } => Ok(()),
        Configured::Refused(why) => bail!("{why}"),
    }
}

/// Copies `input` into the module and calls `func`; returns the reply's location in memory.
fn call(live: &mut Live, func: &TypedFunc<u32, u64>, input: &[u8]) -> anyhow::Result<(usize, usize)> {
    let len = u32::try_from(input.len()).context("message too large for the module")?;
    live.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    let ptr = w(live.input.call(&mut live.store, len))? as usize;
    live.memory.write(&mut live.store, ptr, input).map_err(|e| anyhow!("{e}"))?;
    live.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    let packed = w(func.call(&mut live.store, len))?;
    Ok(((packed >> 32) as usize, (packed & 0xffff_ffff) as usize))
}
