//! The compiled-module cache: the router module compiled by Cranelift once
//! per build, kept on disk, and loaded at later starts (`docs/edge-box.md`).

use anyhow::{Context, bail};
use wasmtime::{Engine, Module};

use crate::module::{RouterModule, w};

/// Where compiled modules are kept between starts: `EDGE_ROUTER_MODULE_CACHE`
/// (`off` or empty for none), else `$XDG_CACHE_HOME/edge-router`, else
/// `$HOME/.cache/edge-router`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    match std::env::var_os("EDGE_ROUTER_MODULE_CACHE") {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(v.into()),
        None => var("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
            .map(|d| d.join("edge-router")),
    }
}

/// `wasm` compiled by Cranelift, as [`Module::serialize`] writes it: by an
/// engine of its own, dropped when done. Compiling takes some 90 MiB, and
/// an engine keeps its compiler's buffers for the next compilation; the
/// edge box compiles once, so the engine that serves never compiles and
/// the memory goes back to the system (mimalloc would keep freed pages
/// resident otherwise).
pub(crate) fn compiled(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let engine = RouterModule::engine()?;
    let module = w(Module::new(&engine, wasm)).context("the router module does not compile")?;
    let code = w(module.serialize())?;
    drop((module, engine));
    // SAFETY: mi_collect has no preconditions; with another global allocator it has nothing to collect.
    unsafe { libmimalloc_sys::mi_collect(true) };
    Ok(code)
}

/// The module of `code`, which [`compiled`] wrote (or the cache kept).
pub(crate) fn loaded(engine: &Engine, code: &[u8]) -> anyhow::Result<Module> {
    // SAFETY: `code` is what `Module::serialize` wrote for an engine of
    // this configuration (wasmtime checks the engine's compatibility again),
    // just now in this process, or read whole from a cache only this user
    // can write to (see `read_cached`).
    w(unsafe { Module::deserialize(engine, code) })
}

/// How many compiled modules the cache keeps (a new build adds one).
const CACHE_KEEP: usize = 8;

/// The module of `wasm` (whose SHA-256 is `sha256`) for `engine`: from the
/// cache in `dir` if this engine's kind compiled it before, else compiled
/// and put there. A cache that cannot be read or written is passed over
/// with a warning: the module is compiled as without one.
pub(crate) fn cached_module(
    engine: &Engine,
    dir: &std::path::Path,
    sha256: &str,
    wasm: &[u8],
) -> anyhow::Result<Module> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file = dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    if let Some(module) = read_cached(engine, dir, &file) {
        return Ok(module);
    }
    let code = compiled(wasm)?;
    if let Err(e) = write_cached(&code, dir, &file) {
        tracing::warn!("compiled-module cache {}: cannot keep the compiled module: {e:#}", dir.display());
    }
    loaded(engine, &code)
}

/// The module in the cache file, if there is one, whole and ours.
fn read_cached(engine: &Engine, dir: &std::path::Path, file: &std::path::Path) -> Option<Module> {
    let bytes = std::fs::read(file).ok()?;
    // Compiled code is run as it is: only from a directory no one else may write to.
    if let Err(e) = private_dir(dir) {
        tracing::warn!("compiled-module cache {}: not used: {e}", dir.display());
        return None;
    }
    // The file ends with the SHA-256 of what precedes it: a torn or damaged file is compiled afresh.
    let (code, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if crate::sha256_hex(code) != crate::hex(digest) {
        tracing::warn!("compiled-module cache {}: damaged, compiling again", file.display());
        return None;
    }
    match loaded(engine, code) {
        Ok(module) => Some(module),
        Err(e) => {
            tracing::warn!("compiled-module cache {}: {e:#}, compiling again", file.display());
            None
        }
    }
}

/// Whether `dir` is a directory only its owner, this user, can write to.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    // The process's own /proc entry belongs to its effective user.
    let me = std::fs::metadata("/proc/self")?.uid();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        bail!("it must be a directory of this user that no one else can write to (mode 700)");
    }
    Ok(())
}

/// Writes compiled `code` to `file` in `dir` (made, mode 700, if missing;
/// an existing one must be private already, and is never changed), whole
/// or not at all, and drops the oldest beyond [`CACHE_KEEP`].
#[allow(clippy::disallowed_types)] // the host does I/O: a file written in two parts, not copied into one
fn write_cached(code: &[u8], dir: &std::path::Path, file: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        private_dir(dir)?;
    } else {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        private_dir(dir)?;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(code);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut out| {
        out.write_all(code)?;
        out.write_all(&digest)
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, file)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    let mut kept: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    kept.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in kept.into_iter().skip(CACHE_KEEP) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}
