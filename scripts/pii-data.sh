#!/usr/bin/env bash
# The PII detectors' labelled set: `bash scripts/pii-data.sh` writes tests/pii/labelled.jsonl
# again (tests/pii/generate.py, seeded: the same file); `bash scripts/pii-data.sh presidio`
# scores Microsoft Presidio's pattern recognizers on it (tests/pii/presidio.py). The build and
# the tests need neither: the set is committed. Python 3 and PyPI are enough; the pinned Faker
# and presidio-analyzer go into .tools/pii-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/pii-venv
source scripts/python-venv.sh
python_venv "$venv" tests/pii/requirements.txt
case "${1:-generate}" in
  generate) exec "$venv/bin/python" tests/pii/generate.py ;;
  presidio) shift; exec "$venv/bin/python" tests/pii/presidio.py "$@" ;;
  *) echo "usage: scripts/pii-data.sh [generate | presidio [--threshold T]]" >&2; exit 2 ;;
esac
