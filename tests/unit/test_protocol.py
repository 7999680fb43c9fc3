"""The child protocol (envlock.protocol) against what a real probe child wrote: every key a real
run carries is declared, every required key is there, and both sides import the same types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.golden import IntermediateRecord, OutputRecord
from envlock.protocol import IntermediateSummary, OutputSummary, ProbeRun

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

