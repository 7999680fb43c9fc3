"""What runs, shown on stderr while verify, ``capture --golden`` and explain work (issue 16).

Only on a terminal: ``progress_wanted`` (pure, unit-tested) says no for a pipe or file, for
``--json``, in CI and on a dumb terminal, and then the run gets ``envlock.progress.NO_PROGRESS``
and nothing at all is written. On a terminal, rich draws a few transient lines -- the stage,
the probe running, how many are left, the budget used -- that vanish before the report prints.
Every name shown comes from a golden or a probe module: it is redacted and escaped first.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from envlock.errors import one_line
from envlock.progress import NO_PROGRESS, Progress, Stage
from envlock.protocol import ProgressEvent
from envlock.redact import redact_value

_CI_OFF = {"", "0", "false", "no"}  # CI=false is a person saying "not CI"
LABEL_WIDTH = 48


def progress_wanted(*, stderr_is_tty: bool, as_json: bool, environ: Mapping[str, str]) -> bool:
    """Whether to draw progress: only for a person at a terminal, never into a log or for a program."""
    if as_json or not stderr_is_tty:
        return False
    if environ.get("CI", "").strip().lower() not in _CI_OFF:
        return False
    return environ.get("TERM", "") != "dumb"  # no cursor movement: the lines would pile up


def _label(text: str, width: int = LABEL_WIDTH) -> str:
    shown = one_line(redact_value(text))
    return shown if len(shown) <= width else shown[: width - 3] + "..."


@dataclass
class _Task:
    """One probe child: the suite of verify or record, or one explain candidate."""

    order: list[str] = field(default_factory=list)
    probe: str | None = None
    run: int = 0

    def line(self) -> str:
        if self.probe is None:
            return "starting the probe process (importing TensorFlow)"
        total = len(self.order)
        at = f" {self.order.index(self.probe) + 1}/{total}" if self.probe in self.order else ""
        return f"probe{at} {_label(self.probe, 40)}" + (f", run {self.run + 1}" if self.run else "")

    def event(self, event: ProgressEvent) -> None:
        kind = event.get("event")
        if kind == "setup":
            order = [str(n) for n in (cast(dict[str, Any], event).get("order") or [])]  # setup: ChildSetup's keys
            # a fresh child after a crash lists only the probes left: keep the whole suite's order
            self.order = self.order or order
        elif kind == "start":  # the probe shown stays until the next one starts
            self.probe, self.run = str(event.get("probe")), int(event.get("repeat") or 0)


class TerminalProgress(Progress):
    """Draws the state with rich's ``Live`` on stderr, a few times a second, from any thread."""

    def __init__(self, console: Any = None) -> None:
        # lazy: rich loads only when progress is drawn (a pipe, --json and CI never pay for it)
        from rich.console import Console

        self._console = console or Console(stderr=True, highlight=False)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stage: Stage | None = None
        self._tasks: dict[str, _Task] = {}
        self._candidates = 0
        self._budget: float | None = None
        self._done = 0
        self._live: Any = None

    # ---- the Progress calls (any thread)

    def stage(self, name: Stage, *, candidates: int | None = None, budget: float | None = None) -> None:
        with self._lock:
            self._stage = name
            if name == "explain":
                self._tasks.clear()
                self._candidates, self._budget = candidates or 0, budget
            else:
                self._tasks[name] = _Task()
        self._refresh()

    def child_event(self, task: str, event: ProgressEvent) -> None:
        with self._lock:
            self._tasks.setdefault(task, _Task()).event(event)
        self._refresh()

    def task_started(self, task: str) -> None:
        with self._lock:
            self._tasks[task] = _Task()
            self._candidates = max(self._candidates, self._done + len(self._tasks))  # shrinking adds some
        self._refresh()

    def task_finished(self, task: str) -> None:
        with self._lock:
            if self._tasks.pop(task, None) is not None:
                self._done += 1
        self._refresh()

    # ---- drawing

    def lines(self) -> list[str]:
        """What the display shows now (plain text; also what the tests read)."""
        with self._lock:
            elapsed = time.monotonic() - self._started
            if self._stage == "explain":
                budget = f" of {self._budget:.0f}" if self._budget else ""
                head = (f"explain: candidates {self._done}/{self._candidates} done, {len(self._tasks)} running, "
                        f"budget {elapsed:.0f}{budget} s used")
                return [head] + [f"  {_label(name)}: {task.line()}" for name, task in self._tasks.items()]
            if self._stage is None:  # the golden is still being read and checked: nothing to say yet
                return []
            task = self._tasks.get(self._stage)
            what = {"verify": "verify", "record": "recording the golden"}[self._stage]
            return [f"{what}: {task.line() if task else 'starting'}, {elapsed:.0f} s"]

    def __rich__(self) -> Any:
        # lazy: rich is loaded already (by __init__); here only for the type
        from rich.text import Text

        return Text("\n".join(self.lines()), no_wrap=True, overflow="ellipsis")  # Text: no markup is parsed

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def start(self) -> None:
        # lazy: rich loads only when progress is drawn
        from rich.live import Live

        self._live = Live(self, console=self._console, transient=True, refresh_per_second=4,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            with contextlib.suppress(Exception):  # a broken terminal must not hide the report
                self._live.stop()
            self._live = None


@contextlib.contextmanager
def progress_display(*, as_json: bool) -> Iterator[Progress]:
    """The run's ``Progress``: drawn on a terminal, else ignored; gone before anything is printed."""
    if not progress_wanted(stderr_is_tty=_isatty(sys.stderr), as_json=as_json, environ=os.environ):
        yield NO_PROGRESS
        return
    try:
        display = TerminalProgress()
        display.start()
    except Exception:  # rich missing or the terminal refusing: run without progress
        yield NO_PROGRESS
        return
    try:
        yield display
    finally:
        display.stop()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
