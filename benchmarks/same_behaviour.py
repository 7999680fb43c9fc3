"""This checkout against an earlier revision, in the same run: does a refactor change what users see?

Checks out ``--baseline`` (a git revision; default 7bb4be1, the last commit before issue 18's
typed seams) into a temporary worktree and runs the same commands from both trees, one after the
other per case, on the same files (the recorded goldens of both vendors, the 0.1.0 ones, the
portable ones, and ``../shared/machines/``'s readings). For each case it compares, apart from
timings: the exit code, stdout (text or ``--json``), and the JSON report or file the command wrote.

  verify    text and --report JSON, of 7 goldens (-v on two)
  explain   text and --report JSON, of the Intel full-suite golden on a few drifting probes
  diff      text and --json, of manifests and goldens of both vendors
  watch     --once of the 0.1.0 golden: its lines, JSON log and Node Feature Discovery file
  capture   --no-tf text and --json; a full --golden of three probes (the golden file)

Timings are masked before comparing: JSON values under keys that hold durations or instants
(``seconds``, ``*_seconds``, ``captured_at`` ...), and in text every ``<number> s``/``ms`` and
ISO-8601 instant. Everything else must be byte-identical. Prints one line per case
(``same``/``DIFFERENT``) and, for a difference, the first differing lines; exit 1 if any differs.

Usage: python benchmarks/same_behaviour.py [--baseline REV] [--only verify,diff,...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "machines"
DEFAULT_BASELINE = "7bb4be1"
INTEL = ROOT / "tests" / "data" / "machines" / "intel-xeon-amx-2vcpu-2026-12-03"

# JSON keys whose values are durations, instants or per-run paths: masked before comparing.
_TIMING_KEY = re.compile(r"(^|_)(seconds|elapsed|wall|duration|captured_at|created_at|recorded_at|started_at|"
                         r"finished_at|timestamp|time|at|pid|uptime)$|_s$")
_TEXT_TIMING = re.compile(r"\b\d+(\.\d+)?\s?(ms|s)\b|\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_TMP = re.compile(r"/tmp/envlock-same-[^/\s\"']+")


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # after `python -m envlock`; {out} is the case's output file
    files: tuple[str, ...] = ()  # outputs to compare besides stdout ({out})
    env: tuple[tuple[str, str], ...] = ()


def _cases(work: Path) -> list[Case]:
    g = ROOT / "goldens"
    cases: list[Case] = []
    verify = [g / "cpu-reference.json", g / "amd-epyc-zen4-2vcpu.json", g / "intel-xeon-amx-2vcpu.json",
              INTEL / "golden-full-suite.json", g / "amd-epyc-zen4-2vcpu-portable.json",
              g / "intel-xeon-amx-2vcpu-portable.json", SHARED / "intel-xeon-amx-2vcpu" / "golden-tf2.21.0.json"]
    for path in verify:
        if path.is_file():
            cases.append(Case(f"verify {path.name}", ("verify", str(path), "--report", "{out}"), ("{out}",)))
    for path in (g / "amd-epyc-zen4-2vcpu.json", INTEL / "golden-full-suite.json"):
        cases.append(Case(f"verify -v {path.name}", ("verify", "-v", str(path)), ()))
    cases.append(Case("explain intel full-suite (4 probes)",
                      ("explain", str(INTEL / "golden-full-suite.json"), "--probes",
                       "hw.reciprocal,hw.rsqrt,compile.eager,mixed.bf16_matmul", "--budget", "600",
                       "--report", "{out}"), ("{out}",)))
    cases.append(Case("explain cpu-reference (oneDNN off)",
                      ("explain", str(g / "cpu-reference.json"), "--probes", "matmul.f32,conv2d.grad,compile.eager",
                       "--budget", "600", "--report", "{out}"), ("{out}",), (("TF_ENABLE_ONEDNN_OPTS", "0"),)))
    # A golden recorded on CPU 0 alone: explain's affinity and thread candidates (made by _setup).
    cases.append(Case("explain golden recorded on CPU 0 (affinity)",
                      ("explain", str(work / "golden-cpu0.json"), "--budget", "600", "--report", "{out}"),
                      ("{out}",)))
    m = ROOT / "tests" / "data" / "manifests"
    pairs = [(m / "amd_epyc_zen4_2vcpu_tf2.21.0.json", m / "intel_xeon_amx_2vcpu_tf2.21.0.json"),
             (g / "amd-epyc-zen4-2vcpu.json", INTEL / "golden-full-suite.json"),
             (g / "cpu-reference.json", SHARED / "intel-xeon-amx-2vcpu" / "golden-tf2.21.0.json"),
             (g / "amd-epyc-zen4-2vcpu.json", g / "amd-epyc-zen4-2vcpu-portable.json"),
             (SHARED / "intel-xeon-amx-2vcpu" / "manifest.json", m / "amd_epyc_zen4_2vcpu_tf2.21.0.json")]
    for a, b in pairs:
        if a.is_file() and b.is_file():
            cases.append(Case(f"diff {a.name} {b.name}", ("diff", str(a), str(b))))
            cases.append(Case(f"diff --json {a.name} {b.name}", ("diff", "--json", str(a), str(b))))
    cases.append(Case("watch --once cpu-reference.json",
                      ("watch", "--golden", str(g / "cpu-reference.json"), "--once", "--state-dir", "{dir}",
                       "--nfd-features-file", "{dir}/nfd"), ("{dir}/nfd",)))
    cases.append(Case("capture --no-tf", ("capture", "--no-tf")))
    cases.append(Case("capture --no-tf --json", ("capture", "--no-tf", "--json")))
    cases.append(Case("capture --golden (3 probes)",
                      ("capture", "--golden", "--probes", "rng.global_seed,matmul.f32,hw.reciprocal", "-o", "{out}"),
                      ("{out}",)))
    return cases


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        # A golden's own "digest" covers its created_at and timings, so it differs whenever they do.
        masked = {k: "<t>" if _TIMING_KEY.search(k) else _mask(v) for k, v in value.items()}
        if "digest" in masked and "created_at" in masked:
            masked["digest"] = "<t>"
        return masked
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return _TMP.sub("<tmp>", _TEXT_TIMING.sub("<t>", value))
    return value


def normalise(text: str) -> str:
    """The text with timings masked (JSON parsed and re-dumped; other text line by line)."""
    try:
        data = json.loads(text)
    except ValueError:
        return _TMP.sub("<tmp>", _TEXT_TIMING.sub("<t>", text))
    return json.dumps(_mask(data), indent=1, sort_keys=True)


def _setup(tree: Path, work: Path) -> None:
    """Files some cases need, made once with the baseline tree."""
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"):
        raise SystemExit("the affinity case needs 2 CPUs and taskset")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "envlock", "capture", "--golden", "--probes",
                    "numpy.matmul,matmul.f32,conv2d.grad", "-o", str(work / "golden-cpu0.json")],
                   env=env, cwd=work, check=True, capture_output=True, timeout=600)


def _run(tree: Path, case: Case, work: Path) -> dict[str, str]:
    out = work / "out.json"
    argv = [sys.executable, "-m", "envlock", *(a.replace("{out}", str(out)).replace("{dir}", str(work / "state"))
                                               for a in case.argv)]
    env = {**os.environ, "PYTHONPATH": str(tree), **dict(case.env)}
    env.pop("ENVLOCK_GOLDEN", None)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work, check=False, timeout=900)
    # stderr's JSON log lines (watch) are compared as JSON, timings masked, like the rest.
    stderr = "\n".join(normalise(line) for line in proc.stderr.splitlines())
    seen = {"exit": str(proc.returncode), "stdout": normalise(proc.stdout), "stderr": stderr}
    for name in case.files:
        path = Path(name.replace("{out}", str(out)).replace("{dir}", str(work / "state")))
        seen[name] = normalise(path.read_text()) if path.is_file() else "<absent>"
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--only", default="", help="comma-separated command names (verify, explain, diff, capture)")
    parser.add_argument("--keep", type=Path, help="write both trees' normalised outputs under this directory")
    args = parser.parse_args()
    only = {w for w in args.only.split(",") if w}
    work = Path(tempfile.mkdtemp(prefix="envlock-same-"))
    baseline = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                   check=True, capture_output=True)
    differing = 0
    try:
        trees = {"baseline": baseline, "this": ROOT}
        cases = [c for c in _cases(work) if not only or c.argv[0] in only]
        if any("golden-cpu0.json" in a for c in cases for a in c.argv):
            _setup(baseline, work)
        print(f"baseline {args.baseline}; {len(cases)} cases; timings masked")
        for case in cases:
            start = time.perf_counter()
            seen = {}
            for label, tree in trees.items():
                run_dir = work / "run"  # one path for both trees: it is printed
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir()
                seen[label] = _run(tree, case, run_dir)
            same = seen["this"] == seen["baseline"]
            differing += not same
            print(f"{'same' if same else 'DIFFERENT':<10} {case.name} (exit {seen['this']['exit']}, "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
            if args.keep:
                for label in trees:
                    folder = args.keep / re.sub(r"[^A-Za-z0-9.-]+", "_", case.name)
                    folder.mkdir(parents=True, exist_ok=True)
                    for key, text in seen[label].items():
                        (folder / f"{label}.{re.sub(r'[^a-z]+', '', key)}").write_text(text)
            if not same:
                for key in seen["this"]:
                    a, b = seen["baseline"][key].splitlines(), seen["this"][key].splitlines()
                    if a != b:
                        diff = list(difflib.unified_diff(a, b, "baseline", "this", lineterm="", n=1))
                        print(f"  {key}:\n    " + "\n    ".join(diff[:20]))
        print(f"\n{len(cases) - differing} of {len(cases)} cases the same as {args.baseline}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                       check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
