"""Drift matrix for explain: inject each perturbation, check explain proves exactly that cause.

Records a golden unperturbed (with intermediates and oneDNN primitives), then runs
``envlock explain`` under each perturbation of benchmarks/drift_matrix.py (environment changes,
ISA ceilings, thread counts, CPU affinity, and the no-op ones). For a perturbation that moves
probes, every drifting probe must end "fixed by" a candidate that undoes the injected change
(proved); for a no-op, explain must prove nothing (0 false causes). Then the cost: in the same
run, a plain verify and an explain of the other CPU vendor's golden, and their ratio.

    python benchmarks/explain_matrix.py [--golden FILE] [--probes a,b] [--skip-cost]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drift_matrix import Perturbation, envlock, perturbations, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROBES = ("rng.global_seed,matmul.f32,conv2d.grad,elementwise.softmax,numpy.matmul,numpy.elementwise,"
                  "compile.function,compile.xla,training.keras_fit")


def undoes(p: Perturbation, finding: dict, candidates: dict[str, dict]) -> bool:
    """Whether the candidate that fixed the probe touches what the perturbation changed."""
    candidate = candidates.get(finding.get("fixed_by") or "")
    if candidate is None:
        return False
    if p.taskset:
        return candidate["kind"] in ("affinity", "threads")
    return bool(set(p.env) & set(candidate["env"]))


def row(golden: Path, p: Perturbation, probes: str) -> list[str]:
    started = time.perf_counter()
    code, out = envlock("explain", str(golden), "--json", "--probes", probes, env=p.env, taskset=p.taskset)
    seconds = time.perf_counter() - started
    report = json.loads(out)
    candidates = {c["id"]: c for c in report["candidates"]}
    findings = report["findings"]
    proved = sum(f["status"] == "fixed" and undoes(p, f, candidates) for f in findings)
    false = sum(f["status"] in ("fixed", "partly") and not undoes(p, f, candidates) for f in findings)
    fixes = sorted({f["fixed_by"] for f in findings if f.get("fixed_by")})
    if p.expect_drift is False:
        ok = false == 0
    else:
        ok = false == 0 and proved == len(findings) and (bool(findings) or p.expect_drift is None)
    return [p.name, {True: "yes", False: "no", None: "maybe"}[p.expect_drift], str(len(findings)),
            f"{proved}/{len(findings)}", str(false), "; ".join(fixes) or "-", str(len(report["not_tried"])),
            f"{seconds:.0f}", "ok" if ok else "WRONG"]


def cost(probes: str | None) -> None:
    from envlock.fingerprint.cpu import parse_proc_cpuinfo
    from envlock.golden import load_golden

    here = parse_proc_cpuinfo(Path("/proc/cpuinfo").read_text())
    goldens = [REPO / "goldens" / "cpu-reference.json", REPO / "goldens" / "intel-xeon-amx-2vcpu.json"]
    other = next((g for g in goldens if load_golden(g).manifest.cpu.vendor != here.vendor), goldens[0])
    extra = ("--probes", probes) if probes else ()
    t0 = time.perf_counter()
    envlock("verify", str(other), "--json", *extra)
    t1 = time.perf_counter()
    _, out = envlock("explain", str(other), "--json", *extra)
    t2 = time.perf_counter()
    report = json.loads(out)
    statuses = ", ".join(f"{f['probe']}={f['status']}" for f in report["findings"])
    print(f"\ncost on {here.model_name}: explain {other.name} {t2 - t1:.1f} s vs a plain verify {t1 - t0:.1f} s "
          f"(same run): ratio {(t2 - t1) / (t1 - t0):.2f}x (limit 4x); budget {report['budget_seconds']:.0f} s, "
          f"not tried: {len(report['not_tried'])}; {statuses}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--golden", type=Path, help="use this golden instead of recording one")
    parser.add_argument("--probes", default=DEFAULT_PROBES)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        golden = args.golden or Path(tmp) / "golden.json"
        if args.golden is None:
            envlock("capture", "--golden", "-o", str(golden), "--probes", args.probes)
        onednn_on = json.loads(golden.read_text())["manifest"]["tensorflow"]["onednn_enabled"]
        rows = []
        for p in perturbations(bool(onednn_on)):
            rows.append(row(golden, p, args.probes))
            print(" | ".join(rows[-1]), flush=True)
    header = ["perturbation", "expect drift", "probes drifted", "proved", "false causes", "fixed by",
              "not tried", "s", "verdict"]
    print()
    print(table(rows, header))
    drifting = [r for r in rows if r[2] != "0"]
    proved = sum(int(r[3].split("/")[0]) for r in drifting)
    total = sum(int(r[2]) for r in drifting)
    false = sum(int(r[4]) for r in rows)
    print(f"\nproved the injected cause for {proved}/{total} drifting probes over {len(drifting)} perturbations; "
          f"false causes: {false}; judged wrongly: {sum(r[-1] != 'ok' for r in rows)}/{len(rows)}; "
          f"total {time.perf_counter() - started:.0f} s")
    if not args.skip_cost:
        cost(None)
    return 0 if proved == total and false == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
