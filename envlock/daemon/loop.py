"""The watch loop: run the checks when the schedule says, publish their results, stop cleanly.

The loop is the daemon's SINGLE WRITER. Which thread owns what:

* the main thread runs the loop (``Watcher.run``) and alone writes the daemon's state (the
  ``DaemonState`` on the ``StateBoard``: the golden, what its last passing verify vouched for,
  every result, the schedule /status shows) and the loop's own ``Schedule``; it writes the check
  log lines and the NFD file (``Publisher``). It runs the cheap fingerprint check itself, re-reads
  a changed golden, starts a child check when one is due and publishes every result, its own and
  the workers'.
* the verify worker (at most one, ``envlock-verify``) and the cores worker (``envlock-cores``,
  with ``--cores-every``), never both at once (``daemon.workers``): each waits for its child and
  hands the result to the loop. The loop drops a verify of a golden it has replaced meanwhile
  (history only).
* the health watchdog (``envlock-health``): health can turn by time alone (a check overdue
  because the loop is wedged), and then nothing publishes; it logs that and rewrites the NFD file.
* HTTP threads (``daemon.http``) and the metrics collector only read the current ``DaemonState``.
* signal handlers (``request_stop``) only set events. The loop then stops the children's process
  groups, stops HTTP, closes the history and returns 0. Should anything hold the loop, a
  backstop thread kills the children and exits FORCED_STOP_EXIT STOP_DEADLINE_S after the
  signal: not a clean stop, so not 0.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from envlock.daemon.board import StateBoard
from envlock.daemon.checks import Capture, Diff, capture_without_tf, fingerprint_check
from envlock.daemon.config import WatchConfig
from envlock.daemon.goldens import BoundedGoldenLoader, stat_key
from envlock.daemon.history import open_history
from envlock.daemon.http import HttpServer
from envlock.daemon.log import JsonLog, log_to_fd2
from envlock.daemon.metrics import Metrics
from envlock.daemon.process import VerifyRunner
from envlock.daemon.publish import Publisher
from envlock.daemon.results import CheckResult
from envlock.daemon.schedule import ChildKind, Schedule, age_if_fresh
from envlock.daemon.state import DaemonState
from envlock.daemon.workers import ChildWorkers
from envlock.diff import diff_manifests
from envlock.errors import DRIFT, ENVIRONMENT, OK, EnvlockError

# After SIGTERM the daemon stops cleanly (verify killed after its grace, HTTP stopped, database
# closed); should anything hold the main thread past this, it exits anyway, with this code:
# something on this machine (a wedged mount, a process that cannot be killed) kept it from
# stopping cleanly, and the supervisor should hear so (README's exit codes: 3, environment).
STOP_DEADLINE_S = 15.0
FORCED_STOP_EXIT = ENVIRONMENT



class Stopping:
    """The stop request (set from anywhere: signal handlers, tests) and the forced-stop backstop."""

    def __init__(self, kill_children: Callable[[], None]) -> None:
        self.requested = threading.Event()
        self.wake = threading.Event()  # the loop's wait: a stop, a worker's result, a due check
        self.done = threading.Event()
        self.kill_children = kill_children
        self._backstop_armed = False

    def request(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Signal-handler safe: sets events; the main thread does the work. From a signal, a
        backstop thread also makes sure the process is gone within STOP_DEADLINE_S."""
        self.requested.set()
        self.wake.set()
        if signum is not None and not self._backstop_armed:
            self._backstop_armed = True
            threading.Thread(target=self._exit_if_still_stopping, name="envlock-stop-backstop", daemon=True).start()

    def _exit_if_still_stopping(self) -> None:
        if self.done.wait(STOP_DEADLINE_S):
            return
        self.kill_children()
        # straight to fd 2: whatever holds the main thread may hold the log's lock too
        log_to_fd2("stop_forced", reason=f"still stopping {STOP_DEADLINE_S:g} s after the signal",
                   exit_code=FORCED_STOP_EXIT)
        os._exit(FORCED_STOP_EXIT)

    def wait(self, timeout: float) -> None:
        self.wake.wait(timeout=max(0.0, timeout))
        self.wake.clear()


