"""numpy, its BLAS/LAPACK (via threadpoolctl) and the SIMD kernels numpy dispatches to."""

from __future__ import annotations

import os
from typing import Any

from envlock.models import BlasLibrary, NumericInfo


def parse_threadpool_info(entries: list[dict[str, Any]]) -> list[BlasLibrary]:
    """threadpoolctl.threadpool_info() -> BlasLibrary list, sorted. The file *path* is dropped
    (it says where, not what); the file name stays because it carries the build hash."""
    libraries = []
    for entry in entries:
        filepath = entry.get("filepath")
        threads = entry.get("num_threads")
        libraries.append(
            BlasLibrary(
                user_api=entry.get("user_api"),
                internal_api=entry.get("internal_api"),
                filename=str(filepath).rsplit("/", 1)[-1] if filepath else None,
                version=entry.get("version"),
                architecture=entry.get("architecture"),
                threading_layer=entry.get("threading_layer"),
                num_threads=threads if isinstance(threads, int) else None,
            )
        )
    return sorted(libraries, key=lambda b: (b.user_api or "", b.internal_api or "", b.filename or ""))


def simd_in_use(baseline: list[str] | None, dispatch: list[str] | None, features: dict[str, bool] | None
                ) -> tuple[list[str] | None, list[str] | None]:
    """(baseline, dispatch targets this CPU supports): numpy picks a kernel among the dispatch
    targets at run time, so the supported ones -- not the compiled list -- decide the bits."""
    if dispatch is not None and features is not None:
        dispatch = [name for name in dispatch if features.get(name)]
    return (sorted(baseline) if baseline is not None else None, sorted(dispatch) if dispatch is not None else None)


def _numpy_simd() -> tuple[list[str] | None, list[str] | None]:
    try:
        # lazy: numpy is optional; this is where numpy >= 2 keeps it
        from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]  # numpy >= 2
    except ImportError:
        try:
            # lazy: numpy 1.x keeps it here
            from numpy.core import _multiarray_umath as umath  # numpy 1.x
        except ImportError:
            return None, None
    return simd_in_use(
        list(getattr(umath, "__cpu_baseline__", [])) or None,
        list(getattr(umath, "__cpu_dispatch__", [])) or None,
        dict(getattr(umath, "__cpu_features__", {})) or None,
    )


def collect_numeric() -> NumericInfo:
    try:
        # lazy: numpy is optional: without it the numeric section is unknown
        import numpy as np
    except ImportError:
        return NumericInfo()
    baseline, dispatch = _numpy_simd()
    # Importing threadpoolctl sets KMP_DUPLICATE_LIB_OK in os.environ; a fingerprint must not
    # change the environment it fingerprints (a second capture, or lockdown(), would see it).
    kmp_before = os.environ.get("KMP_DUPLICATE_LIB_OK")
    try:
        # lazy: importing it sets KMP_DUPLICATE_LIB_OK: only inside the guard that restores it
        import threadpoolctl

        blas = parse_threadpool_info(threadpoolctl.threadpool_info())
    except Exception:  # noqa: BLE001 - threadpoolctl failing leaves BLAS unknown, not a crash
        blas = []
    finally:
        if kmp_before is None:
            os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
        else:
            os.environ["KMP_DUPLICATE_LIB_OK"] = kmp_before
    return NumericInfo(numpy_version=np.__version__, blas=blas, simd_baseline=baseline, simd_dispatch=dispatch)
