"""The worker threads of the child checks: one at a time, each waiting for one child process.

A worker (``envlock-verify`` or ``envlock-cores``) only runs ``VerifyRunner.run()``, i.e. waits
for the child, so fingerprint checks and HTTP keep going during a long verify. It hands what it
learned to the loop (``ChildWorkers.take``, a queue) and wakes it; it writes nothing else.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from envlock.daemon.checks import cores_crashed, verify_crashed
from envlock.daemon.process import VERIFY_STOP_GRACE_S, VerifyRunner
from envlock.daemon.results import CheckKind, CheckResult


@dataclass(frozen=True)
class ChildDone:
    """What a worker hands to the loop: what its check learned (None: cancelled, because the
    daemon is stopping or the golden changed), and which check it was."""

    result: CheckResult | None
    kind: CheckKind = "verify"


class ChildWorkers:
    """The running child checks' runners and threads (the loop starts them; anyone may stop them)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self._done: queue.Queue[ChildDone] = queue.Queue()
        self._running: dict[CheckKind, tuple[VerifyRunner, threading.Thread]] = {}

    def start(self, runner: VerifyRunner) -> None:
        """Run ``runner`` on a worker thread of its own."""
        thread = threading.Thread(target=self.work, args=(runner,), name=f"envlock-{runner.kind}", daemon=True)
        self._running[runner.kind] = (runner, thread)
        thread.start()

    def work(self, runner: VerifyRunner) -> None:
        """A worker's whole job (on whichever thread calls it): run the child, hand the result
        over. Whatever happens, the loop hears of it, or that check would never run again."""
        result: CheckResult | None = None
        try:
            result = runner.run()
        except Exception as exc:  # noqa: BLE001 - never let a verify bug kill the daemon's worker silently
            crashed = cores_crashed if runner.kind == "cores" else verify_crashed
            result = crashed(exc, golden_digest=runner.golden_digest)
        finally:
            self._done.put(ChildDone(result, runner.kind))
            self.wake()

    def take(self) -> list[ChildDone]:
        """What the workers handed over since the last call; each ended worker is forgotten."""
        done: list[ChildDone] = []
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return done
            self._running.pop(item.kind, None)
            done.append(item)

    def cancel(self, kind: CheckKind) -> None:
        """Stop the running ``kind`` check (it gets SIGTERM to clean up, then SIGKILL)."""
        running = self._running.get(kind)
        if running is not None:
            running[0].cancel()

    def kill_now(self) -> None:
        """SIGKILL every running child's group at once (the daemon is being forced out)."""
        for runner, _ in list(self._running.values()):
            runner.kill_now()

    def stop(self) -> None:
        """Cancel every running check and wait for its worker (the daemon is stopping)."""
        for runner, thread in list(self._running.values()):
            runner.cancel()  # kills the child's whole process group
            thread.join(timeout=VERIFY_STOP_GRACE_S + 5)