class GoldenFile:
    """The golden file, re-read when it changes (on the loop)."""

    def __init__(self, config: WatchConfig, board: StateBoard, loader: BoundedGoldenLoader, log: JsonLog) -> None:
        self.config, self.board, self.loader, self.log = config, board, loader, log

    def reload_if_changed(self) -> bool:
        """Reload the golden when its file changed; True when it is another golden (digest). One
        that cannot be loaded (whatever it is: a FIFO, /dev/zero, 100k levels of nesting, a huge
        file) is reported in health, /status and the log, and the checks go on against the last
        good golden until the file is fixed."""
        path, before = self.config.golden_path, self.board.state.golden
        if stat_key(path) == before.stat_key:
            return False
        try:
            golden = self.loader.load(path, self.config.trusted_keys)
        except EnvlockError as exc:
            self._set_error(str(exc))
            return False
        self._set_error(None)
        self.board.set_golden(golden)
        if golden.digest == before.digest:
            return False
        self.log("golden_reloaded", golden=str(path), golden_digest=golden.digest)
        return True

    def _set_error(self, error: str | None) -> None:
        if error == self.board.state.golden_error:
            return  # logged once per new problem, not once per check
        self.board.set_golden_error(error)
        if error is not None:
            self.log("golden_rejected", golden=str(self.config.golden_path), error=error,
                     still_using=self.board.state.golden_digest)


class Restore:
    """What a restart keeps: a child check from before it, adopted while it is fresh."""

    def __init__(self, config: WatchConfig, board: StateBoard, publisher: Publisher) -> None:
        self.config, self.board, self.publisher = config, board, publisher
        self.log = publisher.log
        # The last fingerprint check of the previous process: a verify is reused after a restart only
        # if this process's first fingerprint check sees the same machine.
        self.fingerprint_before = board.history.last("fingerprint")

    def verify(self, first: CheckResult, now: float) -> float:
        """When the first verify is due (monotonic ``now``). The last verify is adopted if it was for
        this golden, is still fresh, and the machine did not change across the restart, so a restart
        does not cost a full TF verify (nor hide a failing one). Decided after the first fingerprint
        check (``first``): when its digest differs from the previous process's last one (restarted
        with another setting, image or library), the old verify says nothing about this machine
        (nor its numeric class): verify now."""
        last = self.board.history.last("verify")
        before = self.fingerprint_before.fingerprint_digest if self.fingerprint_before else None
        changed = before is not None and first.fingerprint_digest is not None and before != first.fingerprint_digest
        if changed and last is not None:
            self.log("not_restored", kind="verify", reason="this machine's fingerprint changed across the restart",
                     fingerprint_digest_before=before, fingerprint_digest=first.fingerprint_digest)
        age = age_if_fresh(last, now=time.time(), every=self.config.verify_every)
        if last is None or age is None or last.golden_digest != self.board.state.golden_digest or changed:
            return now  # due right after the first fingerprint check
        self.board.restore(last)
        self.log("restored", kind="verify", outcome=last.outcome, age_s=round(age, 3))
        self.publisher.write_nfd(*self.board.health())
        return now + self.config.verify_every - age

    def cores(self, now: float) -> float:
        """As ``verify``: a cores check from before a restart is adopted while it is fresh (a
        restart must not cost a TF import per CPU). The golden plays no part in it."""
        last = self.board.history.last("cores")
        age = age_if_fresh(last, now=time.time(), every=self.config.cores_every)
        if last is None or age is None:
            return now
        self.board.restore(last)
        self.log("restored", kind="cores", outcome=last.outcome, age_s=round(age, 3))
        return now + self.config.cores_every - age


