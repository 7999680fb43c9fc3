"""The environment allow-list: only variables that change numerics or determinism.

A manifest is shared and committed, so it must never carry a secret: we keep an explicit
allow-list (prefixes + exact names) instead of a deny-list, and drop everything else.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envlock.errors import BadInputError
from envlock.limits import MAX_THREADS
from envlock.redact import redact_value

# TensorFlow's own families. "TF_" alone is not allowed: Terraform and OpenTofu share it
# (TF_VAR_*, TF_TOKEN_*, TF_ENCRYPTION, TF_HTTP_PASSWORD ... carry secrets), so only the
# families TensorFlow reads are listed.
TENSORFLOW_PREFIXES: tuple[str, ...] = (
    "TF_ENABLE_",        # TF_ENABLE_ONEDNN_OPTS, TF_ENABLE_ZENDNN_OPTS, TF_ENABLE_AUTO_MIXED_PRECISION...
    "TF_DETERMINISTIC_",
    "TF_CUDNN_",
    "TF_CUBLAS_",
    "TF_GPU_",
    "TF_XLA_",
    "TF_NUM_",           # TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS
    "TF_CPP_",           # logging level: harmless, but users look for it
    "TF_USE_",           # TF_USE_LEGACY_KERAS, TF_USE_CUDNN_AUTOTUNE...
    "TF_FORCE_",
    "TF_DISABLE_",
    "TF_ONEDNN_",
    "TF_MKL_",
    "TF_AUTOTUNE_",
    "TF_SYNC_",
    "TF_DATA_",          # tf.data experiments (not Terraform's TF_DATA_DIR, refused below)
)

# Prefixes of variable families read by XLA, oneDNN, OpenMP, the BLAS libraries and numpy.
ALLOWED_PREFIXES: tuple[str, ...] = (
    *TENSORFLOW_PREFIXES,
    "XLA_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO_",
    "BLIS_",
    "ONEDNN_",
    "DNNL_",
    "CUDNN_",
    "CUBLAS_",
    "NCCL_",
    "NVIDIA_TF32",
    "ZENDNN_",
    "KERAS_",
    "NPY_",
    "NVPL_",
)

ALLOWED_NAMES: frozenset[str] = frozenset(
    {
        "TF_INTRA_OP_PARALLELISM_THREADS",
        "TF_INTER_OP_PARALLELISM_THREADS",
        "TF_ENABLE_ONEDNN_OPTS",
        "TF_DETERMINISTIC_OPS",
        "XLA_FLAGS",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "CUDA_LAUNCH_BLOCKING",
        "CUDA_CACHE_DISABLE",
        "CUBLAS_WORKSPACE_CONFIG",
        "NVIDIA_TF32_OVERRIDE",
        "NVIDIA_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "PYTHONHASHSEED",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "KERAS_BACKEND",
    }
)

# Words that mark a variable as a credential even inside an allowed family (for example
# a hypothetical MKL_LICENSE_PASS): we never want such a value in a committed file.
_SECRET_MARKERS: tuple[str, ...] = (
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "API_KEY", "KEY", "AUTH", "CERT",
    "PRIVATE", "SIGNED", "ENCRYPT", "COOKIE", "SESSION",
)

# Terraform/OpenTofu names inside TensorFlow-looking families, refused outright.
DENIED_PREFIXES: tuple[str, ...] = ("TF_DATA_DIR",)
# Names the libraries themselves write into os.environ when they load (TensorFlow sets TF2_BEHAVIOR=1
# on import): they say nothing about the user's configuration, and once TF is imported they would
# read as drift from a golden recorded before the import.
SET_BY_IMPORT: frozenset[str] = frozenset({"TF2_BEHAVIOR"})

# What a recorded variable may look like. A golden is untrusted input, and its environment is
# applied to processes (verify --golden-env, lockdown(golden=)) and baked into images (build):
# these bounds hold wherever it is read, not only at capture.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_NAME_LENGTH = 128
MAX_VALUE_LENGTH = 4096
MAX_VARIABLES = 256
# Printable ASCII and nothing else: no control characters, NUL, line breaks or escapes.
_SANE_VALUE = re.compile(r"[\x20-\x7e]*")


# Names the libraries read, discovered from their string tables (scripts/scan_env_names.py), one
# committed file per TensorFlow version. They extend the allow-list above; they never override a
# refusal. Libraries also read general process variables (LD_LIBRARY_PATH, HOME, proxies, paths):
# those say where, not how the numbers are computed, and can carry user names or hosts.
DISCOVERED_NAMES_DIR = Path(__file__).parent / "data"
# A string table holds far more than variable names (opcode and enum names), and the libraries read
# variables that have nothing to do with numbers (CURL_CA_BUNDLE, the gRPC and cloud-storage
# settings): a discovered name counts only inside the numeric libraries' own families.
DISCOVERED_FAMILIES: tuple[str, ...] = (
    "TF_", "XLA_", "TPU_", "CUDA_", "CUDNN_", "CUBLAS_", "CUSOLVER_", "CUFFT_", "NCCL_", "NVIDIA_", "NVPL_",
    "MKL_", "KMP_", "OMP_", "GOMP_", "ONEDNN_", "DNNL_", "ZENDNN_", "OPENBLAS_", "GOTO_", "BLIS_", "NPY_",
    "NUMPY_", "ROCM_", "HIP_", "MIOPEN_", "ROCBLAS_",
)
_PROCESS_PREFIXES: tuple[str, ...] = ("LD_", "DYLD_", "XDG_", "SSH_", "LC_", "PYTHON", "GIT_", "HTTP", "HTTPS",
                                      "NO_PROXY", "ALL_PROXY", "FTP_", "DBUS_", "GPG_", "SUDO_", "TERM", "LANG")
_PROCESS_SUFFIXES: tuple[str, ...] = ("_PATH", "_DIR", "_DIRS", "_HOME", "_FILE", "_URL", "_URI", "_PROXY", "_HOST",
                                      "_HOSTS", "_USER", "_ADDR", "_ADDRESS", "_PORT", "_ROOT", "_PREFIX", "_SOCKET")


def with_changes(environ: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """A copy of ``environ`` with ``changes`` applied: a value sets the variable, None unsets it."""
    env = dict(environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@functools.lru_cache(maxsize=1)
def discovered_names() -> frozenset[str]:
    """Every name in the committed scans (all TensorFlow versions: a golden from another version
    must load here too), minus general process variables. Empty if the data is missing."""
    names: set[str] = set()
    for path in sorted(DISCOVERED_NAMES_DIR.glob("env_names-tf*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            names.update(n for group in document["names"].values() for n in group if isinstance(n, str))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a broken data file narrows the allow-list; it never widens it
    # The scan keeps identifier-shaped upper-case names only; variable_problem checks every name again.
    return frozenset(n for n in names if is_discoverable(n))


def is_discoverable(name: str) -> bool:
    """Whether a name found in a library's strings may join the allow-list: in a numeric family,
    and no general process variable."""
    return name.startswith(DISCOVERED_FAMILIES) and not _is_process_variable(name)


def _is_process_variable(name: str) -> bool:
    return name.startswith(_PROCESS_PREFIXES) or name.endswith(_PROCESS_SUFFIXES)


def is_allowed(name: str) -> bool:
    """True when ``name`` may be recorded in a manifest."""
    upper = name.upper()
    if name != upper:
        return False  # the variables we care about are all upper case; mixed case is a user's own
    if name.startswith(DENIED_PREFIXES) or name in SET_BY_IMPORT or any(marker in upper for marker in _SECRET_MARKERS):
        return False
    if name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES):
        return True
    # Cheap refusals first: loading the discovered names costs ~30 ms, once per process.
    return "_" in name and not _is_process_variable(name) and name in discovered_names()


def _shown(text: str) -> str:
    """A name for a one-line message: escaped and cut short (it may come from a hostile file)."""
    return ascii(text[:MAX_NAME_LENGTH]) + ("..." if len(text) > MAX_NAME_LENGTH else "")


def variable_problem(name: Any, value: Any) -> str | None:
    """Why ``name=value`` may not be recorded, applied or baked into an image; None when it may."""
    if not isinstance(name, str) or not isinstance(value, str):
        return f"{_shown(str(name))}: names and values must be strings"
    if len(name) > MAX_NAME_LENGTH or not ENV_NAME.fullmatch(name):
        return f"{_shown(name)}: not an environment variable name"
    if not is_allowed(name):
        return (f"{name}: not on the allow-list of numerics variables (or looks like a credential); "
                "refusing to apply it")
    if len(value) > MAX_VALUE_LENGTH:
        return f"{name}: value is longer than {MAX_VALUE_LENGTH} characters"
    if not _SANE_VALUE.fullmatch(value):
        return f"{name}: value contains a control character, line break, NUL or non-ASCII character"
    return None


def environment_problem(environment: Mapping[Any, Any]) -> str | None:
    """The first problem with a whole environment mapping (a golden's or a manifest's), or None."""
    if len(environment) > MAX_VARIABLES:
        return f"{len(environment)} variables; at most {MAX_VARIABLES} are allowed"
    for name, value in environment.items():
        problem = variable_problem(name, value)
        if problem:
            return problem
    return None


def check_environment(environment: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """``environment`` unchanged, or ValueError naming the first bad variable (a pydantic validator)."""
    problem = environment_problem(environment)
    if problem:
        raise ValueError(problem)
    return environment


def capture_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed subset of ``environ``, sorted by name, with secrets and home directories
    redacted; a variable whose value could not be loaded back (control characters, too long) is left out."""
    home = environ.get("HOME")
    captured = {}
    for name in sorted(environ):
        if not is_allowed(name):
            continue
        value = redact_value(environ[name], home)
        if variable_problem(name, value) is None:
            captured[name] = value
    return captured


