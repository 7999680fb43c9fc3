#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at ${ENVLOCK_VENV:-.venv} and install envlock into it.
# Usage: scripts/setup-venv.sh [EXTRAS]   e.g. "tf" or "tf,dev"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-tf}"
venv="${ENVLOCK_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
