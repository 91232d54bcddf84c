#!/usr/bin/env bash
# Installs the official client SDKs the SDK tests drive (openai, anthropic,
# from PyPI, every package pinned in tests/sdk/requirements.txt) into the
# git-ignored .tools/sdk-venv, once: a stamp records the requirements it was
# made from, and a change to them makes it again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$PWD/.tools/sdk-venv"
STAMP="$VENV/.requirements"
if [ -x "$VENV/bin/python" ] && cmp -s tests/sdk/requirements.txt "$STAMP"; then
  exit 0
fi
command -v python3 >/dev/null || { echo "sdk-tools: python3 (3.9 or newer) is needed" >&2; exit 1; }
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "== installing python3-venv (apt)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q python3-venv >/dev/null
fi
echo "== installing the openai and anthropic SDKs into .tools/sdk-venv (PyPI, pinned)"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r tests/sdk/requirements.txt
cp tests/sdk/requirements.txt "$STAMP"
