"""The one seam for side effects on the outside world: subprocesses and reading system files.

Collectors take a ``Runner``; unit tests pass a ``FakeRunner`` fed with real captured outputs
from ``tests/data`` so parsing is tested on what real machines print.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias

from envlock.errors import EnvironmentProblem

OUTPUT_TAIL_BYTES = 64 * 1024  # what is kept of a watched child's stdout and of its stderr
MAX_CAPTURED_BYTES = 16 * 1024 * 1024  # a command whose whole output is parsed (getconf, pip's report)


def read_tail(handle: IO[bytes], limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a child's output file, decoded: a child printing gigabytes costs
    envlock no more memory than this."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - limit))
    return handle.read(limit).decode("utf-8", "replace")


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


Child = subprocess.Popen  # what ``spawn`` returns, for the modules that hold one


def wait_for(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """The child's exit status, or None (and its process group killed) when it runs past ``timeout``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        return None


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: Any = subprocess.DEVNULL,
          stdout: Any = None, stderr: Any = None, text: bool = False, cwd: str | Path | None = None,
          limits: ChildLimits | None = None, cgroup: TaskGroup | None = None) -> subprocess.Popen[Any]:
    """Start ``argv`` (never a shell) in its own process group, dying with this process.

    ``limits``: its data-segment limit and whether it is a subreaper (``ChildLimits``); ``cgroup``:
    the task group it joins before it runs anything, so nothing it starts can leave it."""
    return subprocess.Popen(  # noqa: S603 - argv lists only, never a shell
        list(argv), stdin=stdin, stdout=stdout, stderr=stderr, text=text, errors="replace" if text else None,
        cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True,
        preexec_fn=_child_preexec(limits, cgroup),  # noqa: PLW1509 - prctl, setrlimit, a cgroup write
    )


# ---- limits for children that run untrusted configuration (the probe child) -------------------
#
# A golden's environment reaches the probe child, and a user's probe module runs in it. Memory:
# RLIMIT_DATA (private writable memory), not RLIMIT_AS: TensorFlow and CUDA reserve huge virtual
# ranges they never touch, which RLIMIT_AS would count. Measured: a full verify child on 2 CPUs
# peaks at 0.84 GiB of data (0.79 GiB resident); thread stacks count too (8 MiB each). Processes:
# RLIMIT_NPROC counts every process of the user and root ignores it, so the limit is a pids cgroup
# of its own (``TaskGroup``: cgroup v1's pids hierarchy or a v2 group with the pids controller)
# where this process may create one; the same group lets the parent kill everything the child
# started, setsid'd or not. Where none is writable (a non-root user without delegation, most
# containers on cgroup v2) there is no process limit, and the child's subreaper role is what ends
# its descendants.

_PR_SET_CHILD_SUBREAPER = 36
GIB = 1024**3
MEMORY_LIMIT_ENV = "ENVLOCK_CHILD_MEMORY"  # e.g. 16G; 0 or "off": no limit
TASK_LIMIT_ENV = "ENVLOCK_CHILD_TASKS"  # pids.max of the child's group (threads count); 0 or "off": no limit
_SIZE = re.compile(r"([0-9]{1,15})\s*([KMGT]?)I?B?", re.IGNORECASE)


@dataclass(frozen=True)
class ChildLimits:
    memory_bytes: int | None  # RLIMIT_DATA; None: unlimited
    max_tasks: int | None  # pids.max where a cgroup can be made; None: unlimited
    subreaper: bool = True  # orphans of what the child started are re-parented to it, not to init


def default_child_limits(environ: Mapping[str, str]) -> ChildLimits:
    """16 GiB plus 64 MiB per CPU of data (about 20 times a verify child's), and 4096 tasks plus 16 per
    CPU (TF's thread pools: a golden may ask for 1024 intra- and inter-op threads), unless the
    environment says otherwise. A malformed setting is ValueError naming the variable."""
    cpus = os.cpu_count() or 1
    memory = _parse_limit(environ.get(MEMORY_LIMIT_ENV), 16 * GIB + cpus * 64 * 1024**2, MEMORY_LIMIT_ENV, sized=True)
    tasks = _parse_limit(environ.get(TASK_LIMIT_ENV), 4096 + 16 * cpus, TASK_LIMIT_ENV, sized=False)
    return ChildLimits(memory_bytes=memory, max_tasks=tasks)


