# Sourced by the scripts that run Python (train-difficulty.sh, pii-data.sh):
# `python_venv DIR REQUIREMENTS` makes a venv at DIR (under .tools/) once and
# installs the pinned REQUIREMENTS into it from PyPI.
python_venv() {
  local venv=$1 requirements=$2
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
}
