"""explain's candidate runner: crashes, budget, verdicts per probe, the smallest fixing set (fake children)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from envlock.errors import EnvironmentProblem
from envlock.explain import run as explain_run
from envlock.explain.families import Candidate, combine
from envlock.explain.families.affinity import FAMILY as AFFINITY
from envlock.explain.findings import finding_for
from envlock.explain.planner import Plan
from envlock.explain.report import IDENTICAL, UNCHANGED, CandidateOutcome, ProbeOutcome
from envlock.golden import load_golden
from envlock.results import ChildResult, ProbeRun, parse_child_result
from envlock.verify import VerifyRun

REPO = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(REPO / "tests" / "data" / "explain" / "amd_zen4_golden_with_intermediates.json")
RECORD = GOLDEN.probe("elementwise.softmax")
assert RECORD is not None


def _run_of(outputs: list[dict[str, Any]], **setup: float) -> ChildResult:
    """A child's result of the one probe, parsed as the supervisor parses the child's JSON."""
    return parse_child_result({**setup, "runs": {"elementwise.softmax": [{"status": "ok", "outputs": outputs}]}})


GOOD = [o.model_dump() for o in RECORD.outputs]
BAD = [{**o, "sha256": "sha256:" + "1" * 64} for o in GOOD]


def _runner(deadline: float) -> explain_run.CandidateRunner:
    run = VerifyRun(report=None, golden=GOLDEN, manifest=GOLDEN.manifest, environ={},  # type: ignore[arg-type]
                    result=_run_of(BAD, import_seconds=1.0))
    return explain_run.CandidateRunner(run, {"elementwise.softmax": RECORD}, {"elementwise.softmax": {"softmax"}},
                                       deadline, jobs=2)


@pytest.fixture
def fake_child(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def run_child(*, env: dict[str, str], **options: Any) -> ChildResult:
        seen.append({**env, **({"(affinity)": options["affinity"]} if "affinity" in options else {})})
        if env.get("CRASH"):
            raise EnvironmentProblem("the probe process failed (exit -11): Segmentation fault")
        if env.get("SKIP"):
            return ChildResult(runs={"elementwise.softmax": (ProbeRun(status="skipped",
                                                                      reason="bf16 under an AVX2 cap"),)})
        return _run_of(GOOD if env.get("FIX") == "1" and env.get("ALSO") == "1" else BAD)

    monkeypatch.setattr("envlock.explain.run.run_child", run_child)
    return seen


def _c(name: str) -> Candidate:
    return Candidate(f"{name}=1", "environment", "r", env={name: "1"})


def _finding(outcomes: list[CandidateOutcome], plan: Plan | None = None, **extra: Any) -> Any:
    return finding_for("p", outcomes, plan=plan or Plan([], [], []), localisation=None, differing=["x", "y"],
                       cpu_change=None, **extra)


def test_crashes_skips_and_verdicts(fake_child: list[dict[str, Any]]) -> None:
    outcomes = _runner(time.monotonic() + 60).run_all([_c("CRASH"), _c("SKIP"), _c("FIX"),
                                                       combine([_c("FIX"), _c("ALSO")], {})])
    assert [o.status for o in outcomes] == ["crashed", "tried", "tried", "tried"]
    assert "Segmentation fault" in (outcomes[0].detail or "")
    assert outcomes[1].probes["elementwise.softmax"] == ProbeOutcome(status="could not run",
                                                                     reason="bf16 under an AVX2 cap")
    assert outcomes[2].probes["elementwise.softmax"] == UNCHANGED
    assert outcomes[3].probes["elementwise.softmax"] == IDENTICAL and outcomes[3].size == 2
    # --json writes each outcome as the sentence it always was
    sentence = outcomes[1].model_dump(mode="json")["probes"]["elementwise.softmax"]
    assert sentence == "could not run: bf16 under an AVX2 cap"


def test_a_probe_outcome_reads_back_from_its_json_sentence() -> None:
    for outcome in (IDENTICAL, UNCHANGED, ProbeOutcome(status="partly", restored=("a", "b")),
                    ProbeOutcome(status="could not run", reason="no GPU: skipped")):
        dumped = CandidateOutcome(id="A=1", kind="environment", reason="r", probes={"p": outcome}).model_dump_json()
        assert CandidateOutcome.model_validate_json(dumped).probes["p"] == outcome
    assert ProbeOutcome(status="partly", restored=("a", "b")).sentence == "partly: restored a, b"


def test_the_affinity_family_pins_the_child_and_all_together_keeps_it(fake_child: list[dict[str, Any]]) -> None:
    pinned = Candidate("affinity=0,1", "affinity", "r", settings={"affinity": (0, 1)})
    together = combine([_c("FIX"), pinned], {})
    assert together.members == ("FIX=1", "affinity=0,1") and together.settings == {"affinity": (0, 1)}
    outcomes = _runner(time.monotonic() + 60).run_all([pinned, together])
    assert [s.get("(affinity)") for s in fake_child] == [[0, 1], [0, 1]] and fake_child[1]["FIX"] == "1"
    assert outcomes[1].model_dump(mode="json")["affinity"] == [0, 1]
    assert AFFINITY.shell_hint([0, 1]) == "taskset -c 0,1"


def test_candidates_that_do_not_fit_the_budget_are_not_started(fake_child: list[dict[str, Any]]) -> None:
    outcomes = _runner(time.monotonic() + 0.5).run_all([_c("FIX"), _c("ALSO")])
    assert [o.status for o in outcomes] == ["not tried (budget)"] * 2 and fake_child == []


def test_shrinking_all_together_keeps_only_what_is_needed(fake_child: list[dict[str, Any]]) -> None:
    members = [_c("FIX"), _c("NOISE"), _c("ALSO")]
    plan = Plan([*members, combine(members, {})], [], [])
    runner = _runner(time.monotonic() + 60)
    combined = runner.run_all([plan.candidates[-1]])[0]
    assert combined.probes["elementwise.softmax"] == IDENTICAL
    smaller, tried = explain_run.shrink(runner, plan, plan.candidates[-1], "elementwise.softmax", {})
    assert smaller is not None and smaller.id == "FIX=1 + ALSO=1" and tried


def test_a_finding_without_any_fix_is_hardware_bound_or_version_or_unproved() -> None:
    tried = CandidateOutcome(id="A=1", kind="environment", reason="r", status="tried", probes={"p": UNCHANGED})
    hardware = finding_for("p", [tried], plan=Plan([], [], []), localisation=None, differing=["x"],
                           cpu_change="AMD here")
    assert hardware.status == "hardware-bound" and "the CPU (AMD here)" in hardware.detail
    assert _finding([tried], Plan([], [], ["numpy 1 -> 2"])).status == "version"
    skipped = tried.model_copy(update={"status": "not tried (budget)", "probes": {}})
    assert _finding([skipped]).status == "not proved"
    could_not = tried.model_copy(update={"probes": {"p": ProbeOutcome(status="could not run", reason="r")}})
    assert _finding([could_not]).status == "not proved"
    partly = tried.model_copy(update={"probes": {"p": ProbeOutcome(status="partly", restored=("y",))}})
    finding = _finding([partly])
    assert finding.status == "partly" and finding.detail.startswith("restored y under A=1")


def test_a_cause_nobody_recorded_is_bisected_and_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    suspects = tuple(sorted([*(f"CI_VAR_{i}" for i in range(20)), "GLIBC_TUNABLES", "MY_API_TOKEN"]))
    seen: list[dict[str, str]] = []

    def run_child(*, env: dict[str, str], **_: Any) -> ChildResult:
        seen.append(env)
        return _run_of(BAD if "GLIBC_TUNABLES" in env else GOOD)

    monkeypatch.setattr("envlock.explain.run.run_child", run_child)
    runner = _runner(time.monotonic() + 60)
    runner.run.environ.update({n: "value-" + n for n in suspects})
    found, tried = explain_run.search_unrecorded(runner, suspects, ["elementwise.softmax"])
    assert found["elementwise.softmax"].cause == ("GLIBC_TUNABLES",)
    assert len(seen) == len(tried) <= 1 + 2 * 5  # unset all, then both halves per level
    finding = finding_for("elementwise.softmax", tried, plan=Plan([], [], []), localisation=None,
                          differing=["softmax"], cpu_change=None,
                          unrecorded=(found["elementwise.softmax"], len(suspects)))
    assert finding.status == "fixed" and finding.fixed_by == "unset GLIBC_TUNABLES"
    assert finding.env == {"GLIBC_TUNABLES": None} and finding.proof().startswith("fixed by unset GLIBC_TUNABLES")
    # Names only: no value of this environment is in any outcome.
    dumped = str([o.model_dump() for o in tried])
    assert "value-" not in dumped


def test_nothing_unrecorded_restores_so_the_finding_says_it_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("envlock.explain.run.run_child", lambda **_: _run_of(BAD))
    found, tried = explain_run.search_unrecorded(_runner(time.monotonic() + 60), ("A", "B", "C"),
                                                 ["elementwise.softmax"])
    assert found["elementwise.softmax"].restores is False and len(tried) == 1
    finding = finding_for("elementwise.softmax", tried, plan=Plan([], [], []), localisation=None,
                          differing=["softmax"], cpu_change=None, unrecorded=(found["elementwise.softmax"], 3))
    assert finding.status == "hardware-bound"
    assert "nor did unsetting the 3 variable(s) set here that the golden does not have" in finding.detail


def test_past_the_deadline_no_child_starts_and_none_is_restarted() -> None:
    # The unit layer fails on any process start: this proves none is attempted.
    with pytest.raises(explain_run.BudgetSpent):
        explain_run.DeadlineRunner(time.monotonic() - 1).run_watched(["true"], timeout=60, watch=lambda: None)
    outcome = _runner(time.monotonic() - 1).run_one(_c("FIX"))
    assert outcome.status == "not tried (budget)"


def test_a_child_stopped_at_the_deadline_is_reported_and_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def run_child(*, runner: explain_run.Runner, timeout: float, **_: Any) -> ChildResult:
        calls.append(timeout)
        assert isinstance(runner, explain_run.DeadlineRunner)
        raise explain_run.BudgetSpent

    monkeypatch.setattr("envlock.explain.run.run_child", run_child)
    outcome = _runner(time.monotonic() + 30).run_one(_c("FIX"))
    assert outcome.status == "stopped (budget)" and len(calls) == 1 and calls[0] <= 30