# ---- what a golden's variable may hold where it is applied -------------------------------------
#
# A golden's environment reaches processes (verify --golden-env, explain's candidates,
# lockdown(golden=), build's ENV). The allow-list above says which NAMES change numerics; these
# tables say what VALUE each may hold there, because a numerics variable can still name a file to
# write (XLA_FLAGS=--xla_dump_to=/etc/x), a home a library populates (KERAS_HOME), a library to
# load (OMP_TOOL_LIBRARIES, NCCL_NET_PLUGIN) or a count that exhausts memory
# (TF_NUM_INTRAOP_THREADS=999999). A variable that breaks them is refused where it would be
# applied (the command says so) and loads fine: goldens stay readable, only the value is not used.

ValueKind = Literal["refuse", "threads", "stack_size", "isa", "seed", "keras_backend", "xla_flags", "word"]


@dataclass(frozen=True)
class ValueRule:
    """Variables whose name matches ``pattern`` (fnmatch, upper case) may hold a ``kind`` value."""

    pattern: str
    kind: ValueKind
    why: str = ""  # for "refuse": the reason the command prints


# First match wins: the refusals come first, so no value rule can let such a name through.
VALUE_RULES: tuple[ValueRule, ...] = (
    *(ValueRule(p, "refuse", "names a library or tool to load") for p in
      ("*PLUGIN*", "*LIBRAR*", "*_TOOL", "*_TOOL_*", "*PRELOAD*", "*_MODULE*")),
    *(ValueRule(p, "refuse", "names a directory or file (a library would read or write there)") for p in
      ("*_HOME", "*_PATH", "*_PATHS", "*_DIR", "*_DIRS", "*_DIRECTORY", "*_FILE", "*_FILES", "*_FILENAME",
       "*_PREFIX", "*_ROOT", "*_LOCATION")),
    *(ValueRule(p, "refuse", "makes a library write dumps, traces or profiles") for p in
      ("*DUMP*", "*PROFIL*", "*_TRACE*")),
    *(ValueRule(p, "refuse", "names a program, a host or a network endpoint") for p in
      ("*_EXEC*", "*_CMD", "*_COMMAND", "*_BIN", "*_SCRIPT*", "*_URL", "*_URI", "*_HOST", "*_HOSTS", "*_PORT",
       "*_ADDR*", "*_SOCKET*", "*IFNAME*")),
    ValueRule("XLA_FLAGS", "xla_flags"),
    ValueRule("TF_XLA_FLAGS", "xla_flags"),
    ValueRule("*_FLAGS", "refuse", "a flag list envlock has no allow-list for (it may hold dump or path flags)"),
    ValueRule("PYTHONHASHSEED", "seed"),
    ValueRule("KERAS_BACKEND", "keras_backend"),
    ValueRule("*_MAX_CPU_ISA", "isa"),
    ValueRule("*_CPU_ISA_HINTS", "isa"),
    ValueRule("*STACKSIZE*", "stack_size"),
    *(ValueRule(p, "threads") for p in ("*_THREADS", "*_THREAD_LIMIT", "*_THREAD_COUNT")),
    ValueRule("*", "word"),
)

