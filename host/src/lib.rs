//! The self-hosted edge box: runs the edge-router wasm module under wasmtime
//! and does all I/O with tokio and hyper.
//!
//! The module decides; this crate carries bytes. See `docs/abi.md` for the
//! boundary and `docs/edge-box.md` for running it.
#![allow(clippy::disallowed_methods)]

pub mod admin;
pub mod audit;
pub mod cache;
pub mod dashboard;
pub mod demo;
pub mod eval;
pub mod fleet;
pub mod geoip;
pub mod idle;
pub mod jwt;
pub mod module;
mod module_cache;
pub mod origins;
pub mod proxy;
pub mod scaling;
pub mod server;
pub mod signals;
pub mod tls;

use std::sync::Arc;

use anyhow::Context;
use edge_router::RouterConfig;
use tokio::net::TcpListener;

pub use module::{RouterModule, WasmRouter};
pub use server::ServerHandle;

/// Loads `text` natively (for the host's own settings) and into the module,
/// then serves on `listener`. A config the router refuses starts nothing.
/// Given as text, the config cannot be reloaded (see [`start_file`]).
pub fn start(module: &RouterModule, file: &str, text: &str, listener: TcpListener) -> anyhow::Result<ServerHandle> {
    start_from(module, None, file, text, listener)
}

/// [`start`] with the config file at `path`, which a reload reads again
/// ([`ServerHandle::reload_config`]).
pub fn start_file(
    module: &RouterModule,
    path: &std::path::Path,
    listener: TcpListener,
) -> anyhow::Result<ServerHandle> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    start_from(module, Some(path.to_path_buf()), &path.display().to_string(), &text, listener)
}

fn start_from(
    module: &RouterModule,
    path: Option<std::path::PathBuf>,
    file: &str,
    text: &str,
    listener: TcpListener,
) -> anyhow::Result<ServerHandle> {
    let config = RouterConfig::load(file, text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = match config.admin_listen {
        Some(addr) => {
            let token = admin::AdminToken::from_env(&config.admin.token_env)?;
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(TcpListener::from_std)
                .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?;
            Some((listener, token))
        }
        None => None,
    };
    let router = WasmRouter::new(module, file, text)?;
    let source = proxy::ConfigSource::new(path, file, text);
    let shared = Arc::new(proxy::Shared::new(router, config, source)?);
    let mut handle = server::serve(shared.clone(), listener).context("cannot serve")?;
    if let Some((listener, token)) = admin {
        let addr = listener.local_addr()?;
        tracing::info!("admin API on http://{addr}");
        handle.set_admin(addr, tokio::spawn(admin::serve(Arc::downgrade(&shared), listener, token)));
    }
    Ok(handle)
}

/// Locks `mutex`, also after a panic elsewhere while it was held: every
/// value the host keeps behind a lock stays consistent between statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 of `bytes`: how a config file and a module file are named
/// in `status`, the log and the audit trail.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Where the module is looked for when `--module` is not given.
pub fn default_module_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("EDGE_ROUTER_MODULE") {
        return p.into();
    }
    let beside_exe = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("edge_router.wasm")));
    if let Some(p) = beside_exe.filter(|p| p.exists()) {
        return p;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/wasm32-unknown-unknown/release/edge_router.wasm")
}
