"""Why a probe drifted: manifest differences ranked against the probe's tags.

The rules are DATA (``ATTRIBUTION_RULES``), written from measurements (shared
determinism-notes.md): each names the difference paths it covers, the probe tags it can
move, how strongly it is implicated, and a reason a person understands. A difference no
rule covers can still explain a probe through its own ``components`` (from envlock.diff).

The stable-vs-canary rule: stable probes (RNG, tf.data order, init, TF elementwise, row
reductions) never moved under hardware, thread or oneDNN changes, only under version or
seed changes. So when a stable probe drifts, version rules are boosted; when only canaries
drift, hardware/thread/oneDNN/XLA rules are.

The hardware-arithmetic rule: the ``hardware`` group (approximate reciprocal/rsqrt, division,
normalisation, Eigen's cache-blocked contraction) depends on the CPU model itself. When one of
them drifts and the stable group held, the CPU model (vendor, model, cache sizes) is boosted
above every setting: no variable makes one vendor's approximate instructions give the other's bits.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

UNEXPLAINED = "no recorded difference explains this: an unrecorded hardware or firmware difference"

# "arithmetic": the CPU model's own arithmetic (approximate instructions, cache-sized blocking), which
# only the hardware-arithmetic group can single out; elsewhere it ranks below the other hardware rules.
Kind = Literal["version", "hardware", "arithmetic", "threads", "onednn", "xla", "numpy", "none"]


@dataclass(frozen=True)
class AttributionRule:
    id: str
    paths: tuple[str, ...]  # fnmatch patterns over Difference.path
    tags: frozenset[str]  # probe tags this cause can move (any overlap counts)
    weight: float  # how strongly the cause is implicated when it matches (<= 0: known harmless)
    kind: Kind
    reason: str  # formatted with {path}, {old}, {new}
    unless: tuple[str, ...] = ()  # the rule does not apply when one of these paths also differs


def _tags(*names: str) -> frozenset[str]:
    return frozenset(names)


_GEMM = _tags("matmul", "conv", "eigen", "onednn", "training", "distribute")
# The CPU's approximate reciprocal/rsqrt (Eigen fast math) and Eigen's cache-dependent blocking.
_CPU_ARITHMETIC = _tags("approx", "eigen")

ATTRIBUTION_RULES: tuple[AttributionRule, ...] = (
    AttributionRule(
        "onednn-default-by-cpu", ("tensorflow.onednn_enabled",), _tags("onednn"), 11, "onednn",
        "oneDNN optimisations are {old} -> {new} with the same TF_ENABLE_ONEDNN_OPTS: TensorFlow turns them on "
        "by default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (e.g. Intel vs AMD), so the "
        "same software takes other matmul/conv/softmax kernels; set TF_ENABLE_ONEDNN_OPTS explicitly",
        unless=("environment.TF_ENABLE_ONEDNN_OPTS",)),
    AttributionRule(
        "onednn-opts", ("environment.TF_ENABLE_ONEDNN_OPTS", "tensorflow.onednn_enabled"), _tags("onednn"), 10,
        "onednn",
        "{path} {old} -> {new}: oneDNN optimisations switch f32 matmul, conv, softmax and Keras training to "
        "oneDNN kernels (XLA-compiled results are not affected)"),
    AttributionRule(
        "onednn-isa-ceiling", ("environment.ONEDNN_MAX_CPU_ISA", "environment.DNNL_MAX_CPU_ISA"),
        _GEMM | _tags("xla"), 10, "onednn",
        "{path} {old} -> {new}: oneDNN's instruction-set ceiling changes its JIT GEMM kernels, which TF's Eigen "
        "matmul also calls, so matmul/conv/training move even with oneDNN optimisations off"),
    AttributionRule(
        "onednn-default-isa", ("cpu.isa.avx512_vnni", "cpu.isa.avx512_bf16", "cpu.isa.avx_vnni", "cpu.isa.amx_*"),
        _tags("onednn"), 6, "hardware",
        "{path} {old} -> {new}: this CPU feature decides whether TensorFlow turns oneDNN on by default"),
    AttributionRule(
        "cpu-isa", ("cpu.isa.avx512*", "cpu.isa.avx2", "cpu.isa.avx", "cpu.isa.fma", "cpu.isa.sse*",
                    "cpu.flags.avx*", "cpu.flags.fma*", "cpu.flags", "host.architecture"),
        _GEMM | _tags("xla", "numpy", "blas"), 7, "hardware",
        "{path} {old} -> {new}: the instruction set decides which JIT GEMM kernels oneDNN/Eigen use, the code XLA "
        "emits and numpy's SIMD loops (e.g. AVX2 vs AVX-512 machines differ in plain tf.matmul)"),
    AttributionRule(
        "cpu-model", ("cpu.vendor", "cpu.model_name", "cpu.family", "cpu.model", "cpu.stepping", "cpu.microcode"),
        _GEMM | _tags("xla", "numpy", "blas"), 3, "hardware",
        "{path} {old} -> {new}: another CPU model or vendor can select other kernels"),
    AttributionRule(
        "cpu-arithmetic", ("cpu.vendor", "cpu.model_name", "cpu.family", "cpu.model", "cpu.stepping"),
        _tags("approx"), 5, "arithmetic",
        "{path} {old} -> {new}: Eigen computes reciprocal and rsqrt (softmax, layer/batch norm and their "
        "gradients) with this CPU's approximate instructions plus a Newton step, which are not specified bit "
        "for bit across vendors or models; no setting changes them"),
    AttributionRule(
        "cpu-cache-blocking", ("cpu.caches.*",), _tags("eigen"), 5, "arithmetic",
        "{path} {old} -> {new}: Eigen's contraction blocking (and whether it shards K) follows the cache sizes "
        "it reads from CPUID, and TF single-threads a oneDNN matmul that fits in Eigen's idea of L2; other "
        "sizes sum a matmul in another order"),
    AttributionRule(
        "onednn-version", ("tensorflow.onednn_version",), _tags("onednn"), 6, "version",
        "{path} {old} -> {new}: another oneDNN release ships other kernels"),
    AttributionRule(
        "onednn-detected-isa", ("tensorflow.onednn_isa",), _tags("onednn"), 7, "hardware",
        "{path} {old} -> {new}: oneDNN detected another instruction set here, so its JIT kernels differ "
        "(an ISA ceiling set to the golden's level makes them match, unless it is the CPU's arithmetic)"),
    AttributionRule(
        "tf-intra-threads", ("tensorflow.intra_op_threads", "environment.TF_NUM_INTRAOP_THREADS"),
        _tags("matmul", "conv", "reduction", "training", "distribute"), 8, "threads",
        "{path} {old} -> {new}: TF's intra-op thread count changes how matmul, conv weight-gradients and large "
        "reductions split their sums"),
    AttributionRule(
        "blas-threads", ("environment.OMP_NUM_THREADS", "environment.OPENBLAS_NUM_THREADS",
                         "environment.MKL_NUM_THREADS", "numeric.blas.*.num_threads"),
        _tags("blas"), 9, "threads",
        "{path} {old} -> {new}: OpenBLAS's thread count changes how numpy's matmul splits its sums"),
    AttributionRule(
        "affinity", ("cpu.affinity", "cpu.logical_cores", "cpu.physical_cores"), _tags("blas"), 8, "threads",
        "{path} {old} -> {new}: OpenBLAS's default thread count follows the process's CPU affinity, so numpy's "
        "matmul splits its sums differently (TF's threads are fixed by the lockdown and do not follow it)"),
    AttributionRule(
        "numpy-simd", ("numeric.simd_*", "environment.NPY_*"), _tags("numpy"), 8, "numpy",
        "{path} {old} -> {new}: numpy dispatches exp/log/tanh and sums to other SIMD kernels (2-3 ULP)"),
    AttributionRule(
        "numpy-version", ("numeric.numpy_version", "python.distributions.numpy", "numeric.blas*",
                          "python.distributions.scipy-openblas*"), _tags("numpy", "blas"), 8, "version",
        "{path} {old} -> {new}: a numpy/OpenBLAS release changes SIMD kernels, matmul and sums"),
    AttributionRule(
        "xla-autojit", ("environment.TF_XLA_FLAGS", "tensorflow.xla_jit"),
        _tags("tf.function", "training", "distribute", "xla"), 10, "xla",
        "{path} {old} -> {new}: XLA auto-jit compiles tf.function graphs and Keras training steps with XLA, "
        "fusing ops in another order"),
    AttributionRule(
        "xla-flags", ("environment.XLA_FLAGS",), _tags("xla"), 10, "xla",
        "{path} {old} -> {new}: XLA compiler flags change only XLA-compiled results"),
    AttributionRule(
        "tf-version", ("tensorflow.version", "tensorflow.git_version", "tensorflow.compiler",
                       "tensorflow.loaded_libraries.libtensorflow*", "python.distributions.tensorflow*"),
        _tags("rng", "tf.data", "init", "matmul", "conv", "elementwise", "reduction", "xla", "tf.function",
              "training", "distribute", "onednn", "eigen", "eager"), 6, "version",
        "{path} {old} -> {new}: a TensorFlow release changes RNG streams, kernels and op results"),
    AttributionRule(
        "keras-version", ("tensorflow.keras_version", "python.distributions.keras", "python.distributions.tf-keras"),
        _tags("init", "keras", "training", "distribute"), 6, "version",
        "{path} {old} -> {new}: a Keras release changes initialisers, layers and training"),
    AttributionRule(
        "op-determinism", ("environment.TF_DETERMINISTIC_OPS", "tensorflow.op_determinism"),
        _tags("training", "xla", "gpu"), 3, "none",
        "{path} {old} -> {new}: op determinism changes kernel choice (and turns Keras' XLA off)"),
    AttributionRule(
        "known-harmless", ("environment.PYTHONHASHSEED", "tensorflow.inter_op_threads",
                           "environment.TF_NUM_INTEROP_THREADS", "environment.TF_ENABLE_ZENDNN_OPTS",
                           "environment.TF_CPP_*", "environment.KMP_DUPLICATE_LIB_OK"),
        frozenset(), -100, "none", "{path}: measured to have no effect on probe results"),
)

SEVERITY_SCORE = {"critical": 3.0, "warning": 1.5, "info": 0.2}
# Stable probes only move with versions (or seeds); canaries with configuration and hardware.
GROUP_BOOST: dict[str, dict[str, float]] = {
    "stable": {"version": 6.0},
    "canary": {"hardware": 2.0, "threads": 2.0, "onednn": 2.0, "xla": 2.0, "numpy": 1.0},
    # Hardware-arithmetic probes moved, stable held: the CPU model, not a setting. Above the ISA
    # flags too: the cross-vendor case capped the ISA and the drift stayed bit for bit.
    "hardware": {"arithmetic": 14.0, "hardware": 8.0, "threads": 1.0, "onednn": 1.0},
}
HARDWARE_NOTE = ("only hardware-arithmetic probes (and canaries) moved while the stable probes held: the cause is "
                 "the CPU model (its approximate reciprocal/rsqrt instructions or the cache sizes Eigen blocks "
                 "by), not a setting; no environment variable makes this machine give the golden's bits")


def group_rule(*, stable_drifted: bool, hardware_drifted: bool) -> str:
    """Which GROUP_BOOST applies: versions when a stable probe moved, else the CPU model when a
    hardware-arithmetic probe moved, else the canary settings."""
    if stable_drifted:
        return "stable"
    return "hardware" if hardware_drifted else "canary"


class Cause(BaseModel):
    path: str | None
    old: Any = None
    new: Any = None
    severity: str | None = None
    reason: str
    score: float
    rule: str | None = None
    environment: bool = False  # a determinism env var: --golden-env would remove it


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, str) else str(value)


def _rule_matches(rule: AttributionRule, path: str, all_paths: set[str]) -> bool:
    if not any(fnmatch.fnmatchcase(path, pattern) for pattern in rule.paths):
        return False
    return not any(fnmatch.fnmatchcase(p, u) for p in all_paths for u in rule.unless)


def explain(probe_tags: set[str], differences: list[Any], *, stable_drifted: bool,
            hardware_drifted: bool = False) -> list[Cause]:
    """The differences that can explain a drift of a probe with ``probe_tags``, most likely first.

    ``stable_drifted``: whether any stable-group probe drifted in this verify (the
    stable-vs-canary rule); ``hardware_drifted``: whether a hardware-group probe drifted (the
    hardware-arithmetic rule, applied when the stable group held). Returns ``[UNEXPLAINED]`` when
    nothing matches.
    """
    all_paths = {d.path for d in differences}
    boosts = GROUP_BOOST[group_rule(stable_drifted=stable_drifted, hardware_drifted=hardware_drifted)]
    causes: list[Cause] = []
    for diff in differences:
        matched = [r for r in ATTRIBUTION_RULES if _rule_matches(r, diff.path, all_paths)]
        if any(r.weight <= 0 for r in matched):
            continue  # measured harmless: never blame it
        relevant = [r for r in matched if r.tags & probe_tags]
        base = SEVERITY_SCORE.get(diff.severity, 0.0)
        if relevant:
            best = max(relevant, key=lambda r: r.weight + boosts.get(r.kind, 0.0))
            score = base + best.weight + boosts.get(best.kind, 0.0)
            reason = best.reason.format(path=diff.path, old=_show(diff.old), new=_show(diff.new))
            rule_id: str | None = best.id
        elif not matched and set(diff.components) & probe_tags:
            score, reason, rule_id = base, diff.reason, None
        else:
            continue  # a rule covers this path and says it cannot move this probe
        causes.append(Cause(path=diff.path, old=diff.old, new=diff.new, severity=diff.severity, reason=reason,
                            score=round(score, 2), rule=rule_id, environment=diff.path.startswith("environment.")))
    causes.sort(key=lambda c: (-c.score, c.path or ""))
    return causes or [Cause(path=None, reason=UNEXPLAINED, score=0.0)]
