"""This checkout against an earlier revision, in the same run: does a refactor cost time?

Checks out ``--baseline`` (a git revision; default: the last commit before the layering of
issue 9, e64b049) into a temporary worktree, then times the same commands from both trees,
interleaved round by round so background load hits both alike, with ``import tensorflow`` as the
yardstick of this machine:

  envlock --help                        (CLI start-up: what lazy imports protect)
  envlock capture                       (full capture: its ratio to `import tensorflow` is a target)
  envlock capture --no-tf
  envlock verify goldens/cpu-reference.json
  python -c "import envlock"            (what a training script pays before calling lockdown())

``--startup`` times only the three start-up commands. Prints medians, then per command this tree /
baseline (1.00 = unchanged) and capture / import tensorflow for both.
Usage: python benchmarks/bench_revisions.py [--baseline REV] [--rounds N] [--startup]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "e64b049"


def _wall(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    # Run from the tree itself: `python -m`/`-c` put the working directory first on sys.path.
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          cwd=env.get("PYTHONPATH", ROOT), check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}: {tail}")
    return elapsed


def _env_for(tree: Path) -> dict[str, str]:
    # PYTHONPATH puts that tree's envlock first; both run in this venv with the same packages.
    return {**os.environ, "PYTHONPATH": str(tree)}


def _which_envlock(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", "import envlock; print(envlock.__file__)"], env=env,
                          cwd=env["PYTHONPATH"],
                          capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--startup", action="store_true",
                        help="only the start-up commands (--help, import envlock, capture --no-tf)")
    args = parser.parse_args()
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="envlock-bench-rev-"))
    baseline = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                   check=True, capture_output=True)
    try:
        trees = {"this": ROOT, "baseline": baseline}
        envs = {name: _env_for(tree) for name, tree in trees.items()}
        for name, env in envs.items():
            where = _which_envlock(env)
            if not where.startswith(str(trees[name])):
                raise SystemExit(f"{name}: envlock imports from {where}, not from {trees[name]}")
        out = work / "manifest.json"
        golden = str(ROOT / "goldens" / "cpu-reference.json")
        commands = {
            "envlock --help": ([py, "-m", "envlock", "--help"], (0,)),
            "envlock capture": ([py, "-m", "envlock", "capture", "-o", str(out)], (0,)),
            "envlock capture --no-tf": ([py, "-m", "envlock", "capture", "--no-tf", "-o", str(out)], (0,)),
            "envlock verify": ([py, "-m", "envlock", "verify", golden], (0, 1)),
            "import envlock": ([py, "-c", "import envlock"], (0,)),
        }
        if args.startup:
            commands = {name: c for name, c in commands.items()
                        if name in ("envlock --help", "envlock capture --no-tf", "import envlock")}
        yardstick = [py, "-c", "import tensorflow"]
        for (argv, ok) in commands.values():  # warm the page cache once; not timed
            for env in envs.values():
                _wall(argv, env, ok)
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            times.setdefault(("import tensorflow", "-"), []).append(_wall(yardstick, dict(os.environ)))
            for name, (argv, ok) in commands.items():
                for tree, env in envs.items():
                    times.setdefault((name, tree), []).append(_wall(argv, env, ok))
        med = {key: statistics.median(values) for key, values in times.items()}
        print(f"baseline {args.baseline}; {args.rounds} rounds, interleaved; medians in seconds\n")
        print(f"{'command':<26} {'this':>8} {'baseline':>9} {'this/baseline':>14}")
        for name in commands:
            this, base = med[(name, "this")], med[(name, "baseline")]
            print(f"{name:<26} {this:8.3f} {base:9.3f} {this / base:14.3f}")
        tf = med[("import tensorflow", "-")]
        print(f"\nimport tensorflow          {tf:8.3f}")
        if args.startup:
            return
        print(f"capture / import tensorflow: this {med[('envlock capture', 'this')] / tf:.3f}, "
              f"baseline {med[('envlock capture', 'baseline')] / tf:.3f} (target <= 1.15)")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                       check=False, capture_output=True)


if __name__ == "__main__":
    main()
