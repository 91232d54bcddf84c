#!/usr/bin/env bash
# Installs what the operations tests drive, from Debian's apt, once (each is
# skipped when already on the PATH):
#   chromium     headless, for the dashboard test (host/tests/dashboard.rs)
#   prometheus   a real Prometheus scraping the box as docs/operations.md
#                says to (host/tests/operations/prometheus.rs)
#   redis-server the store two boxes share rate limits in (host/tests/fleet.rs;
#                Valkey where Debian has it, Redis otherwise: same protocol)
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v valkey-server >/dev/null 2>&1 || command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "== installing ${missing[*]} (apt)"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
$SUDO apt-get update -q >/dev/null
# The prometheus package would start its own service where there is an init
# system: the tests run their own instance instead, so none is started here.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
command -v valkey-server >/dev/null || command -v redis-server >/dev/null \
  || { echo "ops-tools: apt installed redis-server, but it is not on the PATH" >&2; exit 1; }
for tool in chromium prometheus promtool; do
  command -v $tool >/dev/null || { echo "ops-tools: apt installed $tool, but it is not on the PATH" >&2; exit 1; }
done
