"""The verify check's child process: the daemon's policy on top of ``envlock.runner``.

The child is started with ``runner.spawn`` (its own process group, killed by the kernel if the
daemon dies, even by SIGKILL), gets a private TMPDIR that is removed afterwards (so not even a
SIGKILLed verify leaves its temp files behind), and its output goes to files, not pipes (a
grandchild that escaped the group cannot keep the daemon waiting for EOF). A hang past the time
limit, or a cancel, gets SIGTERM and VERIFY_STOP_GRACE_S to clean up before the whole group gets
SIGKILL; killed grandchildren the daemon inherited (as a container's PID 1) are reaped.

Everything that starts, signals or reaps a process is ``envlock.runner``'s; this module only
decides when, and ``daemon.checks`` says what the child's exit and output mean.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from envlock.daemon.checks import (
    cores_not_started,
    cores_timed_out,
    interpret_cores,
    interpret_verify,
    verify_not_started,
    verify_timed_out,
)
from envlock.daemon.results import CheckKind, CheckResult
from envlock.runner import SPAWN_ERRORS, ChildProcess, end_group, signal_group, spawn

# A verify being stopped (daemon stopping, golden replaced, time limit) gets SIGTERM and this long
# to kill its probe child and remove its temp files before the whole group gets SIGKILL.
VERIFY_STOP_GRACE_S = 5.0
_MAX_OUTPUT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ChildCheck:
    """What a check run as a child means: its output read (``interpret``), a time-out, a failed start."""

    interpret: Callable[..., CheckResult]
    timed_out: Callable[..., CheckResult]
    not_started: Callable[..., CheckResult]


# The checks run as a child process, by kind: the same runner for each.
CHILD_CHECKS: dict[CheckKind, ChildCheck] = {
    "verify": ChildCheck(interpret_verify, verify_timed_out, verify_not_started),
    "cores": ChildCheck(interpret_cores, cores_timed_out, cores_not_started),
}


def _read_tail(handle: IO[bytes]) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - _MAX_OUTPUT_BYTES))
    return handle.read().decode("utf-8", errors="replace")


class VerifyRunner:
    """Runs the verify command once, on the thread that calls ``run()`` (the verify worker);
    ``cancel()`` and ``kill_now()`` stop it from any other thread. ``kind="cores"`` runs the cores
    check's command the same way (``CHILD_CHECKS``)."""

    def __init__(
        self, argv: Sequence[str], *, timeout_s: float, golden_digest: str | None, env: Mapping[str, str],
        kind: CheckKind = "verify",
    ) -> None:
        self.kind = kind
        self._check = CHILD_CHECKS[kind]
        # ``env``: the daemon's environment as it STARTED (WatchConfig.environ); libraries imported
        # since (threadpoolctl) wrote to os.environ, and the child must not inherit what the user never set.
        self.env = dict(env)
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self.golden_digest = golden_digest
        # ``_proc`` and ``_cancelled`` are shared by run() and the stoppers: a cancel that comes
        # before the spawn must prevent it, one that comes after must see the process.
        self._lock = threading.Lock()
        self._proc: ChildProcess | None = None
        self._cancelled = False
        self._cancel_event = threading.Event()

    def cancel(self) -> None:
        """Stop the running verify (from another thread): it gets SIGTERM to clean up, then SIGKILL."""
        self._stop(signal.SIGTERM)

    def kill_now(self) -> None:
        """SIGKILL the running verify's whole group at once (the daemon is being forced out)."""
        self._stop(signal.SIGKILL)

    def _stop(self, signum: int) -> None:
        with self._lock:
            self._cancelled = True
            proc = self._proc
        self._cancel_event.set()
        if proc is not None:
            signal_group(proc, signum)

    def run(self) -> CheckResult | None:
        """Run once. Returns None when cancelled (the daemon is stopping, or the golden changed:
        nothing was learned about the current golden)."""
        started = time.time()
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.TemporaryDirectory(prefix=f"envlock-{self.kind}-") as private_tmp:
            try:
                with self._lock:
                    if self._cancelled:
                        return None
                    proc = self._proc = spawn(self.argv, stdout=out, stderr=err,
                                              env={**self.env, "TMPDIR": private_tmp})
            except SPAWN_ERRORS as exc:
                return self._check.not_started(
                    program=self.argv[0], problem=getattr(exc, "strerror", None) or str(exc), started=started,
                    duration=time.monotonic() - t0, golden_digest=self.golden_digest,
                )
            timed_out = self._wait(proc, t0 + self.timeout_s)
            # on timeout or cancel the child gets its grace to clean up; leftover grandchildren go anyway
            end_group(proc, grace_s=VERIFY_STOP_GRACE_S if timed_out or self._cancel_event.is_set() else 0.0)
            duration = time.monotonic() - t0
            with self._lock:
                self._proc = None
                if self._cancelled:
                    return None
            if timed_out:
                return self._check.timed_out(timeout_s=self.timeout_s, started=started, duration=duration,
                                        golden_digest=self.golden_digest)
            return self._check.interpret(
                returncode=proc.returncode, stdout=_read_tail(out), stderr=_read_tail(err),
                started=started, duration=duration, golden_digest=self.golden_digest,
            )

    def _wait(self, proc: ChildProcess, deadline: float) -> bool:
        """Wait until the child exits (False), the deadline passes (True) or cancel() (False)."""
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._cancel_event.wait(timeout=min(left, 0.2)):
                return False
        return False