def _parse_limit(text: str | None, default: int, name: str, *, sized: bool) -> int | None:
    if text is None or not text.strip():
        return default
    if text.strip().lower() in ("0", "off", "none", "unlimited"):
        return None
    match = _SIZE.fullmatch(text.strip()) if sized else re.fullmatch(r"[0-9]{1,9}", text.strip())
    if match is None:
        raise ValueError(f"{name}={text[:40]!r}: expected {'a size such as 16G' if sized else 'a count'}, "
                         "or 0 for no limit")
    number = int(match.group(1) if sized else match.group(0))
    return number * 1024 ** "BKMGT".index((match.group(2) or "B").upper()) if sized else number


def _child_preexec(limits: ChildLimits | None, cgroup: TaskGroup | None) -> Callable[[], None] | None:
    prctl, parent = _PRCTL, os.getpid()
    procs_fd = cgroup.procs_fd if cgroup is not None else None
    memory = limits.memory_bytes if limits is not None else None
    subreaper = limits is not None and limits.subreaper
    if prctl is None and memory is None and procs_fd is None:
        return None

    def preexec() -> None:  # in the child, between fork and exec: only system calls
        if procs_fd is not None:
            with contextlib.suppress(OSError):
                os.write(procs_fd, b"0")  # "0": the writing process joins the group
        if memory is not None:
            with contextlib.suppress(OSError, ValueError):
                hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
                cap = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
                resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        if prctl is not None:
            if subreaper:
                prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # kept across exec
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the prctl: nobody will ever wait for us
                os._exit(_KILLED_BEFORE_PRCTL_EXIT)

    return preexec


class TaskGroup:
    """A pids cgroup of one child's own, where this process may make one: a task limit, and a list
    of every process the child started that no setsid or double fork escapes. ``create`` returns
    None where no cgroup hierarchy is writable; then nothing here applies."""

    PREFIX = "envlock-"

    def __init__(self, path: Path, procs_fd: int) -> None:
        self.path, self.procs_fd = path, procs_fd

    @classmethod
    def create(cls, max_tasks: int | None) -> TaskGroup | None:
        parent = _own_pids_cgroup()
        if parent is None:
            return None
        path = parent / f"{cls.PREFIX}{os.getpid()}-{next(_GROUP_NUMBERS)}"
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            if max_tasks is not None:
                (path / "pids.max").write_text(str(max_tasks), encoding="ascii")
            fd = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path, fd)

    def members(self) -> list[int]:
        try:
            return [int(line) for line in (self.path / "cgroup.procs").read_text(encoding="ascii").split()]
        except (OSError, ValueError):
            return []

    def close(self, *, timeout_s: float = 5.0) -> None:
        """SIGKILL every process left in the group, reap the ones re-parented here, remove the group."""
        with contextlib.suppress(OSError):
            os.close(self.procs_fd)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            members = self.members()
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            reap_orphans(members, timeout_s=0.5)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


