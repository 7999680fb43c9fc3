"""The watch loop: schedule the two checks, publish results (history, metrics, NFD, log), stop cleanly.

Threads: the main thread runs the schedule and the cheap fingerprint check; a verify check runs
on a worker thread that only waits for its child process, so fingerprint checks and HTTP keep
going during a long verify. Signal handlers only set an event; the main thread then kills a
running verify child's process group, stops HTTP, closes the database and returns 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from envlock.daemon import nfd
from envlock.daemon.checks import VERIFY_STOP_GRACE_S, VerifyRunner, fingerprint_check
from envlock.daemon.history import History, open_history
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import CheckResult
from envlock.daemon.state import DaemonState
from envlock.errors import BadFileError, BadInputError, EnvlockError
from envlock.store import os_problem

# After SIGTERM the daemon stops cleanly (verify killed after its grace, HTTP stopped, database
# closed); should anything hold the main thread past this, it exits anyway.
STOP_DEADLINE_S = 15.0

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h|d)", re.ASCII)
_PLAIN_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Every duration option lies in this range (0 only where an option says it disables something):
# long enough that the daemon is not a busy loop, short enough that a deadline computed from it
# (a timestamp, an NFD expiry) can never overflow.
MIN_DURATION_S = 0.1
MAX_DURATION_S = 30 * 86400.0


def parse_duration(text: str, *, option: str, allow_zero: bool = False) -> float:
    """``30s``, ``5m``, ``6h``, ``1h30m``, ``500ms`` or plain seconds (``0.5``) -> seconds.

    ASCII digits only (no ``1_0``, no full-width digits, no exponent, no ``inf``), and within
    MIN_DURATION_S..MAX_DURATION_S (or exactly 0 with ``allow_zero``): BadInputError otherwise."""
    value = text.strip().lower()
    if _PLAIN_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise BadInputError(f"{option} {text!r}: expected a duration like 30s, 5m, 6h or 1h30m")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds == 0 and allow_zero:
        return 0.0
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        zero = "0 or " if allow_zero else ""
        raise BadInputError(f"{option} {text!r}: must be {zero}between {MIN_DURATION_S:g}s and 30d")
    return seconds


def default_state_dir() -> Path:
    if os.environ.get("ENVLOCK_STATE_DIR"):
        return Path(os.environ["ENVLOCK_STATE_DIR"])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/envlock")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "envlock"


def verify_argv(golden: Path, command: str | None, trusted_key_files: Sequence[Path] = ()) -> list[str]:
    """The verify child's argv. A custom command is split like a shell would (no shell runs it);
    ``{golden}`` anywhere in it is replaced by the golden's path. The child re-reads the golden, so
    it is given the daemon's trusted keys too: a swap between the daemon's check and the child's
    read is refused by the child as well."""
    if command is None:
        keys = [arg for path in trusted_key_files for arg in ("--trusted-key", str(path))]
        return [sys.executable, "-m", "envlock", "verify", str(golden), "--json", *keys]
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BadInputError(f"--verify-command: {exc}") from None
    if not argv:
        raise BadInputError("--verify-command: empty command")
    return [part.replace("{golden}", str(golden)) for part in argv]


@dataclass
class WatchConfig:
    golden_path: Path
    state_dir: Path
    # The daemon's environment as it STARTED (snapshot taken by the CLI before any capture): both
    # checks use it, never os.environ, which the capture's imports write to (KMP_DUPLICATE_LIB_OK).
    environ: dict[str, str]
    fingerprint_every: float = 60.0
    verify_every: float = 6 * 3600.0  # 0 disables the verify check
    verify_timeout: float = 15 * 60.0
    listen: tuple[str, int] | None = ("127.0.0.1", 9109)  # None: no HTTP (--once)
    nfd_features_file: Path | None = None
    trusted_keys: tuple[Any, ...] = ()  # envlock.signing.TrustedKey: each (re)loaded golden must be signed
    verify_command: list[str] = field(default_factory=list)
    once: bool = False
    # a NEW fingerprint drift brings the next verify forward, but not closer than this to the last
    reverify_min_interval: float = 600.0


@dataclass(frozen=True)
class LoadedGolden:
    manifest: Any
    digest: str
    stat_key: tuple[int, int, int]


def load_golden_file(path: Path, trusted_keys: tuple[Any, ...] = ()) -> LoadedGolden:
    """Load and integrity-check the golden (BadFileError -> exit 2 at start); with ``trusted_keys``
    also its signature (a swap to a golden they did not sign is refused like any bad golden)."""
    from envlock.golden import load_golden

    key = _stat_key(path)  # before reading: a replace during the read is then seen by the next check
    golden = load_golden(path)  # sealed: always has a digest, or raises
    if trusted_keys:
        from envlock.signing import check_signature

        check_signature(golden, path, trusted_keys)
    # no stat (the file appeared during the read): a key no file has, so the next check re-reads it
    return LoadedGolden(manifest=golden.manifest, digest=golden.digest, stat_key=key or (0, 0, 0))


# The daemon reads a replaced golden by itself, whatever the reader below it does: only a regular
# file, at most this big, and on another thread for at most this long, so a FIFO, /dev/zero or a
# wedged mount can never stop the checks or the handling of SIGTERM.
MAX_GOLDEN_BYTES = 64 * 1024 * 1024
GOLDEN_LOAD_TIMEOUT_S = 10.0


class BoundedGoldenLoader:
    """``load_golden_file`` off the calling thread, bounded in time, size and kind of file.

    Every failure is a ``BadFileError`` naming the file (exit 2 at start; a reported, survived
    error on reload). A read that does not finish is abandoned on its daemon thread, and no new
    read starts until it ends: a stuck file never piles up threads."""

    def __init__(self, *, timeout_s: float = GOLDEN_LOAD_TIMEOUT_S, stop: threading.Event | None = None) -> None:
        self.timeout_s = timeout_s
        self._stop = stop or threading.Event()
        self._stuck: threading.Thread | None = None

    def load(self, path: Path, trusted_keys: tuple[Any, ...] = ()) -> LoadedGolden:
        if self._stuck is not None and self._stuck.is_alive():
            raise BadFileError(path, "an earlier read of it is still stuck; not reading it again until that ends")
        self._check_kind(path)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["golden"] = load_golden_file(path, trusted_keys)
            except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError, ...: reported below
                box["error"] = exc

        thread = threading.Thread(target=work, name="envlock-golden-load", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.timeout_s
        while thread.is_alive() and time.monotonic() < deadline and not self._stop.is_set():
            thread.join(timeout=0.1)
        if thread.is_alive():
            self._stuck = thread
            raise BadFileError(path, f"reading it did not finish within {self.timeout_s:g} s")
        error = box.get("error")
        if error is None:
            return box["golden"]
        if isinstance(error, EnvlockError):
            raise error
        if isinstance(error, OSError):
            raise BadFileError(path, error.strerror or type(error).__name__)
        raise BadFileError(path, f"cannot be loaded ({type(error).__name__})")

    @staticmethod
    def _check_kind(path: Path) -> None:
        try:
            st = os.stat(path)
        except (OSError, ValueError) as exc:
            raise BadFileError(path, os_problem(exc, "read it")) from None
        if not stat.S_ISREG(st.st_mode):
            raise BadFileError(path, "not a regular file (a FIFO, device or directory is never read)")
        if st.st_size > MAX_GOLDEN_BYTES:
            raise BadFileError(path, f"too large ({st.st_size} bytes; a golden is at most {MAX_GOLDEN_BYTES})")


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class JsonLog:
    """One JSON object per line on stderr: what a log shipper wants."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
        with self._lock:
            self.stream.write(json.dumps(record, sort_keys=False, default=str) + "\n")
            self.stream.flush()


