#!/usr/bin/env bash
# The main job: fingerprint this machine and verify it against the full-suite golden shipped in goldens/
# (all 45 probes, recorded on an AMD EPYC Zen 4; on another CPU it drifts, and says why and what to run next).
# Exit code is envlock verify's: 0 reproduces, 1 drift, 2 bad golden, 3 cannot run the probes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh tf
venv="${ENVLOCK_VENV:-.venv}"
mkdir -p out
"$venv/bin/envlock" capture -o out/manifest.json
echo
echo "== envlock verify goldens/amd-epyc-zen4-2vcpu.json"
exec "$venv/bin/envlock" verify goldens/amd-epyc-zen4-2vcpu.json --report out/verify-report.json
