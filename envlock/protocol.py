"""The messages between the parent and the probe child (``envlock.probes.child``), typed.

The wire schema: the child builds these, and the supervisor (``envlock.probes.supervisor``) reads
them once, turning them into the typed values of ``envlock.results`` that everything above it
passes around. They are TypedDicts -- plain dicts at run time, so the child serialises them with
``json`` and imports nothing but the standard library for them; mypy checks every key on both
sides. The JSON crosses a process boundary: the parent treats a result as untrusted only as far as
a crashed child can leave it incomplete (``envlock.results.parse_child_result`` fills in what is
missing), and the golden's models validate what is kept.

Flow: the parent writes a ``ChildRequest`` file; the child appends ``ProgressEvent`` lines while it
runs (one per probe run start and end) and finally writes a ``ChildResult`` file.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from envlock.vocab import RunStatus

# Bytes per element of the dtypes a probe output may have (numpy's names; what compare decodes
# and what a golden may hold). Here so the child checks outputs without the golden's models.
DTYPE_ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4,
                  "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8, "complex64": 8,
                  "complex128": 16}

# The child's failure kinds outside any probe: TF did not import (exit 3), bad selection (exit 2).
ChildError = Literal["tensorflow_missing", "bad_input"]


class OutputStats(TypedDict):
    min: float
    max: float
    mean: float
    abs_max: float


class OutputSummary(TypedDict):
    """One output array, summarised (``envlock.probes.compare.summarize_array``); the golden's
    ``OutputRecord`` validates the same shape."""

    name: str
    dtype: str
    shape: list[int]
    sha256: str
    sample_stride: int
    sample_b64: str
    stats: OutputStats | None


class IntermediateSummary(OutputSummary):
    """An intermediate tensor a probe recorded with ``ctx.record``, with the op that made it."""

    op: str | None


class _ProbeRunRequired(TypedDict):
    status: RunStatus
    seconds: float


class ProbeRun(_ProbeRunRequired, total=False):
    """One run of one probe. ``outputs`` and ``intermediates`` when ``status`` is ok; ``reason``
    otherwise; the oneDNN fields only when the request asked for verbose output."""

    reason: str
    outputs: list[OutputSummary]
    intermediates: list[IntermediateSummary]
    onednn_primitives: list[str]
    onednn_isa: str
    trace_note: str  # why a model handed to ctx.train_step/forward was not traced (envlock.probes.keras_trace)


class ProbeMetadata(TypedDict):
    """A probe as the child knows it (a user probe exists only there)."""

    name: str
    tags: list[str]
    group: str
    dtype: str | None
    description: str | None
    needs_gpu: bool
    source: dict[str, Any] | None  # envlock.probes.user.probe_source; the golden's ProbeSource validates it


class AppliedControls(TypedDict):
    """The controls in force in the child after ``envlock.tfcontrols.apply_tf_controls``."""

    seed: int
    op_determinism: bool
    intra_op_threads: int | None
    inter_op_threads: int | None
    problems: list[str]


class _ChildRequestRequired(TypedDict):
    probes: list[str] | None  # None: every probe the child knows
    repeat: int
    seed: int
    op_determinism: bool
    intra_op_threads: int | None
    inter_op_threads: int | None


class ChildRequest(_ChildRequestRequired, total=False):
    collect_tf_info: bool  # fingerprint TF (the first child of a run; a restarted one skips it)
    probe_modules: list[str]
    unknown: Literal["error", "skip"]  # a name nobody registers: bad input, or listed in the result
    affinity: list[int]  # CPUs the child pins itself to before importing numpy/TF
    onednn_verbose: bool  # record the oneDNN primitives each probe executed
    trace: bool  # trace Keras models (ProbeContext.train_step/forward): recording a golden, explain
    entry_points: bool  # load the envlock.probes entry points (default true)
    module_probes: bool  # with ``probes``: also run every probe the probe_modules register (envlock cores)
    # Filled in by the supervisor for one child:
    progress: str  # the progress file's path
    onednn_verbose_dir: str  # where per-probe stdout captures go
    cwd: str  # the user's working directory (the child runs in a private one): probe modules load from it


class ChildOptions(TypedDict, total=False):
    """What a caller sets for one probe child besides its probes and environment: ``run_child``'s keyword
    arguments of the same names (explain's candidate families set them, ``envlock.explain.families``)."""

    affinity: list[int]  # the CPUs it pins itself to (``ChildRequest.affinity``)


class ChildSetup(TypedDict):
    """What the child knows once TF is imported and the probes are selected (also the first
    progress event, so a child that dies later still told the parent this much)."""

    import_seconds: float
    applied: AppliedControls
    gpu_available: bool
    tf_info: dict[str, Any] | None  # envlock.models.TensorflowInfo as JSON; the parent validates it
    tf_info_error: str | None
    probes: dict[str, ProbeMetadata]
    order: list[str]
    unknown: list[str]


class ChildResult(TypedDict, total=False):
    """The result file: ChildSetup's keys plus the runs. ``ok`` false: ``error`` and ``detail`` say
    why, and nothing else is set. Every key is optional because a child killed mid-way, or one
    that failed outside any probe, leaves only part of it (``envlock.results.parse_child_result``)."""

    import_seconds: float
    applied: AppliedControls
    gpu_available: bool
    tf_info: dict[str, Any] | None
    tf_info_error: str | None
    probes: dict[str, ProbeMetadata]
    order: list[str]
    unknown: list[str]
    ok: bool
    error: ChildError
    detail: str
    suite_seconds: float
    runs: dict[str, list[ProbeRun]]
    restarts: int  # children the supervisor started after one died in a probe


class ProgressEvent(TypedDict, total=False):
    """A line of the progress file: ``event`` is import/imported (a probe module, which counts
    against the probe timeout), setup (with ChildSetup's keys), start or run."""

    event: Literal["import", "imported", "setup", "start", "run"]
    module: str
    probe: str
    repeat: int
    run: ProbeRun
