"""The environment allow-list: only variables that change numerics or determinism.

A manifest is shared and committed, so it must never carry a secret: we keep an explicit
allow-list (prefixes + exact names) instead of a deny-list, and drop everything else.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envlock.errors import BadInputError
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


def golden_environment_changes(current: dict[str, str], golden_env: dict[str, str]) -> dict[str, str | None]:
    """What makes the allow-listed environment exactly the golden's: name -> value (None = unset).

    The one path by which a golden's environment reaches a process (verify --golden-env and
    lockdown(golden=)): it refuses anything off the allow-list (PYTHONPATH, LD_PRELOAD, ...) or
    with a value that is not short printable text, even when the model was built without validation.
    """
    problem = environment_problem(golden_env)
    if problem:
        raise BadInputError(f"golden environment: {problem}")
    changes: dict[str, str | None] = {n: None for n in current if is_allowed(n) and n not in golden_env}
    changes.update({n: v for n, v in golden_env.items() if current.get(n) != v})
    return dict(sorted(changes.items()))