# XLA_FLAGS and TF_XLA_FLAGS: the flags that change how numbers are computed, each with what its
# value may be (bool: bare, true/false or 1/0; (low, high): an integer in range). No dump, path,
# cache, plugin or printing flag is here, so none can be applied. Names from the flag tables of
# the installed TensorFlow (tensorflow/compiler/jit/flags.cc, xla/debug_options_flags.cc).
FlagValue = Literal["bool", "isa", "pass_list", "op_list", "auto_jit", "backend_options"] | tuple[int, int]
XLA_FLAG_RULES: dict[str, FlagValue] = {
    **dict.fromkeys((
        "xla_cpu_enable_fast_math", "xla_cpu_fast_math_honor_nans", "xla_cpu_fast_math_honor_infs",
        "xla_cpu_fast_math_honor_division", "xla_cpu_fast_math_honor_functions", "xla_cpu_enable_fast_min_max",
        "xla_cpu_strict_dot_conv_math", "xla_cpu_multi_thread_eigen", "xla_cpu_use_thunk_runtime",
        "xla_cpu_use_onednn", "xla_cpu_use_xnnpack", "xla_cpu_use_acl", "xla_cpu_use_fusion_emitters",
        "xla_cpu_disable_loop_unrolling", "xla_cpu_disable_slp_vectorizer", "xla_cpu_enable_platform_dependent_math",
        "xla_cpu_enable_concurrency_optimized_scheduler", "xla_cpu_copy_insertion_use_region_analysis",
        "xla_cpu_enable_custom_matmul_tiling", "xla_cpu_optimize_for_size", "xla_cpu_use_xla_runtime",
        "xla_allow_excess_precision", "xla_enable_fast_math", "xla_eliminate_hlo_implicit_broadcast",
        "xla_llvm_disable_expensive_passes", "xla_llvm_enable_alias_scope_metadata",
        "xla_llvm_enable_noalias_metadata", "xla_llvm_enable_invariant_load_metadata", "xla_disable_all_hlo_passes",
        "xla_gpu_deterministic_ops", "xla_gpu_exclude_nondeterministic_ops", "xla_gpu_enable_fast_min_max",
        # TF_XLA_FLAGS (tensorflow/compiler/jit/flags.cc)
        "tf_xla_cpu_global_jit", "tf_xla_enable_lazy_compilation", "tf_xla_deterministic_cluster_names",
        "tf_xla_disable_constant_folding", "tf_xla_compile_on_demand", "tf_xla_always_defer_compilation",
        "tf_xla_async_compilation", "tf_xla_enable_xla_devices", "tf_mlir_enable_mlir_bridge",
        "tf_xla_use_device_api", "tf_xla_use_device_api_for_xla_launch",
        "tf_xla_use_device_api_for_compile_on_demand", "tf_xla_use_device_api_for_auto_jit",
    ), "bool"),
    "xla_cpu_max_isa": "isa",
    "xla_backend_optimization_level": (0, 3),
    "xla_cpu_prefer_vector_width": (0, 2048),
    "xla_cpu_parallel_codegen_split_count": (0, 1024),
    "xla_cpu_matmul_tiling_m_dim": (0, 65536),
    "xla_cpu_matmul_tiling_n_dim": (0, 65536),
    "xla_cpu_matmul_tiling_k_dim": (0, 65536),
    "xla_gpu_autotune_level": (0, 5),
    "xla_force_host_platform_device_count": (1, 1024),
    "xla_disable_hlo_passes": "pass_list",
    "xla_enable_hlo_passes_only": "pass_list",
    # Handed to the backend (for the CPU, LLVM's own options, which can name output files): only the
    # options listed in XLA_BACKEND_OPTIONS.
    "xla_backend_extra_options": "backend_options",
    "tf_xla_auto_jit": "auto_jit",
    "tf_xla_min_cluster_size": (0, 1_000_000),
    "tf_xla_max_cluster_size": (0, 2**31 - 1),
    "tf_xla_clustering_fuel": (0, 2**63 - 1),
    "tf_xla_ops_to_cluster": "op_list",
    "tf_xla_cluster_exclude_ops": "op_list",
}
XLA_BACKEND_OPTIONS = frozenset({"xla_cpu_disable_platform_dependent_math"})

