"""The watch loop in-process: scheduling, golden reload, restore after restart, stop, --once.

The golden loader and the manifest diff are replaced by tiny stand-ins (a JSON file holding a
digest and an "environment"); the verify checks are REAL child processes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.daemon import goldens as goldens_mod
from envlock.daemon import loop as loop_mod
from envlock.daemon import state as state_mod
from envlock.daemon.config import WatchConfig, default_state_dir, parse_duration, verify_argv
from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.log import JsonLog
from envlock.daemon.loop import Watcher
from envlock.daemon.process import VerifyRunner
from envlock.errors import ENVIRONMENT, BadFileError, BadInputError
from tests.helpers import (
    DATA_DIR,
    make_hostile_golden,
    make_manifest,
    metric_samples,
    process_gone,
    python_argv,
    reseal,
    wait_for_file_text,
    with_distribution,
    write_golden,
    write_json,
)

# The Watcher runs its verify command as a child (a tiny Python printing a report): real processes.
VERIFY_CHILD = pytest.mark.processes("the Watcher's verify check runs its command as a child")
PASS_REPORT = {"reproduces": True, "exit_code": 0, "probes": [], "differences": [],
               "golden_digest": None, "manifest_digest": None}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("6h", 21600), ("1h30m", 5400), ("500ms", 0.5), ("0.5", 0.5), ("0", 0),
    ("2d", 172800), (" 15M ", 900), ("1.5s", 1.5),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, option="--x", allow_zero=True) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "", "5q", "h", "-5s", "5s5", "inf", "nan", "1 h", "s5",
    # not ASCII digits, or what float() would also take: underscores, exponents, full-width digits
    "1_0", "1_0s", "1e3", "1e400", "\uff11\uff10s", "\u0661\u0660", "0x10", "+5s", "1.2.3s",
    # out of range: a deadline computed from these overflows, or the loop would spin
    "99999999999999999999d", "1e308", "31d", "2592001", "720h1s", "0.05s", "50ms", "0s",
])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(BadInputError, match="--x"):
        parse_duration(text, option="--x")


def test_parse_duration_zero_only_where_allowed() -> None:
    assert parse_duration("0", option="--x", allow_zero=True) == 0
    assert parse_duration("30d", option="--x") == 30 * 86400
    with pytest.raises(BadInputError, match="between 0.1s and 30d"):
        parse_duration("0", option="--x")


def test_verify_argv_default_and_custom() -> None:
    assert verify_argv(Path("/g.json"), None) == [sys.executable, "-m", "envlock", "verify", "/g.json", "--json"]
    assert verify_argv(Path("/g.json"), "probe --golden={golden} 'a b'") == ["probe", "--golden=/g.json", "a b"]
    with pytest.raises(BadInputError, match="--verify-command"):
        verify_argv(Path("/g.json"), "unbalanced 'quote")


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENVLOCK_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("ENVLOCK_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    expected = Path("/var/lib/envlock") if os.geteuid() == 0 else tmp_path / "xdg" / "envlock"
    assert default_state_dir() == expected


# ---- the loop with stand-in golden/diff ----------------------------------------------------


def _fake_loader(path: Path, trusted_keys: tuple[object, ...] = ()) -> LoadedGolden:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadFileError(path, "unreadable stand-in golden") from exc
    st = path.stat()
    return LoadedGolden(manifest=data["environment"], digest=data["digest"],
                        stat_key=(st.st_mtime_ns, st.st_size, st.st_ino))


def _write_golden(path: Path, digest: str, environment: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": digest, "environment": environment}))
    os.replace(tmp, path)


MACHINE_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0"}


def _diff(golden_env: dict[str, str], current: dict[str, str]) -> list[SimpleNamespace]:
    keys = sorted(set(golden_env) | set(current))
    return [SimpleNamespace(path=f"environment.{k}", severity="critical", new=current.get(k),
                            reason=f"environment.{k}: {golden_env.get(k)} -> {current.get(k)}")
            for k in keys if golden_env.get(k) != current.get(k)]


PASSING_VERIFY = python_argv(f"print({json.dumps(json.dumps(PASS_REPORT))})")
HANGING_VERIFY = python_argv("import time; time.sleep(300)")


@pytest.fixture()
def make_watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(goldens_mod, "load_golden_file", _fake_loader)
    golden = tmp_path / "golden.json"
    _write_golden(golden, "sha256:g1", MACHINE_ENV)
    logs = io.StringIO()

    def make(**overrides) -> tuple[Watcher, Path]:
        config = WatchConfig(golden_path=golden, state_dir=tmp_path / "state", environ=dict(os.environ), listen=None,
                             fingerprint_every=0.1, verify_every=0, verify_timeout=60,
                             nfd_features_file=tmp_path / "features", verify_command=PASSING_VERIFY)
        for key, value in overrides.items():
            setattr(config, key, value)
        return Watcher(config, log=JsonLog(logs), capture=capture, diff=_diff), golden

    def capture(environ):
        environs.append(environ)
        return dict(machine)

    machine = dict(MACHINE_ENV)  # tests change it to simulate the node changing under the daemon
    environs: list[object] = []  # the environment each fingerprint capture was given
    make.environs = environs  # type: ignore[attr-defined]
    make.logs = logs  # type: ignore[attr-defined]
    make.machine = machine  # type: ignore[attr-defined]
    return make


def _events(logs: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in logs.getvalue().splitlines()]


def _run_in_thread(watcher: Watcher) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(watcher.run()))
    thread.start()
    return thread, codes


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@VERIFY_CHILD
def test_once_healthy_runs_both_checks_and_writes_nfd(make_watcher, tmp_path: Path) -> None:
    watcher, _ = make_watcher(once=True, verify_every=3600)
    assert watcher.run() == 0
    checks = [e for e in _events(make_watcher.logs) if e["event"] == "check"]
    assert [(c["kind"], c["outcome"]) for c in checks] == [("fingerprint", "pass"), ("verify", "pass")]
    features = (tmp_path / "features").read_text()
    assert "envlock.reproduces=true" in features and "envlock.golden-digest=g1" in features


def test_once_with_drift_exits_1_and_labels_the_node(make_watcher, tmp_path: Path) -> None:
    _write_golden(tmp_path / "golden.json", "sha256:g2", {"TF_ENABLE_ONEDNN_OPTS": "1"})
    watcher, _ = make_watcher(once=True)
    assert watcher.run() == 1
    assert "envlock.reproduces=false" in (tmp_path / "features").read_text()
    [check] = [e for e in _events(make_watcher.logs) if e["event"] == "check"]
    assert check["reason"] == "environment.TF_ENABLE_ONEDNN_OPTS: 1 -> 0"


def test_golden_change_is_picked_up_and_drift_resolves(make_watcher) -> None:
    watcher, golden = make_watcher()
    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: watcher.board.health() == (True, "ok"))
        _write_golden(golden, "sha256:g2", {"TF_ENABLE_ONEDNN_OPTS": "1"})
        _wait_for(lambda: not watcher.board.health()[0])
        assert watcher.board.health()[1] == "fingerprint drift: environment.TF_ENABLE_ONEDNN_OPTS: 1 -> 0"
        assert watcher.board.state.golden_digest == "sha256:g2"
        _write_golden(golden, "sha256:g3", MACHINE_ENV)
        _wait_for(lambda: watcher.board.health()[0])
    finally:
        watcher.request_stop()
        thread.join(timeout=30)
    assert codes == [0]
    assert any(e["event"] == "golden_reloaded" for e in _events(make_watcher.logs))


def test_unreadable_golden_on_reload_is_a_failed_check(make_watcher) -> None:
    watcher, golden = make_watcher()
    thread, _ = _run_in_thread(watcher)
    try:
        _wait_for(lambda: watcher.board.health()[0])
        golden.write_text("{ truncated")
        _wait_for(lambda: not watcher.board.health()[0])
        assert "cannot reload the golden" in watcher.board.health()[1]
    finally:
        watcher.request_stop()
        thread.join(timeout=30)


@VERIFY_CHILD
def test_stop_kills_a_running_verify_and_returns_0(make_watcher) -> None:
    watcher, _ = make_watcher(verify_every=3600, verify_command=HANGING_VERIFY)
    thread, codes = _run_in_thread(watcher)
    _wait_for(lambda: watcher.board.status()["verify_running_since"] is not None)
    t0 = time.monotonic()
    watcher.request_stop()
    thread.join(timeout=30)
    assert codes == [0] and time.monotonic() - t0 < 10
    events = [e["event"] for e in _events(make_watcher.logs)]
    assert "verify_abandoned" in events and events[-1] == "stopped"


@VERIFY_CHILD
def test_a_fresh_verify_is_reused_after_restart_for_the_same_golden(make_watcher) -> None:
    first, _ = make_watcher(once=True, verify_every=3600)
    assert first.run() == 0
    second, _ = make_watcher(once=True, verify_every=3600, verify_command=HANGING_VERIFY)
    assert second.run() == 0  # would hang (and time out) if it ran verify again
    restored = [e for e in _events(make_watcher.logs) if e["event"] == "restored"]
    assert restored and restored[0]["kind"] == "verify"
    assert second.history.path.exists()


def _report_with(differences: list[dict]) -> list[str]:
    return python_argv(f"print({json.dumps(json.dumps({**PASS_REPORT, 'differences': differences}))})")


@VERIFY_CHILD
def test_a_passing_verify_vouches_for_differences_the_fingerprint_check_failed_on(make_watcher) -> None:
    """An image built from a golden sets variables the recording machine lacked: the first
    fingerprint check fails, the verify reproduces anyway, and from then on those exact
    differences are tolerated (and survive a restart); a different value fails again."""
    make_watcher.machine["TF_DETERMINISTIC_OPS"] = "1"
    seen = [{"path": "environment.TF_DETERMINISTIC_OPS", "old": None, "new": "1", "severity": "critical",
             "reason": "set", "components": []}]
    watcher, _ = make_watcher(once=True, verify_every=3600, verify_command=_report_with(seen))
    assert watcher.run() == 0
    checks = [(c["kind"], c["outcome"], c["tolerated"]) for c in _events(make_watcher.logs) if c["event"] == "check"]
    assert checks == [("fingerprint", "drift", 0), ("verify", "pass", 0), ("fingerprint", "pass", 1)]
    again, _ = make_watcher(once=True, verify_every=0)  # restart: still vouched for
    assert again.run() == 0
    make_watcher.machine["TF_DETERMINISTIC_OPS"] = "0"
    changed, _ = make_watcher(once=True, verify_every=0)
    assert changed.run() == 1


@VERIFY_CHILD
def test_new_fingerprint_drift_brings_the_verify_forward(make_watcher) -> None:
    watcher, _ = make_watcher(verify_every=3600, reverify_min_interval=0.0)
    thread, _ = _run_in_thread(watcher)
    try:
        _wait_for(lambda: len(watcher.history.checks()) >= 2 and watcher.board.last("verify") is not None)
        make_watcher.machine["OMP_NUM_THREADS"] = "1"  # the node changes under the daemon
        _wait_for(lambda: sum(c["kind"] == "verify" for c in watcher.history.checks()) == 2)
    finally:
        watcher.request_stop()
        thread.join(timeout=30)
    assert any(e["event"] == "verify_brought_forward" for e in _events(make_watcher.logs))


# ---- a verify racing a golden reload --------------------------------------------------------


def _verify_then(watcher: Watcher, on_finish) -> VerifyRunner:
    """A real verify child of the watcher's current golden; ``on_finish(result)`` runs after the
    child exited and before the worker hands the result to the loop, i.e. exactly where a reload
    can slip in."""
    runner = VerifyRunner(watcher.config.verify_command, timeout_s=60, golden_digest=watcher.board.state.golden_digest,
                          env=watcher.config.environ)
    run = runner.run

    def run_then_hook():
        result = run()
        return on_finish(result)

    runner.run = run_then_hook  # type: ignore[method-assign]
    return runner


@VERIFY_CHILD
def test_a_verify_of_the_old_golden_finishing_just_before_the_reload_is_not_published(
    make_watcher, tmp_path: Path,
) -> None:
    """The verify of g1 finished, the reload to g2 happened before the loop published it: that
    result says nothing about g2, so /healthz, NFD and metrics must not vouch for g2 with it."""
    watcher, golden = make_watcher(verify_every=3600)
    watcher.fingerprint_now()

    def reload_first(result):
        _write_golden(golden, "sha256:g2", MACHINE_ENV)
        assert watcher.golden_file.reload_if_changed() is True
        return result

    watcher.children.workers.work(_verify_then(watcher, reload_first))  # the worker's code, in this thread
    watcher.take_results()  # the loop publishes what the worker handed over
    watcher.fingerprint_now()
    assert watcher.board.state.golden_digest == "sha256:g2"
    assert watcher.board.last("verify") is None and not watcher.board.reproduces()
    assert "envlock.reproduces=false" in (tmp_path / "features").read_text()
    recorded = watcher.history.last("verify")  # kept in the history, for the record
    assert recorded is not None and recorded.outcome == "pass" and recorded.golden_digest == "sha256:g1"
    [stale] = [e for e in _events(make_watcher.logs) if e["event"] == "verify_stale"]
    assert stale["golden_digest"] == "sha256:g1" and stale["current_golden_digest"] == "sha256:g2"
    assert not [e for e in _events(make_watcher.logs) if e["event"] == "check" and e["kind"] == "verify"]
    watcher.history.close()


@VERIFY_CHILD
def test_a_reload_while_a_verify_is_published_keeps_the_new_goldens_vouched_set(make_watcher) -> None:
    """The verify of g1 passed and its result is being published (what it vouched for stored) when
    g2 replaces the golden file: the reload must not interleave, or g1's vouched differences
    outlive g1. The worker only hands the result over; the loop, the one writer, publishes it and
    then reloads, so the reload cannot cut in."""
    watcher, golden = make_watcher(verify_every=3600)
    watcher.fingerprint_now()
    loop_thread = threading.current_thread()  # this test thread plays the loop
    readers: list[threading.Thread] = []

    class ReplaceWhileRead(list):
        """Reading the vouched keys replaces the golden file (as an operator might, at that instant)."""

        def __iter__(self):
            readers.append(threading.current_thread())
            if len(readers) == 1:
                _write_golden(golden, "sha256:g2", MACHINE_ENV)
            return super().__iter__()

    key = 'environment.TF_DETERMINISTIC_OPS="1"'
    runner = _verify_then(watcher, lambda result: dataclasses.replace(result, vouched=ReplaceWhileRead([key])))
    worker = threading.Thread(target=watcher.children.workers.work, args=(runner,))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and readers == []  # the worker published nothing
    watcher.take_results()  # the loop publishes g1's verify...
    watcher.fingerprint_now()  # ...and its next tick reloads g2
    assert readers and all(thread is loop_thread for thread in readers)
    assert watcher.board.state.golden_digest == "sha256:g2"
    assert watcher.board.state.vouched == frozenset()  # g2 has no passing verify: nothing is vouched for
    assert watcher.board.last("verify") is None and not watcher.board.reproduces()
    watcher.history.close()


# ---- the environment the daemon started with ----------------------------------------------


@VERIFY_CHILD
def test_both_checks_get_the_environment_from_the_config(make_watcher, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "verify-env.json"
    dump_env = python_argv(f"""
        import json, os
        open({str(seen)!r}, "w").write(json.dumps(dict(os.environ)))
        print({json.dumps(json.dumps(PASS_REPORT))})
    """)
    environ = {**os.environ, "ENVLOCK_STARTUP_ONLY": "1"}
    monkeypatch.setenv("ENVLOCK_SET_LATER", "1")  # in os.environ now, not in the start-up snapshot
    watcher, _ = make_watcher(once=True, verify_every=3600, verify_command=dump_env, environ=environ)
    assert watcher.run() == 0
    assert make_watcher.environs and all(e == environ for e in make_watcher.environs)
    child_env = json.loads(seen.read_text())
    assert child_env.get("ENVLOCK_STARTUP_ONLY") == "1" and "ENVLOCK_SET_LATER" not in child_env


def test_cli_watch_snapshots_the_environment_when_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not at import time: a variable set after every module was imported is in the snapshot,
    and what the daemon's own imports write to os.environ afterwards is not."""
    configs: list[WatchConfig] = []

    def fake_run_watch(config: WatchConfig, **_: object) -> loop_mod.WatchOutcome:
        os.environ["ENVLOCK_WRITTEN_BY_AN_IMPORT"] = "1"  # as threadpoolctl does with KMP_DUPLICATE_LIB_OK
        configs.append(config)
        return loop_mod.WatchOutcome(0, True, "ok", None, None)

    monkeypatch.setattr(loop_mod, "run_watch", fake_run_watch)
    monkeypatch.delenv("ENVLOCK_WRITTEN_BY_AN_IMPORT", raising=False)
    result = CliRunner().invoke(app, ["watch", "--golden", str(tmp_path / "g.json"), "--once",
                                      "--state-dir", str(tmp_path)], env={"ENVLOCK_AT_START": "yes"})
    os.environ.pop("ENVLOCK_WRITTEN_BY_AN_IMPORT", None)
    assert result.exit_code == 0, result.output
    [config] = configs
    assert config.environ.get("ENVLOCK_AT_START") == "yes"
    assert "ENVLOCK_WRITTEN_BY_AN_IMPORT" not in config.environ


