"""Identity differences between two manifests, each with a severity, a reason and the probe
components it can affect.

Severity is DATA: the one rule table ``envlock.rules.RULES`` gives each dotted path its severity,
components and reason (the first matching rule wins); this module flattens two manifests into
dotted paths, compares them and judges each difference by that table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from envlock.models import NOT_RECORDED_WHEN_ABSENT, Manifest, identity_dict
from envlock.redact import redact_data
from envlock.rules import Severity, rule_for

SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class Difference(BaseModel):
    path: str
    old: Any = None
    new: Any = None
    severity: Severity
    reason: str
    components: list[str]


# Lists of records compared by a key instead of by position, so one inserted element does
# not make every later one look different: list path -> function giving (key, value) pairs.
def _keyed_blas(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(b.get("internal_api") or b.get("filename") or i): b for i, b in enumerate(items)}


def _keyed_devices(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(d.get("index", i)): d for i, d in enumerate(items)}


def _keyed_libraries(items: list[dict[str, Any]]) -> dict[str, Any]:
    versions: dict[str, list[str | None]] = {}
    for lib in items:
        versions.setdefault(str(lib.get("name")), []).append(lib.get("version"))
    # One loaded copy -> its version; several copies of one library -> all their versions.
    return {name: vs[0] if len(vs) == 1 else sorted(vs, key=str) for name, vs in versions.items()}


def _keyed_distributions(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(d.get("name")): _distribution_text(d) for d in items}


def _distribution_text(dist: dict[str, Any]) -> str:
    record = dist.get("record_sha256")
    return f"{dist.get('version')} (RECORD {record[:12]})" if record else str(dist.get("version"))


def _keyed_caches(items: list[dict[str, Any]]) -> dict[str, Any]:
    # "L1d", "L1i", "L2", "L3": the names people use, so a difference reads cpu.caches.L2.size_bytes.
    suffix = {"Data": "d", "Instruction": "i"}
    return {f"L{c.get('level')}{suffix.get(str(c.get('type')), '')}": c for c in items}


def _keyed_flags(items: list[str]) -> dict[str, Any]:
    return dict.fromkeys(items, True)


_KEYED_LISTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "numeric.blas": _keyed_blas,
    "gpu.devices": _keyed_devices,
    "tensorflow.loaded_libraries": _keyed_libraries,
    "python.distributions": _keyed_distributions,
    "cpu.flags": _keyed_flags,
    "cpu.caches": _keyed_caches,
}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Identity data as {dotted path: leaf value}; keyed lists become dicts, other lists stay leaves."""
    if prefix in _KEYED_LISTS and isinstance(data, list):
        data = _KEYED_LISTS[prefix](data)
    if isinstance(data, dict):
        # An empty mapping contributes no leaves, so "no libraries" equals "not recorded".
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _difference(path: str, old: Any, new: Any) -> Difference:
    rule = rule_for(path)
    # A flag appearing or disappearing is more readable as present/absent than yes/absent.
    if path.startswith("cpu.flags."):
        old, new = bool(old), bool(new)
    # Every report, /status, /healthz reason and daemon log line shows values through here: a
    # manifest from an older envlock or a hostile golden must not carry a secret out.
    old, new = redact_data(old), redact_data(new)
    return Difference(
        path=path,
        old=old,
        new=new,
        severity=rule.severity,
        reason=f"{path}: {_shown(old)} -> {_shown(new)} ({rule.why})",
        components=list(rule.components),
    )


def _lacks(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return True
        node = node[key]
    return False


def not_recorded(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    """The fields added after 0.1.0 that one side lacks: an older manifest (or a capture that could not
    read them) has not recorded them, which is no evidence of a difference."""
    return tuple(f for f in NOT_RECORDED_WHEN_ABSENT if _lacks(old, f) or _lacks(new, f))


def diff_manifests(old: Manifest, new: Manifest) -> list[Difference]:
    """Every identity difference between two manifests, most severe first, then by path.

    A field of ``NOT_RECORDED_WHEN_ABSENT`` that one side lacks is "not recorded", not a difference.
    """
    old_identity, new_identity = identity_dict(old), identity_dict(new)
    unrecorded = not_recorded(old_identity, new_identity)
    old_flat = flatten(old_identity)
    new_flat = flatten(new_identity)
    differences = [
        _difference(path, old_flat.get(path), new_flat.get(path))
        for path in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(path) != new_flat.get(path)
        and not any(path == f or path.startswith(f + ".") for f in unrecorded)
    ]
    return sorted(differences, key=lambda d: (SEVERITY_ORDER[d.severity], d.path))
