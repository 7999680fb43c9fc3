"""Publishing a check: the history and the state (``StateBoard.apply``), its log line, the NFD file.

The loop publishes after each check. The health watchdog (``watch_health``, its own thread)
rewrites the NFD file when health turns by time alone (a check overdue because the loop is
wedged), when nothing publishes. The NFD file is the one thing with two writers: a lock orders them.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from envlock.daemon import nfd
from envlock.daemon.board import StateBoard
from envlock.daemon.config import WatchConfig
from envlock.daemon.log import JsonLog
from envlock.daemon.results import CheckResult
from envlock.daemon.state import DaemonState

# A check's log line names this many drifted paths and counts them all (a golden with 20,000
# differing distributions made each line 600 KB); /drift has the full list.
LOG_DRIFT_PATHS = 5


def nfd_features(state: DaemonState, healthy: bool) -> dict[str, str]:
    """The NFD labels of ``state`` (``healthy``: its health, computed once by the caller)."""
    fingerprint, verify, cores = state.last("fingerprint"), state.last("verify"), state.last("cores")
    numeric = state.numeric
    return nfd.feature_lines(
        reproduces=healthy and verify is not None and verify.ok, healthy=healthy,
        fingerprint_digest=fingerprint.fingerprint_digest if fingerprint else None,
        golden_digest=state.golden_digest, verify_outcome=verify.outcome if verify else None,
        numeric_class=numeric.numeric_class if numeric else None,
        numeric_profile=numeric.numeric_profile if numeric else None,
        cores_healthy=cores.ok if cores is not None and cores.conclusive else None,
    )


class Publisher:
    def __init__(self, board: StateBoard, log: JsonLog, config: WatchConfig) -> None:
        self.board = board
        self.log = log
        self.config = config
        self._nfd_lock = threading.Lock()
        self._nfd_health: tuple[bool, str] | None = None  # the health the NFD file was last written with

    def publish(self, result: CheckResult) -> None:
        """History (durable first), then the state, the log line and the NFD file."""
        check_id = self.board.apply(result)
        if check_id is None:
            self.log("history_write_failed", error=self.board.state.history_error)
        healthy, health_reason = self.board.health()
        self.log(
            "check", check_id=check_id, kind=result.kind, outcome=result.outcome, ok=result.ok,
            duration_s=round(result.duration_s, 4), reason=result.reason,
            drift=[item.path for item in result.drift[:LOG_DRIFT_PATHS]], drift_total=len(result.drift),
            tolerated=len(result.tolerated), exit_code=result.exit_code,
            fingerprint_digest=result.fingerprint_digest, healthy=healthy, health_reason=health_reason,
        )
        self.write_nfd(healthy, health_reason)

    def publish_verify(self, result: CheckResult) -> None:
        """Publish a verify unless the golden was replaced since it started (it finished just
        before the reload could cancel it): then it says nothing about the current golden, so it
        goes to the history only."""
        current = self.board.state.golden_digest
        if result.golden_digest != current:
            check_id = self.board.apply(result)  # history only: the state drops a stale verify
            self.log("verify_stale", check_id=check_id, outcome=result.outcome,
                     golden_digest=result.golden_digest, current_golden_digest=current)
            return
        self.publish(result)

    def write_nfd(self, healthy: bool, reason: str) -> None:
        """The loop (after each check) and the watchdog (loop wedged) both write the labels."""
        with self._nfd_lock:
            self._nfd_health = (healthy, reason)
            path = self.config.nfd_features_file
            if path is None:
                return
            features = nfd_features(self.board.state, healthy)
            # labels outlive a dead daemon by at most a few check periods
            ttl = max(5 * self.config.fingerprint_every, 300.0)
            try:
                nfd.write_features(path, features, expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl))
            except OSError as exc:
                self.log("nfd_write_failed", path=str(path), error=str(exc))

    def watch_health(self, stop: threading.Event) -> None:
        """The watchdog thread: until ``stop``, publish a health that turned by time alone."""
        period = min(max(self.config.fingerprint_every, 0.5), 5.0)
        while not stop.wait(period):
            healthy, reason = self.board.health()
            with self._nfd_lock:
                changed = self._nfd_health is not None and self._nfd_health != (healthy, reason)
            if changed and "overdue" in reason:
                self.log("health", healthy=healthy, reason=reason)
                self.write_nfd(healthy, reason)