# ---- pathological golden swaps: the daemon neither dies nor wedges nor lies ---------------------


def _nested(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(goldens_mod.MAX_GOLDEN_BYTES + 1)  # sparse: costs no disk


def _directory(path: Path) -> None:
    path.mkdir()


def _invalid_json(path: Path) -> None:
    path.write_bytes(b"\xff\xfe{not json")


@pytest.mark.parametrize("make_bad", [_nested, _fifo, _dev_zero, _huge, _directory, _invalid_json])
def test_a_pathological_golden_swap_is_reported_and_survived(make_watcher, make_bad, tmp_path: Path) -> None:
    watcher, golden = make_watcher()
    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: watcher.board.health() == (True, "ok"))
        bad = tmp_path / "bad-golden"
        make_bad(bad)
        if bad.is_dir() and not bad.is_symlink():
            golden.unlink()  # a directory cannot replace a file in one rename
        os.replace(bad, golden)
        _wait_for(lambda: not watcher.board.health()[0])
        reason = watcher.board.health()[1]
        assert reason.startswith("cannot reload the golden: ") and "sha256:g1" in reason
        assert watcher.board.status()["golden"]["error"] and watcher.board.state.golden_digest == "sha256:g1"
        before = sum(1 for e in _events(make_watcher.logs) if e["event"] == "check")
        _wait_for(lambda: sum(1 for e in _events(make_watcher.logs) if e["event"] == "check") >= before + 3)
        rejected = [e for e in _events(make_watcher.logs) if e["event"] == "golden_rejected"]
        assert len(rejected) == 1 and rejected[0]["still_using"] == "sha256:g1"
        # a good golden again: healthy again
        if golden.is_dir():
            golden.rmdir()
        else:
            golden.unlink()
        _write_golden(golden, "sha256:g1", MACHINE_ENV)
        _wait_for(lambda: watcher.board.health() == (True, "ok"))
    finally:
        watcher.request_stop()
        thread.join(timeout=30)
    assert not thread.is_alive() and codes == [0]