_FLAG = re.compile(r"--([a-z0-9_]{1,100})(?:=(.*))?", re.DOTALL)
_BOOL = frozenset({"true", "false", "1", "0"})
_FLAG_SHAPES: dict[str, re.Pattern[str]] = {
    "isa": re.compile(r"[A-Za-z0-9_]{1,32}"),
    "pass_list": re.compile(r"[A-Za-z0-9_-]{1,100}(,[A-Za-z0-9_-]{1,100}){0,99}"),
    "op_list": re.compile(r"[A-Za-z0-9_]{1,100}(,[A-Za-z0-9_]{1,100}){0,199}"),
    "auto_jit": re.compile(r"-1|[0-2]|fusible|single-gpu\([0-2]\)"),
}
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_THREAD_COUNTS = re.compile(r"[0-9]{1,5}(,[0-9]{1,5}){0,7}")  # OMP_NUM_THREADS may list one count per level
_STACK_SIZE = re.compile(r"([0-9]{1,12}) ?([BKMG]?)", re.IGNORECASE)
MAX_STACK_SIZE = 64 * 1024 * 1024  # per thread, times up to MAX_THREADS threads
_ISA = re.compile(r"[A-Za-z0-9_]{1,32}")
KERAS_BACKENDS = frozenset({"tensorflow", "jax", "torch", "numpy", "openvino"})
# A plain word, number or list: no path separator, home (~), variable ($), quote or shell character.
_WORD = re.compile(r"[A-Za-z0-9 _.,:;+=@%{}\[\]()-]{0,1024}")


