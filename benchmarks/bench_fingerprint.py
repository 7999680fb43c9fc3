"""The daemon's cheap fingerprint check: cost when nothing changed, against the uncached check.

`envlock watch` re-fingerprints the machine every minute without TensorFlow. Most of that
used to be re-reading and re-hashing every installed distribution's RECORD. Both figures come
from this run, in this process, alternating so that load from other processes hits both alike:
- baseline: the check with the distribution cache emptied first (what every check used to cost);
- envlock: the check with the cache warm (what every check after the first costs now).

    python benchmarks/bench_fingerprint.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from envlock.capture import capture_manifest
from envlock.daemon.checks import fingerprint_check
from envlock.fingerprint import python_env

TARGET_MS = 50.0


def timed_check(golden: object, environ: dict[str, str], *, cold: bool) -> float:
    if cold:
        python_env._DIST_CACHE.clear()
    start = time.perf_counter()
    result = fingerprint_check(golden, golden_digest=None, environ=environ)
    elapsed = (time.perf_counter() - start) * 1000
    assert result.outcome == "pass", result.reason
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    environ = dict(os.environ)
    golden = capture_manifest(include_tf=False, environ=environ)
    cold, warm = [], []
    for _ in range(args.rounds):
        cold.append(timed_check(golden, environ, cold=True))
        warm.append(timed_check(golden, environ, cold=False))
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"fingerprint check, median of {args.rounds} alternating rounds, {len(golden.python.distributions)} "
          "distributions")
    print(f"  baseline (cache emptied)   {c:8.1f} ms")
    print(f"  envlock (nothing changed)  {w:8.1f} ms   ratio {w / c:.3f}")
    print(f"  target < {TARGET_MS:.0f} ms when nothing changed: {'met' if w < TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
