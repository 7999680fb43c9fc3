"""Recorded machines: real manifests of real machines, so unit tests never read this host.

Each entry is a manifest captured by envlock on a machine the project has run on (provenance in
tests/data/README.md). A unit test that needs "a machine" takes the ``recorded_manifest``
fixture, which runs it once per recorded machine: the unit layer then holds whichever CPU CI
happens to run on, because it never looks at that CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from envlock import protocol
from envlock.diff import diff_manifests
from envlock.golden import Golden, load_golden
from envlock.models import Manifest, load_manifest
from envlock.probes.compare import Tolerance
from envlock.probes.registry import all_probes
from envlock.results import ChildResult, parse_child_result
from envlock.verdict import VerifyReport, attribute, build_report, verdict_for
from tests.helpers import DATA_DIR

MANIFEST_DIR = DATA_DIR / "manifests"

# id -> recorded manifest (envlock capture with TensorFlow) of that machine.
RECORDED_MACHINES: dict[str, Path] = {
    "amd-epyc-zen4": MANIFEST_DIR / "amd_epyc_zen4_2vcpu_tf2.21.0.json",
    "intel-xeon-amx": MANIFEST_DIR / "intel_xeon_amx_2vcpu_tf2.21.0.json",
}

T = TypeVar("T")


def recorded_manifest(machine: str) -> Manifest:
    return load_manifest(RECORDED_MACHINES[machine])


def other_than(current: T, *candidates: T) -> T:
    """The first candidate that differs from ``current``: a changed field differs by construction."""
    for candidate in candidates:
        if candidate != current:
            return candidate
    raise AssertionError(f"every candidate equals {current!r}: give one more")


def dotted_get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node[part]
    return node


# ---------------------------------------------------------------- verify, replayed from recorded goldens


def recorded_runs(golden: Golden) -> ChildResult:
    """The child's result on the machine that recorded ``golden``: its records, as runs (through the
    supervisor's parse, as a child's JSON)."""
    registry = all_probes()
    runs: dict[str, list[protocol.ProbeRun]] = {}
    metadata: dict[str, protocol.ProbeMetadata] = {}
    for record in golden.probes:
        if record.status == "ok":
            run: protocol.ProbeRun = {"status": "ok", "seconds": 0.0,
                                      "outputs": [o.model_dump(mode="json") for o in record.outputs]}  # type: ignore[misc]
        else:
            run = {"status": "skipped", "seconds": 0.0, "reason": record.reason or "skipped"}
        runs[record.name] = [run] * golden.repeat
        if record.name in registry:
            probe = registry[record.name]
            metadata[record.name] = {"name": probe.name, "tags": list(probe.tags), "group": probe.group,
                                     "dtype": probe.dtype, "description": probe.description,
                                     "needs_gpu": probe.needs_gpu, "source": None}
    return parse_child_result({"runs": runs, "probes": metadata})


def replay(golden_path: Path, machine_golden_path: Path) -> VerifyReport:
    golden, machine = load_golden(golden_path), load_golden(machine_golden_path)
    result = recorded_runs(machine)
    differences = diff_manifests(golden.manifest, machine.manifest)
    verdicts = [verdict_for(r, result, Tolerance(), pytest_golden=False, allow_changed_probes=False)
                for r in golden.probes]
    stable_drifted = attribute(verdicts, differences)
    return build_report(golden_path, golden, machine.manifest.digest, verdicts, differences, tolerance=Tolerance(),
                        repeat=golden.repeat, golden_env=False, stable_drifted=stable_drifted, timings={})
