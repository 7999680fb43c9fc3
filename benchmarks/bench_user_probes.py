"""What user probes cost: the example module's probes, and the price of isolating a crashing probe,
against a probe child running two built-in probes, measured in the same run.

    python benchmarks/bench_user_probes.py [--runs 3]

Rows (median wall time of the whole child run, parent side, TF import included):
  baseline        rng.op_seed, matmul.f32
  + example       the same, plus examples/envlock_probes.py's two training probes
  + a crash       the baseline with a probe that SIGSEGVs its process between the two: one more TF import
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envlock.results import ChildResult

REPO = Path(__file__).resolve().parent.parent
CRASHING = """
import os, signal
from envlock import probe

@probe("bench.segfault", tags=["training"], group="canary", dtype="float32", description="crashes its process")
def segfault(ctx):
    os.kill(os.getpid(), signal.SIGSEGV)
"""


def timed_child(names: list[str], modules: list[str]) -> tuple[float, ChildResult]:
    from envlock.probes.supervisor import run_child
    from envlock.record import lockdown_settings_for_this_process

    environ = dict(os.environ)
    start = time.perf_counter()
    result = run_child(probe_names=names, repeat=1, settings=lockdown_settings_for_this_process(environ),
                       env=environ, probe_modules=modules)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.chdir(REPO)
    base = ["rng.op_seed", "matmul.f32"]
    with tempfile.TemporaryDirectory() as tmp:
        crashing = Path(tmp) / "bench_crashing_probes.py"
        crashing.write_text(CRASHING, encoding="utf-8")
        cases = {
            "baseline (2 built-in probes)": (base, []),
            "+ example's 2 training probes": ([*base, "user.seed_doc_train_model", "user.seed_doc_fit_predict"],
                                              ["examples/envlock_probes.py"]),
            "+ a probe that SIGSEGVs": ([base[0], "bench.segfault", base[1]], [str(crashing)]),
        }
        timed_child(base, [])  # warm the page cache
        rows = {}
        for label, (names, modules) in cases.items():
            runs = [timed_child(names, modules) for _ in range(args.runs)]
            rows[label] = (statistics.median(t for t, _ in runs), runs[-1][1])
    baseline = rows["baseline (2 built-in probes)"][0]
    for label, (seconds, result) in rows.items():
        statuses = ", ".join(f"{n}={r[0].status}" for n, r in result.runs.items())
        print(f"{label:32} {seconds:6.2f} s = {seconds / baseline:4.2f} x baseline; restarts "
              f"{result.restarts}; {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
