"""A probe's definition: the context it runs with, its record, and the ``@probe`` decorator that registers it.

The probe suites (``envlock.probes.suite_*``) and user probe modules register through ``probe``;
``envlock.probes.registry`` imports the suites, in its ``SUITES`` table, and answers which probes
there are. Like the suites, this module imports no TensorFlow and no numpy: the TF-free parent
loads it too, and the child hands a probe ``ctx.tf`` and ``ctx.np``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envlock.limits import MAX_INTERMEDIATES
from envlock.tags import PROBE_TAGS
from envlock.vocab import ProbeGroup, check_probe_group

Group = ProbeGroup  # the vocabulary is envlock.vocab's

# The tag vocabulary (documented in --list-probes and shared with envlock.diff).
KNOWN_TAGS: frozenset[str] = frozenset(PROBE_TAGS)


class ProbeSkipped(Exception):
    """Raised by a probe that cannot run here (e.g. no GPU); the message says why."""


@dataclass
class ProbeContext:
    """What a probe gets: the modules, the seed, and a per-process cache for compiled functions."""

    tf: Any
    np: Any
    seed: int
    gpu_available: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    # Intermediate tensors of the running probe, in computation order (see ``record``); the child
    # empties it before each probe and stores it beside the outputs (localisation in explain).
    intermediates: list[tuple[str, Any, str | None]] = field(default_factory=list)
    # Trace Keras models (``train_step``/``forward``): on when a golden is recorded or explain localises;
    # off in verify, which compares outputs only. ``trace_note``: why the last model was not traced.
    trace: bool = True
    trace_note: str | None = None
    trace_steps: int = 0  # traced calls so far in this probe: the second one's names start "step 1: "
    dropped: int = 0  # intermediates not kept in this probe (past MAX_INTERMEDIATES)

    def start_probe(self) -> None:
        """Forget what the last probe recorded (the child calls it before each probe run)."""
        self.intermediates.clear()
        self.trace_note, self.trace_steps, self.dropped = None, 0, 0

    def record(self, name: str, tensor: Any, *, op: str | None = None) -> None:
        """Keep ``tensor`` (a TF tensor or an array) as the probe's next intermediate, produced by ``op``.

        Call in computation order: inputs, each layer's forward output, the loss, each gradient.
        explain names the first one that differs from the golden while all before it are identical.
        """
        if len(self.intermediates) >= MAX_INTERMEDIATES:  # a golden's limit: the first ones are the ones that count
            self.dropped += 1
            self.trace_note = (f"recorded the first {MAX_INTERMEDIATES} intermediates; {self.dropped} more were not "
                               "kept (a golden's limit)")
            return
        value = tensor.numpy() if hasattr(tensor, "numpy") else tensor
        self.intermediates.append((name, value, op))

    def train_step(self, model: Any, x: Any, y: Any, *, loss: Callable[[Any, Any], Any],
                   optimizer: Any) -> dict[str, Any]:
        """One training step of a Keras ``model`` on (x, y); returns the probe's outputs (``loss``,
        ``output``, ``updated_weights``). Traced runs record every layer's output, the loss, each
        gradient and each updated variable as intermediates (envlock.probes.keras_trace)."""
        from envlock.probes import keras_trace  # lazy: only the probe child traces; the TF-free parent never loads it

        outputs, note = keras_trace.train_step(self, model, x, y, loss=loss, optimizer=optimizer, traced=self.trace,
                                               step=self.trace_steps)
        self.trace_steps += 1
        self.trace_note = self.trace_note or note
        return outputs

    def forward(self, model: Any, x: Any) -> dict[str, Any]:
        """One inference call of a Keras ``model``; returns ``{"output": ...}``, traced like ``train_step``."""
        from envlock.probes import keras_trace  # lazy: only the probe child traces; the TF-free parent never loads it

        outputs, note = keras_trace.forward(self, model, x, traced=self.trace, step=self.trace_steps)
        self.trace_steps += 1
        self.trace_note = self.trace_note or note
        return outputs

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Build once per process: repeats must not pay tracing/XLA compilation twice."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


ProbeFn = Callable[[ProbeContext], dict[str, Any]]


@dataclass(frozen=True)
class Probe:
    name: str
    tags: tuple[str, ...]
    group: Group
    dtype: str
    description: str
    fn: ProbeFn
    needs_gpu: bool = False


_REGISTRY: dict[str, Probe] = {}


def registered_probes() -> dict[str, Probe]:
    """Every probe registered so far, in the order registered (``envlock.probes.registry.all_probes``
    puts the built-in suites first, in their table's order)."""
    return dict(_REGISTRY)


@dataclass(frozen=True)
class Measured:
    """A built-in probe's group and extra tags as two-vendor data set them, with the evidence."""

    group: Group
    tags: frozenset[str]
    evidence: str


# What measurements on both machine kinds changed about a built-in probe's declared group and tags.
# Kept apart from the decorators on purpose: a probe's source digest covers its decorator, so editing
# one would mark every golden recorded before as "probe source changed" although the computation is
# the same. The evidence is tests/data/machines/ (the Zen 4 and the Intel full-suite goldens, and
# the Intel explain of the Zen 4 golden): versions identical, no configuration moved these probes,
# yet they differ across vendors through the CPU's approximate reciprocal/rsqrt ("approx"), or
# through oneDNN's bf16 kernel choice by ISA (AMX vs AVX512_BF16, "bf16").
_CROSS_VENDOR = ("differs between the Zen 4 and the Intel golden with identical versions; explain on the "
                 "Intel machine: no configuration restores it")
MEASURED: dict[str, Measured] = {
    "layers.batchnorm_train": Measured(
        "hardware", frozenset({"approx"}),
        f"{_CROSS_VENDOR}; the batch normalisation runs through rsqrt (32 ULP, 100 of 256 elements); no "
        "setting of the Zen 4 drift matrix moved it, so it was 'stable' from one machine's data"),
    "compile.eager": Measured(
        "canary", frozenset({"approx"}),
        f"{_CROSS_VENDOR}; first difference grad_picked, produced by Reciprocal (LogGrad), 2 ULP"),
    "compile.function": Measured(
        "canary", frozenset({"approx"}),
        f"{_CROSS_VENDOR}; first difference grad_picked, produced by Reciprocal (LogGrad), 2 ULP"),
    "training.keras_fit": Measured(
        "canary", frozenset({"approx"}),
        f"{_CROSS_VENDOR}; first difference at the first Adam update of Dense[0]/kernel (its loss gradient)"),
    "distribute.mirrored_step": Measured(
        "canary", frozenset({"approx"}),
        f"{_CROSS_VENDOR}; first difference at the first SGD update of Dense[0]/bias (replica gradients)"),
    "mixed.bf16_matmul": Measured(
        "canary", frozenset({"bf16"}),
        "differs across vendors; ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 on the Intel machine restores the Zen 4 "
        "bits (brg_matmul:avx10_1_512_amx there, brg_matmul:avx512_core_bf16 on the Zen 4)"),
    "mixed.keras_bf16_step": Measured(
        "canary", frozenset({"bf16"}), "runs the bf16 matmul kernels oneDNN picks by ISA, like mixed.bf16_matmul"),
}


def probe(name: str, *, tags: list[str], group: Group, dtype: str, description: str,
          needs_gpu: bool = False) -> Callable[[ProbeFn], ProbeFn]:
    """Register ``fn`` as a probe (decorator); public as ``envlock.probe`` for user probe modules.

    ``fn(ctx: ProbeContext)`` returns a dict of output name -> array (numpy array, TF tensor or
    anything ``numpy.asarray`` takes; numeric dtypes, finite values). ``tags`` come from
    ``envlock.tags.PROBE_TAGS`` (they decide which manifest differences can explain a drift),
    ``group`` is one of ``envlock.vocab.PROBE_GROUPS`` (``envlock.vocab.GROUPS`` says what each means).
    """
    unknown = set(tags) - KNOWN_TAGS
    if unknown:
        raise ValueError(f"probe {name}: unknown tags {sorted(unknown)} (known: {', '.join(sorted(KNOWN_TAGS))})")
    check_probe_group(group, f"probe {name}")
    if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 200:
        raise ValueError(f"probe name {name!r}: a printable string of 1 to 200 characters")

    def register(fn: ProbeFn) -> ProbeFn:
        known = _REGISTRY.get(name)
        # The same module imported again (a test that reloads it, importlib after sys.modules was cleared)
        # registers the same probe again: that replaces it. Another module taking the name is an error.
        if known is not None and (known.fn.__module__, known.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"probe {name} registered twice")
        measured = MEASURED.get(name) if fn.__module__.startswith("envlock.probes.") else None
        final_group, final_tags = (measured.group, set(tags) | measured.tags) if measured else (group, set(tags))
        _REGISTRY[name] = Probe(name, tuple(sorted(final_tags)), final_group, dtype, description, fn, needs_gpu)
        return fn

    return register


__all__ = ["KNOWN_TAGS", "MEASURED", "Group", "Measured", "Probe", "ProbeContext", "ProbeFn", "ProbeSkipped", "probe",
           "registered_probes"]