def _flag_problem(token: str) -> str | None:
    match = _FLAG.fullmatch(token)
    if match is None:
        return "holds something that is not a --flag or --flag=value (a value not starting with '-' names a file)"
    name, value = match.group(1), match.group(2)
    kind = XLA_FLAG_RULES.get(name)
    if kind is None:
        return f"--{name} is not on the allow-list of numerics flags (no dump, path, cache or plugin flag is)"
    if kind == "bool":
        ok = value is None or value in _BOOL
    elif isinstance(kind, tuple):
        ok = value is not None and _INTEGER.fullmatch(value) is not None and kind[0] <= int(value) <= kind[1]
    elif kind == "backend_options":
        ok = value is not None and all(option in XLA_BACKEND_OPTIONS for option in value.split(","))
    else:
        ok = value is not None and _FLAG_SHAPES[kind].fullmatch(value) is not None
    if not ok:
        expected = f"an integer from {kind[0]} to {kind[1]}" if isinstance(kind, tuple) else {
            "bool": "true or false", "backend_options": "one of " + ", ".join(sorted(XLA_BACKEND_OPTIONS)),
            "isa": "an ISA name", "pass_list": "a list of pass names", "op_list": "a list of op names",
            "auto_jit": "-1, 0, 1, 2, fusible or single-gpu(N)",
        }[kind]
        return f"--{name} must be {expected}"
    return None


