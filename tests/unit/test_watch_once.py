"""What `watch --once` prints on stdout: one line per check and the health, escaped (results.render_once)."""

from __future__ import annotations

from envlock.daemon.results import CheckResult, DriftItem, ProbeSummary, render_once


def _result(**kwargs: object) -> CheckResult:
    fields: dict[str, object] = {"kind": "fingerprint", "started_at": 0.0, "duration_s": 0.25, "outcome": "pass"}
    fields.update(kwargs)
    return CheckResult(**fields)  # type: ignore[arg-type]


def test_a_healthy_round_counts_probes_by_status_and_names_tolerated_differences() -> None:
    tolerated = [DriftItem("environment.TF_DETERMINISTIC_OPS", "warning", "set by the image")]
    verify = _result(kind="verify", duration_s=7.61, probes=[
        ProbeSummary("a", "identical"), ProbeSummary("b", "identical"), ProbeSummary("gpu.x", "skipped")])
    text = render_once(True, "ok", _result(tolerated=tolerated), verify)
    assert text.splitlines() == [
        "fingerprint  pass     1 difference(s) tolerated: a passing verify of this golden showed them harmless (0.2 s)",
        "verify       pass     2 identical, 1 skipped (7.6 s)",
        "HEALTHY",
    ]


def test_an_unhealthy_round_gives_the_reason_and_a_check_not_run_says_so() -> None:
    fingerprint = _result(outcome="drift", reason="environment.OMP_NUM_THREADS: 1 -> 2")
    text = render_once(False, "fingerprint drift: environment.OMP_NUM_THREADS: 1 -> 2", fingerprint, None)
    assert text.splitlines() == [
        "fingerprint  drift    environment.OMP_NUM_THREADS: 1 -> 2 (0.2 s)",
        "verify       not run",
        "NOT HEALTHY: fingerprint drift: environment.OMP_NUM_THREADS: 1 -> 2",
    ]


def test_a_reason_from_a_golden_cannot_forge_a_line() -> None:
    forged = "x\nHEALTHY\x1b[2J"
    text = render_once(False, forged, _result(outcome="error", reason=forged), None)
    assert text.count("\n") == 2 and "\x1b" not in text
    assert text.splitlines()[-1] == "NOT HEALTHY: x\\nHEALTHY\\x1b[2J"


def test_the_numeric_class_of_a_conclusive_verify_has_its_line() -> None:
    same = _result(kind="verify", probes=[ProbeSummary("matmul.f32", "identical")], numeric_class="0eaa820319d5",
                   golden_numeric_class="0eaa820319d5", numeric_profile="default")
    assert render_once(True, "ok", _result(), same).splitlines()[2] == (
        "class        0eaa820319d5 (profile default; the golden's too)")
    moved = _result(kind="verify", outcome="drift", reason="probe matmul.f32: drift", numeric_class="c6d2df55e9b4",
                    golden_numeric_class="0eaa820319d5", numeric_profile="default")
    assert render_once(False, "verify drift", _result(), moved).splitlines()[2] == (
        "class        c6d2df55e9b4 (profile default; the golden's is 0eaa820319d5)")
    failed = _result(kind="verify", outcome="error", reason="verify exited with code 3")
    assert len(render_once(False, "verify error", _result(), failed).splitlines()) == 3  # no class: none known
