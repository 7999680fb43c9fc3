"""What /status and /drift show, read from one ``DaemonState`` (pure: no lock, no I/O).

Bounded: a golden decides how long the lists are (20,000 fake distributions made /status 10 MB),
so /status shows at most STATUS_LIST_CAP items of each with the total and where the rest is, and
/drift pages through all of them, DRIFT_PAGE_MAX at a time.
"""

from __future__ import annotations

import os
from typing import Any

from envlock.daemon.results import DETAIL_FIELDS, KINDS, CheckKind, CheckResult
from envlock.daemon.state import DaemonState
from envlock.version import __version__

STATUS_LIST_CAP = 20
DRIFT_PAGE_MAX = 1000


def _capped(name: str, items: list[Any], *, more: str) -> dict[str, Any]:
    """``name``: the first STATUS_LIST_CAP items; ``name_total``: how many; ``name_more``: when some
    are left out, "and N more" and where to read them (None when nothing is left out)."""
    shown = items[:STATUS_LIST_CAP]
    left = len(items) - len(shown)
    return {name: shown, f"{name}_total": len(items), f"{name}_more": f"and {left} more: {more}" if left else None}


def _result_for_status(result: CheckResult) -> dict[str, Any]:
    data = result.to_dict()
    for name in DETAIL_FIELDS:
        items = data[name]
        data[name] = items[:STATUS_LIST_CAP]
        data[f"{name}_total"] = len(items)
    return data


def current_drift(state: DaemonState, kind: CheckKind | None = None) -> list[dict[str, Any]]:
    """Every current difference: the last conclusive result of each kind (or of ``kind``), kinds in order."""
    return [
        {"kind": k, "path": item.path, "severity": item.severity, "reason": item.reason}
        for k, result in sorted(state.conclusive.items()) if kind is None or k == kind
        for item in result.drift
    ]


def _tolerated(state: DaemonState) -> list[dict[str, Any]]:
    fingerprint = state.current.get("fingerprint")
    return [{"path": item.path, "severity": item.severity, "reason": item.reason}
            for item in (fingerprint.tolerated if fingerprint else [])]


def drift_page(state: DaemonState, *, kind: CheckKind | None = None, tolerated: bool = False, offset: int = 0,
               limit: int = DRIFT_PAGE_MAX) -> dict[str, Any]:
    """Every current difference, a page at a time (/drift): what /status leaves out."""
    limit = max(0, min(limit, DRIFT_PAGE_MAX))
    items = [{"kind": "fingerprint", **item} for item in _tolerated(state)] if tolerated else current_drift(state, kind)
    page = items[offset:offset + limit]
    return {"list": "tolerated" if tolerated else "drift", "kind": kind, "total": len(items), "offset": offset,
            "items": page, "next_offset": offset + len(page) if offset + len(page) < len(items) else None}


def status(state: DaemonState, *, now: float, history: dict[str, Any]) -> dict[str, Any]:
    """/status at ``now``; ``history``: the history's summary (or the error reading it)."""
    healthy, reason = state.health(now)
    numeric = state.numeric
    return {
        "envlock_version": __version__,
        "pid": os.getpid(),
        "started_at": state.started_at,
        "healthy": healthy,
        "reason": reason,
        "golden": {"path": state.golden_path, "digest": state.golden_digest, "error": state.golden_error},
        # this node's numeric class from the last conclusive verify (None until one reported it)
        "numeric_class": None if numeric is None else {
            "class": numeric.numeric_class, "profile": numeric.numeric_profile,
            "golden_class": numeric.golden_numeric_class,
            "matches_golden": numeric.numeric_class == numeric.golden_numeric_class,
            "verified_at": numeric.started_at,
        },
        "last": {kind: _result_for_status(state.current[kind]) if kind in state.current else None for kind in KINDS},
        **_capped("current_drift", current_drift(state), more=f"GET /drift?offset={STATUS_LIST_CAP}"),
        **_capped("tolerated_drift", _tolerated(state), more=f"GET /drift?list=tolerated&offset={STATUS_LIST_CAP}"),
        "verify_running_since": state.verify_running_since,
        "next_due": dict(state.next_due),
        "history": history,
        "history_error": state.history_error,
    }
