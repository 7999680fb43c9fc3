"""Where the current ``DaemonState`` is published: written by the loop, read by everyone else.

``StateBoard.state`` is one immutable value; the loop (the single writer) replaces it, and a
reader (an HTTP handler, the metrics collector, the health watchdog) takes whichever value is
current: a reference read, atomic in Python, so readers never lock and never see half a change.
A result is recorded in the history BEFORE it is published: what /status shows is already durable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from envlock.daemon import views
from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.history import History
from envlock.daemon.results import CheckKind, CheckResult
from envlock.daemon.state import DaemonState


def _history_problem(history: History, exc: Exception) -> str:
    problem = str(exc) if isinstance(exc, sqlite3.Error) else f"{type(exc).__name__}: {exc}"
    first_line = (problem.splitlines() or [""])[0]
    return f"cannot record the check in {history.path}: {first_line}"


class StateBoard:
    """The current ``DaemonState`` and the history its results are recorded in."""

    def __init__(self, state: DaemonState, history: History, *, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.history = history
        self.clock = clock

    # ---- the loop's writes ---------------------------------------------------------------

    def apply(self, result: CheckResult) -> int | None:
        """Record a finished check, then publish it; returns its id in the history.

        A history that cannot be written (disk full, volume gone) must not stop the checks or
        the endpoints: the result is still served, and /status says why it is not recorded. A
        verify of another golden than the current one goes to the history only (``is_stale``)."""
        try:
            check_id: int | None = self.history.record(result)
            error = None
        except Exception as exc:  # noqa: BLE001 - a full disk, a gone volume, any write bug: never a dead daemon
            check_id, error = None, _history_problem(self.history, exc)
        state = self.state.with_history_error(error)
        self.state = state if state.is_stale(result) else state.adopt(result)
        return check_id

    def restore(self, result: CheckResult) -> None:
        """Adopt a result recorded before a restart (not counted again: see ``DaemonState.adopt``)."""
        self.state = self.state.adopt(result, counted=False)

    def set_golden(self, golden: LoadedGolden) -> None:
        """A golden read from its file: a new one (another digest) forgets the old one's verify and
        takes what the last passing verify of it vouched for from the history."""
        if golden.digest == self.state.golden_digest:
            self.state = self.state.with_golden_file(golden)
            return
        last = self.history.last_passing("verify", golden.digest)
        self.state = self.state.with_golden(golden, vouched=frozenset(last.vouched) if last else frozenset())

    def set_golden_error(self, error: str | None) -> None:
        """The golden file on disk cannot be loaded (``error``), or can again (None)."""
        self.state = self.state.with_golden_error(error)

    def set_verify_running(self, running: bool) -> None:
        self.state = self.state.with_verify_running(self.clock() if running else None)

    def set_next_due(self, next_due: Mapping[str, float | None]) -> None:
        self.state = self.state.with_next_due(next_due)

    # ---- reading (any thread) ------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        return self.state.health(self.clock())

    def reproduces(self) -> bool:
        return self.state.reproduces(self.clock())

    def last(self, kind: CheckKind) -> CheckResult | None:
        return self.state.last(kind)

    def status(self) -> dict[str, Any]:
        state = self.state
        try:
            history: dict[str, Any] = self.history.summary()
        except sqlite3.Error as exc:
            history = {"error": str(exc)}
        return views.status(state, now=self.clock(), history=history)

    def drift_page(self, *, kind: CheckKind | None = None, tolerated: bool = False, offset: int = 0,
                   limit: int = views.DRIFT_PAGE_MAX) -> dict[str, Any]:
        return views.drift_page(self.state, kind=kind, tolerated=tolerated, offset=offset, limit=limit)
