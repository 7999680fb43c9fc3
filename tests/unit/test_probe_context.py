"""ProbeContext.record keeps what a golden may hold: the first MAX_INTERMEDIATES, and says how many not."""

from __future__ import annotations

import numpy as np

from envlock.golden import IntermediateRecord, ProbeRecord
from envlock.limits import MAX_INTERMEDIATES
from envlock.probes.compare import summarize_array
from envlock.probes.registry import ProbeContext


def test_a_probe_that_records_too_much_keeps_the_first_ones_and_the_golden_still_validates() -> None:
    ctx = ProbeContext(tf=None, np=np, seed=0)
    for i in range(MAX_INTERMEDIATES + 5):
        ctx.record(f"t{i}", np.full(2, i, dtype=np.float32), op="Op")
    assert len(ctx.intermediates) == MAX_INTERMEDIATES and ctx.intermediates[-1][0] == f"t{MAX_INTERMEDIATES - 1}"
    assert ctx.dropped == 5 and ctx.trace_note is not None and "5 more were not kept" in ctx.trace_note
    records = [IntermediateRecord.model_validate({**summarize_array(n, v), "op": op}) for n, v, op in ctx.intermediates]
    record = ProbeRecord(name="user.big", tags=["numpy"], group="canary", status="ok", intermediates=records,
                         trace_note=ctx.trace_note)
    assert len(record.intermediates or []) == MAX_INTERMEDIATES