_GROUP_NUMBERS = itertools.count()
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_pids_cgroup() -> Path | None:
    """The cgroup directory of this process that has the pids controller and where we may make groups."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if "pids" in controllers.split(","):  # cgroup v1
            candidate = _CGROUP_ROOT / "pids" / relative.lstrip("/")
        elif controllers == "":  # cgroup v2: only where its children get the pids controller
            candidate = _CGROUP_ROOT / relative.lstrip("/")
            try:
                if "pids" not in (candidate / "cgroup.subtree_control").read_text(encoding="ascii").split():
                    continue
            except OSError:
                continue
        else:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    return None


def remove_stale_task_groups() -> None:
    """Remove the empty groups of envlock processes that died (SIGKILL) before removing their own."""
    parent = _own_pids_cgroup()
    if parent is None:
        return
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = _owner_pid(entry.name, TaskGroup.PREFIX)
            if owner is not None and not pid_alive(owner):
                with contextlib.suppress(OSError):
                    entry.rmdir()


def _owner_pid(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_private_dir(prefix: str) -> Path:
    """A new temp directory named after this process (``PREFIX<pid>-...``), so a later run can tell
    one whose owner died (``remove_stale_private_dirs``) from one in use."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_stale_private_dirs(prefix: str) -> None:
    """Remove ``prefix<pid>-*`` temp directories whose owner is dead: what a SIGKILLed run left behind.
    (An owner in another PID namespace sharing this TMPDIR looks dead: such a setup should not share it.)"""
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            owner = _owner_pid(entry.name, prefix)
            if owner is not None and owner != os.getpid() and not pid_alive(owner) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


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
                stderr: IO[Any] | int = subprocess.PIPE, output_limit: int = MAX_CAPTURED_BYTES,
                ) -> CommandResult | None:
    """Run ``argv`` to completion (text output captured: the last ``output_limit`` bytes of each
    stream); ``None`` when it cannot start or runs past ``timeout``. A timeout, or any exception
    here (SIGTERM -> SystemExit, Ctrl-C), kills the child's whole process group before it
    propagates: nothing is left running."""
    with contextlib.ExitStack() as files:
        captured_out = files.enter_context(tempfile.TemporaryFile()) if stdout == subprocess.PIPE else None
        captured_err = files.enter_context(tempfile.TemporaryFile()) if stderr == subprocess.PIPE else None
        try:
            proc = spawn(argv, env=env, stdout=captured_out or stdout, stderr=captured_err or stderr)
        except SPAWN_ERRORS:
            return None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc, grace_s=grace_s)
            return None
        except BaseException:
            kill_tree(proc, grace_s=grace_s)
            raise
        return CommandResult(proc.returncode,
                             read_tail(captured_out, output_limit) if captured_out is not None else "",
                             read_tail(captured_err, output_limit) if captured_err is not None else "")


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


class CouldNotStart(EnvironmentProblem):
    """A child whose program could not be started at all (not found, not executable): exit 3, at once."""

    def __init__(self, argv: Sequence[str], exc: BaseException, what: str | None = None) -> None:
        detail = f"{exc.strerror}: {exc.filename!r}" if isinstance(exc, OSError) and exc.strerror and \
            exc.filename else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        super().__init__(f"{what or (argv[0] if argv else 'the child')} could not start: {detail}")


class Runner:
    """Real side effects. Every method returns ``None`` on failure instead of raising."""

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult | None:
        return run_bounded(argv, timeout=timeout, env=env)

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Callable[[], str | None], interval: float = 0.25, cwd: str | Path | None = None,
                    limits: ChildLimits | None = None) -> CommandResult | None:
        """Like ``run``, but calls ``watch()`` every ``interval`` s while the process runs and kills it
        when ``watch`` returns a reason (the caller keeps the reason). None: past ``timeout``.
        Raises ``CouldNotStart`` (exit 3) when the program cannot be started at all.

        Output goes to temporary files, not pipes: a chatty child (TF logs) can never block on a full
        pipe, and only the last ``OUTPUT_TAIL_BYTES`` of each stream are read back. The child is
        ``spawn``ed (its own process group, dying with this process) with ``limits`` (and its own pids
        cgroup where one can be made); when it ends, however it ends, its whole group, and everything
        left in its cgroup, is killed.
        """
        group = TaskGroup.create(limits.max_tasks) if limits is not None else None
        try:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                try:
                    proc = spawn(argv, stdout=out, stderr=err, env=env, cwd=cwd, limits=limits, cgroup=group)
                except SPAWN_ERRORS as exc:
                    raise CouldNotStart(argv, exc, "the probe process") from None
                deadline = time.monotonic() + timeout
                # A subreaper child gets a moment to end what it started (its SIGTERM handler) where
                # no cgroup can do that for it.
                grace = 1.0 if limits is not None and limits.subreaper and group is None else 0.0
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
                            kill_tree(proc, grace_s=grace)
                            break
                finally:
                    if proc.poll() is None:  # past the deadline, or interrupted: never leave it running
                        kill_tree(proc, grace_s=grace)
                    else:
                        signal_group(proc, signal.SIGKILL)  # what it left in its process group
                return CommandResult(proc.returncode, read_tail(out), read_tail(err))
        finally:
            if group is not None:
                group.close()

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
                    watch: Callable[[], str | None], interval: float = 0.25, cwd: str | Path | None = None,
                    limits: ChildLimits | None = None) -> CommandResult | None:
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
