#!/usr/bin/env bash
# The PII detectors' labelled set: `bash scripts/pii-data.sh` writes tests/pii/labelled.jsonl
# again (tests/pii/generate.py, seeded: the same file); `bash scripts/pii-data.sh presidio`
# scores Microsoft Presidio's pattern recognizers on it (tests/pii/presidio.py). The build and
# the tests need neither: the set is committed. Python 3 and PyPI are enough; the pinned Faker
# and presidio-analyzer go into .tools/pii-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/pii-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/pii/requirements.txt
case "${1:-generate}" in
  generate) exec "$venv/bin/python" tests/pii/generate.py ;;
  presidio) shift; exec "$venv/bin/python" tests/pii/presidio.py "$@" ;;
  *) echo "usage: scripts/pii-data.sh [generate | presidio [--threshold T]]" >&2; exit 2 ;;
esac
