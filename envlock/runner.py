"""The one seam for side effects on the outside world: subprocesses and reading system files.

Collectors take a ``Runner``; unit tests pass a ``FakeRunner`` fed with real captured outputs
from ``tests/data`` so parsing is tested on what real machines print.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias

# ---- spawning children that die with their parent ----------------------------------------------
#
# Every child envlock starts (the probe child, the TensorFlow child of capture, the daemon's verify
# child, pip) goes through ``spawn``: its own process group, so a kill reaches its grandchildren
# too, and on Linux PR_SET_PDEATHSIG(SIGKILL), so the kernel kills it when its parent dies, even
# by SIGKILL. PDEATHSIG fires when the THREAD that forked exits, not the process: spawn from a
# thread that waits for the child (as all of envlock's callers do), never from a short-lived one.

_PR_SET_PDEATHSIG = 1
_KILLED_BEFORE_PRCTL_EXIT = 128 + signal.SIGKILL


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()  # resolved here: between fork and exec the child only makes the call


def _die_with_parent_preexec() -> Callable[[], None] | None:
    prctl, parent = _PRCTL, os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:  # in the child, between fork and exec: no imports, nothing but the call
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody will ever wait for us
            os._exit(_KILLED_BEFORE_PRCTL_EXIT)

    return preexec


# What ``spawn`` returns, and what it raises when a child cannot start (a missing program, a
# failed preexec), for callers that keep a child without importing ``subprocess`` themselves.
ChildProcess: TypeAlias = "subprocess.Popen[Any]"
SPAWN_ERRORS: tuple[type[Exception], ...] = (OSError, subprocess.SubprocessError)


def signal_name(signum: int) -> str:
    """``SIGSEGV`` for 11; ``signal 99`` for a number Python does not name (a child's ``-returncode``)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: Any = subprocess.DEVNULL,
          stdout: Any = None, stderr: Any = None, text: bool = False, cwd: str | Path | None = None,
          ) -> subprocess.Popen[Any]:
    """Start ``argv`` (never a shell) in its own process group, dying with this process."""
    return subprocess.Popen(  # noqa: S603 - argv lists only, never a shell
        list(argv), stdin=stdin, stdout=stdout, stderr=stderr, text=text, errors="replace" if text else None,
        cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True,
        preexec_fn=_die_with_parent_preexec(),  # noqa: PLW1509 - a prctl, see above
    )


def kill_tree(proc: subprocess.Popen[Any], *, grace_s: float = 0.0) -> None:
    """Kill ``proc``'s process group (it leads one: ``spawn``), then reap ``proc``.

    With ``grace_s`` the group first gets SIGTERM and that long to clean up (envlock's own children
    remove their temp files on SIGTERM); whatever is left then gets SIGKILL."""
    if grace_s > 0 and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def signal_group(proc: subprocess.Popen[Any], signum: int) -> None:
    """Send ``signum`` to ``proc``'s whole process group (it leads one: ``spawn``); a group that is
    already gone, or one that is not ours to signal, is left alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def group_members(pgid: int) -> list[int]:
    """Processes (zombies included) in process group ``pgid``, from /proc; [] where there is none."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry))
    return members


def reap_orphans(pids: Sequence[int], *, timeout_s: float = 2.0) -> None:
    """Wait for killed grandchildren that were re-parented to this process.

    As PID 1 of a container (or a subreaper) a process inherits the orphans of a child group it
    killed; nobody else will ever wait for them, so each kill would leave a zombie behind. Only
    these pids are waited for, never -1: that would steal exit statuses from other threads'
    subprocesses. Elsewhere waitpid says "not my child" and the loop ends when init reaps them.
    """
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                reaped, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped = pid if not os.path.exists(f"/proc/{pid}") else 0  # gone, or someone else's
            if reaped:
                pending.discard(pid)
        if pending:
            time.sleep(0.02)


def end_group(proc: subprocess.Popen[Any], *, grace_s: float = 0.0) -> None:
    """Leave nothing of ``proc``'s group behind: ``kill_tree`` (SIGTERM and ``grace_s`` first, when
    given), then reap the group's other members where they were re-parented to this process."""
    leftovers = [pid for pid in group_members(proc.pid) if pid != proc.pid]
    kill_tree(proc, grace_s=grace_s)
    reap_orphans(leftovers)