def test_a_golden_read_that_never_finishes_does_not_wedge_the_loop(make_watcher, monkeypatch) -> None:
    """Whatever the reader below does (here: blocks forever), the loop goes on and stops on request."""
    watcher, golden = make_watcher()
    watcher.golden_loader.timeout_s = 0.5
    release = threading.Event()

    def stuck_loader(path: Path, *_trusted_keys: object) -> LoadedGolden:
        release.wait(60)
        raise BadFileError(path, "released")

    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: watcher.board.health() == (True, "ok"))
        monkeypatch.setattr(goldens_mod, "load_golden_file", stuck_loader)
        _write_golden(golden, "sha256:g2", MACHINE_ENV)
        _wait_for(lambda: "did not finish within 0.5 s" in watcher.board.health()[1])
        before = sum(1 for e in _events(make_watcher.logs) if e["event"] == "check")
        _wait_for(lambda: sum(1 for e in _events(make_watcher.logs) if e["event"] == "check") >= before + 3)
        assert "still stuck" in watcher.board.health()[1]  # no second reader piled up on the first
        started = time.monotonic()
        watcher.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive() and codes == [0] and time.monotonic() - started < 10
    finally:
        release.set()
        watcher.request_stop()
        thread.join(timeout=30)


# ---- a wedged loop, and a stop that has to be forced ------------------------------------------


