"""The two checks: fingerprint diff filtering, and verify children that pass, drift, hang or crash."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from envlock.daemon.checks import (
    ChildReport,
    ReportedDifference,
    ReportedProbe,
    fingerprint_check,
    interpret_verify,
    parse_report,
    value_json,
)
from envlock.daemon.process import VerifyRunner
from envlock.daemon.results import difference_key
from envlock.diff import Difference
from envlock.verdict import ProbeVerdict, VerifyReport
from tests.helpers import DATA_DIR, process_gone, python_argv, run_python

# The verify check's handling of a real child (output, exit, crash, timeout, kill, reaping) is the point.
VERIFY_CHILD = pytest.mark.processes("VerifyRunner's handling of a real child")


def _diff(path: str, severity: str = "critical", reason: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(path=path, severity=severity, reason=reason or f"{path}: changed")


def _fingerprint(differences: list[SimpleNamespace]):
    return fingerprint_check(
        object(), golden_digest="sha256:g", environ={},
        capture=lambda environ: SimpleNamespace(digest="sha256:now"), diff=lambda old, new: differences,
    )


def test_fingerprint_passes_without_failing_differences() -> None:
    result = _fingerprint([_diff("host.kernel", "info")])
    assert result.outcome == "pass" and result.reason is None and result.drift == []
    assert result.fingerprint_digest == "sha256:now" and result.golden_digest == "sha256:g"


def test_fingerprint_ignores_the_tensorflow_section_it_cannot_see() -> None:
    result = _fingerprint([_diff("tensorflow.status"), _diff("tensorflow"), _diff("tensorflowx.y", "warning")])
    assert [d.path for d in result.drift] == ["tensorflowx.y"]


def test_fingerprint_drift_reason_is_the_first_difference() -> None:
    result = _fingerprint([_diff("environment.TF_ENABLE_ONEDNN_OPTS", reason="oneDNN switched"),
                           _diff("cpu.isa.avx2", "warning")])
    assert result.outcome == "drift"
    assert result.reason == "oneDNN switched (and 1 more)"
    assert [(d.path, d.severity) for d in result.drift] == [
        ("environment.TF_ENABLE_ONEDNN_OPTS", "critical"), ("cpu.isa.avx2", "warning")]


def test_differences_a_passing_verify_vouched_for_are_tolerated() -> None:
    env = SimpleNamespace(path="environment.TF_DETERMINISTIC_OPS", severity="critical", reason="set", new="1")
    isa = SimpleNamespace(path="cpu.isa.avx512f", severity="critical", reason="avx512f lost", new=False)
    vouched = frozenset({difference_key(env.path, value_json("1")), difference_key(isa.path, value_json(True))})
    result = fingerprint_check(object(), golden_digest="g", environ={}, vouched=vouched,
                               capture=lambda environ: SimpleNamespace(digest="d"), diff=lambda a, b: [env, isa])
    assert [d.path for d in result.tolerated] == ["environment.TF_DETERMINISTIC_OPS"]
    assert [d.path for d in result.drift] == ["cpu.isa.avx512f"]  # same field, another value: not vouched
    assert result.outcome == "drift"


def test_fingerprint_capture_failure_is_an_error_result() -> None:
    def boom(environ):
        raise RuntimeError("cannot read /proc/cpuinfo\nsecond line")

    result = fingerprint_check(object(), golden_digest=None, environ={}, capture=boom, diff=lambda a, b: [])
    assert result.outcome == "error"
    assert result.reason == "fingerprint capture failed: RuntimeError: cannot read /proc/cpuinfo"


def test_fingerprint_check_captures_with_the_environment_it_is_given() -> None:
    """No hidden snapshot: the capture sees exactly the environment the daemon passes in."""
    seen: list[object] = []
    environ = {"OMP_NUM_THREADS": "3"}
    result = fingerprint_check(object(), golden_digest="g", environ=environ,
                               capture=lambda env: seen.append(env) or SimpleNamespace(digest="d"),
                               diff=lambda a, b: [])
    assert result.outcome == "pass" and seen == [environ]


# ---- verify ------------------------------------------------------------------------------

REPORT = {
    "reproduces": False, "exit_code": 1, "golden_digest": "sha256:g", "manifest_digest": "sha256:m",
    "probes": [
        {"name": "rng", "status": "identical", "max_ulp": 0, "max_rel_error": 0.0, "mismatched": 0,
         "reason": None, "causes": []},
        {"name": "matmul", "status": "drift", "max_ulp": 812.0, "max_rel_error": 3e-7, "mismatched": 40,
         "reason": "40 elements differ, up to 812 ULP", "causes": []},
    ],
    "differences": [
        {"path": "tensorflow.onednn_enabled", "old": False, "new": True, "severity": "critical",
         "reason": "tensorflow.onednn_enabled: False -> True", "components": ["matmul"]},
        {"path": "environment.X", "old": None, "new": "1", "severity": "critical", "reason": "x", "components": []},
    ],
}


def _interpret(returncode: int, stdout: str = "", stderr: str = ""):
    return interpret_verify(returncode=returncode, stdout=stdout, stderr=stderr, started=1.0, duration=2.0,
                            golden_digest="sha256:daemon")


def test_verify_drift_keeps_probes_and_tf_only_differences() -> None:
    result = _interpret(1, json.dumps(REPORT))
    assert result.outcome == "drift"
    assert [d.path for d in result.drift] == ["probes.matmul", "tensorflow.onednn_enabled"]
    assert result.reason == "probe matmul: 40 elements differ, up to 812 ULP (and 1 more)"
    assert [(p.name, p.max_ulp) for p in result.probes] == [("matmul", 812.0), ("rng", 0.0)]
    assert result.golden_digest == "sha256:daemon" and result.fingerprint_digest == "sha256:m"


def test_verify_pass_vouches_for_the_differences_it_saw() -> None:
    report = {**REPORT, "reproduces": True, "exit_code": 0, "probes": [{**REPORT["probes"][0]}]}
    result = _interpret(0, "some log line\n" + json.dumps(report) + "\n")
    assert result.outcome == "pass" and result.reason is None and result.exit_code == 0
    assert result.vouched == ['environment.X="1"', "tensorflow.onednn_enabled=true"]
    assert _interpret(1, json.dumps(REPORT)).vouched == []  # a drifting verify vouches for nothing


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "expected"),
    [
        (3, "", "envlock: error: TensorFlow is not importable\n", "verify exited with code 3: envlock: error: TensorF"),
        (-11, "", "Fatal Python error: Segmentation fault\n\nCurrent thread", "verify was killed by SIGSEGV: Current"),
        (0, "not json at all\n", "", "verify printed no JSON report: not json at all"),
        (1, "", "", "verify printed no JSON report: no output"),
        (2, json.dumps(REPORT), "envlock: error: golden.json: truncated JSON", "verify exited with code 2: envlock"),
    ],
)
def test_verify_failures_are_errors_with_exit_code_and_last_stderr_line(returncode, stdout, stderr, expected) -> None:
    result = _interpret(returncode, stdout, stderr)
    assert result.outcome == "error"
    assert result.reason.startswith(expected)
    assert result.exit_code == returncode


def test_parse_report_needs_a_verify_report_object() -> None:
    assert parse_report('{"a": 1}') is None
    assert parse_report("[1, 2]") is None
    assert parse_report('noise\n{"reproduces": true}\n').reproduces is True
    assert parse_report('noise\n{"reproduces": true}\ntrailing noise\n').reproduces is True
    indented = json.dumps({"reproduces": False, "probes": [{"name": "a"}]}, indent=2)
    report = parse_report("warning: something\n" + indented + "\n")
    assert report is not None and not report.reproduces and [p.name for p in report.probes] == ["a"]


def test_a_malformed_entry_of_a_report_is_skipped_not_the_report() -> None:
    """A report is read once, into typed fields; an entry that is not an object (or a probe
    without a name) is left out, and a missing probe status or difference reason reads as before."""
    report = parse_report(json.dumps({
        "reproduces": 1, "manifest_digest": 7, "probes": [3, {"name": 4}, {"name": "p", "max_ulp": True}],
        "differences": ["x", {"path": 5, "new": [1]}, {"path": "tensorflow.a", "severity": "critical"}],
    }))
    assert report is not None and report.reproduces is True and report.manifest_digest is None
    [probe] = report.probes
    assert (probe.name, probe.status, probe.max_ulp, probe.reason) == ("p", "None", None, None)
    assert [(d.path, d.severity, d.reason) for d in report.differences] == [
        (None, None, "None"), ("tensorflow.a", "critical", "None")]
    assert parse_report('{"reproduces": false, "probes": {"a": 1}}').probes == []


def test_what_the_daemon_reads_of_a_report_is_what_verify_writes() -> None:
    """ChildReport is the daemon's reading of envlock.verdict.VerifyReport: no field verify never writes."""
    assert set(ChildReport.model_fields) <= set(VerifyReport.model_fields)
    assert set(ReportedProbe.model_fields) <= set(ProbeVerdict.model_fields)
    assert set(ReportedDifference.model_fields) <= set(Difference.model_fields)


