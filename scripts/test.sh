#!/usr/bin/env bash
# The README's second command: the whole test suite, from a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
# A whole run, usually from a fresh clone: incremental caches of our crates
# would be written and never read. Without them their build for the tests
# takes 115 s instead of 169 and 181 (2 cores). A plain `cargo test` after
# it (incremental) builds our crates again, once.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
bash scripts/build-module.sh
echo "== format"
cargo fmt --all -- --check
echo "== the pure crates do no I/O: no runtime, no Workers or JavaScript bindings among their dependencies"
for crate in edge-router edge-cache origin-fallback edge-exchange; do
  for target in x86_64-unknown-linux-gnu wasm32-unknown-unknown; do
    impure=$(cargo tree --locked -q -e normal -p "$crate" --target "$target" --prefix none \
      | grep -E '^(worker|js-sys|web-sys|wasm-bindgen|hyper|mio|socket2|tokio) ' || true)
    if [ -n "$impure" ]; then
      echo "$crate depends on an I/O crate for $target:"; echo "$impure"; exit 1
    fi
  done
done
echo "== the official client SDKs the SDK tests drive (PyPI, pinned in tests/sdk/requirements.txt)"
bash scripts/sdk-tools.sh
echo "== headless Chromium and Prometheus for the operations tests (apt)"
bash scripts/ops-tools.sh
echo "== clippy's lints, as every target of our crates is built for the tests"
# What `cargo clippy --all-targets -- -D warnings` checks, linted by
# clippy-driver as cargo's workspace wrapper (what `cargo clippy` itself runs)
# while the targets are compiled, instead of in a check of its own: that
# compiled every dependency a second time, 6 of CI's 32 minutes on two cores.
# The dependencies are compiled by rustc, as without it, and with the same
# features as `cargo test` (--all-targets takes in the dev-dependencies), so
# `cargo test` below finds everything built.
# Not the Worker crate: natively it is empty, and its build script's copy of
# the router (a build dependency, built with other features) would write the
# same cdylib file as the router's own in the same run (cargo issue 6313).
# It is linted for wasm32 below.
lint=(env RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
# CLIPPY_ARGS is clippy's own interface between `cargo clippy` and
# clippy-driver, not a documented one. Should a clippy release change it,
# the build below would pass unlinted; a canary with a lint in it must fail.
canary=$(mktemp -d)
printf 'fn main() {\n    let n = 1u8;\n    let _ = n.clone();\n}\n' > "$canary/canary.rs"
if said=$("${lint[@]}" "$(rustup which clippy-driver)" rustc --edition 2021 --crate-type bin --emit metadata \
  -o "$canary/canary.rmeta" "$canary/canary.rs" 2>&1) || ! grep -q 'clone_on_copy' <<<"$said"; then
  echo "clippy-driver, given CLIPPY_ARGS as above, did not refuse a clone_on_copy; its interface may have changed:"
  echo "$said"; rm -rf "$canary"; exit 1
fi
rm -rf "$canary"
"${lint[@]}" cargo build --locked --workspace --exclude edge-router-worker --all-targets
echo "== unit, property and end-to-end tests, the SDK tests, the dashboard in Chromium, and the load drill (bench/tests/drill.rs)"
"${lint[@]}" EDGE_ROUTER_MODULE="$PWD/target/wasm32-unknown-unknown/release/edge_router.wasm" \
  cargo test --locked --workspace --exclude edge-router-worker
echo "== the Cloudflare Workers build: lints, the upload wrangler would deploy, its size budget"
bash scripts/worker-tools.sh
echo "== the dashboard's chart library is uPlot as npm has it (package-lock.json)"
for f in uPlot.iife.min.js uPlot.min.css; do
  cmp node_modules/uplot/dist/$f host/dashboard/vendor/$f
done
cmp node_modules/uplot/LICENSE host/dashboard/vendor/uPlot.LICENSE
bash scripts/build-worker.sh --lint
bash scripts/worker-bundle.sh
echo "== the pure crates build for every target they promise"
# wasm32-unknown-unknown without default features is the Worker's build
# (above), and with them the edge box's module. wasm32-wasip2 is checked in
# the Worker's profile and target folder, whose build scripts and proc macros
# it mostly reuses: 22 s instead of 56 in the dev profile.
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
bash scripts/build-worker.sh --cargo check --locked -q -p edge-cache -p origin-fallback -p edge-exchange -p edge-router \
  --no-default-features --target wasm32-wasip2
echo "== the conformance scenarios and the Workers tests in workerd (Miniflare), against the fake origin"
# target/debug/fake-origin, built above.
node --test tests/workers/
