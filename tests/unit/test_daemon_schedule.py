"""The daemon's schedule as a pure value: what is due when, with no clock, thread or process."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.daemon.config import WatchConfig
from envlock.daemon.results import CheckResult
from envlock.daemon.schedule import Schedule, age_if_fresh


def _config(**overrides: object) -> WatchConfig:
    config = WatchConfig(golden_path=Path("g.json"), state_dir=Path("s"), environ={}, fingerprint_every=60.0,
                         verify_every=3600.0, reverify_min_interval=600.0, cores_every=0.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_the_fingerprint_check_is_due_at_once_then_every_interval_after_it_ended() -> None:
    schedule = Schedule()
    assert schedule.fingerprint_due(0.0)
    schedule = schedule.fingerprint_done(5.0, _config())
    assert not schedule.fingerprint_due(64.9) and schedule.fingerprint_due(65.0)
    assert schedule.wakeup() == 65.0


def test_never_two_children_at_once_and_a_waiting_one_is_woken_by_the_result_not_the_clock() -> None:
    config = _config(cores_every=1800.0)
    schedule = Schedule().due_at("verify", 10.0).due_at("cores", 10.0).fingerprint_done(0.0, config)
    assert schedule.child_due("verify", 10.0) and schedule.child_due("cores", 10.0)
    schedule = schedule.started("verify")
    assert schedule.verify_running and schedule.next_verify is None
    assert not schedule.child_due("cores", 20.0)  # due, but the verify's child runs
    assert schedule.wakeup() == 60.0  # the next fingerprint check, not the waiting cores check: no spinning
    schedule = schedule.finished("verify", 30.0, config)
    assert schedule.child_due("cores", 30.0) and schedule.next_verify == 30.0 + 3600.0
    assert schedule.wakeup() == 10.0  # overdue: look at once
    schedule = schedule.started("cores").finished("cores", 40.0, config)
    assert schedule.next_cores == 40.0 + 1800.0 and not schedule.child_running


def test_a_new_golden_is_verified_now_or_right_after_the_verify_of_the_old_one() -> None:
    config = _config()
    idle = Schedule().due_at("verify", 1000.0).golden_changed(5.0, config)
    assert idle.next_verify == 5.0 and not idle.rerun_verify
    running = Schedule().started("verify").golden_changed(5.0, config)
    assert running.rerun_verify
    after = running.finished("verify", 9.0, config)
    assert after.next_verify == 9.0 and not after.rerun_verify  # at once, not verify_every later
    assert Schedule().golden_changed(5.0, _config(verify_every=0)).next_verify is None  # verify disabled


def test_new_drift_brings_the_verify_forward_but_not_closer_than_the_minimum_interval() -> None:
    config = _config()
    schedule = Schedule().started("verify").finished("verify", 100.0, config)  # next at 3700
    sooner = schedule.verify_brought_forward(200.0, config)
    assert sooner is not None and sooner.next_verify == 100.0 + 600.0
    assert sooner.verify_brought_forward(300.0, config) is None  # no sooner than that
    assert schedule.verify_brought_forward(900.0, config).next_verify == 900.0  # type: ignore[union-attr]
    assert Schedule().started("verify").verify_brought_forward(0.0, config) is None  # one runs already
    assert Schedule().verify_brought_forward(0.0, config) is None  # not scheduled yet


def test_next_due_shows_epoch_times_none_while_running_and_cores_only_when_enabled() -> None:
    schedule = Schedule(next_fingerprint=10.0, next_verify=20.0)
    assert schedule.next_due(1000.0, _config()) == {"fingerprint": 1010.0, "verify": 1020.0}
    assert schedule.started("verify").next_due(1000.0, _config(cores_every=60.0)) == {
        "fingerprint": 1010.0, "verify": None, "cores": None}


@pytest.mark.parametrize(("ended", "expected"), [(990.0, 10.0), (900.0, None), (1001.0, None)])
def test_a_result_from_before_a_restart_is_reused_only_while_fresh(ended: float, expected: float | None) -> None:
    result = CheckResult(kind="verify", started_at=ended - 2.0, duration_s=2.0, outcome="pass")
    assert age_if_fresh(result, now=1000.0, every=100.0) == expected
    assert age_if_fresh(None, now=1000.0, every=100.0) is None
