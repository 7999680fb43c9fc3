"""The probe child's result, parsed once: frozen typed values, the currency above the supervisor.

The child writes plain JSON (``envlock.protocol``'s TypedDicts are that wire schema); the supervisor
turns each file and progress line into these with ``parse_child_result`` / ``parse_run`` and
returns a ``ChildResult``. Nothing above it reads a key. As pipx keeps its metadata file's raw dict
only where the file is read, the raw form lives here and in the supervisor only.

A child killed mid-way, or one that failed outside any probe, leaves only part of the file: the parse
fills in what is missing (``None`` where unknown, empty where there is nothing), and a probe the child
has no run of reads as ``NOT_RUN`` (``ChildResult.runs_of``), the one "not run" there is.

Base layer: the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from envlock import protocol
from envlock.protocol import ChildError
from envlock.vocab import DEFAULT_PROBE_GROUP, RunStatus


@dataclass(frozen=True)
class OutputStats:
    min: float
    max: float
    mean: float
    abs_max: float


@dataclass(frozen=True)
class OutputSummary:
    """One output array, summarised (``envlock.probes.compare.summarize_array``)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    sample_stride: int
    sample_b64: str
    stats: OutputStats | None = None

    def wire(self) -> protocol.OutputSummary:
        """As the child wrote it: what ``compare_output`` and the golden's ``OutputRecord`` take."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "sha256": self.sha256,
                "sample_stride": self.sample_stride, "sample_b64": self.sample_b64, "stats": _stats_wire(self.stats)}


@dataclass(frozen=True)
class Intermediate(OutputSummary):
    """An intermediate tensor a probe recorded with ``ctx.record``, with the op that made it."""

    op: str | None = None

    def wire(self) -> protocol.IntermediateSummary:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "sha256": self.sha256,
                "sample_stride": self.sample_stride, "sample_b64": self.sample_b64, "stats": _stats_wire(self.stats),
                "op": self.op}


def _stats_wire(stats: OutputStats | None) -> protocol.OutputStats | None:
    if stats is None:
        return None
    return {"min": stats.min, "max": stats.max, "mean": stats.mean, "abs_max": stats.abs_max}


def _stats(raw: protocol.OutputStats | None) -> OutputStats | None:
    if not raw:
        return None
    return OutputStats(min=raw["min"], max=raw["max"], mean=raw["mean"], abs_max=raw["abs_max"])


def parse_output(raw: protocol.OutputSummary) -> OutputSummary:
    """One output as the child (or a golden's ``OutputRecord.model_dump()``) has it."""
    return OutputSummary(name=raw["name"], dtype=raw["dtype"], shape=tuple(raw["shape"]), sha256=raw["sha256"],
                         sample_stride=raw["sample_stride"], sample_b64=raw["sample_b64"],
                         stats=_stats(raw.get("stats")))


def parse_intermediate(raw: protocol.IntermediateSummary) -> Intermediate:
    return Intermediate(name=raw["name"], dtype=raw["dtype"], shape=tuple(raw["shape"]), sha256=raw["sha256"],
                        sample_stride=raw["sample_stride"], sample_b64=raw["sample_b64"],
                        stats=_stats(raw.get("stats")), op=raw.get("op"))


@dataclass(frozen=True)
class ProbeRun:
    """One run of one probe. ``outputs`` when ``status`` is ok; ``reason`` otherwise. ``intermediates``
    and ``onednn_primitives`` are None when not recorded (no traced model, verbose output not asked
    for), which is not the same as recorded and empty."""

    status: RunStatus
    seconds: float = 0.0
    reason: str | None = None
    outputs: tuple[OutputSummary, ...] = ()
    intermediates: tuple[Intermediate, ...] | None = None
    onednn_primitives: tuple[str, ...] | None = None
    onednn_isa: str | None = None
    trace_note: str | None = None  # why a model handed to ctx.train_step/forward was not traced

    @property
    def output_hashes(self) -> tuple[str, ...] | None:
        """The outputs' digests, what repeats must agree on; None for a run that did not succeed."""
        return tuple(o.sha256 for o in self.outputs) if self.status == "ok" else None


def parse_run(raw: protocol.ProbeRun) -> ProbeRun:
    """One run as the child wrote it (a line of its progress file, or its result file)."""
    intermediates = raw.get("intermediates")
    primitives = raw.get("onednn_primitives")
    return ProbeRun(status=raw.get("status", "error"), seconds=raw.get("seconds", 0.0), reason=raw.get("reason"),
                    outputs=tuple(parse_output(o) for o in raw.get("outputs") or ()),
                    intermediates=None if intermediates is None else tuple(parse_intermediate(i)
                                                                           for i in intermediates),
                    onednn_primitives=None if primitives is None else tuple(primitives),
                    onednn_isa=raw.get("onednn_isa"), trace_note=raw.get("trace_note"))


# The run of a probe the child has none of (never asked, never reached, or not registered there).
NOT_RUN = ProbeRun(status="skipped", seconds=0.0, reason="not run")


@dataclass(frozen=True)
class ProbeInfo:
    """A probe as the child reported it (a user probe exists only there)."""

    name: str
    tags: tuple[str, ...]
    group: str
    dtype: str | None = None
    description: str | None = None
    needs_gpu: bool = False
    source: Mapping[str, str | None] | None = None  # envlock.probes.user.probe_source; golden's ProbeSource

    @property
    def source_sha256(self) -> str | None:
        """The digest of the probe's code, where the child knows it."""
        return self.source.get("sha256") if self.source else None


def parse_probe_info(name: str, raw: protocol.ProbeMetadata) -> ProbeInfo:
    return ProbeInfo(name=name, tags=tuple(raw.get("tags") or ()), group=raw.get("group") or DEFAULT_PROBE_GROUP,
                     dtype=raw.get("dtype"), description=raw.get("description"),
                     needs_gpu=bool(raw.get("needs_gpu")), source=raw.get("source"))


@dataclass(frozen=True)
class AppliedControls:
    """The controls in force in the child (``envlock.tfcontrols.apply_tf_controls``)."""

    seed: int
    op_determinism: bool
    intra_op_threads: int | None
    inter_op_threads: int | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChildResult:
    """What the probe child (or the children, after a restart) reported. ``ok`` false: ``error`` and
    ``detail`` say why. ``import_seconds`` is None when no child got as far as importing TensorFlow;
    ``tf_info`` is TensorFlow's fingerprint as JSON (``envlock.models.TensorflowInfo`` validates it),
    None with ``tf_info_error`` saying why."""

    ok: bool = False
    error: ChildError | None = None
    detail: str | None = None
    import_seconds: float | None = None
    applied: AppliedControls | None = None
    gpu_available: bool = False
    tf_info: Mapping[str, object] | None = None
    tf_info_error: str | None = None
    probes: Mapping[str, ProbeInfo] = field(default_factory=dict)  # what the child knows of each probe
    order: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # names asked for that nobody registers (``unknown="skip"``)
    suite_seconds: float = 0.0
    runs: Mapping[str, tuple[ProbeRun, ...]] = field(default_factory=dict)
    restarts: int = 0  # children the supervisor started after one died in a probe

    def ran(self, name: str) -> bool:
        """Whether the child has runs of ``name``."""
        return bool(self.runs.get(name))

    def runs_of(self, name: str) -> tuple[ProbeRun, ...]:
        """The child's runs of ``name``; ``(NOT_RUN,)`` when it has none."""
        return self.runs.get(name) or (NOT_RUN,)

    def first_run(self, name: str) -> ProbeRun:
        return self.runs_of(name)[0]


def no_probes_run(why: str) -> ChildResult:
    """The result when no probe child ran at all (nothing to run here)."""
    return ChildResult(tf_info_error=why)


def parse_child_result(raw: Mapping[str, object]) -> ChildResult:
    """The child's result file (``protocol.ChildResult``), or its setup progress line, as typed values.

    Tolerant of a partial file (a child that died, or failed outside any probe): what is missing
    takes the field's default."""
    wire = cast(protocol.ChildResult, raw)  # JSON from the child: its schema, checked no further
    applied = wire.get("applied")
    return ChildResult(
        ok=bool(wire.get("ok")), error=wire.get("error"), detail=wire.get("detail"),
        import_seconds=wire.get("import_seconds"),
        applied=None if applied is None else AppliedControls(
            seed=applied["seed"], op_determinism=applied["op_determinism"],
            intra_op_threads=applied.get("intra_op_threads"), inter_op_threads=applied.get("inter_op_threads"),
            problems=tuple(applied.get("problems") or ())),
        gpu_available=bool(wire.get("gpu_available")), tf_info=wire.get("tf_info"),
        tf_info_error=wire.get("tf_info_error"),
        probes={name: parse_probe_info(name, meta) for name, meta in (wire.get("probes") or {}).items()},
        order=tuple(wire.get("order") or ()), unknown=tuple(wire.get("unknown") or ()),
        suite_seconds=float(wire.get("suite_seconds", 0.0)),
        runs={name: tuple(parse_run(r) for r in runs) for name, runs in (wire.get("runs") or {}).items()},
        restarts=int(wire.get("restarts", 0)),
    )


__all__ = ["NOT_RUN", "AppliedControls", "ChildResult", "Intermediate", "OutputStats", "OutputSummary", "ProbeInfo",
           "ProbeRun", "no_probes_run", "parse_child_result", "parse_intermediate", "parse_output", "parse_probe_info",
           "parse_run"]
