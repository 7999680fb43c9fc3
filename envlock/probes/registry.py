"""The probe registry: small seeded computations, each tagged with what it depends on.

A probe is a function ``fn(ctx) -> dict[str, numpy.ndarray]``. It never imports TensorFlow
at module import time (``envlock verify --list-probes`` and the parent process stay
TF-free); the child process hands it ``ctx.tf`` and ``ctx.np`` instead.

Each probe belongs to a *group*, taken from our measurements (docs/causes.md, docs/probes.md):

* ``stable`` -- RNG streams, tf.data order, weight init, TF elementwise ops, row reductions.
  They never moved under any configuration or hardware perturbation, only under version
  (or seed) changes. If one of them drifts, suspect versions or seeds first.
* ``canary`` -- matmul, conv gradients, big reductions, oneDNN-routed ops, XLA, training.
  They move with hardware, thread counts, oneDNN and XLA settings.
* ``hardware`` -- small fixed-input probes of the CPU's own arithmetic: Eigen's approximate
  reciprocal/rsqrt, division, sqrt, the normalisation inside softmax / layer norm / batch norm,
  and Eigen's cache-blocked contraction; and any probe that moved across CPU vendors with every
  version identical while no setting moved it. When only they (and canaries) move while the
  stable group holds, the CPU model is the cause, not a setting.

A group rests on measurements from both recorded machine kinds (an AMD EPYC Zen 4 and an Intel
Xeon with AMX), never one: ``MEASURED`` below holds what two-vendor data changed, and
tests/unit/test_probe_groups.py checks every built-in probe's group against both vendors' goldens.

Tags name the components a probe depends on; ``envlock.diff.Difference.components`` uses
the same vocabulary, which is how verify matches a drift to its likely causes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envlock.errors import BadInputError
from envlock.limits import MAX_INTERMEDIATES
from envlock.tags import PROBE_TAGS
from envlock.vocab import ProbeGroup

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
        from envlock.probes import keras_trace  # lazy: the registry loads in the TF-free parent too

        outputs, note = keras_trace.train_step(self, model, x, y, loss=loss, optimizer=optimizer, traced=self.trace,
                                               step=self.trace_steps)
        self.trace_steps += 1
        self.trace_note = self.trace_note or note
        return outputs

    def forward(self, model: Any, x: Any) -> dict[str, Any]:
        """One inference call of a Keras ``model``; returns ``{"output": ...}``, traced like ``train_step``."""
        from envlock.probes import keras_trace  # lazy: the registry loads in the TF-free parent too

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
    ``group`` is ``"stable"`` or ``"canary"``.
    """
    unknown = set(tags) - KNOWN_TAGS
    if unknown:
        raise ValueError(f"probe {name}: unknown tags {sorted(unknown)} (known: {', '.join(sorted(KNOWN_TAGS))})")
    if group not in ("stable", "canary", "hardware"):
        raise ValueError(f"probe {name}: group must be 'stable', 'canary' or 'hardware', not {group!r}")
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


# Suite order: stable controls first, then canaries, the hardware-arithmetic group, then the GPU probes.
SUITE_MODULES: tuple[str, ...] = (
    "envlock.probes.suite_rng",
    "envlock.probes.suite_linalg",
    "envlock.probes.suite_compile",
    "envlock.probes.suite_training",
    "envlock.probes.suite_layers",
    "envlock.probes.suite_hardware",
    "envlock.probes.suite_gpu",
)


def _load_suites() -> None:
    # Importing a suite module registers its probes; none of them imports TF at import time.

    for module in SUITE_MODULES:
        importlib.import_module(module)


def all_probes() -> dict[str, Probe]:
    """Every registered probe by name, in suite order."""
    _load_suites()
    return dict(_REGISTRY)


def default_probe_names() -> list[str]:
    return list(all_probes())


def select_probes(names: list[str] | None) -> list[Probe]:
    """The probes called ``names`` (all when None); an unknown name is a ``BadInputError``."""
    registry = all_probes()
    if not names:
        return list(registry.values())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise BadInputError(
            f"unknown probe(s): {', '.join(unknown)} (see `envlock verify --list-probes`)"
        )
    return [registry[n] for n in dict.fromkeys(names)]


def parse_probe_list(text: str | None) -> list[str] | None:
    """``"a,b c"`` -> ``["a", "b", "c"]``; None -> None (the whole suite).

    Given but naming no probe (``--probes ","``) is bad input, not "the whole suite".
    """
    if text is None:
        return None
    names = [part for chunk in text.split(",") for part in chunk.split()]
    if not names:
        raise BadInputError("--probes needs at least one probe name")
    return names
