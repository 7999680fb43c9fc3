"""The environment allow-list: only variables that change numerics or determinism.

A manifest is shared and committed, so it must never carry a secret: we keep an explicit
allow-list (prefixes + exact names) instead of a deny-list, and drop everything else.
"""

from __future__ import annotations

from collections.abc import Mapping

# Prefixes of variable families read by TF, XLA, oneDNN, OpenMP and the BLAS libraries.
ALLOWED_PREFIXES: tuple[str, ...] = (
    "TF_",
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
# a hypothetical TF_SERVING_API_TOKEN): we never want such a value in a committed file.
_SECRET_MARKERS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "AUTH")


# Terraform shares the TF_ prefix; its variables carry input values and API tokens
# (TF_VAR_*, TF_TOKEN_*), so they are refused even though TF_* is allowed.
DENIED_PREFIXES: tuple[str, ...] = (
    "TF_VAR_", "TF_TOKEN_", "TF_CLI_", "TF_LOG", "TF_WORKSPACE", "TF_INPUT", "TF_IN_AUTOMATION",
    "TF_DATA_DIR", "TF_PLUGIN_CACHE", "TF_REGISTRY_", "TF_STATE", "TF_IGNORE", "TF_APPEND_USER_AGENT",
)


def is_allowed(name: str) -> bool:
    """True when ``name`` may be recorded in a manifest."""
    upper = name.upper()
    if name != upper:
        return False  # the variables we care about are all upper case; mixed case is a user's own
    if name.startswith(DENIED_PREFIXES) or any(marker in upper for marker in _SECRET_MARKERS):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def capture_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed subset of ``environ``, sorted by name."""
    return {name: environ[name] for name in sorted(environ) if is_allowed(name)}
