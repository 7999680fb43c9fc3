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
from envlock.daemon.results import KINDS, CheckResult
from envlock.version import __version__

# A fingerprint check is overdue when none has finished for OVERDUE_FACTOR intervals plus the
# slack (a capture takes a second or two, more on a loaded node); a verify when it runs past its
# time limit plus the slack (the limit kills it, with a grace to clean up, well within that).
OVERDUE_FACTOR = 3
OVERDUE_SLACK_S = 30.0


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
            golden_error = self._golden_error
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
            "golden": {"path": self.golden_path, "digest": golden_digest, "error": golden_error},
            "last": last,
            "current_drift": current_drift,
            "tolerated_drift": tolerated,
            "verify_running_since": verify_since,
            "next_due": next_due,
            "history": history,
            "history_error": history_error,
        }
