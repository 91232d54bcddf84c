#!/usr/bin/env bash
# Builds the Worker crate (worker/) into worker/build/ (wrangler.toml runs
# this as its build command, so `npx wrangler deploy` and `wrangler dev` do too).
# `build-worker.sh CRATE_DIR TARGET_DIR` builds another Worker crate the same
# way (bench/worker.sh builds bench/worker-floor so).
# The tools come from scripts/worker-tools.sh: nothing is downloaded from
# outside crates.io and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/worker-tools.sh
export WASM_BINDGEN_BIN="$PWD/.tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
# A separate target folder: the Worker links the router without its module
# ABI, and sharing target/ would rebuild the edge box's module after every
# Worker build. Absolute: worker-build runs cargo in the crate's folder and
# wasm-bindgen in this one.
# Without the edge box's inline threshold (.cargo/config.toml): V8 inlines
# wasm itself, and the Worker's upload and start-up grow with its size. A set
# RUSTFLAGS, even empty, takes the place of the config file's target flags
# (a developer's own RUSTFLAGS still apply).
export RUSTFLAGS="${RUSTFLAGS:-}"
# Built for size: the upload, and each new isolate's compile, grow with the
# module (issue "Lean at the edge"): opt-level z, one codegen unit with fat
# LTO, and no name section (stripped; wasm-opt -Oz is in worker/Cargo.toml).
# In a target folder of its own, so that the edge box's builds keep theirs.
exec "$PWD/.tools/bin/worker-build" --release "${1:-worker}" -- --locked --target-dir "${2:-$PWD/target/worker}" \
  --config 'profile.release.opt-level="z"' --config 'profile.release.package.edge-router.opt-level="z"' \
  --config 'profile.release.lto="fat"' --config 'profile.release.codegen-units=1' \
  --config 'profile.release.strip=true'
