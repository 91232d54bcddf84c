#!/usr/bin/env bash
# Retrains the difficulty scorer of `model_routing.strategy: learned` on a labelled file
# (default ../shared/router-eval/dev.jsonl) and rewrites src/difficulty/weights.json and
# check.json; prints the held-out figures. The build needs none of this: the weights are
# committed. Python 3 and PyPI are enough; numpy goes into .tools/train-venv.
#   bash scripts/train-difficulty.sh [FILE.jsonl] [--c 0.1]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/train-venv
source scripts/python-venv.sh
python_venv "$venv" training/difficulty/requirements.txt
exec "$venv/bin/python" training/difficulty/train.py "$@"
