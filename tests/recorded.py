"""Recorded machines: real manifests of real machines, so unit tests never read this host.

Each entry is a manifest captured by envlock on a machine the project has run on (provenance in
tests/data/README.md). A unit test that needs "a machine" takes the ``recorded_manifest``
fixture, which runs it once per recorded machine: the unit layer then holds whichever CPU CI
happens to run on, because it never looks at that CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from envlock.models import Manifest, load_manifest
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
