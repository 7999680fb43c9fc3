"""What the daemon currently believes, shared between the check threads and the HTTP threads.

Health rule (documented in ``envlock watch --help`` and the README):

* no fingerprint check has finished yet            -> unhealthy, "no check yet";
* the last fingerprint check did not pass           -> unhealthy, its reason;
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

from envlock import __version__
from envlock.daemon.history import History
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import KINDS, CheckResult


class DaemonState:
    def __init__(self, *, history: History, metrics: Metrics, golden_path: str, golden_digest: str | None) -> None:
        self.history = history
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
        self.metrics.set_golden(digest)

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
        except sqlite3.Error as exc:
            check_id, error = None, f"cannot record the check in {self.history.path}: {exc}"
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

    def _health_locked(self) -> tuple[bool, str]:
        fingerprint = self._last.get("fingerprint")
        if fingerprint is None:
            return False, "no check yet"
        if not fingerprint.ok:
            return False, f"fingerprint {fingerprint.outcome}: {fingerprint.reason}"
        verify = self._last.get("verify")
        if verify is not None and not verify.ok:
            return False, f"verify {verify.outcome}: {verify.reason}"
        return True, "ok"

    def _update_health_metric(self) -> None:
        self.metrics.set_healthy(self._health_locked()[0])

    def health(self) -> tuple[bool, str]:
        with self._lock:
            return self._health_locked()

    def reproduces(self) -> bool:
        """True only when the last fingerprint AND a verify for this golden both passed."""
        with self._lock:
            verify = self._last.get("verify")
            return self._health_locked()[0] and verify is not None and verify.ok

    def status(self) -> dict[str, Any]:
        with self._lock:
            healthy, reason = self._health_locked()
            last = {kind: self._last[kind].to_dict() if kind in self._last else None for kind in KINDS}
            current_drift = [
                {"kind": kind, "path": item.path, "severity": item.severity, "reason": item.reason}
                for kind, result in sorted(self._last_conclusive.items()) for item in result.drift
            ]
            fingerprint = self._last.get("fingerprint")
            tolerated = [
                {"path": item.path, "severity": item.severity, "reason": item.reason}
                for item in (fingerprint.tolerated if fingerprint else [])
            ]
            verify_since = self._verify_running_since
            next_due = dict(self._next_due)
            golden_digest = self._golden_digest
            history_error = self.history_error
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
            "golden": {"path": self.golden_path, "digest": golden_digest},
            "last": last,
            "current_drift": current_drift,
            "tolerated_drift": tolerated,
            "verify_running_since": verify_since,
            "next_due": next_due,
            "history": history,
            "history_error": history_error,
        }