def test_a_wedged_loop_turns_health_and_the_nfd_labels_unhealthy(make_watcher, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing publishes while the loop is stuck (here: a capture that does not return): the
    watchdog alone turns health 503 and rewrites the NFD labels, and the loop recovers after."""
    monkeypatch.setattr(state_mod, "OVERDUE_SLACK_S", 0.0)  # overdue after 3 intervals: 0.3 s
    watcher, _ = make_watcher()
    release = threading.Event()
    captures: list[object] = []

    def wedging_capture(environ):
        captures.append(environ)
        if len(captures) == 2:
            release.wait(60)  # a read of /sys that hangs
        return dict(MACHINE_ENV)

    watcher.capture = wedging_capture
    features = tmp_path / "features"
    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: features.exists() and "envlock.healthy=true" in features.read_text())
        _wait_for(lambda: "envlock.healthy=false" in features.read_text())
        assert len(captures) == 2  # still stuck in the second capture: the watchdog wrote that
        healthy, reason = watcher.board.health()
        assert not healthy and reason.startswith("fingerprint check overdue")
        [event] = [e for e in _events(make_watcher.logs) if e["event"] == "health"]
        assert event["healthy"] is False and "overdue" in event["reason"]
        release.set()
        _wait_for(lambda: "envlock.healthy=true" in features.read_text())
    finally:
        release.set()
        watcher.request_stop()
        thread.join(timeout=30)
    assert codes == [0]


# A daemon whose loop wedges in its second fingerprint check while a verify child hangs.
WEDGED_DAEMON = """
import os, sys, time
from pathlib import Path
from envlock.daemon import goldens, loop
from envlock.daemon.config import WatchConfig
from envlock.daemon.goldens import LoadedGolden

tmp = Path(sys.argv[1])
loop.STOP_DEADLINE_S = 1.0
goldens.load_golden_file = lambda path, keys=(): LoadedGolden({}, "sha256:g", goldens.stat_key(path))
captures = []

def capture(environ):
    captures.append(environ)
    if len(captures) == 2:
        (tmp / "wedged").write_text("yes")
        time.sleep(600)  # a read of /sys that hangs: the loop never gets back to the stop request
    return {}

hang = [sys.executable, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)",
        str(tmp / "verify.pid")]
