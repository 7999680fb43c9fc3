#!/usr/bin/env bash
# Make sure Debian's Prometheus (prometheus and promtool) is installed: the fleet tests run a real
# one scraping two `envlock watch` daemons (tests/integration/test_prometheus_fleet.py). Idempotent.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
