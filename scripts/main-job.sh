#!/usr/bin/env bash
# The main job: fingerprint this machine and verify it against the golden shipped in goldens/.
# Exit code is envlock verify's: 0 reproduces, 1 drift, 2 bad golden, 3 cannot run the probes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh tf
venv="${ENVLOCK_VENV:-.venv}"
mkdir -p out
"$venv/bin/envlock" capture -o out/manifest.json
echo
echo "== envlock verify goldens/cpu-reference.json"
exec "$venv/bin/envlock" verify goldens/cpu-reference.json --report out/verify-report.json
