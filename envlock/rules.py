"""The one rule table for manifest paths: how a difference at a dotted path is judged.

``RULES`` has one entry per path pattern (fnmatch over the dotted path; the first match wins, so
specific patterns come before their generic fallbacks, and ``*`` is last). Each entry gives

- ``severity``: critical = known to change numeric results; warning = may change them; info = cannot;
- ``components``: the probe tags (envlock.tags) a change there can move, so ``verify`` can match a
  drifting probe to the differences that can explain it;
- ``why``: the reason a diff prints;
- ``causes``: the measured mechanisms (``Mechanism``) through which it moves probes, which
  envlock.probes.attribution ranks. An entry with no cause explains a probe only through its
  ``components``; an entry whose cause is ``HARMLESS`` never explains one.

envlock.diff and envlock.probes.attribution both read this table; docs/attribution.md explains the
choices, docs/causes.md the measurements behind them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from envlock.tags import PROBE_TAGS

Severity = Literal["critical", "warning", "info"]

# How a mechanism is boosted when probes drift in a pattern (envlock.probes.attribution.GROUP_BOOST).
# "arithmetic": the CPU model's own arithmetic (approximate instructions, cache-sized blocking), which
# only the hardware-arithmetic group can single out; elsewhere it ranks below the other hardware rules.
Kind = Literal["version", "hardware", "arithmetic", "threads", "onednn", "xla", "numpy", "none"]


@dataclass(frozen=True)
class Mechanism:
    """One measured way a manifest difference moves probes (several paths can share one)."""

    id: str
    tags: frozenset[str]  # probe tags it can move (any overlap with a probe's tags counts)
    weight: float  # how strongly it is implicated when it applies (<= 0: measured harmless)
    kind: Kind
    reason: str  # formatted with {path}, {old}, {new}
    unless: tuple[str, ...] = ()  # it does not apply when one of these paths also differs
    when_value: str | None = None  # it applies only when the old or the new value contains this text


@dataclass(frozen=True)
class Rule:
    pattern: str  # fnmatch over the dotted path
    severity: Severity
    components: tuple[str, ...]
    why: str
    causes: tuple[Mechanism, ...] = ()  # in order of precedence: on a tie the first one wins


def rule_for(path: str) -> Rule:
    """The first rule of ``RULES`` whose pattern matches ``path``."""
    for rule in RULES:
        if fnmatch.fnmatchcase(path, rule.pattern):
            return rule
    raise AssertionError("the '*' rule matches every path")  # pragma: no cover


# --- Components: probe tags. "Everything" is spelled out so verify can match on plain membership.
ALL_COMPONENTS: tuple[str, ...] = PROBE_TAGS
_ONEDNN = ("onednn", "matmul", "conv", "eigen", "training", "tf.function")
_THREADS = ("threads", "matmul", "conv", "reduction", "blas", "numpy", "training")
_ISA = ("onednn", "eigen", "matmul", "conv", "xla", "blas", "numpy", "elementwise", "reduction", "training", "bf16")
_GPU = ("gpu", "matmul", "conv", "training", "xla")
_NUMPY = ("numpy", "blas", "elementwise", "reduction", "rng")
_XLA = ("xla", "tf.function", "training")
_ALL = ALL_COMPONENTS
_KERAS = ("keras", "training", "init")
_BLAS_THREADS = ("blas", "numpy", "threads")

_ISA_WHY = "an instruction-set feature changes oneDNN/Eigen/XLA/numpy kernels"
_CPU_MODEL_WHY = "another CPU model can select other kernels"
_THREADS_WHY = "default thread counts follow the core count"
_ENV_WHY = "a numerics-related environment variable"
_INTER_OP_WHY = "inter-op threads schedule ops but do not split them"

# --- Mechanisms, from our measurements (docs/causes.md). Reasons are formatted with {path}, {old}, {new}.
_GEMM = frozenset({"matmul", "conv", "eigen", "onednn", "training", "distribute"})

ONEDNN_DEFAULT_BY_CPU = Mechanism(
    "onednn-default-by-cpu", frozenset({"onednn"}), 11, "onednn",
    "oneDNN optimisations are {old} -> {new} with the same TF_ENABLE_ONEDNN_OPTS: TensorFlow turns them on "
    "by default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (e.g. Intel vs AMD), so the "
    "same software takes other matmul/conv/softmax kernels; set TF_ENABLE_ONEDNN_OPTS explicitly",
    unless=("environment.TF_ENABLE_ONEDNN_OPTS",))
ONEDNN_OPTS = Mechanism(
    "onednn-opts", frozenset({"onednn"}), 10, "onednn",
    "{path} {old} -> {new}: oneDNN optimisations switch f32 matmul, conv, softmax and Keras training to "
    "oneDNN kernels (XLA-compiled results are not affected)")
ONEDNN_ISA_CEILING = Mechanism(
    "onednn-isa-ceiling", _GEMM | {"xla"}, 10, "onednn",
    "{path} {old} -> {new}: oneDNN's instruction-set ceiling changes its JIT GEMM kernels, which TF's Eigen "
    "matmul also calls, so matmul/conv/training move even with oneDNN optimisations off")
ONEDNN_DEFAULT_ISA = Mechanism(
    "onednn-default-isa", frozenset({"onednn"}), 6, "hardware",
    "{path} {old} -> {new}: this CPU feature decides whether TensorFlow turns oneDNN on by default")
CPU_ISA = Mechanism(
    "cpu-isa", _GEMM | {"xla", "numpy", "blas"}, 7, "hardware",
    "{path} {old} -> {new}: the instruction set decides which JIT GEMM kernels oneDNN/Eigen use, the code XLA "
    "emits and numpy's SIMD loops (e.g. AVX2 vs AVX-512 machines differ in plain tf.matmul)")
ONEDNN_BF16_ISA = Mechanism(
    "onednn-bf16-isa", frozenset({"bf16"}), 11, "hardware",
    "{path} {old} -> {new}: oneDNN runs bfloat16 matmul on AMX tiles where the CPU has them, on AVX512_BF16 "
    "kernels where it has those, emulated elsewhere, each summing in another order; an ISA ceiling on the "
    "machine with more (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 on an AMX CPU) gives the other's bits (measured)")
CPU_MODEL = Mechanism(
    "cpu-model", _GEMM | {"xla", "numpy", "blas"}, 3, "hardware",
    "{path} {old} -> {new}: another CPU model or vendor can select other kernels")
CPU_ARITHMETIC = Mechanism(
    "cpu-arithmetic", frozenset({"approx"}), 6, "arithmetic",
    "{path} {old} -> {new}: Eigen computes reciprocal and rsqrt (softmax, layer/batch norm and their "
    "gradients) with this CPU's approximate instructions plus a Newton step, which are not specified bit "
    "for bit across vendors or models; no setting of the default path changes them, the portable profile "
    "(capture --golden --portable) computes them IEEE-exactly under XLA instead")
CPU_CACHE_BLOCKING = Mechanism(
    "cpu-cache-blocking", frozenset({"eigen"}), 5, "arithmetic",
    "{path} {old} -> {new}: Eigen's contraction blocking (and whether it shards K) follows the cache sizes "
    "it reads from CPUID, and TF single-threads a oneDNN matmul that fits in Eigen's idea of L2; other "
    "sizes sum a matmul in another order")
ONEDNN_VERSION = Mechanism(
    "onednn-version", frozenset({"onednn"}), 6, "version",
    "{path} {old} -> {new}: another oneDNN release ships other kernels")
ONEDNN_DETECTED_ISA = Mechanism(
    "onednn-detected-isa", frozenset({"onednn"}), 7, "hardware",
    "{path} {old} -> {new}: oneDNN detected another instruction set here, so its JIT kernels differ "
    "(an ISA ceiling set to the golden's level makes them match, unless it is the CPU's arithmetic)")
TF_INTRA_THREADS = Mechanism(
    "tf-intra-threads", frozenset({"matmul", "conv", "reduction", "training", "distribute"}), 8, "threads",
    "{path} {old} -> {new}: TF's intra-op thread count changes how matmul, conv weight-gradients and large "
    "reductions split their sums")
BLAS_THREADS = Mechanism(
    "blas-threads", frozenset({"blas"}), 9, "threads",
    "{path} {old} -> {new}: OpenBLAS's thread count changes how numpy's matmul splits its sums")
AFFINITY = Mechanism(
    "affinity", frozenset({"blas"}), 8, "threads",
    "{path} {old} -> {new}: OpenBLAS's default thread count follows the process's CPU affinity, so numpy's "
    "matmul splits its sums differently (TF's threads are fixed by the lockdown and do not follow it)")
NUMPY_SIMD = Mechanism(
    "numpy-simd", frozenset({"numpy"}), 8, "numpy",
    "{path} {old} -> {new}: numpy dispatches exp/log/tanh and sums to other SIMD kernels (2-3 ULP)")
NUMPY_VERSION = Mechanism(
    "numpy-version", frozenset({"numpy", "blas"}), 8, "version",
    "{path} {old} -> {new}: a numpy/OpenBLAS release changes SIMD kernels, matmul and sums")
XLA_AUTOJIT = Mechanism(
    "xla-autojit", frozenset({"tf.function", "training", "distribute", "xla"}), 10, "xla",
    "{path} {old} -> {new}: XLA auto-jit compiles tf.function graphs and Keras training steps with XLA, "
    "fusing ops in another order")
XLA_EAGER_CLUSTERING = Mechanism(
    "xla-eager-clustering", frozenset({"rng", "elementwise", "reduction", "init", "eager", "keras"}), 6, "xla",
    "{path} {old} -> {new}: XLA auto-jit with a small --tf_xla_min_cluster_size compiles eager ops too, so even "
    "elementwise ops, row reductions and RNG streams (the stable probes) take XLA's code (measured: min cluster "
    "size 1 moves them)", when_value="--tf_xla_min_cluster_size")
XLA_FLAGS = Mechanism(
    "xla-flags", frozenset({"xla"}), 10, "xla",
    "{path} {old} -> {new}: XLA compiler flags change only XLA-compiled results")
TF_VERSION = Mechanism(
    "tf-version",
    frozenset({"rng", "tf.data", "init", "matmul", "conv", "elementwise", "reduction", "xla", "tf.function",
               "training", "distribute", "onednn", "eigen", "eager"}), 6, "version",
    "{path} {old} -> {new}: a TensorFlow release changes RNG streams, kernels and op results")
KERAS_VERSION = Mechanism(
    "keras-version", frozenset({"init", "keras", "training", "distribute"}), 6, "version",
    "{path} {old} -> {new}: a Keras release changes initialisers, layers and training")
OP_DETERMINISM = Mechanism(
    "op-determinism", frozenset({"training", "xla", "gpu"}), 3, "none",
    "{path} {old} -> {new}: op determinism changes kernel choice (and turns Keras' XLA off)")
HARMLESS = Mechanism(
    "known-harmless", frozenset(), -100, "none", "{path}: measured to have no effect on probe results")

# First match wins: specific patterns before their generic fallbacks.
RULES: tuple[Rule, ...] = (
    # TensorFlow and what it loaded
    Rule("tensorflow.status", "critical", _ALL, "TensorFlow presence changed"),
    Rule("tensorflow.version", "critical", _ALL, "a TensorFlow release changes kernels, RNG streams and op results",
         (TF_VERSION,)),
    Rule("tensorflow.git_version", "critical", _ALL, "a different TensorFlow build can change kernels", (TF_VERSION,)),
    Rule("tensorflow.compiler", "critical", _ALL, "TensorFlow built by another compiler can round differently",
         (TF_VERSION,)),
    Rule("tensorflow.is_*_build", "critical", _GPU, "a CUDA/ROCm build takes different numeric paths"),
    Rule("tensorflow.built_cu*", "critical", _GPU, "TensorFlow was built against another CUDA/cuDNN"),
    Rule("tensorflow.build_info.*", "critical", _GPU, "TensorFlow's build configuration changed"),
    Rule("tensorflow.onednn_enabled", "critical", _ONEDNN,
         "oneDNN optimisations change matmul/conv/training results (TF's default depends on the CPU)",
         (ONEDNN_DEFAULT_BY_CPU, ONEDNN_OPTS)),
    Rule("tensorflow.xla_jit", "critical", _XLA, "XLA auto-clustering compiles and fuses ops differently",
         (XLA_AUTOJIT,)),
    Rule("tensorflow.op_determinism", "critical", ("training", "xla", "gpu", "tf.data"),
         "op determinism changes kernel choice (and turns Keras' XLA off)", (OP_DETERMINISM,)),
    Rule("tensorflow.intra_op_threads", "warning", _THREADS, "intra-op threads change how matmul/conv split work",
         (TF_INTRA_THREADS,)),
    Rule("tensorflow.inter_op_threads", "info", ("threads",), _INTER_OP_WHY, (HARMLESS,)),
    Rule("tensorflow.physical_devices", "critical", (*_GPU, "distribute"),
         "visible devices decide where ops run (and Keras' jit_compile='auto')"),
    Rule("tensorflow.keras_version", "critical", ("keras", "training", "init", "rng"),
         "a Keras release changes layers and training", (KERAS_VERSION,)),
    Rule("tensorflow.onednn_version", "critical", _ONEDNN, "another oneDNN release ships other kernels",
         (ONEDNN_VERSION,)),
    Rule("tensorflow.onednn_isa", "critical", _ONEDNN,
         "oneDNN detected another instruction set, so its JIT kernels (matmul, conv, softmax) differ",
         (ONEDNN_DETECTED_ISA,)),
    Rule("tensorflow.loaded_libraries.libcud*", "critical", _GPU, "a different CUDA/cuDNN library is loaded"),
    Rule("tensorflow.loaded_libraries.libcublas*", "critical", _GPU, "a different cuBLAS is loaded"),
    Rule("tensorflow.loaded_libraries.libtensorflow*", "critical", _ALL, "a different TensorFlow library is loaded",
         (TF_VERSION,)),
    Rule("tensorflow.loaded_libraries.*", "warning", ("threads", "blas", "gpu"),
         "a different numeric library is loaded"),
    Rule("tensorflow.*", "warning", _ALL, "a TensorFlow setting changed"),
    # numpy and BLAS
    Rule("numeric.numpy_version", "critical", _NUMPY, "a numpy release changes SIMD kernels and sums",
         (NUMPY_VERSION,)),
    Rule("numeric.blas.*.num_threads", "warning", _BLAS_THREADS, "BLAS thread count changes numpy matmul sums",
         (BLAS_THREADS, NUMPY_VERSION)),
    Rule("numeric.blas.*.threading_layer", "warning", _BLAS_THREADS, "BLAS threading layer changed",
         (NUMPY_VERSION,)),
    Rule("numeric.blas*", "critical", ("blas", "numpy"), "a different BLAS build or kernel set computes numpy matmul",
         (NUMPY_VERSION,)),
    Rule("numeric.simd_*", "critical", ("numpy", "elementwise", "reduction", "blas"),
         "numpy dispatches to different SIMD kernels (exp/log/tanh move by a few ULP)", (NUMPY_SIMD,)),
    # The section's own fallback, judged as the catch-all judges it: a numeric field added later belongs here.
    Rule("numeric.*", "warning", (), "an identity field changed"),
    # CPU: instruction-set features. The four that decide TF's oneDNN default come first.
    Rule("cpu.isa.avx512_vnni", "critical", _ISA, _ISA_WHY, (ONEDNN_DEFAULT_ISA, CPU_ISA)),
    Rule("cpu.isa.avx512_bf16", "critical", _ISA, _ISA_WHY, (ONEDNN_BF16_ISA, ONEDNN_DEFAULT_ISA, CPU_ISA)),
    Rule("cpu.isa.avx_vnni", "critical", _ISA, _ISA_WHY, (ONEDNN_DEFAULT_ISA,)),
    Rule("cpu.isa.amx_*", "critical", _ISA, _ISA_WHY, (ONEDNN_BF16_ISA, ONEDNN_DEFAULT_ISA)),
    Rule("cpu.isa.avx512*", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.isa.avx2", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.isa.avx", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.isa.fma", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.isa.sse*", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.isa.*", "critical", _ISA, _ISA_WHY),
    # /proc/cpuinfo flags that select the kernels oneDNN, Eigen, XLA or numpy run; other flags
    # (virtualisation, power management) cannot.
    Rule("cpu.flags", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.flags.avx512_bf16", "critical", _ISA, _ISA_WHY, (ONEDNN_BF16_ISA, CPU_ISA)),
    Rule("cpu.flags.avx*", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.flags.fma*", "critical", _ISA, _ISA_WHY, (CPU_ISA,)),
    Rule("cpu.flags.sse*", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.ssse3", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.pni", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.f16c", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.amx*", "critical", _ISA, _ISA_WHY, (ONEDNN_BF16_ISA,)),
    Rule("cpu.flags.asimd*", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.neon", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.sve*", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.fp", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.fphp", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.bf16", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.i8mm", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.vaes", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.vpclmulqdq", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.gfni", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.bmi1", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.bmi2", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.popcnt", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.movbe", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.xop", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.3dnow*", "critical", _ISA, _ISA_WHY),
    Rule("cpu.flags.*", "info", (), "this CPU flag does not select numeric kernels"),
    # CPU: cores, caches, model
    Rule("cpu.logical_cores", "warning", _THREADS, _THREADS_WHY, (AFFINITY,)),
    Rule("cpu.physical_cores", "warning", _THREADS, _THREADS_WHY, (AFFINITY,)),
    Rule("cpu.affinity", "warning", _THREADS, "TF and OpenBLAS default thread counts follow CPU affinity",
         (AFFINITY,)),
    Rule("cpu.caches.*.size_bytes", "warning", ("eigen", "matmul", "conv", "training"),
         "Eigen's contraction blocking follows the cache sizes, so a matmul may sum in another order",
         (CPU_CACHE_BLOCKING,)),
    Rule("cpu.caches.*.shared_by", "warning", ("eigen", "matmul", "threads"),
         "Eigen divides the shared cache among the threads that share it when it blocks a contraction",
         (CPU_CACHE_BLOCKING,)),
    Rule("cpu.caches.*", "info", (), "cache geometry besides size and sharing does not enter Eigen's blocking",
         (CPU_CACHE_BLOCKING,)),
    Rule("cpu.microcode", "warning", _ISA, "microcode updates can change instruction behaviour", (CPU_MODEL,)),
    Rule("cpu.vendor", "warning", _ISA, _CPU_MODEL_WHY, (CPU_MODEL, CPU_ARITHMETIC)),
    Rule("cpu.model_name", "warning", _ISA, _CPU_MODEL_WHY, (CPU_MODEL, CPU_ARITHMETIC)),
    Rule("cpu.family", "warning", _ISA, _CPU_MODEL_WHY, (CPU_MODEL, CPU_ARITHMETIC)),
    Rule("cpu.model", "warning", _ISA, _CPU_MODEL_WHY, (CPU_MODEL, CPU_ARITHMETIC)),
    Rule("cpu.stepping", "warning", _ISA, _CPU_MODEL_WHY, (CPU_MODEL, CPU_ARITHMETIC)),
    Rule("cpu.*", "warning", _ISA, _CPU_MODEL_WHY),
    # GPU
    Rule("gpu.status", "critical", _GPU, "GPU availability decides where ops run"),
    Rule("gpu.devices.*.compute_capability", "critical", _GPU, "another GPU architecture runs other kernels"),
    Rule("gpu.devices.*.name", "critical", _GPU, "another GPU model runs other kernels"),
    Rule("gpu.devices.*.memory_total_bytes", "info", (), "GPU memory size does not change results"),
    Rule("gpu.devices.*.uuid_sha256", "info", (), "another physical board of the same model"),
    Rule("gpu.*", "warning", _GPU, "GPU driver or mode changed"),
    # Python packages
    Rule("python.distributions.tensorflow*", "critical", _ALL, "a different TensorFlow package", (TF_VERSION,)),
    Rule("python.distributions.tf-keras", "critical", _KERAS, "a different Keras package", (KERAS_VERSION,)),
    Rule("python.distributions.keras", "critical", _KERAS, "a different Keras package", (KERAS_VERSION,)),
    Rule("python.distributions.numpy", "critical", _NUMPY, "a different numpy package", (NUMPY_VERSION,)),
    Rule("python.distributions.ml-dtypes", "critical", ("elementwise",), "a different ml_dtypes package"),
    Rule("python.distributions.nvidia-*", "critical", _GPU, "a different NVIDIA CUDA library package"),
    Rule("python.distributions.scipy-openblas*", "critical", ("blas", "numpy"), "a different OpenBLAS package",
         (NUMPY_VERSION,)),
    Rule("python.distributions.*", "warning", (), "another package version may change results through your code"),
    Rule("python.version", "warning", ("rng",), "another Python release"),
    Rule("python.*", "info", (), "interpreter build detail"),
    # Environment: the determinism and numerics switches are critical, thread counts a warning.
    Rule("environment.TF_ENABLE_ONEDNN_OPTS", "critical", _ONEDNN, "switches oneDNN optimisations", (ONEDNN_OPTS,)),
    Rule("environment.ONEDNN_MAX_CPU_ISA", "critical", _ISA, "caps the instruction set oneDNN's kernels use",
         (ONEDNN_ISA_CEILING,)),
    Rule("environment.DNNL_MAX_CPU_ISA", "critical", _ISA, "caps the instruction set oneDNN's kernels use",
         (ONEDNN_ISA_CEILING,)),
    Rule("environment.ONEDNN_*", "warning", _ONEDNN, "a oneDNN setting"),
    Rule("environment.DNNL_*", "warning", _ONEDNN, "a oneDNN setting"),
    Rule("environment.TF_XLA_FLAGS", "critical", _XLA, "changes which ops XLA compiles",
         (XLA_AUTOJIT, XLA_EAGER_CLUSTERING)),
    Rule("environment.XLA_FLAGS", "critical", _XLA, "changes how XLA compiles", (XLA_FLAGS,)),
    Rule("environment.TF_DETERMINISTIC_OPS", "critical", ("training", "xla", "gpu"), "switches op determinism",
         (OP_DETERMINISM,)),
    Rule("environment.TF_CUDNN_DETERMINISTIC", "critical", _GPU, "switches deterministic cuDNN algorithms"),
    Rule("environment.CUBLAS_WORKSPACE_CONFIG", "critical", _GPU, "changes cuBLAS reduction determinism"),
    Rule("environment.NVIDIA_TF32_OVERRIDE", "critical", _GPU, "switches TF32 matmul precision"),
    Rule("environment.TF_ENABLE_AUTO_MIXED_PRECISION*", "critical", (*_GPU, "training"), "switches mixed precision"),
    Rule("environment.CUDA_VISIBLE_DEVICES", "critical", _GPU, "changes which GPUs TensorFlow sees"),
    Rule("environment.NVIDIA_VISIBLE_DEVICES", "critical", _GPU, "changes which GPUs the container sees"),
    Rule("environment.TF_NUM_INTRAOP_THREADS", "warning", _THREADS, "sets TF's intra-op thread count",
         (TF_INTRA_THREADS,)),
    Rule("environment.TF_NUM_INTEROP_THREADS", "info", ("threads",), _INTER_OP_WHY, (HARMLESS,)),
    Rule("environment.OMP_NUM_THREADS", "warning", _BLAS_THREADS, "sets OpenMP/BLAS thread counts", (BLAS_THREADS,)),
    Rule("environment.OPENBLAS_NUM_THREADS", "warning", _BLAS_THREADS, "an OpenBLAS setting", (BLAS_THREADS,)),
    Rule("environment.OPENBLAS_*", "warning", _BLAS_THREADS, "an OpenBLAS setting"),
    Rule("environment.NPY_*_CPU_FEATURES", "critical", ("numpy", "elementwise"),
         "changes numpy's runtime SIMD dispatch", (NUMPY_SIMD,)),
    Rule("environment.NPY_*", "warning", ("numpy",), "a numpy setting", (NUMPY_SIMD,)),
    Rule("environment.MKL_NUM_THREADS", "warning", ("blas", "threads", "onednn"), "an MKL setting", (BLAS_THREADS,)),
    Rule("environment.MKL_*", "warning", ("blas", "threads", "onednn"), "an MKL setting"),
    Rule("environment.PYTHONHASHSEED", "warning", ("rng", "tf.data"),
         "changes set/dict ordering your code may rely on", (HARMLESS,)),
    Rule("environment.TF_CPP_*", "info", (), "logging only", (HARMLESS,)),
    Rule("environment.TF_ENABLE_ZENDNN_OPTS", "info", (), "has no effect on this TensorFlow build", (HARMLESS,)),
    Rule("environment.KMP_DUPLICATE_LIB_OK", "warning", _ALL, _ENV_WHY, (HARMLESS,)),
    Rule("environment.*", "warning", _ALL, _ENV_WHY),
    # Host and memory
    Rule("host.architecture", "critical", _ALL, "another CPU architecture runs other kernels", (CPU_ISA,)),
    Rule("host.glibc", "warning", ("elementwise",), "glibc's libm can round transcendental functions differently"),
    Rule("host.kernel", "warning", ("threads",), "the kernel schedules threads; it does not compute"),
    Rule("host.*", "info", (), "does not change numeric results"),
    Rule("memory.*", "info", (), "memory size and layout do not change results"),
    # The file's own format: older versions are migrated on load, so they never change results.
    Rule("kind", "info", (), "the file's format"),
    Rule("schema_version", "info", (), "the file's format version (older ones are migrated on load)"),
    Rule("*", "warning", (), "an identity field changed"),
)