class ChildChecks:
    """The checks run as a child (verify, cores), from the loop's side: start one when the
    schedule says, publish what their workers hand over."""

    def __init__(self, config: WatchConfig, board: StateBoard, publisher: Publisher, stopping: Stopping) -> None:
        self.config, self.board, self.publisher, self.stopping = config, board, publisher, stopping
        self.workers = ChildWorkers(wake=stopping.wake.set)

    def start_if_due(self, kind: ChildKind, schedule: Schedule) -> Schedule:
        if self.stopping.requested.is_set() or not schedule.child_due(kind, time.monotonic()):
            return schedule
        verify = kind == "verify"
        self.workers.start(VerifyRunner(
            self.config.verify_command if verify else self.config.cores_command, kind=kind, env=self.config.environ,
            timeout_s=self.config.verify_timeout if verify else self.config.cores_timeout,
            golden_digest=self.board.state.golden_digest,
        ))
        if verify:
            self.board.set_verify_running(True)
        return schedule.started(kind)

    def take_results(self, schedule: Schedule) -> Schedule:
        for done in self.workers.take():
            if done.result is None:
                reason = "stopping" if done.kind == "cores" or self.stopping.requested.is_set() else "golden changed"
                self.publisher.log(f"{done.kind}_abandoned", reason=reason)
            elif not self.stopping.requested.is_set():
                publish = self.publisher.publish_verify if done.kind == "verify" else self.publisher.publish
                publish(done.result)
            schedule = schedule.finished(done.kind, time.monotonic(), self.config)
            if done.kind == "verify":
                self.board.set_verify_running(False)
        return schedule


