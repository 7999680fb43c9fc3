"""`watch --cores-every`: the cores check's child read back (pure), its series and NFD label, and the
loop running it as a REAL child process. The child here is a stand-in printing a cores report of a
machine with a defective CPU (no machine has one); tests/integration/test_cores.py runs the real
`envlock cores` under the daemon."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from envlock.corecheck import build_report, run_key
from envlock.daemon import goldens as goldens_mod
from envlock.daemon import nfd
from envlock.daemon.checks import interpret_cores
from envlock.daemon.config import WatchConfig, cores_argv
from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.log import JsonLog
from envlock.daemon.loop import Watcher
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import CheckResult, render_once
from envlock.daemon.state import DaemonState
from envlock.errors import BadInputError
from tests.helpers import metric_samples, python_argv

GOOD, FLIPPED = run_key("ok", [("out", "a" * 64)]), run_key("ok", [("out", "b" * 64)])


def cores_report(n: int, bad: tuple[int, ...] = ()) -> str:
    runs = {cpu: {"hw.a": [FLIPPED if cpu in bad else GOOD], "hw.b": [GOOD]} for cpu in range(n)}
    return build_report(runs, probes=["hw.a", "hw.b"], repeat=1).model_dump_json()  # type: ignore[arg-type]


def interpret(code: int, stdout: str, stderr: str = ""):
    return interpret_cores(returncode=code, stdout=stdout, stderr=stderr, started=1.0, duration=2.0,
                           golden_digest="sha256:g")


def test_all_cpus_agreeing_is_a_pass_with_every_cpu() -> None:
    result = interpret(0, cores_report(3))
    assert (result.kind, result.outcome, result.reason, result.drift) == ("cores", "pass", None, [])
    assert [(c.cpu, c.healthy) for c in result.cpus] == [(0, True), (1, True), (2, True)]


def test_a_deviating_cpu_is_drift_naming_it() -> None:
    result = interpret(1, cores_report(4, bad=(2,)))
    assert result.outcome == "drift"
    assert result.reason == "CPU 2 deviates from the others on probes hw.a: suspect a defective core"
    assert [(d.path, d.reason) for d in result.drift] == [("cpus.2", "CPU 2 suspect: deviates from the others on hw.a")]
    assert [c.health for c in result.cpus] == ["healthy", "healthy", "suspect", "healthy"]


def test_two_cpus_disagreeing_mark_both_undecided() -> None:
    result = interpret(1, cores_report(2, bad=(1,)))
    assert result.outcome == "drift" and [c.health for c in result.cpus] == ["undecided", "undecided"]
    assert [d.path for d in result.drift] == ["cpus.0", "cpus.1"]


@pytest.mark.parametrize(("code", "stdout", "stderr", "says"), [
    (2, "", "envlock: error: --cpus '9': CPU 9 is not one this process may run on", "exited with code 2: envlock: "),
    (3, "", "envlock: error: TensorFlow is not importable", "exited with code 3"),
    (0, "not json", "", "printed no cores report"),
    (0, json.dumps({"verdict": "agree"}), "", "printed no cores report"),
    (1, cores_report(3), "", "printed no cores report"),  # a report saying exit 0 from a child that exited 1
    (-9, "", "", "was killed by SIGKILL"),
])
def test_a_cores_child_that_failed_is_an_error(code: int, stdout: str, stderr: str, says: str) -> None:
    result = interpret(code, stdout, stderr)
    assert result.outcome == "error" and says in (result.reason or "") and result.cpus == []


def test_the_per_cpu_series_follow_the_last_conclusive_cores_check() -> None:
    states = [DaemonState(golden_path="g", golden=LoadedGolden(manifest={}, digest="sha256:g",  # type: ignore[arg-type]
                                                                 stat_key=(0, 0, 0)))]
    metrics = Metrics(lambda: states[-1])

    def observe(result: CheckResult) -> None:
        states.append(states[-1].adopt(result))

    observe(interpret(1, cores_report(3, bad=(1,))))
    samples = metric_samples(metrics.render().decode())
    assert {k[1][0][1]: v for k, v in samples.items() if k[0] == "envlock_cpu_healthy"} == {"0": 1, "1": 0, "2": 1}
    observe(interpret(3, "", "TensorFlow missing"))  # says nothing about the CPUs: the series stay
    assert metric_samples(metrics.render().decode())[("envlock_cpu_healthy", (("cpu", "1"),))] == 0
    observe(interpret(0, cores_report(2)))  # CPU 2 no longer checked: its series goes
    samples = metric_samples(metrics.render().decode())
    assert {k[1][0][1]: v for k, v in samples.items() if k[0] == "envlock_cpu_healthy"} == {"0": 1, "1": 1}


def test_the_nfd_label_only_when_a_cores_check_concluded() -> None:
    common = {"reproduces": True, "healthy": True, "fingerprint_digest": None, "golden_digest": None,
              "verify_outcome": "pass"}
    assert nfd.feature_lines(**common, cores_healthy=True)["envlock.cores-healthy"] == "true"
    assert nfd.feature_lines(**common, cores_healthy=False)["envlock.cores-healthy"] == "false"
    assert "envlock.cores-healthy" not in nfd.feature_lines(**common)


def test_cores_argv() -> None:
    assert cores_argv(None)[1:] == ["-m", "envlock", "cores", "--json"]
    assert cores_argv("envlock cores --json --cpus '0-3'") == ["envlock", "cores", "--json", "--cpus", "0-3"]
    with pytest.raises(BadInputError, match="--cores-command"):
        cores_argv("envlock 'unbalanced")
    with pytest.raises(BadInputError, match="--cores-command: empty"):
        cores_argv("  ")


def _loader(path: Path, trusted_keys: tuple[object, ...] = ()) -> LoadedGolden:
    st = path.stat()
    return LoadedGolden(manifest={}, digest="sha256:g1", stat_key=(st.st_mtime_ns, st.st_size, st.st_ino))


@pytest.fixture()
def watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(goldens_mod, "load_golden_file", _loader)
    (tmp_path / "golden.json").write_text("{}")
    logs = io.StringIO()

    def make(cores_stdout: str, cores_exit: int, **overrides: object) -> Watcher:
        command = python_argv(f"import sys; sys.stdout.write({cores_stdout!r}); sys.exit({cores_exit})")
        config = WatchConfig(golden_path=tmp_path / "golden.json", state_dir=tmp_path / "state",
                             environ=dict(os.environ), listen=None, fingerprint_every=0.1, verify_every=0,
                             nfd_features_file=tmp_path / "features", cores_every=3600, cores_command=command)
        for key, value in overrides.items():
            setattr(config, key, value)
        return Watcher(config, log=JsonLog(logs), capture=lambda environ: {}, diff=lambda a, b: [])

    make.logs = logs  # type: ignore[attr-defined]
    return make


CHILD = pytest.mark.processes("the Watcher's cores check runs its command as a child")


@CHILD
def test_once_runs_the_cores_check_labels_the_node_and_leaves_health_alone(watcher, tmp_path: Path) -> None:
    w = watcher(cores_report(3, bad=(1,)), 1, once=True)
    assert w.run() == 0  # a suspect core is its own label and series: /healthz is about the golden
    checks = [json.loads(line) for line in watcher.logs.getvalue().splitlines()]
    assert [(c["kind"], c["outcome"]) for c in checks if c["event"] == "check"] == [("fingerprint", "pass"),
                                                                                   ("cores", "drift")]
    features = (tmp_path / "features").read_text()
    assert "envlock.cores-healthy=false" in features and "envlock.healthy=true" in features
    samples = metric_samples(w.metrics.render().decode())
    assert samples[("envlock_cpu_healthy", (("cpu", "1"),))] == 0
    assert samples[("envlock_cpu_healthy", (("cpu", "2"),))] == 1
    assert samples[("envlock_checks_total", (("kind", "cores"), ("outcome", "drift")))] == 1
    last = w.board.last("cores")
    text = render_once(True, "ok", w.board.last("fingerprint"), None, last)
    assert text.splitlines()[2].startswith("cores        drift    CPU 1 deviates from the others on probes hw.a")


@CHILD
def test_a_fresh_cores_check_is_reused_after_a_restart(watcher, tmp_path: Path) -> None:
    first = watcher(cores_report(2), 0, once=True)
    assert first.run() == 0
    again = watcher("never printed", 3, once=True)  # a second run would be an error: it must not run
    assert again.run() == 0
    assert again.board.last("cores").outcome == "pass"
    samples = metric_samples(again.metrics.render().decode())  # the per-CPU series come back from the history
    assert samples[("envlock_cpu_healthy", (("cpu", "0"),))] == samples[("envlock_cpu_healthy", (("cpu", "1"),))] == 1
    assert "envlock.cores-healthy=true" in (tmp_path / "features").read_text()
    events = [json.loads(line) for line in watcher.logs.getvalue().splitlines()]
    assert {"event": "restored", "kind": "cores"}.items() <= next(e for e in events if e["event"] == "restored").items()


@CHILD
def test_cores_off_by_default_runs_no_cores_check(watcher, tmp_path: Path) -> None:
    w = watcher(cores_report(2), 0, once=True, cores_every=0)
    assert w.run() == 0 and w.board.last("cores") is None
    assert "cores-healthy" not in (tmp_path / "features").read_text()


@CHILD
def test_cores_waits_for_a_running_verify_without_spinning_then_runs(watcher) -> None:
    report = {"reproduces": True, "exit_code": 0, "probes": [], "differences": [], "golden_digest": None,
              "manifest_digest": None}
    slow_verify = python_argv(f"import time; time.sleep(1.5); print({json.dumps(json.dumps(report))})")
    w = watcher(cores_report(2), 0, verify_every=3600, verify_command=slow_verify, fingerprint_every=0.5)
    rounds = []
    publish = w.board.set_next_due  # the loop publishes its schedule once a round
    w.board.set_next_due = lambda due: (rounds.append(1), publish(due))[1]  # type: ignore[method-assign]
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while w.board.last("cores") is None:
            assert time.monotonic() < deadline, "the cores check never ran"
            time.sleep(0.05)
    finally:
        w.request_stop()
        thread.join(timeout=30)
    verify, cores = w.board.last("verify"), w.board.last("cores")
    assert verify is not None and verify.ok and cores is not None and cores.ok
    assert cores.started_at >= verify.started_at + verify.duration_s  # never two TF children at once
    assert len(rounds) < 40, f"the loop spun {len(rounds)} times while the verify ran"
