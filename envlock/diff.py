"""Identity differences between two manifests, each with a severity, a reason and the probe
components it can affect.

Severity is DATA: ``SEVERITY_RULES`` maps dotted-path patterns to (severity, components,
why); the first matching rule wins. critical = known to change numeric results; warning = may
change them; info = cannot. Component tags are the probe tags of the verify suite, so
``verify`` can match a drifting probe to the differences that can explain it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from envlock.models import NOT_RECORDED_WHEN_ABSENT, Manifest, identity_dict
from envlock.redact import redact_data
from envlock.tags import PROBE_TAGS

Severity = Literal["critical", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}

# Probe tags. "Everything" is spelled out so verify can match on plain membership.
ALL_COMPONENTS: tuple[str, ...] = PROBE_TAGS
_ONEDNN = ["onednn", "matmul", "conv", "eigen", "training", "tf.function"]
_THREADS = ["threads", "matmul", "conv", "reduction", "blas", "numpy", "training"]
_ISA = ["onednn", "eigen", "matmul", "conv", "xla", "blas", "numpy", "elementwise", "reduction", "training"]
_GPU = ["gpu", "matmul", "conv", "training", "xla"]
_NUMPY = ["numpy", "blas", "elementwise", "reduction", "rng"]
_XLA = ["xla", "tf.function", "training"]
_ALL = list(ALL_COMPONENTS)

# ISA flags that change which numeric kernels oneDNN, Eigen, XLA or numpy pick (glob patterns
# over /proc/cpuinfo flag names). Other flags (virtualisation, power management) cannot.
KERNEL_RELEVANT_FLAGS: tuple[str, ...] = (
    "sse*", "ssse3", "pni", "avx*", "fma*", "f16c", "amx*", "asimd*", "neon", "sve*", "fp", "fphp", "bf16", "i8mm",
    "vaes", "vpclmulqdq", "gfni", "bmi1", "bmi2", "popcnt", "movbe", "xop", "3dnow*",
)


@dataclass(frozen=True)
class Rule:
    pattern: str  # fnmatch over the dotted path
    severity: Severity
    components: list[str]
    why: str


# First match wins: specific patterns before their generic fallbacks.
SEVERITY_RULES: tuple[Rule, ...] = (
    # TensorFlow and what it loaded
    Rule("tensorflow.status", "critical", _ALL, "TensorFlow presence changed"),
    Rule("tensorflow.version", "critical", _ALL, "a TensorFlow release changes kernels, RNG streams and op results"),
    Rule("tensorflow.git_version", "critical", _ALL, "a different TensorFlow build can change kernels"),
    Rule("tensorflow.compiler", "critical", _ALL, "TensorFlow built by another compiler can round differently"),
    Rule("tensorflow.is_*_build", "critical", _GPU, "a CUDA/ROCm build takes different numeric paths"),
    Rule("tensorflow.built_cu*", "critical", _GPU, "TensorFlow was built against another CUDA/cuDNN"),
    Rule("tensorflow.build_info.*", "critical", _GPU, "TensorFlow's build configuration changed"),
    Rule("tensorflow.onednn_enabled", "critical", _ONEDNN,
         "oneDNN optimisations change matmul/conv/training results (TF's default depends on the CPU)"),
    Rule("tensorflow.xla_jit", "critical", _XLA, "XLA auto-clustering compiles and fuses ops differently"),
    Rule("tensorflow.op_determinism", "critical", ["training", "xla", "gpu", "tf.data"],
         "op determinism changes kernel choice (and turns Keras' XLA off)"),
    Rule("tensorflow.intra_op_threads", "warning", _THREADS, "intra-op threads change how matmul/conv split work"),
    Rule("tensorflow.inter_op_threads", "info", ["threads"], "inter-op threads schedule ops but do not split them"),
    Rule("tensorflow.physical_devices", "critical", _GPU + ["distribute"],
         "visible devices decide where ops run (and Keras' jit_compile='auto')"),
    Rule("tensorflow.keras_version", "critical", ["keras", "training", "init", "rng"],
         "a Keras release changes layers and training"),
    Rule("tensorflow.onednn_version", "critical", _ONEDNN, "another oneDNN release ships other kernels"),
    Rule("tensorflow.onednn_isa", "critical", _ONEDNN,
         "oneDNN detected another instruction set, so its JIT kernels (matmul, conv, softmax) differ"),
    Rule("tensorflow.loaded_libraries.libcud*", "critical", _GPU, "a different CUDA/cuDNN library is loaded"),
    Rule("tensorflow.loaded_libraries.libcublas*", "critical", _GPU, "a different cuBLAS is loaded"),
    Rule("tensorflow.loaded_libraries.libtensorflow*", "critical", _ALL, "a different TensorFlow library is loaded"),
    Rule("tensorflow.loaded_libraries.*", "warning", ["threads", "blas", "gpu"],
         "a different numeric library is loaded"),
    Rule("tensorflow.*", "warning", _ALL, "a TensorFlow setting changed"),
    # numpy and BLAS
    Rule("numeric.numpy_version", "critical", _NUMPY, "a numpy release changes SIMD kernels and sums"),
    Rule("numeric.blas.*.num_threads", "warning", ["blas", "numpy", "threads"],
         "BLAS thread count changes numpy matmul sums"),
    Rule("numeric.blas.*.threading_layer", "warning", ["blas", "numpy", "threads"], "BLAS threading layer changed"),
    Rule("numeric.blas*", "critical", ["blas", "numpy"], "a different BLAS build or kernel set computes numpy matmul"),
    Rule("numeric.simd_*", "critical", ["numpy", "elementwise", "reduction", "blas"],
         "numpy dispatches to different SIMD kernels (exp/log/tanh move by a few ULP)"),
    # CPU
    Rule("cpu.isa.*", "critical", _ISA, "an instruction-set feature changes oneDNN/Eigen/XLA/numpy kernels"),
    Rule("cpu.flags", "critical", _ISA, "an instruction-set feature changes oneDNN/Eigen/XLA/numpy kernels"),
    Rule("cpu.flags.*", "info", [], "this CPU flag does not select numeric kernels"),
    Rule("cpu.logical_cores", "warning", _THREADS, "default thread counts follow the core count"),
    Rule("cpu.physical_cores", "warning", _THREADS, "default thread counts follow the core count"),
    Rule("cpu.affinity", "warning", _THREADS, "TF and OpenBLAS default thread counts follow CPU affinity"),
    Rule("cpu.caches.*.size_bytes", "warning", ["eigen", "matmul", "conv", "training"],
         "Eigen's contraction blocking follows the cache sizes, so a matmul may sum in another order"),
    Rule("cpu.caches.*.shared_by", "warning", ["eigen", "matmul", "threads"],
         "Eigen divides the shared cache among the threads that share it when it blocks a contraction"),
    Rule("cpu.caches.*", "info", [], "cache geometry besides size and sharing does not enter Eigen's blocking"),
    Rule("cpu.microcode", "warning", _ISA, "microcode updates can change instruction behaviour"),
    Rule("cpu.*", "warning", _ISA, "another CPU model can select other kernels"),
    # GPU
    Rule("gpu.status", "critical", _GPU, "GPU availability decides where ops run"),
    Rule("gpu.devices.*.compute_capability", "critical", _GPU, "another GPU architecture runs other kernels"),
    Rule("gpu.devices.*.name", "critical", _GPU, "another GPU model runs other kernels"),
    Rule("gpu.devices.*.memory_total_bytes", "info", [], "GPU memory size does not change results"),
    Rule("gpu.devices.*.uuid_sha256", "info", [], "another physical board of the same model"),
    Rule("gpu.*", "warning", _GPU, "GPU driver or mode changed"),
    # Python packages
    Rule("python.distributions.tensorflow*", "critical", _ALL, "a different TensorFlow package"),
    Rule("python.distributions.tf-keras", "critical", ["keras", "training", "init"], "a different Keras package"),
    Rule("python.distributions.keras", "critical", ["keras", "training", "init"], "a different Keras package"),
    Rule("python.distributions.numpy", "critical", _NUMPY, "a different numpy package"),
    Rule("python.distributions.ml-dtypes", "critical", ["elementwise"], "a different ml_dtypes package"),
    Rule("python.distributions.nvidia-*", "critical", _GPU, "a different NVIDIA CUDA library package"),
    Rule("python.distributions.scipy-openblas*", "critical", ["blas", "numpy"], "a different OpenBLAS package"),
    Rule("python.distributions.*", "warning", [], "another package version may change results through your code"),
    Rule("python.version", "warning", ["rng"], "another Python release"),
    Rule("python.*", "info", [], "interpreter build detail"),
    # Environment: the determinism and numerics switches are critical, thread counts a warning.
    Rule("environment.TF_ENABLE_ONEDNN_OPTS", "critical", _ONEDNN, "switches oneDNN optimisations"),
    Rule("environment.ONEDNN_MAX_CPU_ISA", "critical", _ISA, "caps the instruction set oneDNN's kernels use"),
    Rule("environment.DNNL_MAX_CPU_ISA", "critical", _ISA, "caps the instruction set oneDNN's kernels use"),
    Rule("environment.ONEDNN_*", "warning", _ONEDNN, "a oneDNN setting"),
    Rule("environment.DNNL_*", "warning", _ONEDNN, "a oneDNN setting"),
    Rule("environment.TF_XLA_FLAGS", "critical", _XLA, "changes which ops XLA compiles"),
    Rule("environment.XLA_FLAGS", "critical", _XLA, "changes how XLA compiles"),
    Rule("environment.TF_DETERMINISTIC_OPS", "critical", ["training", "xla", "gpu"], "switches op determinism"),
    Rule("environment.TF_CUDNN_DETERMINISTIC", "critical", _GPU, "switches deterministic cuDNN algorithms"),
    Rule("environment.CUBLAS_WORKSPACE_CONFIG", "critical", _GPU, "changes cuBLAS reduction determinism"),
    Rule("environment.NVIDIA_TF32_OVERRIDE", "critical", _GPU, "switches TF32 matmul precision"),
    Rule("environment.TF_ENABLE_AUTO_MIXED_PRECISION*", "critical", _GPU + ["training"], "switches mixed precision"),
    Rule("environment.CUDA_VISIBLE_DEVICES", "critical", _GPU, "changes which GPUs TensorFlow sees"),
    Rule("environment.NVIDIA_VISIBLE_DEVICES", "critical", _GPU, "changes which GPUs the container sees"),
    Rule("environment.TF_NUM_INTRAOP_THREADS", "warning", _THREADS, "sets TF's intra-op thread count"),
    Rule("environment.TF_NUM_INTEROP_THREADS", "info", ["threads"],
         "inter-op threads schedule ops but do not split them"),
    Rule("environment.OMP_NUM_THREADS", "warning", ["blas", "numpy", "threads"], "sets OpenMP/BLAS thread counts"),
    Rule("environment.OPENBLAS_*", "warning", ["blas", "numpy", "threads"], "an OpenBLAS setting"),
    Rule("environment.NPY_*_CPU_FEATURES", "critical", ["numpy", "elementwise"],
         "changes numpy's runtime SIMD dispatch"),
    Rule("environment.NPY_*", "warning", ["numpy"], "a numpy setting"),
    Rule("environment.MKL_*", "warning", ["blas", "threads", "onednn"], "an MKL setting"),
    Rule("environment.PYTHONHASHSEED", "warning", ["rng", "tf.data"],
         "changes set/dict ordering your code may rely on"),
    Rule("environment.TF_CPP_*", "info", [], "logging only"),
    Rule("environment.TF_ENABLE_ZENDNN_OPTS", "info", [], "has no effect on this TensorFlow build"),
    Rule("environment.*", "warning", _ALL, "a numerics-related environment variable"),
    # Host and memory
    Rule("host.architecture", "critical", _ALL, "another CPU architecture runs other kernels"),
    Rule("host.glibc", "warning", ["elementwise"], "glibc's libm can round transcendental functions differently"),
    Rule("host.kernel", "warning", ["threads"], "the kernel schedules threads; it does not compute"),
    Rule("host.*", "info", [], "does not change numeric results"),
    Rule("memory.*", "info", [], "memory size and layout do not change results"),
    # The file's own format: older versions are migrated on load, so they never change results.
    Rule("kind", "info", [], "the file's format"),
    Rule("schema_version", "info", [], "the file's format version (older ones are migrated on load)"),
    Rule("*", "warning", [], "an identity field changed"),
)


class Difference(BaseModel):
    path: str
    old: Any = None
    new: Any = None
    severity: Severity
    reason: str
    components: list[str]


def rule_for(path: str) -> Rule:
    if path.startswith("cpu.flags.") and _kernel_relevant_flag(path.removeprefix("cpu.flags.")):
        path = "cpu.flags"  # the flag-level critical rule
    for rule in SEVERITY_RULES:
        if fnmatch.fnmatchcase(path, rule.pattern):
            return rule
    raise AssertionError("the '*' rule matches every path")  # pragma: no cover


def _kernel_relevant_flag(flag: str) -> bool:
    return any(fnmatch.fnmatchcase(flag, pattern) for pattern in KERNEL_RELEVANT_FLAGS)


# Lists of records compared by a key instead of by position, so one inserted element does
# not make every later one look different: list path -> function giving (key, value) pairs.
def _keyed_blas(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(b.get("internal_api") or b.get("filename") or i): b for i, b in enumerate(items)}


def _keyed_devices(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(d.get("index", i)): d for i, d in enumerate(items)}


def _keyed_libraries(items: list[dict[str, Any]]) -> dict[str, Any]:
    versions: dict[str, list[str | None]] = {}
    for lib in items:
        versions.setdefault(str(lib.get("name")), []).append(lib.get("version"))
    # One loaded copy -> its version; several copies of one library -> all their versions.
    return {name: vs[0] if len(vs) == 1 else sorted(vs, key=str) for name, vs in versions.items()}


def _keyed_distributions(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(d.get("name")): _distribution_text(d) for d in items}


def _distribution_text(dist: dict[str, Any]) -> str:
    record = dist.get("record_sha256")
    return f"{dist.get('version')} (RECORD {record[:12]})" if record else str(dist.get("version"))


def _keyed_caches(items: list[dict[str, Any]]) -> dict[str, Any]:
    # "L1d", "L1i", "L2", "L3": the names people use, so a difference reads cpu.caches.L2.size_bytes.
    suffix = {"Data": "d", "Instruction": "i"}
    return {f"L{c.get('level')}{suffix.get(str(c.get('type')), '')}": c for c in items}


def _keyed_flags(items: list[str]) -> dict[str, Any]:
    return dict.fromkeys(items, True)


_KEYED_LISTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "numeric.blas": _keyed_blas,
    "gpu.devices": _keyed_devices,
    "tensorflow.loaded_libraries": _keyed_libraries,
    "python.distributions": _keyed_distributions,
    "cpu.flags": _keyed_flags,
    "cpu.caches": _keyed_caches,
}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Identity data as {dotted path: leaf value}; keyed lists become dicts, other lists stay leaves."""
    if prefix in _KEYED_LISTS and isinstance(data, list):
        data = _KEYED_LISTS[prefix](data)
    if isinstance(data, dict):
        # An empty mapping contributes no leaves, so "no libraries" equals "not recorded".
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _difference(path: str, old: Any, new: Any) -> Difference:
    rule = rule_for(path)
    # A flag appearing or disappearing is more readable as present/absent than yes/absent.
    if path.startswith("cpu.flags."):
        old, new = bool(old), bool(new)
    # Every report, /status, /healthz reason and daemon log line shows values through here: a
    # manifest from an older envlock or a hostile golden must not carry a secret out.
    old, new = redact_data(old), redact_data(new)
    return Difference(
        path=path,
        old=old,
        new=new,
        severity=rule.severity,
        reason=f"{path}: {_shown(old)} -> {_shown(new)} ({rule.why})",
        components=list(rule.components),
    )


def _lacks(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return True
        node = node[key]
    return False


def not_recorded(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    """The fields added after 0.1.0 that one side lacks: an older manifest (or a capture that could not
    read them) has not recorded them, which is no evidence of a difference."""
    return tuple(f for f in NOT_RECORDED_WHEN_ABSENT if _lacks(old, f) or _lacks(new, f))


def diff_manifests(old: Manifest, new: Manifest) -> list[Difference]:
    """Every identity difference between two manifests, most severe first, then by path.

    A field of ``NOT_RECORDED_WHEN_ABSENT`` that one side lacks is "not recorded", not a difference.
    """
    old_identity, new_identity = identity_dict(old), identity_dict(new)
    unrecorded = not_recorded(old_identity, new_identity)
    old_flat = flatten(old_identity)
    new_flat = flatten(new_identity)
    differences = [
        _difference(path, old_flat.get(path), new_flat.get(path))
        for path in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(path) != new_flat.get(path)
        and not any(path == f or path.startswith(f + ".") for f in unrecorded)
    ]
    return sorted(differences, key=lambda d: (SEVERITY_ORDER[d.severity], d.path))
