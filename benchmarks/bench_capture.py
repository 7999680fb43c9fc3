"""Wall time of `envlock capture` against baselines measured in the same run.

Prints two ratios against their targets:
  full capture / `python -c "import tensorflow"`           target <= 1.15
  `capture --no-tf` / `python -m torch.utils.collect_env`  target <= 0.60 (and --no-tf < 1.0 s)

Runs are interleaved round by round so that background load hits every command alike; the
ratios use medians (mins are printed too). Usage: python benchmarks/bench_capture.py [--rounds N]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    out = Path(tempfile.mkdtemp(prefix="envlock-bench-")) / "manifest.json"
    commands: dict[str, list[str]] = {
        "import tensorflow": [py, "-c", "import tensorflow"],
        "envlock capture": [py, "-m", "envlock", "capture", "-o", str(out)],
        "envlock capture --no-tf": [py, "-m", "envlock", "capture", "--no-tf", "-o", str(out)],
    }
    if importlib.util.find_spec("torch") is not None:
        commands["torch collect_env"] = [py, "-m", "torch.utils.collect_env"]
    else:
        print("torch is not installed: the --no-tf ratio is skipped (pip install torch to measure it)")
    for argv in commands.values():  # warm the page cache once; not timed
        _wall(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, argv in commands.items():
            times[name].append(_wall(argv))
    print(f"{'command':<26} {'median s':>9} {'min s':>7}   ({args.rounds} rounds, interleaved)")
    for name, values in times.items():
        print(f"{name:<26} {statistics.median(values):9.3f} {min(values):7.3f}")
    med = {name: statistics.median(values) for name, values in times.items()}
    low = {name: min(values) for name, values in times.items()}
    full = med["envlock capture"] / med["import tensorflow"]
    full_min = low["envlock capture"] / low["import tensorflow"]
    print(f"\nfull capture / import tensorflow      = {full:.3f} (min/min {full_min:.3f}; target <= 1.15)")
    if "torch collect_env" in med:
        no_tf = med["envlock capture --no-tf"] / med["torch collect_env"]
        print(f"capture --no-tf / torch collect_env   = {no_tf:.3f} (min/min "
              f"{low['envlock capture --no-tf'] / low['torch collect_env']:.3f}; target <= 0.60)")
    print(f"capture --no-tf absolute              = {med['envlock capture --no-tf']:.3f} s (target < 1.0 s)")


if __name__ == "__main__":
    main()
