"""What the daemon currently believes: ONE immutable value, replaced (never changed) by the loop.

``DaemonState`` is a frozen dataclass. The loop, the single writer, makes the next one from the
current one (``adopt``, ``with_golden``, ...) and publishes it (``daemon.board``); every other
thread (HTTP handlers, the metrics collector, the health watchdog, NFD) reads whichever value is
current, whole and consistent, without a lock. Nothing it holds is kept anywhere else.

Health rule (documented in ``envlock watch --help`` and the README):

* no fingerprint check has finished yet            -> unhealthy, "no check yet";
* the last fingerprint check did not pass           -> unhealthy, its reason;
* the golden file was replaced by one that cannot be loaded -> unhealthy, naming it (the checks
  go on against the last good golden);
* a check is overdue: no fingerprint check finished for 3 intervals (+30 s), or a verify runs
  past its time limit (+30 s): the loop is wedged  -> unhealthy, "... overdue";
* a verify check has run for the current golden and
  the last one did not pass (drift, error, timeout) -> unhealthy, its reason;
* otherwise healthy. A verify that has not run yet does not make the node unhealthy, but the
  NFD label ``envlock.reproduces`` is only ``true`` once a verify has passed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.results import CheckKind, CheckResult, Outcome

# A fingerprint check is overdue when none has finished for OVERDUE_FACTOR intervals plus the
# slack (a capture takes a second or two, more on a loaded node); a verify when it runs past its
# time limit plus the slack (the limit kills it, with a grace to clean up, well within that).
OVERDUE_FACTOR = 3
OVERDUE_SLACK_S = 30.0


def _without(results: Mapping[CheckKind, CheckResult], kind: CheckKind) -> dict[CheckKind, CheckResult]:
    return {k: v for k, v in results.items() if k != kind}


@dataclass(frozen=True)
class DaemonState:
    """The daemon's state at one instant. Mappings are never changed in place: a change is a new value."""

    golden_path: str
    golden: LoadedGolden  # the last good golden: what the checks run against
    # The schedule, to tell a check that is overdue (a wedged loop, a verify the time limit did not
    # stop) from one that is merely not due yet. None: never overdue.
    fingerprint_every: float | None = None
    verify_timeout: float | None = None
    started_at: float = field(default_factory=time.time)
    golden_error: str | None = None  # the golden file on disk cannot be loaded (checks go on against ``golden``)
    # differences (keys) the last passing verify of this golden saw while its probes reproduced
    vouched: frozenset[str] = frozenset()
    # the result of each kind that counts now (a verify of an earlier golden does not)
    current: Mapping[CheckKind, CheckResult] = field(default_factory=dict)
    # the last conclusive (pass or drift) result of each kind: its drift list is the truth for its kind
    conclusive: Mapping[CheckKind, CheckResult] = field(default_factory=dict)
    # the last result of each kind this process adopted, whichever golden it was for (the per-kind series)
    latest: Mapping[CheckKind, CheckResult] = field(default_factory=dict)
    # the last conclusive verify this process ran (not one restored from the history): the probe series
    probes_from: CheckResult | None = None
    # checks run by this process, by kind and outcome (restored ones are not counted)
    counts: Mapping[tuple[CheckKind, Outcome], int] = field(default_factory=dict)
    verify_running_since: float | None = None  # epoch seconds
    next_due: Mapping[str, float | None] = field(default_factory=dict)  # epoch seconds, None: not scheduled
    history_error: str | None = None  # why the last check could not be recorded (None: it was)

    @property
    def golden_digest(self) -> str:
        return self.golden.digest

    # ---- the next state ------------------------------------------------------------------

    def is_stale(self, result: CheckResult) -> bool:
        """A verify of another golden than the current one (it finished while the golden was being
        replaced): served, it would vouch for a golden it never checked."""
        return result.kind == "verify" and result.golden_digest != self.golden_digest

    def adopt(self, result: CheckResult, *, counted: bool = True) -> DaemonState:
        """``result`` as the current one of its kind. ``counted``: a check this process ran (not
        one restored from the history after a restart), so it counts in ``envlock_checks_total``,
        its probes are exported, and a passing verify vouches for the differences it saw."""
        kind, key = result.kind, (result.kind, result.outcome)
        ran_verify = counted and kind == "verify"
        return dataclasses.replace(
            self, current={**self.current, kind: result}, latest={**self.latest, kind: result},
            conclusive={**self.conclusive, kind: result} if result.conclusive else self.conclusive,
            counts={**self.counts, key: self.counts.get(key, 0) + 1} if counted else self.counts,
            probes_from=result if ran_verify and result.conclusive else self.probes_from,
            vouched=frozenset(result.vouched) if ran_verify and result.ok else self.vouched,
        )

    def with_golden(self, golden: LoadedGolden, *, vouched: frozenset[str]) -> DaemonState:
        """A new golden: results against the old one no longer say anything about this one (nor
        its numeric class: a class is over the golden's probes)."""
        return dataclasses.replace(
            self, golden=golden, vouched=vouched, current=_without(self.current, "verify"),
            conclusive=_without(self.conclusive, "verify"),
        )

    def with_golden_file(self, golden: LoadedGolden) -> DaemonState:
        """The same golden (same digest) read again from a rewritten file."""
        return dataclasses.replace(self, golden=golden)

    def with_golden_error(self, error: str | None) -> DaemonState:
        return dataclasses.replace(self, golden_error=error)

    def with_history_error(self, error: str | None) -> DaemonState:
        return dataclasses.replace(self, history_error=error)

    def with_verify_running(self, since: float | None) -> DaemonState:
        return dataclasses.replace(self, verify_running_since=since)

    def with_next_due(self, next_due: Mapping[str, float | None]) -> DaemonState:
        return dataclasses.replace(self, next_due=dict(next_due))

    # ---- reading -------------------------------------------------------------------------

    def last(self, kind: CheckKind) -> CheckResult | None:
        return self.current.get(kind)

    @property
    def numeric(self) -> CheckResult | None:
        """The last conclusive verify of the current golden when it reported a numeric class (what
        ``envlock_numeric_class``, the NFD class labels and /status's ``numeric_class`` show)."""
        verify = self.conclusive.get("verify")
        return verify if verify is not None and verify.numeric_class and verify.numeric_profile else None

    def health(self, now: float) -> tuple[bool, str]:
        """(healthy, reason) at ``now`` (epoch seconds): time alone can make a check overdue."""
        fingerprint = self.current.get("fingerprint")
        if fingerprint is None:
            return False, "no check yet"
        if self.golden_error is not None:
            return False, (f"cannot reload the golden: {self.golden_error} (checks continue against the last good "
                           f"golden, {self.golden_digest})")
        overdue = self._overdue(fingerprint, now)
        if overdue is not None:
            return False, overdue
        if not fingerprint.ok:
            return False, f"fingerprint {fingerprint.outcome}: {fingerprint.reason}"
        verify = self.current.get("verify")
        if verify is not None and not verify.ok:
            return False, f"verify {verify.outcome}: {verify.reason}"
        return True, "ok"

    def _overdue(self, fingerprint: CheckResult, now: float) -> str | None:
        every = self.fingerprint_every
        if every is not None:
            limit = OVERDUE_FACTOR * every + OVERDUE_SLACK_S
            if now - (fingerprint.started_at + fingerprint.duration_s) > limit:
                return f"fingerprint check overdue: none finished in the last {limit:g} s (every {every:g} s)"
        since, timeout = self.verify_running_since, self.verify_timeout
        if since is not None and timeout is not None and now - since > timeout + OVERDUE_SLACK_S:
            return f"verify overdue: still running past its {timeout:g} s time limit"
        return None

    def reproduces(self, now: float) -> bool:
        """True only when the last fingerprint AND a verify for this golden both passed."""
        verify = self.current.get("verify")
        return self.health(now)[0] and verify is not None and verify.ok
