"""What a verify costs: wall time against `python -c "import tensorflow"` measured in the same run,
the suite's own time after the import, and the slowest probes.

    python benchmarks/bench_verify.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def median_wall(argv: list[str], runs: int) -> tuple[float, list[subprocess.CompletedProcess[str]]]:
    results = [wall(argv) for _ in range(runs)]
    for _, proc in results:
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(t for t, _ in results), [p for _, p in results]


def per_probe_seconds() -> dict[str, float]:
    """One child run of the full suite (repeat 1), timed probe by probe (first call: tracing included)."""
    from envlock.probes.registry import default_probe_names
    from envlock.probes.supervisor import run_child
    from envlock.record import lockdown_settings_for_this_process

    environ = dict(os.environ)
    result = run_child(probe_names=default_probe_names(), repeat=1,
                       settings=lockdown_settings_for_this_process(environ), env=environ)
    return {name: runs[0].seconds for name, runs in result.runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    wall([py, "-c", "import tensorflow"])  # warm the page cache so the first timing is not an outlier
    with tempfile.TemporaryDirectory() as tmp:
        golden = Path(tmp) / "golden.json"
        capture_s, _ = wall([py, "-m", "envlock", "capture", "--golden", "-o", str(golden)])
        tf_s, _ = median_wall([py, "-c", "import tensorflow"], args.runs)
        rows = []
        for label, extra in (("verify (repeat 1)", ["--repeat", "1"]), ("verify (repeat 2, default)", [])):
            seconds, procs = median_wall([py, "-m", "envlock", "verify", str(golden), "--json", *extra], args.runs)
            reports = [json.loads(p.stdout) for p in procs]
            suite = statistics.median(r["timings"]["suite_seconds"] for r in reports)
            rows.append((label, seconds, suite, all(r["reproduces"] for r in reports)))
        size_kb = golden.stat().st_size / 1024
    probes = per_probe_seconds()

    print(f"baseline: python -c 'import tensorflow'  {tf_s:6.2f} s (median of {args.runs})")
    print(f"capture --golden (full suite, repeat 2)  {capture_s:6.2f} s = {capture_s / tf_s:4.2f} x TF import; "
          f"golden file {size_kb:.0f} KB")
    for label, seconds, suite, ok in rows:
        print(f"{label:40} {seconds:6.2f} s = {seconds / tf_s:4.2f} x TF import; suite after import "
              f"{suite:5.2f} s (budget 10 s: {suite / 10:4.0%}); reproduces={ok}")
    print(f"\nfull suite, one pass: {sum(probes.values()):.2f} s over {len(probes)} probes; slowest:")
    for name, seconds in sorted(probes.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {name:28} {seconds:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
