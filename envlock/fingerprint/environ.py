"""The environment allow-list: only variables that change numerics or determinism.

A manifest is shared and committed, so it must never carry a secret: we keep an explicit
allow-list (prefixes + exact names) instead of a deny-list, and drop everything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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

# A value carrying credentials in a URL (scheme://user:pass@host) is never recorded.
_URL_WITH_USER = re.compile(r"://[^/\s@]+@")


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
    return {name: environ[name] for name in sorted(environ)
            if is_allowed(name) and not _URL_WITH_USER.search(environ[name])}