config = WatchConfig(golden_path=tmp / "golden.json", state_dir=tmp / "state", environ=dict(os.environ), listen=None,
                     fingerprint_every=0.1, verify_every=3600, verify_timeout=600, verify_command=hang)
watcher = loop.Watcher(config, capture=capture, diff=lambda old, new: [])
watcher.install_signal_handlers()
sys.exit(watcher.run())
"""


@pytest.mark.processes("how a daemon process ends on SIGTERM is what is tested")
def test_a_stop_that_has_to_be_forced_is_not_a_clean_exit(tmp_path: Path) -> None:
    """SIGTERM, and the loop does not come back (STOP_DEADLINE_S, 1 s here): the backstop kills
    the verify group and exits 3 (README: environment problem), never 0, which says "stopped
    cleanly". A clean SIGTERM stop exits 0: test_stop_kills_a_running_verify_and_returns_0."""
    (tmp_path / "golden.json").write_text("{}")
    proc = subprocess.Popen([sys.executable, "-c", WEDGED_DAEMON, str(tmp_path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file_text(tmp_path / "wedged")
        verify_child = int(wait_for_file_text(tmp_path / "verify.pid"))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == ENVIRONMENT == loop_mod.FORCED_STOP_EXIT, stderr
        assert time.monotonic() - started < 10
        last = json.loads(stderr.splitlines()[-1])
        assert last["event"] == "stop_forced" and last["exit_code"] == ENVIRONMENT
        assert process_gone(verify_child), "the verify child outlived the forced stop"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_golden_with_a_lone_surrogate_swapped_in_with_mv_is_checked_not_fatal(tmp_path: Path) -> None:
    """A resealed golden whose manifest holds "\\ud800" (valid JSON, no UTF-8): the daemon died
    writing that difference to its history, also when such a golden was swapped in with mv.
    The real golden loader and the real diff; only the capture is this machine's stand-in."""
    golden = tmp_path / "golden.json"
    write_golden(golden)
    manifest = with_distribution(make_manifest(), "fake\ud800", "1.0\ud800")
    # JSON escapes the surrogate ("\\ud800"); only UTF-8 cannot hold it
    hostile = write_json(tmp_path / "hostile.json", reseal(make_hostile_golden(manifest=manifest).model_dump(
        mode="json", exclude_none=True)))
    logs = io.StringIO()
    config = WatchConfig(golden_path=golden, state_dir=tmp_path / "state", environ=dict(os.environ), listen=None,
                         fingerprint_every=0.1, verify_every=0, verify_timeout=60, nfd_features_file=None,
                         verify_command=PASSING_VERIFY)
    watcher = Watcher(config, log=JsonLog(logs), capture=lambda environ: make_manifest())
    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: watcher.board.last("fingerprint") is not None)
        os.replace(hostile, golden)  # mv

        def drifted_paths() -> list[str]:
            last = watcher.board.last("fingerprint")
            return [item.path for item in last.drift] if last else []

        _wait_for(lambda: any(path.startswith("python.distributions") for path in drifted_paths()))
        _wait_for(lambda: len(watcher.history.checks(limit=100)) >= 4)  # and it goes on recording
        assert watcher.board.state.history_error is None
        assert thread.is_alive()
    finally:
        watcher.request_stop()
        thread.join(timeout=30)
    assert codes == [0]
    assert [e for e in _events(logs) if e["event"] == "check"][-1]["outcome"] == "drift"


# ---- the numeric class (issue 20): one series, the NFD labels, /status -----------------------

# Real VerifyReports (tests/data/README.md): a 2-probe golden verified on the AMD EPYC Zen 4 as
# recorded, and with oneDNN off (matmul.f32 drifts, so its class differs).
RECORDED_REPORTS = DATA_DIR / "records"
SAME_CLASS, OFF_CLASS = "0eaa820319d5", "c6d2df55e9b4"


def _verify_printing(report_file: Path) -> list[str]:
    """A verify command that prints the report in ``report_file`` (read at each run) and exits as verify would."""
    return python_argv(f"""
        import json, sys
        text = open({str(report_file)!r}).read()
        print(text)
        sys.exit(0 if json.loads(text)["reproduces"] else 1)
    """)


def _class_series(watcher: Watcher) -> dict[tuple[str, str], float]:
    samples = metric_samples(watcher.metrics.render().decode())
    return {(labels["class"], labels["profile"]): value for (name, items), value in samples.items()
            for labels in [dict(items)] if name == "envlock_numeric_class"}


def _labels(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if not line.startswith("#"))


@VERIFY_CHILD
def test_a_verify_exports_its_numeric_class_in_one_series_status_and_the_nfd_labels(make_watcher,
                                                                                   tmp_path: Path) -> None:
    watcher, _ = make_watcher(once=True, verify_every=3600,
                              verify_command=_verify_printing(RECORDED_REPORTS / "verify-matmul-rng-default.json"))
    assert _class_series(watcher) == {}  # nothing known before a verify
    assert watcher.run() == 0
    assert _class_series(watcher) == {(SAME_CLASS, "default"): 1.0}
    status = watcher.board.status()
    assert {k: v for k, v in status["numeric_class"].items() if k != "verified_at"} == {
        "class": SAME_CLASS, "profile": "default", "golden_class": SAME_CLASS, "matches_golden": True}
    assert status["last"]["verify"]["numeric_class"] == SAME_CLASS
    labels = _labels(tmp_path / "features")
    assert labels["envlock.numeric-class"] == SAME_CLASS and labels["envlock.numeric-profile"] == "default"


@VERIFY_CHILD
def test_a_changed_class_replaces_the_series_and_a_new_golden_withdraws_it(make_watcher, tmp_path: Path) -> None:
    current = tmp_path / "report.json"
    current.write_text((RECORDED_REPORTS / "verify-matmul-rng-default.json").read_text())
    watcher, golden = make_watcher(verify_every=0.2, verify_command=_verify_printing(current))
    thread, codes = _run_in_thread(watcher)
    try:
        _wait_for(lambda: _class_series(watcher) == {(SAME_CLASS, "default"): 1.0})
        # the node changes under the daemon: oneDNN off (the verify drifts and reports another class)
        (tmp_path / "next.json").write_text((RECORDED_REPORTS / "verify-matmul-rng-onednn-off.json").read_text())
        os.replace(tmp_path / "next.json", current)
        _wait_for(lambda: (OFF_CLASS, "default") in _class_series(watcher))
        assert _class_series(watcher) == {(OFF_CLASS, "default"): 1.0}  # one series per node at a time
        assert watcher.board.status()["numeric_class"]["matches_golden"] is False
        _wait_for(lambda: _labels(tmp_path / "features").get("envlock.numeric-class") == OFF_CLASS)
        # a verify that cannot run says nothing about the numerics: the last class stays
        current.write_text("not a report")
        _wait_for(lambda: watcher.board.last("verify").outcome == "error")
        assert _class_series(watcher) == {(OFF_CLASS, "default"): 1.0}
        # another golden: the class was over the old golden's probes, so it is withdrawn until a verify of this one
        watcher.config.verify_every = 3600
        _write_golden(golden, "sha256:g2", MACHINE_ENV)
        _wait_for(lambda: watcher.board.state.golden_digest == "sha256:g2")
        _wait_for(lambda: watcher.board.state.numeric is None and "envlock.numeric-class" not in _labels(
            tmp_path / "features"))
        assert _class_series(watcher) == {}
        assert watcher.board.status()["numeric_class"] is None
    finally:
        watcher.request_stop()
        thread.join(timeout=30)
    assert codes == [0]


@VERIFY_CHILD
def test_the_class_of_a_verify_reused_after_a_restart_is_exported(make_watcher, tmp_path: Path) -> None:
    first, _ = make_watcher(once=True, verify_every=3600, verify_command=_verify_printing(
        RECORDED_REPORTS / "verify-matmul-rng-onednn-off.json"))
    assert first.run() == 1
    second, _ = make_watcher(once=True, verify_every=3600, verify_command=HANGING_VERIFY)
    second.run()  # would hang if it ran verify again
    assert _class_series(second) == {(OFF_CLASS, "default"): 1.0}
    assert _labels(tmp_path / "features")["envlock.numeric-class"] == OFF_CLASS


class _Captured(dict):
    """A stand-in capture with a digest of what it holds (as a real manifest has)."""

    @property
    def digest(self) -> str:
        return "sha256:" + json.dumps(sorted(self.items()))


@VERIFY_CHILD
def test_a_verify_is_not_reused_after_a_restart_that_changed_the_machine(make_watcher, tmp_path: Path) -> None:
    """The flipped node restarted without its flip: the old verify (and its class) says nothing about it now."""
    off = RECORDED_REPORTS / "verify-matmul-rng-onednn-off.json"
    first, _ = make_watcher(once=True, verify_every=3600, verify_command=_verify_printing(off))
    first.capture = lambda environ: _Captured(make_watcher.machine)
    assert first.run() == 1
    make_watcher.machine["TF_ENABLE_ONEDNN_OPTS"] = "1"  # what changed across the restart
    same = RECORDED_REPORTS / "verify-matmul-rng-default.json"
    second, _ = make_watcher(once=True, verify_every=3600, verify_command=_verify_printing(same))
    second.capture = lambda environ: _Captured(make_watcher.machine)
    second.run()
    events = _events(make_watcher.logs)
    assert not [e for e in events if e["event"] == "restored"]
    [skipped] = [e for e in events if e["event"] == "not_restored"]
    assert skipped["reason"] == "this machine's fingerprint changed across the restart"
    assert _class_series(second) == {(SAME_CLASS, "default"): 1.0}  # verified again, in this environment