def _value_problem(kind: ValueKind, value: str) -> str | None:
    match kind:
        case "xla_flags":
            for token in value.split():
                problem = _flag_problem(token)
                if problem:
                    return problem
            return None
        case "threads":
            ok = _THREAD_COUNTS.fullmatch(value) is not None and all(int(n) <= MAX_THREADS for n in value.split(","))
            return None if ok else f"must be a thread count from 0 to {MAX_THREADS}"
        case "stack_size":
            size = _STACK_SIZE.fullmatch(value.strip())
            scale = {"": 1024, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}  # OpenMP: no unit means KiB
            ok = size is not None and int(size.group(1)) * scale[size.group(2).upper()] <= MAX_STACK_SIZE
            return None if ok else f"must be a stack size of at most {MAX_STACK_SIZE // 1024**2}M"
        case "isa":
            return None if _ISA.fullmatch(value) else "must be an ISA name (letters, digits, _)"
        case "seed":
            ok = value == "random" or (value.isdigit() and len(value) <= 10 and int(value) <= 2**32 - 1)
            return None if ok else "must be random or an integer from 0 to 4294967295"
        case "keras_backend":
            return None if value in KERAS_BACKENDS else "must be one of " + ", ".join(sorted(KERAS_BACKENDS))
        case "word":
            return None if _WORD.fullmatch(value) else ("may only be a word, number or list (no path, home, "
                                                         "variable, quote or shell character)")
        case "refuse":
            return "refused"
    return None


def value_rule(name: str) -> ValueRule:
    """The first rule of ``VALUE_RULES`` that ``name`` matches (the last one matches every name)."""
    return next(rule for rule in VALUE_RULES if fnmatch.fnmatchcase(name, rule.pattern))


def application_problem(name: str, value: str) -> str | None:
    """Why a golden's ``name=value`` may not be applied to a process; None when it may."""
    rule = value_rule(name)
    if rule.kind == "refuse":
        return rule.why
    return _value_problem(rule.kind, value)


def partition_environment(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A golden's environment split into what may be applied to a process and what may not:
    (name -> value applied, name -> why refused). A variable that may not even be recorded
    (``variable_problem``) is refused too; the reasons never quote a value (it may carry a secret)."""
    applied: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, value in sorted(env.items()):
        problem = variable_problem(name, value)
        if problem is None:
            problem = application_problem(name, value)
            if problem is None:
                applied[name] = value
                continue
        else:
            name = _shown(str(name))
        refused[name] = problem
    return applied, refused


def golden_environment_changes(current: Mapping[str, str], golden_env: Mapping[str, str],
                               ) -> tuple[dict[str, str | None], dict[str, str]]:
    """What makes the allow-listed environment the golden's: (name -> value, None = unset; the
    golden's variables refused, name -> reason).

    The one path by which a golden's environment reaches a process (verify --golden-env,
    lockdown(golden=), explain's candidates, build): a name off the allow-list (PYTHONPATH,
    LD_PRELOAD, ...) or a value that is not short printable text is bad input (exit 2) even when
    the model was built without validation; a value its variable may not hold (``partition_environment``)
    is refused and left out, and so is the user's own value of that variable: it is neither set nor unset.
    """
    problem = environment_problem(golden_env)
    if problem:
        raise BadInputError(f"golden environment: {problem}")
    applied, refused = partition_environment(golden_env)
    changes: dict[str, str | None] = {n: None for n in current
                                      if is_allowed(n) and n not in applied and n not in refused}
    changes.update({n: v for n, v in applied.items() if current.get(n) != v})
    return dict(sorted(changes.items())), refused


def refused_note(refused: Mapping[str, str]) -> str | None:
    """One line naming the golden variables that were not applied and why (None when none was)."""
    if not refused:
        return None
    listed = "; ".join(f"{name}: {reason}" for name, reason in sorted(refused.items()))
    return f"refused to apply {len(refused)} of the golden's environment variable(s): {listed}"
