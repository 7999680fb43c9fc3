"""Numeric classes: which machines give the same bits (issue 20).

A machine's numeric class, for a probe set and a numerics profile, is a short digest of what its
probes produced: each probe's name, status and output digests, in name order, with the profile. Two
machines in the same class computed every output of every probe bit for bit alike; any differing bit,
a probe that could not run, or another profile gives another class. It is derived from results, not
from manifests, so it tells apart machines whose manifests look alike (and joins machines whose
manifests differ in what does not matter).

Base layer (standard library only): goldens, verify reports, the daemon and ``envlock fleet`` read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

CLASS_SCHEME = "nc1"  # bump when what goes into the digest changes: classes of two schemes never compare
CLASS_HEX = 12  # 48 bits: a fleet of 10^6 machine kinds collides with odds below 10^-2
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class ClassEntry:
    """One probe as the class sees it: ``outputs`` (name, sha256) when status is ok, else empty."""

    probe: str
    status: str  # ok, skipped, nondeterministic
    outputs: tuple[tuple[str, str], ...] = ()


def profile_id(name: str | None, version: int | None = None) -> str:
    """The profile as a label value: ``portable-v1``; ``default`` when no profile applied."""
    if name is None:
        return DEFAULT_PROFILE
    return f"{name}-v{version}" if version is not None else name


def numeric_class(entries: Iterable[ClassEntry], profile: str = DEFAULT_PROFILE) -> str:
    """12 hex digits over the entries in probe-name order and the profile (a Kubernetes label value)."""
    canonical = [[e.probe, e.status, sorted([n, d] for n, d in e.outputs) if e.status == "ok" else []]
                 for e in sorted(entries, key=lambda e: e.probe)]
    text = json.dumps([CLASS_SCHEME, profile, canonical], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:CLASS_HEX]


_HEX_DIGITS = frozenset("0123456789abcdef")


def is_numeric_class(text: object) -> bool:
    """True for a class as ``numeric_class`` makes it (CLASS_HEX lowercase hex digits): what readers of
    classes from outside (a verify child's report, Prometheus labels) check before using one."""
    return isinstance(text, str) and len(text) == CLASS_HEX and set(text) <= _HEX_DIGITS
