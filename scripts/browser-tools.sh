#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package, from apt) for the
# dashboard test (host/tests/dashboard.rs), once: it is skipped when a
# `chromium` is already on the PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "== installing chromium (apt) for the dashboard test"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null || { echo "browser-tools: apt installed chromium, but it is not on the PATH" >&2; exit 1; }
