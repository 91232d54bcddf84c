#!/usr/bin/env bash
# Installs what building the Cloudflare Workers flavour needs, into the
# git-ignored .tools/ folder, and skips whatever is already there at the right
# version:
#   .tools/bin/worker-build    worker-build, pinned below
#   .tools/bin/wasm-bindgen    wasm-bindgen-cli at the wasm-bindgen version in Cargo.lock
#   node_modules/              wrangler, binaryen (wasm-opt) and esbuild, from package-lock.json
# worker-build would otherwise download wasm-bindgen and wasm-opt from GitHub,
# which a build machine may not reach; scripts/build-worker.sh points it at these.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$WASM_BINDGEN_VERSION" ] || { echo "worker-tools: no wasm-bindgen in Cargo.lock" >&2; exit 1; }

TOOLS="$PWD/.tools"
install_tool() { # crate version binary
  local have
  have=$("$TOOLS/bin/$3" --version 2>/dev/null | awk '{ print $NF }') || true
  if [ "$have" = "$2" ]; then return; fi
  echo "== installing $1 $2 into .tools (a few minutes, once)"
  # --debug: about 40% quicker to build on two cores, and fast enough for
  # what these tools do. Not --locked: their own lockfiles pin versions that
  # do not all build with this toolchain. One target folder for both: the
  # dependencies they share are compiled once.
  # Without debug info: a tenth quicker (worker-build: 128 s instead of 140).
  CARGO_PROFILE_DEV_DEBUG=false cargo install --quiet --debug --force --root "$TOOLS" --target-dir "$TOOLS/target" "$1" --version "=$2"
}
install_tool worker-build "$WORKER_BUILD_VERSION" worker-build
install_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen

if [ ! -x node_modules/.bin/wrangler ] || ! npm ls --silent >/dev/null 2>&1; then
  echo "== installing wrangler, binaryen and esbuild from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
fi
