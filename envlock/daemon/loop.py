"""The watch loop: schedule the checks, publish their results, stop cleanly.

The loop is the daemon's SINGLE WRITER. Which thread owns what:

* the main thread runs the loop (``Watcher.run``) and alone writes the daemon's state: the
  current golden and the differences its last passing verify vouched for, the schedule, the
  ``DaemonState`` (and through it the history database and the metrics), the check log lines and
  the NFD file. It runs the cheap fingerprint check itself, re-reads a changed golden, starts a
  verify when one is due and publishes every result, its own and the verify worker's.
* the verify worker (at most one, ``envlock-verify``) only runs ``VerifyRunner.run()``, i.e.
  waits for the verify child, so fingerprint checks and HTTP keep going during a long verify. It
  hands what it learned to the loop over ``_results`` (a ``queue.Queue``) and wakes it; it writes
  nothing else. The loop drops a verify of a golden it has replaced meanwhile (history only).
* the cores worker (``envlock-cores``, with ``--cores-every``): the same for ``envlock cores --json``,
  over the same queue; it never runs while the verify worker does, nor the verify worker while it does.
* the health watchdog (``envlock-health``): health can turn by time alone (a check overdue
  because the loop is wedged), and then nothing publishes; it logs that and rewrites the NFD
  file. The NFD file is the one thing with two writers, so ``_nfd_lock`` orders the two.
* HTTP threads (``daemon.http``) only read the ``DaemonState``, which locks itself for them.
* signal handlers (``request_stop``) only set events. The loop then stops the verify child's
  process group, stops HTTP, closes the history and returns 0. Should anything hold the loop,
  a backstop thread kills the verify group and exits FORCED_STOP_EXIT STOP_DEADLINE_S after the
  signal: not a clean stop, so not 0.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from envlock.daemon import nfd
from envlock.daemon.checks import cores_crashed, fingerprint_check, verify_crashed
from envlock.daemon.config import WatchConfig
from envlock.daemon.goldens import BoundedGoldenLoader, stat_key
from envlock.daemon.history import History, open_history
from envlock.daemon.http import HttpServer
from envlock.daemon.log import JsonLog, log_to_fd2
from envlock.daemon.metrics import Metrics
from envlock.daemon.process import VERIFY_STOP_GRACE_S, VerifyRunner
from envlock.daemon.results import CheckKind, CheckResult
from envlock.daemon.state import DaemonState
from envlock.errors import DRIFT, ENVIRONMENT, OK, EnvlockError

# After SIGTERM the daemon stops cleanly (verify killed after its grace, HTTP stopped, database
# closed); should anything hold the main thread past this, it exits anyway, with this code:
# something on this machine (a wedged mount, a process that cannot be killed) kept it from
# stopping cleanly, and the supervisor should hear so (README's exit codes: 3, environment).
STOP_DEADLINE_S = 15.0
FORCED_STOP_EXIT = ENVIRONMENT
# A check's log line names this many drifted paths and counts them all (a golden with 20,000
# differing distributions made each line 600 KB); /drift has the full list.
LOG_DRIFT_PATHS = 5


@dataclass(frozen=True)
class VerifyDone:
    """What the verify worker (or the cores worker: ``kind``) hands to the loop: what it learned
    (None: cancelled, because the daemon is stopping or the golden changed)."""

    result: CheckResult | None
    kind: CheckKind = "verify"


class Watcher:
    """Runs the checks on schedule until stopped. ``capture``/``diff`` are replaceable for unit tests."""

    def __init__(
        self, config: WatchConfig, *, log: JsonLog | None = None,
        capture: Callable[[Mapping[str, str]], Any] | None = None, diff: Callable[[Any, Any], list[Any]] | None = None,
    ) -> None:
        self.config = config
        self.log = log or JsonLog()
        self._check_hooks: dict[str, Any] = {k: v for k, v in (("capture", capture), ("diff", diff)) if v}
        # set from anywhere (signal handlers, tests), read by every thread
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._stop_backstop_armed = False
        # the verify worker -> the loop
        self._results: queue.Queue[VerifyDone] = queue.Queue()
        # the loop's own (no other thread writes them; the backstop only reads _verify_runner)
        self._verify_thread: threading.Thread | None = None
        self._verify_runner: VerifyRunner | None = None
        self._verify_rerun = False
        # the cores check (--cores-every): a child like verify's, never at the same time as a verify
        self._cores_thread: threading.Thread | None = None
        self._cores_runner: VerifyRunner | None = None
        self._next_cores: float | None = None
        self._next_fingerprint = 0.0
        self._next_verify: float | None = None
        self._last_verify_end = float("-inf")
        self._last_drift_paths: frozenset[str] = frozenset()
        self._golden_error: str | None = None
        # the NFD file: written by the loop after each check, and by the watchdog when the loop is wedged
        self._nfd_lock = threading.Lock()
        self._nfd_health: tuple[bool, str] | None = None
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
        self.http: HttpServer | None = None
        self._vouched = self._vouched_for(self.golden.digest)
        # The last fingerprint check of the previous process: a verify is reused after a restart only
        # if this process's first fingerprint check sees the same machine (see _restore_verify).
        self._fingerprint_before = self.history.last("fingerprint")
        self._restore_decided = False

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
        for runner in (self._verify_runner, self._cores_runner):
            if runner is not None:
                runner.kill_now()
        # straight to fd 2: whatever holds the main thread may hold the log's lock too
        log_to_fd2("stop_forced", reason=f"still stopping {STOP_DEADLINE_S:g} s after the signal",
                   exit_code=FORCED_STOP_EXIT)
        os._exit(FORCED_STOP_EXIT)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def start_http(self) -> None:
        if self.config.listen is None:
            return
        self.http = HttpServer(self.state, *self.config.listen)  # EnvironmentProblem when the port is busy
        self.http.start()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (returns 0) or, with ``once``, run each check once (0 healthy, 1 not)."""
        self._restore_cores()  # the verify: after the first fingerprint check (_restore_verify)
        self.start_http()
        host, port = self.http.address if self.http else (None, None)
        self.log(
            "started", pid=os.getpid(), golden=str(self.config.golden_path), golden_digest=self.golden.digest,
            state_db=str(self.history.path), listen=f"{host}:{port}" if host else None,
            fingerprint_every_s=self.config.fingerprint_every,
            verify_every_s=self.config.verify_every or None, verify_timeout_s=self.config.verify_timeout,
            cores_every_s=self.config.cores_every or None,
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
        return OK if healthy or not self.config.once else DRIFT

    def _watch_health(self) -> None:
        """The watchdog thread (see the module docstring)."""
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

    def _restore_verify(self, first: CheckResult) -> None:
        """After a restart, adopt the last verify if it was for this golden, is still fresh, and the
        machine did not change across the restart, so a restart does not cost a full TF verify (nor
        hide a failing one). Decided after the first fingerprint check (``first``): when its digest
        differs from the previous process's last one (restarted with another setting, image or
        library), the old verify says nothing about this machine (nor its numeric class): verify now."""
        if not self._verify_enabled():
            return
        last = self.history.last("verify")
        now = time.monotonic()
        before = self._fingerprint_before.fingerprint_digest if self._fingerprint_before else None
        changed = before is not None and first.fingerprint_digest is not None and before != first.fingerprint_digest
        if changed and last is not None:
            self.log("not_restored", kind="verify", reason="this machine's fingerprint changed across the restart",
                     fingerprint_digest_before=before, fingerprint_digest=first.fingerprint_digest)
        if last is not None and last.golden_digest == self.golden.digest and not changed:
            age = time.time() - (last.started_at + last.duration_s)
            if 0 <= age < self.config.verify_every:
                self.state.restore(last)
                self._next_verify = now + self.config.verify_every - age
                self.log("restored", kind="verify", outcome=last.outcome, age_s=round(age, 3))
                self._write_nfd(*self.state.health())
                return
        self._next_verify = now  # due right after the first fingerprint check

    def _cores_enabled(self) -> bool:
        return self.config.cores_every > 0

    def _restore_cores(self) -> None:
        """As ``_restore_verify``: a cores check from before a restart is adopted while it is fresh
        (a restart must not cost a TF import per CPU). The golden plays no part in it."""
        if not self._cores_enabled():
            return
        last = self.history.last("cores")
        now = time.monotonic()
        if last is not None:
            age = time.time() - (last.started_at + last.duration_s)
            if 0 <= age < self.config.cores_every:
                self.state.restore(last)
                self._next_cores = now + self.config.cores_every - age
                self.log("restored", kind="cores", outcome=last.outcome, age_s=round(age, 3))
                return
        self._next_cores = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take_verify_results()
            if time.monotonic() >= self._next_fingerprint:
                self._fingerprint_tick()
                self._next_fingerprint = time.monotonic() + self.config.fingerprint_every
            self._maybe_start_verify()
            self._maybe_start_cores()
            self._publish_schedule()
            self._wake.wait(timeout=max(0.0, self._next_wakeup() - time.monotonic()))
            self._wake.clear()

    def _next_wakeup(self) -> float:
        candidates = [self._next_fingerprint]
        # A check waiting for the other's child to end is woken by that child's result, not by the clock.
        busy = self._verify_thread is not None or self._cores_thread is not None
        if self._next_verify is not None and not busy:
            candidates.append(self._next_verify)
        if self._next_cores is not None and not busy:
            candidates.append(self._next_cores)
        return min(candidates)

    def _publish_schedule(self) -> None:
        offset = time.time() - time.monotonic()
        self.state.set_next_due("fingerprint", self._next_fingerprint + offset)
        nv = self._next_verify if self._verify_thread is None else None
        self.state.set_next_due("verify", nv + offset if nv is not None else None)
        if self._cores_enabled():
            nc = self._next_cores if self._cores_thread is None else None
            self.state.set_next_due("cores", nc + offset if nc is not None else None)

    def _run_once(self) -> None:
        self._fingerprint_tick()
        if self._verify_enabled() and not self._stop.is_set() and self.state.last("verify") is None:
            vouched_before = self._vouched
            self._next_verify = time.monotonic()
            self._maybe_start_verify()
            while not self._stop.is_set() and self._verify_thread is not None:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                self._take_verify_results()
            last = self.state.last("fingerprint")
            if self._vouched != vouched_before and last is not None and not last.ok and not self._stop.is_set():
                self._fingerprint_tick()  # the verify just vouched for differences it failed on
        if self._cores_enabled() and not self._stop.is_set() and self.state.last("cores") is None:
            self._next_cores = time.monotonic()
            self._maybe_start_cores()
            while not self._stop.is_set() and self._cores_thread is not None:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                self._take_verify_results()

    def _shutdown(self) -> None:
        self.log("stopping")
        for runner, thread in ((self._verify_runner, self._verify_thread), (self._cores_runner, self._cores_thread)):
            if runner is not None:
                runner.cancel()  # kills the child's whole process group
            if thread is not None:
                thread.join(timeout=VERIFY_STOP_GRACE_S + 5)
        self._take_verify_results()  # what the worker handed over: nothing is published while stopping
        if self.http is not None:
            self.http.stop()
        self.history.close()
        self.log("stopped")

    # ---- the golden ----------------------------------------------------------------------

    def _reload_golden_if_changed(self) -> None:
        """Reload the golden when its file changed. One that cannot be loaded (whatever it is: a
        FIFO, /dev/zero, 100k levels of nesting, a huge file) is reported in health, /status and
        the log, and the checks go on against the last good golden until the file is fixed."""
        path = self.config.golden_path
        if stat_key(path) == self.golden.stat_key:
            return
        try:
            golden = self._golden_loader.load(path, self.config.trusted_keys)
        except EnvlockError as exc:
            self._set_golden_error(str(exc))
            return
        self._set_golden_error(None)
        changed = golden.digest != self.golden.digest
        self.golden = golden
        if not changed:
            return
        self.state.set_golden(golden.digest)
        self._vouched = self._vouched_for(golden.digest)
        self.log("golden_reloaded", golden=str(path), golden_digest=golden.digest)
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

    # ---- checks --------------------------------------------------------------------------

    def _fingerprint_tick(self) -> None:
        self._reload_golden_if_changed()
        result = fingerprint_check(
            self.golden.manifest, golden_digest=self.golden.digest, environ=self.config.environ,
            vouched=self._vouched, **self._check_hooks,
        )
        self._publish(result)
        if not self._restore_decided:
            self._restore_decided = True
            self._restore_verify(result)
        paths = frozenset(item.path for item in result.drift)
        if paths and paths != self._last_drift_paths:
            self._bring_verify_forward()
        self._last_drift_paths = paths

    def _bring_verify_forward(self) -> None:
        """Something changed: let the full check say whether it matters, soon (rate-limited)."""
        if not self._verify_enabled() or self._verify_thread is not None or self._next_verify is None:
            return
        due = max(time.monotonic(), self._last_verify_end + self.config.reverify_min_interval)
        if due < self._next_verify:
            self._next_verify = due
            self.log("verify_brought_forward", in_s=round(due - time.monotonic(), 3))

    def _maybe_start_verify(self) -> None:
        due = self._next_verify
        if self._verify_thread is not None or due is None or time.monotonic() < due or self._stop.is_set():
            return
        if self._cores_thread is not None:
            return  # never two TensorFlow children at once: it starts when the cores check ends
        runner = VerifyRunner(
            self.config.verify_command, timeout_s=self.config.verify_timeout, golden_digest=self.golden.digest,
            env=self.config.environ,
        )
        thread = threading.Thread(target=self._verify_worker, args=(runner,), name="envlock-verify", daemon=True)
        self._verify_runner, self._verify_thread = runner, thread
        self._next_verify = None
        self.state.set_verify_running(True)
        thread.start()

    def _maybe_start_cores(self) -> None:
        due = self._next_cores
        if self._cores_thread is not None or self._verify_thread is not None or due is None \
                or time.monotonic() < due or self._stop.is_set():
            return
        runner = VerifyRunner(self.config.cores_command, timeout_s=self.config.cores_timeout,
                              golden_digest=self.golden.digest, env=self.config.environ, kind="cores")
        thread = threading.Thread(target=self._verify_worker, args=(runner,), name="envlock-cores", daemon=True)
        self._cores_runner, self._cores_thread = runner, thread
        self._next_cores = None
        thread.start()

    def _verify_worker(self, runner: VerifyRunner) -> None:
        """A worker thread (verify or cores): run the child, hand the result to the loop. Whatever
        happens, the loop hears of it, or that check would never run again."""
        result: CheckResult | None = None
        try:
            result = runner.run()
        except Exception as exc:  # noqa: BLE001 - never let a verify bug kill the daemon's worker silently
            crashed = cores_crashed if runner.kind == "cores" else verify_crashed
            result = crashed(exc, golden_digest=runner.golden_digest)
        finally:
            self._results.put(VerifyDone(result, runner.kind))
            self._wake.set()

    def _take_verify_results(self) -> None:
        """On the loop: publish what the verify worker handed over, and schedule the next verify."""
        while True:
            try:
                done = self._results.get_nowait()
            except queue.Empty:
                return
            if done.kind == "cores":
                if done.result is None:
                    self.log("cores_abandoned", reason="stopping")
                elif not self._stop.is_set():
                    self._publish(done.result)
                self._cores_finished()
                continue
            if done.result is None:
                self.log("verify_abandoned", reason="stopping" if self._stop.is_set() else "golden changed")
            elif not self._stop.is_set():
                self._publish_verify(done.result)
            self._verify_finished()

    def _publish_verify(self, result: CheckResult) -> None:
        """Publish a verify unless the golden was replaced since it started (it finished just
        before the reload could cancel it): then it says nothing about the current golden, so it
        goes to the history only."""
        current = self.golden.digest
        if result.golden_digest != current:
            check_id = self.state.apply(result)  # history only: state drops a stale verify
            self.log("verify_stale", check_id=check_id, outcome=result.outcome,
                     golden_digest=result.golden_digest, current_golden_digest=current)
            return
        if result.ok:
            self._vouched = frozenset(result.vouched)
        self._publish(result)

    def _cores_finished(self) -> None:
        self._cores_runner = self._cores_thread = None
        if self._cores_enabled():
            self._next_cores = time.monotonic() + self.config.cores_every

    def _verify_finished(self) -> None:
        self._last_verify_end = time.monotonic()
        self._verify_runner = self._verify_thread = None
        rerun, self._verify_rerun = self._verify_rerun, False
        if self._verify_enabled():
            self._next_verify = time.monotonic() + (0.0 if rerun else self.config.verify_every)
        self.state.set_verify_running(False)

    def _publish(self, result: CheckResult) -> None:
        """History (durable first), then metrics/state, the log line and the NFD file."""
        check_id = self.state.apply(result)
        if check_id is None:
            self.log("history_write_failed", error=self.state.history_error)
        healthy, health_reason = self.state.health()
        self.log(
            "check", check_id=check_id, kind=result.kind, outcome=result.outcome, ok=result.ok,
            duration_s=round(result.duration_s, 4), reason=result.reason,
            drift=[item.path for item in result.drift[:LOG_DRIFT_PATHS]], drift_total=len(result.drift),
            tolerated=len(result.tolerated), exit_code=result.exit_code,
            fingerprint_digest=result.fingerprint_digest, healthy=healthy, health_reason=health_reason,
        )
        self._write_nfd(healthy, health_reason)

    def _write_nfd(self, healthy: bool, reason: str) -> None:
        """The loop (after each check) and the watchdog (loop wedged) both write the labels."""
        with self._nfd_lock:
            self._nfd_health = (healthy, reason)
            path = self.config.nfd_features_file
            if path is None:
                return
            fingerprint = self.state.last("fingerprint")
            verify = self.state.last("verify")
            numeric = self.state.numeric()
            cores = self.state.last("cores")
            features = nfd.feature_lines(
                reproduces=self.state.reproduces(), healthy=healthy,
                fingerprint_digest=fingerprint.fingerprint_digest if fingerprint else None,
                golden_digest=self.state.golden_digest, verify_outcome=verify.outcome if verify else None,
                numeric_class=numeric.numeric_class if numeric else None,
                numeric_profile=numeric.numeric_profile if numeric else None,
                cores_healthy=cores.ok if cores is not None and cores.conclusive else None,
            )
            # labels outlive a dead daemon by at most a few check periods
            ttl = max(5 * self.config.fingerprint_every, 300.0)
            try:
                nfd.write_features(path, features, expires_at=datetime.now(timezone.utc) + timedelta(seconds=ttl))
            except OSError as exc:
                self.log("nfd_write_failed", path=str(path), error=str(exc))


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
    healthy, reason = watcher.state.health()
    return WatchOutcome(code, healthy, reason, watcher.state.last("fingerprint"), watcher.state.last("verify"),
                        watcher.state.last("cores"))