class Watcher:
    """Runs the checks on schedule until stopped. ``capture``/``diff`` are replaceable for unit tests."""

    def __init__(
        self, config: WatchConfig, *, log: JsonLog | None = None,
        capture: Callable[[Mapping[str, str]], Any] | None = None, diff: Callable[[Any, Any], list[Any]] | None = None,
    ) -> None:
        self.config = config
        self.log = log or JsonLog()
        self._check_hooks: dict[str, Any] = {k: v for k, v in (("capture", capture), ("diff", diff)) if v}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        # ``golden`` and ``_vouched`` change together (reload on the main thread, a passing verify
        # on the worker): under this lock, so a verify of the old golden never applies to the new one.
        self._golden_lock = threading.Lock()
        self._verify_thread: threading.Thread | None = None
        self._verify_runner: VerifyRunner | None = None
        self._verify_rerun = False
        self._next_fingerprint = 0.0
        self._next_verify: float | None = None
        self._last_verify_end = float("-inf")
        self._last_drift_paths: frozenset[str] = frozenset()
        self._stopped = threading.Event()
        self._stop_backstop_armed = False
        self._nfd_lock = threading.Lock()
        self._nfd_health: tuple[bool, str] | None = None
        self._golden_error: str | None = None
        self._golden_loader = BoundedGoldenLoader(stop=self._stop)
        # Everything that can fail on bad input fails here, before a port is bound.
        self.golden = self._golden_loader.load(config.golden_path, config.trusted_keys)
        self.history: History = open_history(config.state_dir)
        self.metrics = Metrics()
        self.state = DaemonState(
            history=self.history, metrics=self.metrics, golden_path=str(config.golden_path),
            golden_digest=self.golden.digest, fingerprint_every=config.fingerprint_every,
            verify_timeout=config.verify_timeout if config.verify_every > 0 else None,
        )
        self.http: Any = None
        self._vouched = self._vouched_for(self.golden.digest)

    def _vouched_for(self, golden_digest: str) -> frozenset[str]:
        """Differences the last passing verify of this golden saw while its probes reproduced."""
        last = self.history.last_passing("verify", golden_digest)
        return frozenset(last.vouched) if last else frozenset()

    # ---- lifecycle -----------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """Signal-handler safe: sets events; the main thread does the work. From a signal, a
        backstop thread also makes sure the process is gone within STOP_DEADLINE_S."""
        self._stop.set()
        self._wake.set()
        if signum is not None and not self._stop_backstop_armed:
            self._stop_backstop_armed = True
            threading.Thread(target=self._exit_if_still_stopping, name="envlock-stop-backstop", daemon=True).start()

    def _exit_if_still_stopping(self) -> None:
        if self._stopped.wait(STOP_DEADLINE_S):
            return
        runner = self._verify_runner
        if runner is not None:
            runner.kill_now()
        # straight to fd 2: whatever holds the main thread may hold the log's lock too
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": "stop_forced",
                  "reason": f"still stopping {STOP_DEADLINE_S:g} s after the signal"}
        with contextlib.suppress(OSError):
            os.write(2, (json.dumps(record) + "\n").encode())
        os._exit(0)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def start_http(self) -> None:
        if self.config.listen is None:
            return
        from envlock.daemon.http import HttpServer

        self.http = HttpServer(self.state, *self.config.listen)  # EnvironmentProblem when the port is busy
        self.http.start()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (returns 0) or, with ``once``, run each check once (0 healthy, 1 not)."""
        self._restore_verify()
        self.start_http()
        host, port = self.http.address if self.http else (None, None)
        self.log(
            "started", pid=os.getpid(), golden=str(self.config.golden_path), golden_digest=self.golden.digest,
            state_db=str(self.history.path), listen=f"{host}:{port}" if host else None,
            fingerprint_every_s=self.config.fingerprint_every,
            verify_every_s=self.config.verify_every or None, verify_timeout_s=self.config.verify_timeout,
        )
        try:
            if self.config.once:
                self._run_once()
            else:
                threading.Thread(target=self._watch_health, name="envlock-health", daemon=True).start()
                self._loop()
        finally:
            self._shutdown()
            self._stopped.set()
        healthy, _ = self.state.health()
        return 0 if healthy or not self.config.once else 1

    def _watch_health(self) -> None:
        """Health can turn by time alone (a check overdue because the loop is wedged): then
        nothing publishes, so this thread logs it and rewrites the NFD labels."""
        period = min(max(self.config.fingerprint_every, 0.5), 5.0)
        while not self._stop.wait(period):
            healthy, reason = self.state.health()
            with self._nfd_lock:
                changed = self._nfd_health is not None and self._nfd_health != (healthy, reason)
            if changed and "overdue" in reason:
                self.log("health", healthy=healthy, reason=reason)
                self._write_nfd(healthy, reason)

    def _verify_enabled(self) -> bool:
        return self.config.verify_every > 0

    def _restore_verify(self) -> None:
        """After a restart, adopt the last verify if it was for this golden and is still fresh,
        so a restart does not cost a full TF verify (nor hide a failing one)."""
        if not self._verify_enabled():
            return
        last = self.history.last("verify")
        now = time.monotonic()
        if last is not None and last.golden_digest == self.golden.digest:
            age = time.time() - (last.started_at + last.duration_s)
            if 0 <= age < self.config.verify_every:
                self.state.restore(last)
                self._next_verify = now + self.config.verify_every - age
                self.log("restored", kind="verify", outcome=last.outcome, age_s=round(age, 3))
                return
        self._next_verify = now  # due right after the first fingerprint check

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self._next_fingerprint:
                self._fingerprint_tick()
                self._next_fingerprint = time.monotonic() + self.config.fingerprint_every
            self._maybe_start_verify()
            self._publish_schedule()
            self._wake.wait(timeout=max(0.0, self._next_wakeup() - time.monotonic()))
            self._wake.clear()

    def _next_wakeup(self) -> float:
        with self._lock:
            candidates = [self._next_fingerprint]
            if self._next_verify is not None and self._verify_thread is None:
                candidates.append(self._next_verify)
        return min(candidates)

    def _publish_schedule(self) -> None:
        offset = time.time() - time.monotonic()
        self.state.set_next_due("fingerprint", self._next_fingerprint + offset)
        with self._lock:
            nv = self._next_verify if self._verify_thread is None else None
        self.state.set_next_due("verify", nv + offset if nv is not None else None)

    def _run_once(self) -> None:
        self._fingerprint_tick()
        if self._verify_enabled() and not self._stop.is_set() and self.state.last("verify") is None:
            vouched_before = self._vouched
            self._next_verify = time.monotonic()
            self._maybe_start_verify()
            while not self._stop.is_set():
                with self._lock:
                    thread = self._verify_thread
                if thread is None:
                    break
                self._wake.wait(timeout=0.5)
                self._wake.clear()
            last = self.state.last("fingerprint")
            if self._vouched != vouched_before and last is not None and not last.ok and not self._stop.is_set():
                self._fingerprint_tick()  # the verify just vouched for differences it failed on

    def _shutdown(self) -> None:
        self.log("stopping")
        with self._lock:
            runner, thread = self._verify_runner, self._verify_thread
        if runner is not None:
            runner.cancel()  # kills the child's whole process group
        if thread is not None:
            thread.join(timeout=VERIFY_STOP_GRACE_S + 5)
        if self.http is not None:
            self.http.stop()
        self.history.close()
        self.log("stopped")

    # ---- checks --------------------------------------------------------------------------

    def _reload_golden_if_changed(self) -> None:
        """Reload the golden when its file changed. One that cannot be loaded (whatever it is: a
        FIFO, /dev/zero, 100k levels of nesting, a huge file) is reported in health, /status and
        the log, and the checks go on against the last good golden until the file is fixed."""
        path = self.config.golden_path
        key = _stat_key(path)
        if key == self.golden.stat_key:
            return
        try:
            golden = self._golden_loader.load(path, self.config.trusted_keys)
        except EnvlockError as exc:
            self._set_golden_error(str(exc))
            return
        self._set_golden_error(None)
        with self._golden_lock:
            changed = golden.digest != self.golden.digest
            self.golden = golden
            if changed:
                self.state.set_golden(golden.digest)
                self._vouched = self._vouched_for(golden.digest)
        if changed:
            self.log("golden_reloaded", golden=str(path), golden_digest=golden.digest)
            with self._lock:
                runner = self._verify_runner
                self._verify_rerun = runner is not None
                if self._verify_enabled():
                    self._next_verify = time.monotonic()
            if runner is not None:
                runner.cancel()  # it is checking the old golden

    def _set_golden_error(self, error: str | None) -> None:
        if error == self._golden_error:
            return  # logged once per new problem, not once per check
        self._golden_error = error
        self.state.set_golden_error(error)
        if error is not None:
            self.log("golden_rejected", golden=str(self.config.golden_path), error=error,
                     still_using=self.golden.digest)

    def _fingerprint_tick(self) -> None:
        self._reload_golden_if_changed()
        with self._golden_lock:
            golden, vouched = self.golden, self._vouched
        result = fingerprint_check(
            golden.manifest, golden_digest=golden.digest, environ=self.config.environ, vouched=vouched,
            **self._check_hooks,
        )
        self._publish(result)
        paths = frozenset(item.path for item in result.drift)
        if paths and paths != self._last_drift_paths:
            self._bring_verify_forward()
        self._last_drift_paths = paths

    def _bring_verify_forward(self) -> None:
        """Something changed: let the full check say whether it matters, soon (rate-limited)."""
        if not self._verify_enabled():
            return
        with self._lock:
            if self._verify_thread is not None or self._next_verify is None:
                return
            due = max(time.monotonic(), self._last_verify_end + self.config.reverify_min_interval)
            if due < self._next_verify:
                self._next_verify = due
                self.log("verify_brought_forward", in_s=round(due - time.monotonic(), 3))

    def _maybe_start_verify(self) -> None:
        with self._lock:
            due = self._next_verify
            if self._verify_thread is not None or due is None or time.monotonic() < due or self._stop.is_set():
                return
            runner = VerifyRunner(
                self.config.verify_command, timeout_s=self.config.verify_timeout, golden_digest=self.golden.digest,
                env=self.config.environ,
            )
            thread = threading.Thread(target=self._verify_worker, args=(runner,), name="envlock-verify", daemon=True)
            self._verify_runner, self._verify_thread = runner, thread
            self._next_verify = None
        self.state.set_verify_running(True)
        thread.start()

    def _verify_worker(self, runner: VerifyRunner) -> None:
        try:
            result = runner.run()
        except Exception as exc:  # noqa: BLE001 - never let a verify bug kill the daemon's worker silently
            result = CheckResult(
                kind="verify", started_at=time.time(), duration_s=0.0, outcome="error",
                reason=f"verify runner failed: {type(exc).__name__}: {exc}", golden_digest=runner.golden_digest,
            )
        try:
            if result is None:
                self.log("verify_abandoned", reason="stopping" if self._stop.is_set() else "golden changed")
            elif not self._stop.is_set():
                self._publish_verify(result)
        finally:
            self._verify_finished()

    def _publish_verify(self, result: CheckResult) -> None:
        """Publish a verify unless the golden was replaced since it started (it finished just
        before the reload could cancel it): then it says nothing about the current golden, so it
        goes to the history only. Under the golden lock, so a reload cannot slip in between."""
        with self._golden_lock:
            current = self.golden.digest
            if result.golden_digest != current:
                check_id = self.state.apply(result)  # history only: state drops a stale verify
                self.log("verify_stale", check_id=check_id, outcome=result.outcome,
                         golden_digest=result.golden_digest, current_golden_digest=current)
                return
            if result.ok:
                self._vouched = frozenset(result.vouched)
            self._publish(result)

    def _verify_finished(self) -> None:
        """Bookkeeping that must happen however the worker ends, or verify would never run again."""
        with self._lock:
            self._last_verify_end = time.monotonic()
            self._verify_runner = self._verify_thread = None
            rerun, self._verify_rerun = self._verify_rerun, False
            if self._verify_enabled():
                self._next_verify = time.monotonic() + (0.0 if rerun else self.config.verify_every)
        self.state.set_verify_running(False)
        self._wake.set()

    def _publish(self, result: CheckResult) -> None:
        """History (durable first), then metrics/state, the log line and the NFD file."""
        with self._publish_lock:
            check_id = self.state.apply(result)
            if check_id is None:
                self.log("history_write_failed", error=self.state.history_error)
            healthy, health_reason = self.state.health()
            self.log(
                "check", check_id=check_id, kind=result.kind, outcome=result.outcome, ok=result.ok,
                duration_s=round(result.duration_s, 4), reason=result.reason,
                drift=[item.path for item in result.drift], tolerated=len(result.tolerated), exit_code=result.exit_code,
                fingerprint_digest=result.fingerprint_digest, healthy=healthy, health_reason=health_reason,
            )
            self._write_nfd(healthy, health_reason)

    def _write_nfd(self, healthy: bool, reason: str) -> None:
        with self._nfd_lock:
            self._nfd_health = (healthy, reason)
            self._write_nfd_locked(healthy)

    def _write_nfd_locked(self, healthy: bool) -> None:
        path = self.config.nfd_features_file
        if path is None:
            return
        fingerprint = self.state.last("fingerprint")
        verify = self.state.last("verify")
        features = nfd.feature_lines(
            reproduces=self.state.reproduces(), healthy=healthy,
            fingerprint_digest=fingerprint.fingerprint_digest if fingerprint else None,
            golden_digest=self.state.golden_digest, verify_outcome=verify.outcome if verify else None,
        )
        # labels outlive a dead daemon by at most a few check periods
        ttl = max(5 * self.config.fingerprint_every, 300.0)
        try:
            nfd.write_features(path, features, expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl))
        except OSError as exc:
            self.log("nfd_write_failed", path=str(path), error=str(exc))


def run_watch(config: WatchConfig, *, log: JsonLog | None = None) -> int:
    """Entry point for the CLI: set up (bad golden/state dir -> exit 2, busy port -> exit 3), run, exit code."""
    watcher = Watcher(config, log=log)
    watcher.install_signal_handlers()
    return watcher.run()
