"""A traced Keras model's intermediates (issue 21): their order, and the first differing layer, on the
MobileNetV2 traces recorded on the AMD EPYC Zen 4 with oneDNN on and off (tests/data/README.md: traces/)."""

from __future__ import annotations

from typing import Any

from envlock.explain.localise import localise
from envlock.golden import ProbeRecord, load_golden
from envlock.probes.keras_trace import NOT_FUNCTIONAL
from envlock.results import ProbeRun, parse_run
from tests.helpers import DATA_DIR

TRACES = DATA_DIR / "traces"
DEFAULT, ONEDNN_OFF = (load_golden(TRACES / f"amd-epyc-zen4-mobilenet-{n}.json") for n in ("default", "onednn-off"))


def _record(golden: Any, name: str) -> ProbeRecord:
    record = golden.probe(name)
    assert record is not None
    return record


def _run(record: ProbeRecord, **replace: Any) -> ProbeRun:
    """``record`` as this machine's child would report it."""
    run: dict[str, Any] = {"status": "ok", "seconds": 0.0, "outputs": [o.model_dump() for o in record.outputs],
                           "intermediates": [i.model_dump() for i in record.intermediates or []],
                           "onednn_primitives": record.onednn_primitives}
    run.update(replace)
    return parse_run(run)  # type: ignore[arg-type]  # the child's JSON


def test_intermediates_are_in_computation_order() -> None:
    record = _record(DEFAULT, "user.mobilenet_v2_step")
    names = [i.name for i in record.intermediates or []]
    ops = [i.op or "" for i in record.intermediates or []]
    loss = names.index("loss")
    assert names[0] == "input" and names[1] == "Conv1 output" and names[loss - 1] == "predictions output"
    assert all(n.endswith(" output") and o.endswith("step 0, forward")
               for n, o in zip(names[1:loss], ops[1:loss], strict=True))
    grads = [n for n in names if n.startswith("grad ")]
    updated = [n for n in names if n.startswith("updated ")]
    assert len(grads) == len(updated) == 158 and loss == 1 + 155 and len(names) == 1 + 155 + 1 + 158 + 158 == 473
    # backpropagation's order: the last layer's gradients first; the updates in the layers' order
    assert grads[0].startswith("grad predictions/") and grads[-1] == "grad Conv1/kernel"
    assert updated[0] == "updated Conv1/kernel" and updated[-1].startswith("updated predictions/")
    assert names.index(grads[0]) == loss + 1 and names.index(updated[0]) == loss + 1 + len(grads)


def test_explain_names_the_first_differing_layer_not_an_output() -> None:
    golden, here = _record(DEFAULT, "user.mobilenet_v2_step"), _record(ONEDNN_OFF, "user.mobilenet_v2_step")
    loc = localise(golden, _run(here))
    assert loc.method == "intermediates"
    assert loc.first_difference == "expanded_conv_depthwise output"
    assert loc.op == "DepthwiseConv2D, step 0, forward"
    assert loc.identical_before == ["input", "Conv1 output", "bn_Conv1 output", "Conv1_relu output"]
    assert loc.summary.startswith("first difference: expanded_conv_depthwise output, produced by DepthwiseConv2D")
    assert loc.max_ulp is not None and loc.max_ulp > 0
    assert loc.differing_outputs == ["loss", "output", "updated_weights"]
    # oneDNN ran the convolutions in the golden, not here: named for the layer's own kind first
    assert loc.layer_primitive is not None and loc.layer_primitive.startswith("DepthwiseConv2D: convolution ran ")
    # the other way round: the same layer
    assert localise(here, _run(golden)).first_difference == "expanded_conv_depthwise output"


def test_a_drift_that_starts_in_the_backward_pass_names_the_first_gradient_in_reverse_order() -> None:
    golden = _record(DEFAULT, "user.mobilenet_v2_step")
    items = [i.model_dump() for i in golden.intermediates or []]
    moved = next(k for k, item in enumerate(items) if item["name"] == "grad block_16_project_BN/beta")
    for item in items[moved:]:  # everything from that gradient on comes out different
        item["sha256"] = "sha256:" + "0" * 64
    loc = localise(golden, _run(golden, intermediates=items))
    assert loc.first_difference == "grad block_16_project_BN/beta"
    assert loc.op == "BatchNormalization, step 0, backward"
    assert "loss" in loc.identical_before and loc.identical_before[-1].startswith("grad ")


def test_a_small_functional_model_and_a_subclassed_one() -> None:
    loc = localise(_record(DEFAULT, "user.small_cnn_step"), _run(_record(ONEDNN_OFF, "user.small_cnn_step")))
    assert loc.method == "intermediates" and loc.first_difference is not None
    assert loc.first_difference.endswith(" output") or loc.first_difference.startswith("grad ")
    sub = _record(DEFAULT, "user.subclassed_step")
    assert sub.intermediates == [] and sub.trace_note == NOT_FUNCTIONAL
    loc = localise(sub, _run(_record(ONEDNN_OFF, "user.subclassed_step")))
    assert loc.method == "outputs" and f"(outputs only: {NOT_FUNCTIONAL})" in loc.summary


def test_the_traced_golden_stays_small() -> None:
    size = len(_record(DEFAULT, "user.mobilenet_v2_step").model_dump_json())
    assert size < 2 * 1024 * 1024, size  # samples, not tensors: issue 21's 2 MB bound for MobileNetV2
