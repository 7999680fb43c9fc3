"""explain's candidate families: one table in CandidateKind's order, each lever in one module, and
what a family's setting beyond the environment does to a child and to the report (no TF, no host)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from envlock.explain.families import FAMILIES, SETTINGS, Candidate, Launch, apply, combine, family
from envlock.explain.planner import plan_interventions
from envlock.explain.report import CandidateOutcome, ExplainReport, Finding
from envlock.golden import load_golden
from envlock.vocab import CANDIDATE_KINDS
from tests.recorded import recorded_manifest

REPO = Path(__file__).resolve().parents[2]
EXPLAIN = REPO / "envlock" / "explain"
RECORDED_REPORT = (REPO / "tests" / "data" / "machines" / "intel-xeon-amx-2vcpu-2026-12-03"
                   / "explain-of-amd-epyc-zen4-2vcpu.json")


def test_the_table_is_the_vocabulary_in_its_order() -> None:
    assert tuple(f.kind for f in FAMILIES) == CANDIDATE_KINDS
    assert all(family(f.kind) is f for f in FAMILIES)
    assert SETTINGS == ("affinity",)


def test_affinity_is_known_only_to_its_family() -> None:
    # The family, and the table's row for it.
    exempt = {EXPLAIN / "families" / "affinity.py", EXPLAIN / "families" / "__init__.py"}
    mentions = [p.relative_to(REPO).as_posix() for p in sorted(EXPLAIN.rglob("*.py"))
                if p not in exempt and re.search(r"affinity|taskset", p.read_text(encoding="utf-8"))]
    assert mentions == []
    display = (REPO / "envlock" / "display.py").read_text(encoding="utf-8")
    explain_view = display.split("# ---------------------------------------------------------------- explain")[1]
    assert not re.search(r"affinity|taskset", explain_view.split("\n# ----")[0])


def test_every_planned_candidate_applies_to_a_launch() -> None:
    golden = load_golden(REPO / "goldens" / "cpu-reference.json")
    here = recorded_manifest("intel-xeon-amx").model_copy(deep=True)
    here.cpu.affinity = [0]
    env = {**here.environment, "OMP_NUM_THREADS": "3"}
    plan = plan_interventions(golden.manifest, golden.lockdown.environment, here, env)
    kinds = {c.kind for c in plan.candidates}
    assert {"environment", "affinity", "isa", "all"} <= kinds
    for candidate in plan.candidates:
        launch = apply(candidate, Launch(env=dict(env)))
        assert all(launch.env.get(n) == v for n, v in candidate.env.items() if v is not None)
        assert not [n for n, v in candidate.env.items() if v is None and n in launch.env]
        assert launch.options == ({"affinity": list(candidate.settings["affinity"])} if candidate.settings else {})


def test_all_together_applies_each_members_setting() -> None:
    pinned = Candidate("affinity=0", "affinity", "r", settings={"affinity": (0,)})
    threads = Candidate("OPENBLAS_NUM_THREADS=1", "threads", "r", env={"OPENBLAS_NUM_THREADS": "1"})
    together = combine([threads, pinned], {})
    launch = apply(together, Launch(env={"OPENBLAS_NUM_THREADS": "4", "PATH": "/bin"}))
    assert launch.env == {"OPENBLAS_NUM_THREADS": "1", "PATH": "/bin"} and launch.options == {"affinity": [0]}
    assert together.members == ("OPENBLAS_NUM_THREADS=1", "affinity=0") and together.size == 2


def test_settings_are_one_json_field_each_as_before() -> None:
    outcome = CandidateOutcome(id="affinity=0,1", kind="affinity", reason="r", settings={"affinity": [0, 1]})
    dumped = outcome.model_dump(mode="json")
    assert dumped["affinity"] == [0, 1] and "settings" not in dumped
    assert CandidateOutcome.model_validate(dumped) == outcome
    assert Finding(probe="p").model_dump(mode="json")["affinity"] is None
    recorded = json.loads(RECORDED_REPORT.read_text(encoding="utf-8"))
    report = ExplainReport.model_validate(recorded)
    again = report.model_dump(mode="json")
    assert again["emit_affinity"] is None and "emit_settings" not in again
    assert again["candidates"] == recorded["candidates"] and not report.emitted_hints()
    pinned = report.model_copy(update={"emit_settings": {"affinity": [2, 3]}})
    assert pinned.model_dump(mode="json")["emit_affinity"] == [2, 3] and pinned.emitted_hints() == ["taskset -c 2,3"]
