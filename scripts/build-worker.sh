#!/usr/bin/env bash
# Builds the Worker crate (worker/) into worker/build/ (wrangler.toml runs
# this as its build command, so `npx wrangler deploy` and `wrangler dev` do too).
# `build-worker.sh CRATE_DIR TARGET_DIR` builds another Worker crate the same
# way (bench/worker.sh builds bench/worker-floor so).
# `build-worker.sh --cargo SUBCOMMAND ARGS...` runs a cargo subcommand that
# builds (check, clippy, build, doc) with the build's profile (it adds
# --release and the profile's --config), target folder (--target-dir) and
# environment instead of building, from the repository's folder; and
# `--lint` runs clippy (-D warnings) so over the Worker for wasm32
# (scripts/test.sh): the build scripts and proc macros they compile are the
# ones the build then uses.
# The tools come from scripts/worker-tools.sh: nothing is downloaded from
# outside crates.io and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without the edge box's inline threshold (.cargo/config.toml): V8 inlines
# wasm itself, and the Worker's upload and start-up grow with its size. Set
# flags take the place of the config file's target flags (a developer's own
# RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS still apply).
# Panic locations name their files: the dependencies' are under the machine's
# cargo home, whose path (and so the upload's size) differs from machine to
# machine. Remapped, they are the same everywhere, and shorter. The flags go
# in CARGO_ENCODED_RUSTFLAGS (separated by 0x1f), so a path with a space
# stays one argument.
cargo_home="${CARGO_HOME:-${HOME:-}/.cargo}"
cargo_home="${cargo_home%/}"
flags=()
if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
  IFS=$'\x1f' read -r -d '' -a flags < <(printf '%s' "$CARGO_ENCODED_RUSTFLAGS") || true
elif [ -n "${RUSTFLAGS:-}" ]; then
  read -r -a flags <<< "$RUSTFLAGS"
fi
flags+=("--remap-path-prefix=$cargo_home/registry/src/=crates/")
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${flags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
unset RUSTFLAGS
# Built for size: the upload, and each new isolate's compile, grow with the
# module (issue "Lean at the edge"): opt-level z, one codegen unit with fat
# LTO, and no name section (stripped; wasm-opt -Oz is in worker/Cargo.toml).
profile=(--config 'profile.release.opt-level="z"' --config 'profile.release.package.edge-router.opt-level="z"'
  --config 'profile.release.lto="fat"' --config 'profile.release.codegen-units=1'
  --config 'profile.release.strip=true')
# A separate target folder: the Worker links the router without its module
# ABI, and sharing target/ would rebuild the edge box's module after every
# Worker build. Absolute: worker-build runs cargo in the crate's folder and
# wasm-bindgen in this one.
target_dir="$PWD/target/worker"
if [ "${1:-}" = --lint ]; then
  [ $# -eq 1 ] || { echo "usage: build-worker.sh --lint (it takes no arguments; --cargo clippy ... does)" >&2; exit 2; }
  set -- --cargo clippy --locked -p edge-router-worker --target wasm32-unknown-unknown -- -D warnings
fi
if [ "${1:-}" = --cargo ]; then
  bash scripts/setup.sh
  # worker-build sets WASM_BINDGEN_USE_JS_SYS for wasm-bindgen's macro. A
  # clippy check in the dev profile compiled the build scripts and proc
  # macros once more: the lint and the build took 6:13 instead of 3:47 on
  # two cores.
  [ $# -ge 2 ] || { echo "usage: build-worker.sh --cargo SUBCOMMAND [ARGS...]" >&2; exit 2; }
  shift
  subcommand=$1
  shift
  WASM_BINDGEN_USE_JS_SYS=1 exec cargo "$subcommand" --release --target-dir "$target_dir" "${profile[@]}" "$@"
fi
bash scripts/worker-tools.sh
export WASM_BINDGEN_BIN="$PWD/.tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
"$PWD/.tools/bin/worker-build" --release "${1:-worker}" -- --locked --target-dir "${2:-$target_dir}" "${profile[@]}"
# worker-build writes its module after wasm-opt, with a name section of its
# glue's names and a producers section: nothing reads them at run time.
node scripts/strip-wasm.mjs "${1:-worker}/build/index_bg.wasm"
