"""Localisation: the first operation whose result differs from the golden's.

Pure. A probe that records its intermediates (``ProbeContext.record``: inputs, each layer's forward
output, the loss, each gradient, or a training run's weights after each step) is compared in the
golden's order: the first intermediate that differs while every one before it is identical names
the operation that introduced the drift. Goldens without intermediates (envlock 0.1.0) fall back to
the outputs: which are identical and which differ. Where both sides recorded the oneDNN primitives
a probe executed, the implementations that differ are named too.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from envlock.golden import OutputRecord, ProbeRecord
from envlock.probes.compare import Tolerance, compare_output
from envlock.probes.onednn_verbose import primitive_kinds
from envlock.results import OutputSummary, ProbeRun
from envlock.vocab import LocaliseMethod

# The oneDNN primitive kinds a Keras layer class runs on the CPU (ONEDNN_VERBOSE's kind field): with a
# traced model (envlock.probes.keras_trace), the first differing layer's kinds are named first.
LAYER_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "Conv1D": ("convolution",), "Conv2D": ("convolution",), "Conv3D": ("convolution",),
    "DepthwiseConv2D": ("convolution",), "SeparableConv2D": ("convolution",),
    "Conv2DTranspose": ("deconvolution", "convolution"),
    "Dense": ("matmul", "inner_product", "gemm_api"), "EinsumDense": ("matmul", "gemm_api"),
    "BatchNormalization": ("batch_normalization",), "LayerNormalization": ("layer_normalization",),
    "Softmax": ("softmax",), "ReLU": ("eltwise",), "Activation": ("eltwise",),
    "MaxPooling2D": ("pooling",), "AveragePooling2D": ("pooling",), "GlobalAveragePooling2D": ("reduction", "pooling"),
}


class Localisation(BaseModel):
    method: LocaliseMethod
    first_difference: str | None = None  # the intermediate or output name
    op: str | None = None  # the op type (or training step and variable) that produced it
    identical_before: list[str] = Field(default_factory=list)
    identical_outputs: list[str] = Field(default_factory=list)
    differing_outputs: list[str] = Field(default_factory=list)
    max_ulp: float | None = None
    max_rel_error: float | None = None
    primitives: list[str] = Field(default_factory=list)  # "softmax ran jit:X here, jit:Y in the golden"
    # The differing primitive of the first differing layer's kind (a traced Keras model), e.g.
    # "DepthwiseConv2D: convolution ran jit:X here, jit:Y in the golden"; None when none differs.
    layer_primitive: str | None = None
    summary: str


def _identical(golden: OutputRecord, current: OutputSummary) -> bool:
    return golden.sha256 == current.sha256 and tuple(golden.shape) == current.shape and golden.dtype == current.dtype


def _span(names: list[str]) -> str:
    if not names:
        return "nothing before it"
    if len(names) <= 3:
        return ", ".join(names) + " identical"
    return f"{len(names)} before it identical ({names[0]} .. {names[-1]})"


def compare_primitives(golden: Sequence[str] | None, here: Sequence[str] | None) -> list[str]:
    """``softmax ran jit:avx10_1_512 here, jit:avx512_core in the golden`` for each kind that differs."""
    if golden is None or here is None:
        return []
    g, h = primitive_kinds(list(golden)), primitive_kinds(list(here))
    lines = []
    for kind in sorted(set(g) | set(h)):
        if g.get(kind) == h.get(kind):
            continue
        shown_here = ", ".join(sorted(i or "(no kernel named)" for i in h.get(kind, set()))) or "nothing"
        shown_golden = ", ".join(sorted(i or "(no kernel named)" for i in g.get(kind, set()))) or "nothing"
        if kind not in h:
            lines.append(f"{kind} ran {shown_golden} in the golden, not at all here")
        elif kind not in g:
            lines.append(f"{kind} ran {shown_here} here, not at all in the golden")
        else:
            lines.append(f"{kind} ran {shown_here} here, {shown_golden} in the golden")
    return lines


def _by_intermediates(record: ProbeRecord, run: ProbeRun) -> Localisation | None:
    if not record.intermediates or not run.intermediates:
        return None
    here = {i.name: i for i in run.intermediates}
    before: list[str] = []
    for item in record.intermediates:
        current = here.get(item.name)
        if current is not None and _identical(item, current):
            before.append(item.name)
            continue
        loc = Localisation(method="intermediates", first_difference=item.name, op=item.op, identical_before=before,
                           summary="")
        if current is None:
            loc.summary = f"{item.name} was not recorded here ({_span(before)})"
            return loc
        result = compare_output(item.model_dump(), current.wire(), Tolerance())
        loc.max_ulp, loc.max_rel_error = result.max_ulp, result.max_rel_error
        size = f" (max {result.max_ulp:.0f} ULP)" if result.max_ulp is not None else ""
        loc.summary = f"first difference: {item.name}, produced by {item.op or 'an unnamed op'}{size}; {_span(before)}"
        return loc
    return Localisation(method="intermediates", identical_before=before,
                        summary="every recorded intermediate is identical: the difference is after the last one")


def _by_outputs(record: ProbeRecord, run: ProbeRun) -> Localisation:
    here = {o.name: o for o in run.outputs}
    same = [o.name for o in record.outputs if o.name in here and _identical(o, here[o.name])]
    differ = [o.name for o in record.outputs if o.name not in same]
    if not differ:
        summary = "every output is identical"
    elif same:
        summary = f"{', '.join(same)} identical, {', '.join(differ)} differ{'s' if len(differ) == 1 else ''}"
    else:
        summary = f"every output differs ({', '.join(differ)})"
    if record.trace_note:  # a Keras model the probe handed over that could not be traced: say why
        note = f" (outputs only: {record.trace_note})"
    elif not record.intermediates:
        note = " (outputs only: the golden has no intermediates)"
    else:
        note = ""
    return Localisation(method="outputs", first_difference=differ[0] if differ else None, identical_outputs=same,
                        differing_outputs=differ, summary=summary + note)


def localise(record: ProbeRecord, run: ProbeRun) -> Localisation:
    """Where ``run`` (this machine's child result for the probe) first departs from ``record``."""
    if run.status != "ok":
        return Localisation(method="none", summary=f"the probe did not run here ({run.reason or 'skipped'})")
    loc = _by_intermediates(record, run) or _by_outputs(record, run)
    loc.primitives = compare_primitives(record.onednn_primitives, run.onednn_primitives)
    layer = (loc.op or "").split(",")[0].split(" ")[0] if loc.method == "intermediates" else ""
    for kind in LAYER_PRIMITIVES.get(layer, ()):
        match = next((p for p in loc.primitives if p.startswith(kind + " ")), None)
        if match is not None:
            loc.layer_primitive = f"{layer}: {match}"
            break
    if loc.method == "intermediates":
        outputs = _by_outputs(record, run)
        loc.identical_outputs, loc.differing_outputs = outputs.identical_outputs, outputs.differing_outputs
    return loc
