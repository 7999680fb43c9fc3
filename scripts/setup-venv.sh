#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at ${ENVLOCK_VENV:-.venv} and install envlock into it.
# Usage: scripts/setup-venv.sh [EXTRAS]   e.g. "tf" or "tf,dev,plot"
# Installs under goldens/constraints.txt: the TensorFlow/Keras/numpy the shipped goldens were recorded with.
# pip's chatter goes to $venv/install.log and is shown only when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-tf}"
venv="${ENVLOCK_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
log="$venv/install.log"
if ! { "$venv/bin/python" -m pip install --upgrade pip \
       && "$venv/bin/python" -m pip install --disable-pip-version-check -c goldens/constraints.txt -e ".[${extras}]"; } \
     >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "setup-venv: installing envlock[${extras}] into $venv failed (full log: $log)" >&2
  exit 1
fi
echo "envlock[${extras}] installed in $venv ($("$venv/bin/python" -c 'import envlock; print(envlock.__version__)'))"
