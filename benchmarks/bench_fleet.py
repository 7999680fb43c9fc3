"""What `envlock fleet` costs on a large fleet: 10,000 files made from the real ones (verify reports
of the Intel machine, goldens of both vendors under both profiles), with hostnames, manifest digests
and a few output digests varied so there are several classes. Timed and measured for peak memory
against a plain `json.load` of the same files in the same run (each in its own process).

    python benchmarks/bench_fleet.py [--files 10000] [--goldens 0.2]

Goal (issue 20): under 10 s and under 500 MB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
INTEL = REPO / "tests" / "data" / "machines" / "intel-xeon-amx-2vcpu-2026-12-03"
GOLDENS = [REPO / "goldens" / "amd-epyc-zen4-2vcpu.json", INTEL / "golden-full-suite.json",
           REPO / "goldens" / "amd-epyc-zen4-2vcpu-portable.json",
           REPO / "goldens" / "intel-xeon-amx-2vcpu-portable.json"]
REPORT = INTEL / "verify-of-amd-epyc-zen4-2vcpu.json"

# Each in a fresh interpreter, printing "wall_seconds cpu_seconds peak_kib": the baseline reads what fleet
# reads. CPU seconds are the steadier figure on a shared machine; fleet's include its imports.
BASELINE = """
import json, resource, sys, time
paths = sys.argv[1:]
start = time.perf_counter()
for path in paths:
    with open(path, "rb") as handle:
        json.load(handle)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""
FLEET = """
import resource, sys, time
start = time.perf_counter()
from envlock.fleet.files import fleet_report
report = fleet_report(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
print(report.files, report.machines, len(report.groups), sum(len(g.classes) for g in report.groups), file=sys.stderr)
"""


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def make_goldens(out: Path, count: int, rng: random.Random) -> list[Path]:
    from envlock.golden import GOLDEN_KIND
    from envlock.models import Manifest, canonical_sha256, compute_digest

    templates = [_load(p) for p in GOLDENS]
    variants = ["sha256:" + _hex(rng, 64) for _ in range(2)]
    paths = []
    for i in range(count):
        data = copy.deepcopy(templates[i % len(templates)])
        assert data["kind"] == GOLDEN_KIND
        data["manifest"]["host"]["hostname"] = f"gpu-node-{i:05d}"
        data["manifest"]["memory"]["total_bytes"] = 2**34 + (i % 7) * 2**30  # another machine: another digest
        data["manifest"]["digest"] = compute_digest(Manifest.model_validate(data["manifest"]))
        if i % 10 == 9:  # a tenth of the machines differ in one output: two more classes per template
            probe = next(p for p in data["probes"] if p["status"] == "ok" and p["name"].startswith("hw."))
            probe["outputs"][0]["sha256"] = variants[i // 10 % 2]
        data["digest"] = canonical_sha256({k: v for k, v in data.items() if k != "digest"})
        path = out / f"golden-{i:05d}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths


def make_reports(out: Path, count: int, rng: random.Random) -> list[Path]:
    from envlock.fleet.rows import row_of_document

    amd = row_of_document("amd", _load(GOLDENS[0])).numeric_class
    intel = row_of_document("intel", _load(GOLDENS[1])).numeric_class
    template = _load(REPORT)
    identical = copy.deepcopy(template["probes"])
    for verdict in identical:
        if verdict["status"] == "drift":
            verdict.update(status="identical", max_ulp=0.0)
    odd = [_hex(rng, 12) for _ in range(3)]  # three rarer classes
    paths = []
    for i in range(count):
        data = dict(template)
        kind = i % 20
        machine_class = amd if kind < 6 else odd[kind % 3] if kind >= 17 else intel
        data.update(numeric_class=machine_class, golden_numeric_class=amd, numeric_profile="default",
                    hostname=f"node-{i % (count // 2):05d}",  # hostnames repeat: told apart by digest
                    manifest_digest="sha256:" + _hex(rng, 64), envlock_version="0.1.0",
                    probes=identical if machine_class == amd else template["probes"])
        path = out / f"report-{i:05d}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths


def _run(code: str, paths: list[Path]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of ``code`` over ``paths`` in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                          cwd=REPO, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    seconds, cpu, peak_kib = proc.stdout.split()
    if proc.stderr.strip():
        print(f"  (fleet: files, machines, groups, classes = {proc.stderr.strip()})")
    return float(seconds), float(cpu), float(peak_kib) / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--goldens", type=float, default=0.2, help="share of the files that are goldens")
    parser.add_argument("--keep", type=Path, help="make the files in this directory and keep them")
    args = parser.parse_args()
    rng = random.Random(20)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        started = time.perf_counter()
        goldens = int(args.files * args.goldens)
        paths = make_goldens(out, goldens, rng) + make_reports(out, args.files - goldens, rng)
        size = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{len(paths)} files ({goldens} goldens, {len(paths) - goldens} verify reports), {size:.0f} MiB, "
              f"made in {time.perf_counter() - started:.1f} s")
        _run(BASELINE, paths)  # warm the page cache: both timings then read from memory
        base_s, base_cpu, base_mb = _run(BASELINE, paths)
        fleet_s, fleet_cpu, fleet_mb = _run(FLEET, paths)
        cli_start = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "envlock", "fleet", "--json", *map(str, paths)],
                             capture_output=True, cwd=REPO, check=False)
        cli_s = time.perf_counter() - cli_start
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"baseline: json.load of every file  {base_s:6.2f} s ({base_cpu:6.2f} s CPU), "
          f"peak RSS {base_mb:4.0f} MB")
    print(f"envlock fleet core (fleet_report)  {fleet_s:6.2f} s ({fleet_cpu:6.2f} s CPU) = {fleet_s / base_s:4.2f} x "
          f"json.load ({fleet_cpu / base_cpu:4.2f} x in CPU); peak RSS {fleet_mb:4.0f} MB "
          f"= {fleet_mb / base_mb:4.2f} x")
    print(f"envlock fleet --json (the CLI, end to end) {cli_s:6.2f} s, exit {cli.returncode}, "
          f"{len(cli.stdout) / 2**20:.1f} MiB of JSON")
    print(f"goal: under 10 s ({fleet_s / 10:4.0%} of it) and under 500 MB ({fleet_mb / 500:4.0%} of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
