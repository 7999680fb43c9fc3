"""The child protocol (envlock.protocol) against what a real probe child wrote: every key a real
run carries is declared, every required key is there, and both sides import the same types; the
parsed values (envlock.results) carry the same fields and give back exactly what the child wrote."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from envlock import results
from envlock.golden import IntermediateRecord, OutputRecord
from envlock.protocol import ChildResult, IntermediateSummary, OutputSummary, ProbeRun
from envlock.results import parse_run

RECORDED_RUNS = Path(__file__).resolve().parents[1] / "data" / "explain" / "amd_zen4_runs_onednn_off.json"


def _keys(typed: type) -> tuple[frozenset[str], frozenset[str]]:
    return typed.__required_keys__, typed.__required_keys__ | typed.__optional_keys__  # type: ignore[attr-defined]


def _recorded_runs() -> list[tuple[str, ProbeRun]]:
    runs = json.loads(RECORDED_RUNS.read_text(encoding="utf-8"))["runs"]
    return [(name, run) for name, repeats in sorted(runs.items()) for run in repeats]


@pytest.mark.parametrize(("name", "run"), _recorded_runs(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_real_child_run_matches_the_declared_messages(name: str, run: ProbeRun) -> None:
    required, declared = _keys(ProbeRun)
    assert required <= run.keys() <= declared, f"{name}: {sorted(run.keys() ^ declared)}"
    out_required, out_declared = _keys(OutputSummary)
    for output in run.get("outputs", []):
        assert out_required <= output.keys() <= out_declared
    mid_required, mid_declared = _keys(IntermediateSummary)
    for intermediate in run.get("intermediates", []):
        assert mid_required <= intermediate.keys() <= mid_declared


def test_the_golden_models_validate_exactly_the_protocol_summaries() -> None:
    # The parent turns an OutputSummary into the golden's OutputRecord: the same fields, no more.
    assert set(OutputRecord.model_fields) == _keys(OutputSummary)[1]
    assert set(IntermediateRecord.model_fields) == _keys(IntermediateSummary)[1]



@pytest.mark.parametrize(("name", "run"), _recorded_runs(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_real_run_parses_and_its_outputs_go_back_to_exactly_what_the_child_wrote(name: str, run: ProbeRun) -> None:
    """The golden records ``wire()`` of the parsed outputs: it must be the child's JSON, key for key."""
    parsed = parse_run(run)
    assert parsed.status == run["status"] and parsed.seconds == run["seconds"] and parsed.reason == run.get("reason")
    assert [o.wire() for o in parsed.outputs] == run.get("outputs", [])
    assert (None if parsed.intermediates is None else [i.wire() for i in parsed.intermediates]) \
        == run.get("intermediates")
    assert parsed.onednn_primitives == (None if "onednn_primitives" not in run else tuple(run["onednn_primitives"]))
    assert parsed.onednn_isa == run.get("onednn_isa") and parsed.trace_note == run.get("trace_note")


def test_the_typed_summaries_have_the_protocol_fields() -> None:
    assert {f.name for f in fields(results.OutputSummary)} == _keys(OutputSummary)[1]
    assert {f.name for f in fields(results.Intermediate)} == _keys(IntermediateSummary)[1]
    assert {f.name for f in fields(results.ProbeRun)} == _keys(ProbeRun)[1]
    assert {f.name for f in fields(results.ChildResult)} == _keys(ChildResult)[1]
