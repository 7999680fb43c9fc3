"""What the daemon currently believes, shared between the check threads and the HTTP threads.

Health rule (documented in ``envlock watch --help`` and the README):

* no fingerprint check has finished yet            -> unhealthy, "no check yet";
* the last fingerprint check did not pass           -> unhealthy, its reason;
* the golden file was replaced by one that cannot be loaded -> unhealthy, naming it (the checks
  go on against the last good golden);
* a check is overdue: no fingerprint check finished for 3 intervals (+30 s), or a verify runs
  past its time limit (+30 s): the loop is wedged  -> unhealthy, "... overdue";
* a verify check has run for the current golden and
  the last one did not pass (drift, error, timeout) -> unhealthy, its reason;
* otherwise healthy. A verify that has not run yet does not make the node unhealthy, but the
  NFD label ``envlock.reproduces`` is only ``true`` once a verify has passed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from envlock.daemon.history import History
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import DETAIL_FIELDS, KINDS, CheckResult, DriftItem
from envlock.version import __version__

# A fingerprint check is overdue when none has finished for OVERDUE_FACTOR intervals plus the
# slack (a capture takes a second or two, more on a loaded node); a verify when it runs past its
# time limit plus the slack (the limit kills it, with a grace to clean up, well within that).
OVERDUE_FACTOR = 3
OVERDUE_SLACK_S = 30.0
# /status shows at most this many items of each list (a golden decides how long they are: 20,000
# fake distributions made /status 10 MB), with the total and where the rest is: /drift pages.
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


class DaemonState:
    def __init__(self, *, history: History, metrics: Metrics, golden_path: str, golden_digest: str | None,
                 fingerprint_every: float | None = None, verify_timeout: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.history = history
        # The schedule, to tell a check that is overdue (a wedged loop, a verify the time limit
        # did not stop) from one that is merely not due yet. None: never overdue.
        self.fingerprint_every = fingerprint_every
        self.verify_timeout = verify_timeout
        self._clock = clock
        self._golden_error: str | None = None
        self.metrics = metrics
        self.golden_path = golden_path
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._golden_digest = golden_digest
        self._last: dict[str, CheckResult] = {}
        self._last_conclusive: dict[str, CheckResult] = {}
        self._verify_running_since: float | None = None
        self._next_due: dict[str, float | None] = {}
        self.history_error: str | None = None
        metrics.set_golden(golden_digest)

    # ---- updates -------------------------------------------------------------------------

    def set_golden(self, digest: str | None) -> None:
        """A new golden: results against the old one no longer say anything about this one."""
        with self._lock:
            self._golden_digest = digest
            self._last.pop("verify", None)
            self._last_conclusive.pop("verify", None)
            self.metrics.set_drift(self._last_conclusive)
            self.metrics.set_numeric_class(None)  # a class is over the golden's probes: the old one says nothing
        self.metrics.set_golden(digest)

    def set_golden_error(self, error: str | None) -> None:
        """The golden file on disk cannot be loaded (``error``), or can again (None). The checks go
        on against the last good golden; health reports the bad file until it is fixed."""
        with self._lock:
            self._golden_error = error
            self._update_health_metric()

    def restore(self, result: CheckResult) -> None:
        """Adopt a result recorded before a restart (not counted again in metrics)."""
        with self._lock:
            self._adopt_locked(result, self.metrics.restore)

    def apply(self, result: CheckResult) -> int | None:
        """Record a finished check (history first: what /status shows is already durable).

        A history that cannot be written (disk full, volume gone) must not stop the checks or
        the endpoints: the result is still served, and /status says why it is not recorded.

        A verify of another golden than the current one (it finished while the golden was being
        replaced) goes to the history only: served, it would vouch for a golden it never checked."""
        try:
            check_id: int | None = self.history.record(result)
            error = None
        except Exception as exc:  # noqa: BLE001 - a full disk, a gone volume, any write bug: never a dead daemon
            problem = str(exc) if isinstance(exc, sqlite3.Error) else f"{type(exc).__name__}: {exc}"
            first_line = (problem.splitlines() or [""])[0]
            check_id, error = None, f"cannot record the check in {self.history.path}: {first_line}"
        with self._lock:
            self.history_error = error
            if not self._is_stale_locked(result):
                self._adopt_locked(result, self.metrics.observe)
        return check_id

    def _adopt_locked(self, result: CheckResult, to_metrics: Callable[[CheckResult], None]) -> None:
        """Make ``result`` the current one of its kind (caller holds the lock)."""
        self._last[result.kind] = result
        if result.conclusive:
            self._last_conclusive[result.kind] = result
        to_metrics(result)
        self.metrics.set_drift(self._last_conclusive)
        self._update_health_metric()

    def _is_stale_locked(self, result: CheckResult) -> bool:
        return result.kind == "verify" and result.golden_digest != self._golden_digest

    def set_verify_running(self, running: bool) -> None:
        with self._lock:
            self._verify_running_since = time.time() if running else None
        self.metrics.set_verify_running(running)

    def set_next_due(self, kind: str, when: float | None) -> None:
        with self._lock:
            self._next_due[kind] = when

    # ---- reading -------------------------------------------------------------------------

    @property
    def golden_digest(self) -> str | None:
        with self._lock:
            return self._golden_digest

    def last(self, kind: str) -> CheckResult | None:
        with self._lock:
            return self._last.get(kind)

    def numeric(self) -> CheckResult | None:
        """The last conclusive verify of the current golden when it reported a numeric class (what
        ``envlock_numeric_class``, the NFD class labels and /status's ``numeric_class`` show)."""
        with self._lock:
            return self._numeric_locked()

    def _numeric_locked(self) -> CheckResult | None:
        verify = self._last_conclusive.get("verify")
        return verify if verify is not None and verify.numeric_class and verify.numeric_profile else None

    def _health_locked(self) -> tuple[bool, str]:
        fingerprint = self._last.get("fingerprint")
        if fingerprint is None:
            return False, "no check yet"
        if self._golden_error is not None:
            return False, (f"cannot reload the golden: {self._golden_error} (checks continue against the last good "
                           f"golden, {self._golden_digest})")
        overdue = self._overdue_locked(fingerprint)
        if overdue is not None:
            return False, overdue
        if not fingerprint.ok:
            return False, f"fingerprint {fingerprint.outcome}: {fingerprint.reason}"
        verify = self._last.get("verify")
        if verify is not None and not verify.ok:
            return False, f"verify {verify.outcome}: {verify.reason}"
        return True, "ok"

    def _overdue_locked(self, fingerprint: CheckResult) -> str | None:
        now = self._clock()
        every = self.fingerprint_every
        if every is not None:
            limit = OVERDUE_FACTOR * every + OVERDUE_SLACK_S
            if now - (fingerprint.started_at + fingerprint.duration_s) > limit:
                return f"fingerprint check overdue: none finished in the last {limit:g} s (every {every:g} s)"
        since, timeout = self._verify_running_since, self.verify_timeout
        if since is not None and timeout is not None and now - since > timeout + OVERDUE_SLACK_S:
            return f"verify overdue: still running past its {timeout:g} s time limit"
        return None

    def _update_health_metric(self) -> None:
        self.metrics.set_healthy(self._health_locked()[0])

    def health(self) -> tuple[bool, str]:
        with self._lock:
            healthy, reason = self._health_locked()
            self.metrics.set_healthy(healthy)  # time alone can make a check overdue
            return healthy, reason

    def reproduces(self) -> bool:
        """True only when the last fingerprint AND a verify for this golden both passed."""
        with self._lock:
            verify = self._last.get("verify")
            return self._health_locked()[0] and verify is not None and verify.ok

    def _current_drift_locked(self, kind: str | None) -> list[dict[str, Any]]:
        return [
            {"kind": k, "path": item.path, "severity": item.severity, "reason": item.reason}
            for k, result in sorted(self._last_conclusive.items()) if kind is None or k == kind
            for item in result.drift
        ]

    def drift_page(self, *, kind: str | None = None, tolerated: bool = False, offset: int = 0,
                   limit: int = DRIFT_PAGE_MAX) -> dict[str, Any]:
        """Every current difference, a page at a time (/drift): what /status leaves out."""
        limit = max(0, min(limit, DRIFT_PAGE_MAX))
        with self._lock:
            items: list[DriftItem] | list[dict[str, Any]]
            if tolerated:
                fingerprint = self._last.get("fingerprint")
                items = [{"kind": "fingerprint", "path": item.path, "severity": item.severity, "reason": item.reason}
                         for item in (fingerprint.tolerated if fingerprint else [])]
            else:
                items = self._current_drift_locked(kind)
        page = items[offset:offset + limit]
        return {"list": "tolerated" if tolerated else "drift", "kind": kind, "total": len(items), "offset": offset,
                "items": page, "next_offset": offset + len(page) if offset + len(page) < len(items) else None}

    def status(self) -> dict[str, Any]:
        with self._lock:
            healthy, reason = self._health_locked()
            last = {kind: _result_for_status(self._last[kind]) if kind in self._last else None for kind in KINDS}
            current_drift = _capped("current_drift", self._current_drift_locked(None),
                                    more=f"GET /drift?offset={STATUS_LIST_CAP}")
            fingerprint = self._last.get("fingerprint")
            tolerated = _capped("tolerated_drift", [
                {"path": item.path, "severity": item.severity, "reason": item.reason}
                for item in (fingerprint.tolerated if fingerprint else [])
            ], more=f"GET /drift?list=tolerated&offset={STATUS_LIST_CAP}")
            verify_since = self._verify_running_since
            next_due = dict(self._next_due)
            golden_digest = self._golden_digest
            golden_error = self._golden_error
            history_error = self.history_error
            numeric = self._numeric_locked()
        try:
            history: dict[str, Any] = self.history.summary()
        except sqlite3.Error as exc:
            history = {"error": str(exc)}
        return {
            "envlock_version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "healthy": healthy,
            "reason": reason,
            "golden": {"path": self.golden_path, "digest": golden_digest, "error": golden_error},
            # this node's numeric class from the last conclusive verify (None until one reported it)
            "numeric_class": None if numeric is None else {
                "class": numeric.numeric_class, "profile": numeric.numeric_profile,
                "golden_class": numeric.golden_numeric_class,
                "matches_golden": numeric.numeric_class == numeric.golden_numeric_class,
                "verified_at": numeric.started_at,
            },
            "last": last,
            **current_drift,
            **tolerated,
            "verify_running_since": verify_since,
            "next_due": next_due,
            "history": history,
            "history_error": history_error,
        }
