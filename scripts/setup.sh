#!/usr/bin/env bash
# Installs what building and testing edge-router needs on a fresh machine:
# the wasm32 rustup target. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