def run_bounded(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
                grace_s: float = 0.0, stdout: IO[Any] | int = subprocess.PIPE,
                stderr: IO[Any] | int = subprocess.PIPE) -> CommandResult | None:
    """Run ``argv`` to completion (text output captured); ``None`` when it cannot start or runs past
    ``timeout``. A timeout, or any exception here (SIGTERM -> SystemExit, Ctrl-C), kills the child's
    whole process group before it propagates: nothing is left running."""
    try:
        proc = spawn(argv, env=env, stdout=stdout, stderr=stderr, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc, grace_s=grace_s)
        proc.communicate()
        return None
    except BaseException:
        kill_tree(proc, grace_s=grace_s)
        raise
    return CommandResult(proc.returncode, out or "", err or "")


def run_streaming(argv: Sequence[str], on_line: Callable[[str], None], *,
                  env: Mapping[str, str] | None = None) -> int:
    """Run ``argv`` to completion, handing each non-blank output line (stdout and stderr merged,
    trailing whitespace stripped) to ``on_line`` as it comes; returns the exit status. For long
    children whose progress a person watches (pip downloading wheels for minutes). Any exception
    here (Ctrl-C, SIGTERM -> SystemExit, one from ``on_line``) kills the child's whole process
    group before it propagates."""
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                on_line(line.rstrip())
        return proc.wait()
    except BaseException:
        kill_tree(proc)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


# ---- SIGTERM as a clean stop ------------------------------------------------------------------


class Terminated(SystemExit):
    """Raised in the main thread by ``stop_cleanly_on_sigterm``: unwinds ``with``/``finally``
    blocks (temp directories go, children are killed) before the process exits 128+SIGTERM."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise Terminated()


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C instead of ending the process on the spot (the default,
    which skips every cleanup). Only the main thread can install a handler; elsewhere a no-op."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _raise_terminated)


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Runner:
    """Real side effects. Every method returns ``None`` on failure instead of raising."""

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult | None:
        return run_bounded(argv, timeout=timeout, env=env)

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25) -> CommandResult | None:
        """Like ``run``, but calls ``watch()`` every ``interval`` s while the process runs and kills it
        when ``watch`` returns a reason (the caller keeps the reason). None: past ``timeout`` or not started.

        Output goes to temporary files, not pipes: a chatty child (TF logs) can never block on a full pipe.
        The child is ``spawn``ed (its own process group, dying with this process) and its whole group is
        killed when it is stopped, as every child of envlock is.
        """
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = spawn(argv, stdout=out, stderr=err, env=env)
            except OSError:
                return None
            deadline = time.monotonic() + timeout
            try:
                while True:
                    try:
                        proc.wait(timeout=interval)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if time.monotonic() > deadline:
                        return None
                    if watch() is not None:
                        kill_tree(proc)
                        break
            finally:
                if proc.poll() is None:  # past the deadline, or interrupted: never leave it running
                    kill_tree(proc)
            out.seek(0)
            err.seek(0)
            return CommandResult(proc.returncode, out.read().decode("utf-8", "replace"),
                                 err.read().decode("utf-8", "replace"))

    def read_text(self, path: str | Path) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, path: str | Path) -> bool:
        return Path(path).exists()

    def listdir(self, path: str | Path) -> list[str] | None:
        try:
            return sorted(p.name for p in Path(path).iterdir())
        except OSError:
            return None


@dataclass
class FakeRunner(Runner):
    """Replays recorded outputs: ``files`` maps path -> content, ``commands`` maps argv tuple -> result."""

    files: dict[str, str] = field(default_factory=dict)
    commands: dict[tuple[str, ...], CommandResult] = field(default_factory=dict)

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult | None:
        return self.commands.get(tuple(argv))

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25) -> CommandResult | None:
        return self.run(argv, timeout=timeout, env=env)

    def read_text(self, path: str | Path) -> str | None:
        return self.files.get(str(path))

    def exists(self, path: str | Path) -> bool:
        p = str(path)
        return p in self.files or any(k.startswith(p.rstrip("/") + "/") for k in self.files)

    def listdir(self, path: str | Path) -> list[str] | None:
        prefix = str(path).rstrip("/") + "/"
        names = {k[len(prefix):].split("/")[0] for k in self.files if k.startswith(prefix)}
        return sorted(names) if names else None