@VERIFY_CHILD
def test_verify_child_that_hangs_is_killed_with_its_grandchildren(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    child = python_argv(f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pids)!r}, "w").write(str(grandchild.pid))
        time.sleep(300)
    """)
    t0 = time.monotonic()
    result = VerifyRunner(child, timeout_s=1.5, golden_digest="g", env=os.environ).run()
    elapsed = time.monotonic() - t0
    assert result is not None and result.outcome == "timeout"
    assert result.reason == "verify timed out after 1.5 s (killed)"
    assert elapsed < 30
    assert process_gone(int(pids.read_text()), timeout_s=10)


@VERIFY_CHILD
def test_verify_child_that_crashes_is_an_error() -> None:
    child = python_argv("""
        import os, sys
        sys.stderr.write("probe matmul: about to crash\\n"); sys.stderr.flush()
        os.abort()
    """)
    result = VerifyRunner(child, timeout_s=60, golden_digest="g", env=os.environ).run()
    assert result is not None and result.outcome == "error"
    assert result.reason == "verify was killed by SIGABRT: probe matmul: about to crash"
    assert result.exit_code == -6


@VERIFY_CHILD
def test_verify_child_report_is_read_from_stdout() -> None:
    child = python_argv(f"""
        import sys
        print({json.dumps(json.dumps(REPORT))})
        sys.exit(1)
    """)
    result = VerifyRunner(child, timeout_s=60, golden_digest="g", env=os.environ).run()
    assert result is not None and result.outcome == "drift" and result.exit_code == 1


@VERIFY_CHILD
def test_missing_verify_command_is_an_error_not_an_exception() -> None:
    result = VerifyRunner(["/nonexistent/envlock-verify"], timeout_s=5, golden_digest="g", env=os.environ).run()
    assert result is not None and result.outcome == "error"
    assert "cannot start verify command" in result.reason


@VERIFY_CHILD
def test_cancel_kills_a_running_child_and_returns_none() -> None:
    runner = VerifyRunner(python_argv("import time; time.sleep(300)"), timeout_s=300, golden_digest="g", env=os.environ)
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(runner.run()))
    thread.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    runner.cancel()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert out == [None]
    assert time.monotonic() - t0 < 10


@VERIFY_CHILD
def test_verify_child_gets_the_environment_the_daemon_started_with(tmp_path: Path) -> None:
    seen = tmp_path / "env.json"
    child = python_argv(f"""
        import json, os
        open({str(seen)!r}, "w").write(json.dumps(dict(os.environ)))
        print(json.dumps({{"reproduces": True, "probes": [], "differences": []}}))
    """)
    result = VerifyRunner(child, timeout_s=60, golden_digest="g", env={"ENVLOCK_TEST_A": "1"}).run()
    assert result is not None and result.outcome == "pass"
    child_env = json.loads(seen.read_text())
    assert child_env.get("ENVLOCK_TEST_A") == "1"
    assert "PATH" in os.environ and "PATH" not in child_env  # what it was given, not os.environ


@VERIFY_CHILD
def test_killed_grandchildren_are_reaped_when_the_daemon_is_their_reaper(tmp_path: Path) -> None:
    """In a container the daemon is PID 1 and inherits the orphans of a killed verify group.
    A child subreaper is the same situation outside a container: no zombie may be left."""
    code = """
        import ctypes, json, os, sys
        from envlock.daemon.process import VerifyRunner
        PR_SET_CHILD_SUBREAPER = 36
        assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        hang = [sys.executable, "-c",
                "import subprocess, sys, time; "
                "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                "open(sys.argv[1], 'w').write(str(g.pid)); time.sleep(300)", sys.argv[1]]
        result = VerifyRunner(hang, timeout_s=1.5, golden_digest=None, env=os.environ).run()
        grandchild = int(open(sys.argv[1]).read())
        print(result.outcome, os.path.exists(f"/proc/{grandchild}"))  # still a zombie of ours?
    """
    pid_file = tmp_path / "grandchild"
    proc = run_python(code, str(pid_file), timeout=60)
    assert proc.stdout.split() == ["timeout", "False"], "the killed grandchild was left as a zombie"


# ---- the numeric class a verify reports (issue 20) -----------------------------------------

# Real reports: `envlock verify` of a 2-probe golden (matmul.f32, rng.global_seed) on the AMD EPYC
# Zen 4 in the golden's environment, and with oneDNN switched off (matmul.f32 drifts).
RECORDED_SAME = DATA_DIR / "records" / "verify-matmul-rng-default.json"
RECORDED_ONEDNN_OFF = DATA_DIR / "records" / "verify-matmul-rng-onednn-off.json"


def test_verify_carries_the_reports_numeric_class_profile_and_the_goldens_class() -> None:
    same = _interpret(0, RECORDED_SAME.read_text())
    assert same.outcome == "pass"
    assert (same.numeric_class, same.golden_numeric_class, same.numeric_profile) == (
        "0eaa820319d5", "0eaa820319d5", "default")
    off = _interpret(1, RECORDED_ONEDNN_OFF.read_text())
    assert off.outcome == "drift" and off.numeric_profile == "default"
    assert off.golden_numeric_class == same.numeric_class and off.numeric_class != same.numeric_class


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, (None, None, None)),  # a report from before 0.4, or a pytest-plugin golden's
    ({"numeric_class": "0EAA820319D5", "numeric_profile": "default"}, (None, None, "default")),
    ({"numeric_class": "0eaa820319d5x", "numeric_profile": "default"}, (None, None, "default")),
    ({"numeric_class": 12, "golden_numeric_class": ["x"], "numeric_profile": "default"}, (None, None, "default")),
    ({"numeric_class": "0eaa820319d5", "numeric_profile": "portable v1"}, (None, None, None)),  # not a label value
    ({"numeric_class": "0eaa820319d5", "numeric_profile": "-default"}, (None, None, None)),
    ({"numeric_class": "0eaa820319d5", "numeric_profile": "p" * 64}, (None, None, None)),
    ({"numeric_class": "0eaa820319d5"}, (None, None, None)),  # a class means nothing without its profile
    ({"numeric_class": "0eaa820319d5", "golden_numeric_class": "c6d2df55e9b4", "numeric_profile": "portable-v1"},
     ("0eaa820319d5", "c6d2df55e9b4", "portable-v1")),
])
def test_only_well_formed_numeric_fields_are_kept(fields: dict, expected: tuple) -> None:
    result = _interpret(1, json.dumps({**REPORT, **fields}))
    assert (result.numeric_class, result.golden_numeric_class, result.numeric_profile) == expected
