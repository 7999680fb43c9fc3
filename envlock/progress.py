"""Progress of a long run (verify, ``capture --golden``, explain), told to whoever shows it.

The use cases call a ``Progress`` unconditionally; this base class ignores every call, so a
library caller, the daemon and ``--json`` get nothing. The CLI passes its terminal renderer
(``envlock.cli.progress``) when stderr is a terminal. Calls may come from several threads at once
(explain runs candidates in parallel): a renderer locks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from envlock.protocol import ProgressEvent

Stage = Literal["verify", "record", "explain"]


class Progress:
    """What a run tells about its work while it runs; every method is a no-op here."""

    def stage(self, name: Stage, *, candidates: int | None = None, budget: float | None = None) -> None:
        """A stage begins: the suite runs for ``verify`` or ``record``; ``explain`` tries ``candidates``
        configurations within ``budget`` seconds (counted from the start of the whole run)."""

    def child_event(self, task: str, event: ProgressEvent) -> None:
        """A progress line of the probe child that runs for ``task`` (a stage, or a candidate's id)."""

    def task_started(self, task: str) -> None:
        """A candidate's probe child starts."""

    def task_finished(self, task: str) -> None:
        """A candidate's probe child has ended (whatever its outcome)."""

    def events_for(self, task: str) -> Callable[[ProgressEvent], None]:
        """The callback the probe supervisor takes (``run_child(on_event=...)``) for ``task``."""
        return lambda event: self.child_event(task, event)


NO_PROGRESS = Progress()

__all__ = ["NO_PROGRESS", "Progress", "Stage"]
