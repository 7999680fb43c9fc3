"""When each check runs next: a pure value the loop holds and replaces (no clock, no thread).

Times are ``time.monotonic()`` seconds, given by the caller (``now``); intervals come from the
``WatchConfig`` given to each call, read afresh every time. Rules:

* the fingerprint check runs every ``fingerprint_every``, timed from the end of the last one;
* at most one child check (verify or cores) runs at a time: never two TensorFlow children at
  once; one that is due while the other runs starts when that one ends (its result wakes the
  loop, not the clock: ``wakeup`` ignores a child check while either runs);
* a verify is due ``verify_every`` after the last one ended; a new golden makes it due now (or,
  while one runs, right after it: that one checks the old golden); a NEW fingerprint drift brings
  it forward, but not closer than ``reverify_min_interval`` to the end of the last one;
* a cores check is due ``cores_every`` after the last one ended.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from envlock.daemon.config import WatchConfig
from envlock.daemon.results import CheckKind, CheckResult

ChildKind = CheckKind  # "verify" or "cores": the checks run as a child process


def age_if_fresh(result: CheckResult | None, *, now: float, every: float) -> float | None:
    """Seconds since ``result`` (a check from before a restart) ended, when that is less than
    ``every``: then it is adopted instead of run again. ``now``: epoch seconds."""
    if result is None:
        return None
    age = now - (result.started_at + result.duration_s)
    return age if 0 <= age < every else None


@dataclass(frozen=True)
class Schedule:
    next_fingerprint: float = 0.0  # due at once
    next_verify: float | None = None  # None: not scheduled (disabled, running, or not decided yet)
    next_cores: float | None = None
    verify_running: bool = False
    cores_running: bool = False
    last_verify_end: float = float("-inf")
    rerun_verify: bool = False  # the golden changed while a verify ran: run it again when it ends

    # ---- what is due ---------------------------------------------------------------------

    @property
    def child_running(self) -> bool:
        return self.verify_running or self.cores_running

    def fingerprint_due(self, now: float) -> bool:
        return now >= self.next_fingerprint

    def child_due(self, kind: ChildKind, now: float) -> bool:
        """``kind`` may start now: it is due and no child check runs."""
        due = self.next_verify if kind == "verify" else self.next_cores
        return due is not None and now >= due and not self.child_running

    def wakeup(self) -> float:
        """When the loop must look again (a due child check waiting for the other one is woken by
        that one's result, not by the clock)."""
        candidates = [self.next_fingerprint]
        if not self.child_running:
            candidates += [t for t in (self.next_verify, self.next_cores) if t is not None]
        return min(candidates)

    def next_due(self, offset: float, config: WatchConfig) -> dict[str, float | None]:
        """What /status shows: each check's next start in epoch seconds (``offset``: epoch minus
        monotonic); None while it runs or is not scheduled; cores only with ``--cores-every``."""
        def at(when: float | None, running: bool) -> float | None:
            return when + offset if when is not None and not running else None

        due = {"fingerprint": self.next_fingerprint + offset, "verify": at(self.next_verify, self.verify_running)}
        if config.cores_every > 0:
            due["cores"] = at(self.next_cores, self.cores_running)
        return due

    # ---- the next schedule ---------------------------------------------------------------

    def fingerprint_done(self, now: float, config: WatchConfig) -> Schedule:
        return dataclasses.replace(self, next_fingerprint=now + config.fingerprint_every)

    def due_at(self, kind: ChildKind, when: float | None) -> Schedule:
        if kind == "verify":
            return dataclasses.replace(self, next_verify=when)
        return dataclasses.replace(self, next_cores=when)

    def started(self, kind: ChildKind) -> Schedule:
        if kind == "verify":
            return dataclasses.replace(self, verify_running=True, next_verify=None)
        return dataclasses.replace(self, cores_running=True, next_cores=None)

    def finished(self, kind: ChildKind, now: float, config: WatchConfig) -> Schedule:
        if kind == "cores":
            due = now + config.cores_every if config.cores_every > 0 else self.next_cores
            return dataclasses.replace(self, cores_running=False, next_cores=due)
        every = 0.0 if self.rerun_verify else config.verify_every
        return dataclasses.replace(
            self, verify_running=False, rerun_verify=False, last_verify_end=now,
            next_verify=now + every if config.verify_every > 0 else self.next_verify,
        )

    def golden_changed(self, now: float, config: WatchConfig) -> Schedule:
        """A new golden: verify it now, or right after the running verify (of the old one) ends."""
        return dataclasses.replace(self, rerun_verify=self.verify_running,
                                   next_verify=now if config.verify_every > 0 else self.next_verify)

    def verify_brought_forward(self, now: float, config: WatchConfig) -> Schedule | None:
        """Something changed: let the full check say whether it matters, soon (rate-limited).
        None when that would not make the next verify any sooner."""
        if config.verify_every <= 0 or self.verify_running or self.next_verify is None:
            return None
        due = max(now, self.last_verify_end + config.reverify_min_interval)
        return dataclasses.replace(self, next_verify=due) if due < self.next_verify else None
