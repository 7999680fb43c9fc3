"""What the probe child's sandbox costs (issue 17): verify and explain on the shipped goldens, this
tree against an earlier revision, in the same run.

The baseline revision (default: 3a2f26c, the last commit before the sandbox: private directory,
RLIMIT_DATA, a pids cgroup, subreaper clean-up, bounded output) is exported with ``git archive``
into a temporary directory (no worktree is registered), and the same commands run from both trees,
interleaved round by round so background load hits both alike:

  envlock verify goldens/cpu-reference.json
  envlock verify goldens/intel-xeon-amx-2vcpu.json   (a golden of another CPU: drift, exit 1)
  envlock explain goldens/intel-xeon-amx-2vcpu.json --probes compile.eager   (verify + candidate children)

Prints medians and this / baseline per command (target: within 1.05).
Usage: python benchmarks/bench_child_limits.py [--baseline REV] [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench_revisions import _env_for  # the same PYTHONPATH-per-tree environment (run as a script from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "3a2f26c"


def _wall(argv: list[str], env: dict[str, str], ok: tuple[int, ...]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          cwd=env["PYTHONPATH"], check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}: {tail}")
    return elapsed


def _export(revision: str, target: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="envlock-bench-limits-"))
    try:
        baseline = work / "baseline"
        _export(args.baseline, baseline)
        trees = {"this": ROOT, "baseline": baseline}
        envs = {tree: _env_for(path) for tree, path in trees.items()}
        goldens = ROOT / "goldens"
        commands = {
            "verify cpu-reference": ([py, "-m", "envlock", "verify", str(goldens / "cpu-reference.json")], (0, 1)),
            "verify intel-xeon-amx": ([py, "-m", "envlock", "verify", str(goldens / "intel-xeon-amx-2vcpu.json")],
                                      (0, 1)),
            "explain intel-xeon-amx": ([py, "-m", "envlock", "explain", str(goldens / "intel-xeon-amx-2vcpu.json"),
                                        "--probes", "compile.eager"], (0, 1)),
        }
        for argv, ok in commands.values():  # warm the page cache once; not timed
            for env in envs.values():
                _wall(argv, env, ok)
        times: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            for name, (argv, ok) in commands.items():
                order = list(envs.items())
                for tree, env in order if round_number % 2 == 0 else reversed(order):  # alternate who goes first
                    times.setdefault((name, tree), []).append(_wall(argv, env, ok))
        print(f"baseline {args.baseline}; {args.rounds} rounds, interleaved; medians in seconds\n")
        print(f"{'command':<24} {'this':>8} {'baseline':>9} {'this/baseline':>14}")
        for name in commands:
            this, base = (statistics.median(times[(name, tree)]) for tree in ("this", "baseline"))
            print(f"{name:<24} {this:8.2f} {base:9.2f} {this / base:14.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
