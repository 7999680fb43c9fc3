"""What `envlock cores` costs, against baselines measured in the same run (docs/cores.md).

    python benchmarks/bench_cores.py [--cpus 0,1]

1. A bare `python -c "import tensorflow"`: the floor of any per-CPU probe process.
2. `envlock cores --cpus K` (one CPU's pass) and `envlock cores` over every CPU given (1 at a time):
   wall time, and the ratio of one CPU's pass to the bare import.
3. The alternative docs/cores.md weighs: ONE process that imports TF once, then re-pins every
   thread (/proc/self/task) to each CPU in turn and runs the same probes: the marginal seconds per
   CPU, the ratio against the per-process pass, and whether its output digests equal the
   per-process ones (they should: same kernels, one thread per pool).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envlock.corecheck import parse_cpu_list  # noqa: E402
from envlock.cores import CORE_SETTINGS, default_probe_names  # noqa: E402

REPIN = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np, tensorflow as tf
    from envlock.probes import child
    from envlock.probes.registry import ProbeContext, all_probes
    from envlock.tfcontrols import apply_tf_controls

    cpus, names, settings = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    child._configure_devices(tf)
    apply_tf_controls(tf, seed=settings["seed"], op_determinism=True, intra_op_threads=settings["intra"],
                      inter_op_threads=settings["inter"])
    registry, ctx, out = all_probes(), ProbeContext(tf=tf, np=np, seed=settings["seed"]), {}

    def pin_every_thread(cpu):
        while True:  # again if a thread started meanwhile
            tids = set(os.listdir("/proc/self/task"))
            for tid in tids:
                try:
                    os.sched_setaffinity(int(tid), {cpu})
                except ProcessLookupError:
                    pass
            if set(os.listdir("/proc/self/task")) == tids:
                return

    for cpu in cpus:
        start = time.perf_counter()
        pin_every_thread(cpu)
        runs = {n: child._run_probe(registry[n], ctx, tf) for n in names}
        out[cpu] = {"seconds": time.perf_counter() - start,
                    "digests": {n: [[o["name"], o["sha256"]] for o in r.get("outputs", [])] for n, r in runs.items()}}
    print(json.dumps(out))
""")


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default=None, help="CPUs to check (default: every CPU this process may use)")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    cpus = parse_cpu_list(args.cpus, allowed) if args.cpus else allowed
    names = default_probe_names()

    bare, _ = timed([sys.executable, "-c", "import tensorflow"])
    one, _ = timed([sys.executable, "-m", "envlock", "cores", "--json", "--cpus", str(cpus[0])])
    every, text = timed([sys.executable, "-m", "envlock", "cores", "--json", "--cpus", ",".join(map(str, cpus))])
    report = json.loads(text)
    settings = {"seed": CORE_SETTINGS.seed, "intra": CORE_SETTINGS.intra_op_threads,
                "inter": CORE_SETTINGS.inter_op_threads}
    repin_total, repin_text = timed([sys.executable, "-c", REPIN, json.dumps(cpus), json.dumps(names),
                                     json.dumps(settings)])
    repin = json.loads(repin_text.strip().splitlines()[-1])
    later = [v["seconds"] for v in list(repin.values())[1:]] or [next(iter(repin.values()))["seconds"]]
    marginal = sum(later) / len(later)
    per_cpu = every / len(cpus)
    same_bits = len({json.dumps(v["digests"], sort_keys=True) for v in repin.values()}) == 1

    print(f"CPUs {','.join(map(str, cpus))}, {len(names)} probes (the defaults), 1 run each")
    print(f"bare TensorFlow import:                 {bare:6.2f} s")
    print(f"envlock cores, one CPU:                 {one:6.2f} s  ({one / bare:.2f}x the bare import)")
    print(f"envlock cores, {len(cpus)} CPUs, 1 at a time:   {every:6.2f} s  ({per_cpu:.2f} s per CPU; verdict "
          f"{report['verdict']})")
    print(f"one process re-pinning its threads:     {repin_total:6.2f} s  (first CPU "
          f"{next(iter(repin.values()))['seconds']:.2f} s, then {marginal:.2f} s per CPU)")
    print(f"per-CPU cost, one process per CPU / re-pinning: {per_cpu / marginal:.1f}x; "
          f"re-pinned CPUs give the same bits as each other: {same_bits}")


if __name__ == "__main__":
    main()