class Watcher:
    """Runs the checks on schedule until stopped. ``capture``/``diff`` replace the fingerprint
    check's (unit tests); the steps of the loop are public for tests that play the loop."""

    def __init__(self, config: WatchConfig, *, log: JsonLog | None = None, capture: Capture | None = None,
                 diff: Diff | None = None) -> None:
        self.config = config
        self.log = log or JsonLog()
        self.capture: Capture = capture or capture_without_tf
        self.diff: Diff = diff or diff_manifests
        self.stopping = Stopping(kill_children=lambda: self.children.workers.kill_now())
        self.golden_loader = BoundedGoldenLoader(stop=self.stopping.requested)
        # Everything that can fail on bad input fails here, before a port is bound.
        golden = self.golden_loader.load(config.golden_path, config.trusted_keys)
        self.history = open_history(config.state_dir)
        last = self.history.last_passing("verify", golden.digest)
        self.board = StateBoard(DaemonState(
            golden_path=str(config.golden_path), golden=golden,
            vouched=frozenset(last.vouched) if last else frozenset(),
            fingerprint_every=config.fingerprint_every,
            verify_timeout=config.verify_timeout if config.verify_every > 0 else None,
        ), self.history)
        self.metrics = Metrics(lambda: self.board.state)
        self.publisher = Publisher(self.board, self.log, config)
        self.children = ChildChecks(config, self.board, self.publisher, self.stopping)
        self.golden_file = GoldenFile(config, self.board, self.golden_loader, self.log)
        self.restore = Restore(config, self.board, self.publisher)
        self.schedule = Schedule()
        self.http: HttpServer | None = None
        self._restore_decided = False
        self._last_drift_paths: frozenset[str] = frozenset()

    # ---- lifecycle -----------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.request(signum, frame)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (returns 0) or, with ``once``, run each check once (0 healthy, 1 not)."""
        if self.config.cores_every > 0:  # the verify: after the first fingerprint check
            self.schedule = self.schedule.due_at("cores", self.restore.cores(time.monotonic()))
        if self.config.listen is not None:
            self.http = HttpServer(self.board, self.metrics, *self.config.listen)  # EnvironmentProblem: port busy
            self.http.start()
        host, port = self.http.address if self.http else (None, None)
        self.log(
            "started", pid=os.getpid(), golden=str(self.config.golden_path),
            golden_digest=self.board.state.golden_digest, state_db=str(self.history.path),
            listen=f"{host}:{port}" if host else None,
            fingerprint_every_s=self.config.fingerprint_every,
            verify_every_s=self.config.verify_every or None, verify_timeout_s=self.config.verify_timeout,
            cores_every_s=self.config.cores_every or None,
        )
        try:
            if self.config.once:
                self._run_once()
            else:
                threading.Thread(target=self.publisher.watch_health, args=(self.stopping.requested,),
                                 name="envlock-health", daemon=True).start()
                self._loop()
        finally:
            self._shutdown()
            self.stopping.done.set()
        healthy, _ = self.board.health()
        return OK if healthy or not self.config.once else DRIFT

    def _loop(self) -> None:
        while not self.stopping.requested.is_set():
            self.take_results()
            if self.schedule.fingerprint_due(time.monotonic()):
                self.fingerprint_now()
                self.schedule = self.schedule.fingerprint_done(time.monotonic(), self.config)
            for kind in ("verify", "cores"):
                self.schedule = self.children.start_if_due(kind, self.schedule)
            self.board.set_next_due(self.schedule.next_due(time.time() - time.monotonic(), self.config))
            self.stopping.wait(self.schedule.wakeup() - time.monotonic())

    def _run_once(self) -> None:
        self.fingerprint_now()
        for kind in ("verify", "cores"):
            every = self.config.verify_every if kind == "verify" else self.config.cores_every
            if every <= 0 or self.stopping.requested.is_set() or self.board.last(kind) is not None:
                continue
            vouched_before = self.board.state.vouched
            self.schedule = self.schedule.due_at(kind, time.monotonic())
            self.schedule = self.children.start_if_due(kind, self.schedule)
            while not self.stopping.requested.is_set() and self._running(kind):
                self.stopping.wait(0.5)
                self.take_results()
            last = self.board.last("fingerprint")
            if kind == "verify" and self.board.state.vouched != vouched_before and last is not None \
                    and not last.ok and not self.stopping.requested.is_set():
                self.fingerprint_now()  # the verify just vouched for differences it failed on

    def _running(self, kind: ChildKind) -> bool:
        return self.schedule.verify_running if kind == "verify" else self.schedule.cores_running

    def _shutdown(self) -> None:
        self.log("stopping")
        self.children.workers.stop()
        self.take_results()  # what the workers handed over: nothing is published while stopping
        if self.http is not None:
            self.http.stop()
        self.history.close()
        self.log("stopped")

    # ---- the steps of the loop -----------------------------------------------------------

    def fingerprint_now(self) -> None:
        """Re-read the golden if its file changed, run the fingerprint check and publish it."""
        if self.golden_file.reload_if_changed():
            self.schedule = self.schedule.golden_changed(time.monotonic(), self.config)
            self.children.workers.cancel("verify")  # it is checking the old golden
        state = self.board.state
        result = fingerprint_check(state.golden.manifest, golden_digest=state.golden_digest,
                                   environ=self.config.environ, vouched=state.vouched, capture=self.capture,
                                   diff=self.diff)
        self.publisher.publish(result)
        if not self._restore_decided:
            self._restore_decided = True
            if self.config.verify_every > 0:
                self.schedule = self.schedule.due_at("verify", self.restore.verify(result, time.monotonic()))
        paths = frozenset(item.path for item in result.drift)
        if paths and paths != self._last_drift_paths:
            now = time.monotonic()
            sooner = self.schedule.verify_brought_forward(now, self.config)
            if sooner is not None and sooner.next_verify is not None:
                self.schedule = sooner
                self.log("verify_brought_forward", in_s=round(sooner.next_verify - time.monotonic(), 3))
        self._last_drift_paths = paths

    def take_results(self) -> None:
        """Publish what the workers handed over (unless stopping), and schedule the next check."""
        self.schedule = self.children.take_results(self.schedule)


@dataclass(frozen=True)
class WatchOutcome:
    """How the daemon ended: its exit code and what it last knew (``--once`` prints it)."""

    exit_code: int
    healthy: bool
    reason: str
    fingerprint: CheckResult | None
    verify: CheckResult | None
    cores: CheckResult | None = None


def run_watch(config: WatchConfig, *, log: JsonLog | None = None) -> WatchOutcome:
    """Entry point for the CLI: set up (bad golden/state dir -> exit 2, busy port -> exit 3), run, outcome."""
    watcher = Watcher(config, log=log)
    watcher.install_signal_handlers()
    code = watcher.run()
    healthy, reason = watcher.board.health()
    board = watcher.board
    return WatchOutcome(code, healthy, reason, board.last("fingerprint"), board.last("verify"), board.last("cores"))
