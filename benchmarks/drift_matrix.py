"""Drift matrix: record a golden, verify under each perturbation, count false positives.

For each perturbation (an environment change or a CPU-affinity restriction, each in fresh
processes): was drift detected (expected or not), is the top attributed cause one of the
right ones, and does `--golden-env` bring it back (for environment perturbations). Then 10
unperturbed verifies: any drift there is a false positive (must be 0).

    python benchmarks/drift_matrix.py [--golden FILE] [--clean-runs 10] [--probes a,b] [--markdown FILE]

It also prints which probe each perturbation moved (D drift, ~ within tolerance, . identical,
s skipped): the measurement each probe's group and tags are chosen from (docs/drift-matrix.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Perturbation:
    name: str
    env: dict[str, str | None] = field(default_factory=dict)
    taskset: str | None = None  # CPU list for `taskset -c`
    expect_drift: bool | None = True  # None: depends on the CPU (a ceiling at or above its own level moves nothing)
    causes: tuple[str, ...] = ()  # accepted top-cause paths (prefix match)


def perturbations(onednn_on: bool) -> list[Perturbation]:
    flip = "0" if onednn_on else "1"
    return [
        Perturbation(f"TF_ENABLE_ONEDNN_OPTS={flip}", {"TF_ENABLE_ONEDNN_OPTS": flip},
                     causes=("environment.TF_ENABLE_ONEDNN_OPTS", "tensorflow.onednn_enabled")),
        Perturbation("ONEDNN_MAX_CPU_ISA=AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"},
                     causes=("environment.ONEDNN_MAX_CPU_ISA",)),
        Perturbation("ONEDNN_MAX_CPU_ISA=SSE41", {"ONEDNN_MAX_CPU_ISA": "SSE41"},
                     causes=("environment.ONEDNN_MAX_CPU_ISA",)),
        Perturbation("TF_XLA_FLAGS=auto_jit=2", {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"},
                     causes=("environment.TF_XLA_FLAGS", "tensorflow.xla_jit")),
        Perturbation("ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (no bf16)", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
                     expect_drift=None, causes=("environment.ONEDNN_MAX_CPU_ISA",)),
        Perturbation("XLA_FLAGS=opt_level=0", {"XLA_FLAGS": "--xla_backend_optimization_level=0"},
                     causes=("environment.XLA_FLAGS",)),
        Perturbation("OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"},
                     causes=("environment.OMP_NUM_THREADS", "numeric.blas")),
        Perturbation("NPY_DISABLE_CPU_FEATURES=X86_V3..", {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL "
                                                          "AVX512_SPR"},
                     causes=("numeric.simd_dispatch", "environment.NPY_DISABLE_CPU_FEATURES")),
        Perturbation("taskset -c 0 (affinity)", taskset="0", causes=("cpu.affinity", "numeric.blas")),
        Perturbation("TF_NUM_INTRAOP_THREADS=1", {"TF_NUM_INTRAOP_THREADS": "1"}, expect_drift=False),
        Perturbation("PYTHONHASHSEED=1", {"PYTHONHASHSEED": "1"}, expect_drift=False),
        Perturbation("TF_ENABLE_ZENDNN_OPTS=1", {"TF_ENABLE_ZENDNN_OPTS": "1"}, expect_drift=False),
    ]


def envlock(*args: str, env: dict[str, str | None] | None = None, taskset: str | None = None) -> tuple[int, str]:
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    argv = [sys.executable, "-m", "envlock", *args]
    if taskset:
        argv = ["taskset", "-c", taskset, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"envlock {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.returncode, proc.stdout


PROBES: list[str] = []  # --probes: passed to capture --golden and every verify
STATUS_MARK = {"drift": "D", "within_tolerance": "~", "identical": ".", "skipped": "s", "nondeterministic": "N"}


def verify(golden: Path, p: Perturbation | None, *extra: str) -> dict:
    probes = ("--probes", ",".join(PROBES)) if PROBES else ()
    code, out = envlock("verify", str(golden), "--json", *probes, *extra, env=p.env if p else None,
                        taskset=p.taskset if p else None)
    return json.loads(out)


def row(golden: Path, p: Perturbation, moved: dict[str, dict[str, str]]) -> list[str]:
    report = verify(golden, p, "--repeat", "1")
    moved[p.name] = {v["name"]: STATUS_MARK.get(v["status"], "?") for v in report["probes"]}
    drifting = [v for v in report["probes"] if v["status"] == "drift"]
    detected = bool(drifting)
    top = drifting[0]["causes"][0]["path"] if drifting else None
    # The top cause of every drifting probe must be one of the accepted ones.
    tops = {v["causes"][0]["path"] or "unexplained" for v in drifting}
    right = "-" if not p.causes else ("yes" if tops and all(t.startswith(p.causes) for t in tops) else "NO")
    golden_env = "-"
    if detected and p.env:
        golden_env = "yes" if verify(golden, p, "--repeat", "1", "--golden-env")["reproduces"] else "no"
    ok = (p.expect_drift is None or detected == p.expect_drift) and right != "NO"
    expected = {True: "yes", False: "no", None: "maybe"}[p.expect_drift]
    return [p.name, expected, "yes" if detected else "no", str(len(drifting)),
            str(top) if top else "-", right, golden_env, "ok" if ok else "WRONG"]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    lines = [fmt.format(*header), "-+-".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt.format(*r) for r in rows])


def probe_matrix(moved: dict[str, dict[str, str]]) -> list[list[str]]:
    """One row per probe: what each perturbation did to it, and whether anything moved it."""
    names = list(dict.fromkeys(n for marks in moved.values() for n in marks))
    return [[n, *(moved[p].get(n, "?") for p in moved), "yes" if any(moved[p].get(n) in ("D", "~") for p in moved)
             else "no"] for n in names]


def markdown(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--golden", type=Path, help="use this golden instead of recording one")
    parser.add_argument("--clean-runs", type=int, default=10)
    parser.add_argument("--probes", help="comma-separated probe names (default: the whole suite)")
    parser.add_argument("--markdown", type=Path, help="also write both tables as Markdown to this file")
    args = parser.parse_args()
    PROBES.extend(p for p in (args.probes or "").split(",") if p)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        golden = args.golden or Path(tmp) / "golden.json"
        if args.golden is None:
            envlock("capture", "--golden", "-o", str(golden), *(("--probes", args.probes) if args.probes else ()))
        onednn_on = json.loads(golden.read_text())["manifest"]["tensorflow"]["onednn_enabled"]
        moved: dict[str, dict[str, str]] = {}
        rows = [row(golden, p, moved) for p in perturbations(bool(onednn_on))]
        header = ["perturbation", "expect drift", "drift detected", "probes drifted", "top cause",
                  "top cause right", "--golden-env reproduces", "verdict"]
        print(table(rows, header))
        columns = [f"P{i + 1}" for i in range(len(moved))]
        matrix = probe_matrix(moved)
        print("\nwhat each perturbation moved (D drift, ~ within tolerance, . identical, s skipped); "
              + ", ".join(f"{c} = {name}" for c, name in zip(columns, moved, strict=True)))
        print(table(matrix, ["probe", *columns, "moved"]))
        if args.markdown:
            args.markdown.write_text(markdown(rows, header) + "\n\n" + markdown(matrix, ["probe", *columns, "moved"])
                                     + "\n\n" + "\n".join(f"- {c}: `{n}`" for c, n in zip(columns, moved,
                                                                                              strict=True)) + "\n")
        false_positives = 0
        for _ in range(args.clean_runs):
            report = verify(golden, None)
            false_positives += not report["reproduces"]
    wrong = sum(r[-1] != "ok" for r in rows)
    print(f"\nfalse positives over {args.clean_runs} unperturbed verifies (repeat 2): {false_positives}")
    print(f"perturbations judged wrongly: {wrong}/{len(rows)}; total {time.perf_counter() - started:.0f} s")
    return 0 if false_positives == 0 and wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
