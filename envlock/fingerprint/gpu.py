"""GPUs through NVML (nvidia-ml-py's ``pynvml``), never by scraping nvidia-smi's text.

``collect_gpu`` takes the nvml module as a parameter: unit tests pass a fake fed with real
readings from real GPUs (tests/data/nvml). GPU UUIDs identify a physical board, so only
their sha256 is stored: enough to tell "same card" from "another card", nothing more.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from envlock.models import GpuDevice, GpuInfo

# NVML return codes (nvml.h) that mean "no usable driver" rather than "something broke".
_NO_DRIVER_CODES = {9, 12}  # NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND
_NOT_SUPPORTED_CODES = {3, 13}  # NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):  # nvidia-ml-py < 11.5 returned bytes
        value = value.decode("utf-8", errors="replace")
    value = str(value).strip()
    return value or None


def cuda_driver_version_text(version: int | None) -> str | None:
    """NVML's integer CUDA driver version (12040) -> "12.4"."""
    if not isinstance(version, int) or version <= 0:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def hash_uuid(uuid: str | None) -> str | None:
    return None if not uuid else hashlib.sha256(uuid.encode()).hexdigest()


def _mode(reading: Any, enabled_value: int = 1) -> str | None:
    """NVML (current, pending) mode pair -> "enabled"/"disabled", from the current one."""
    if isinstance(reading, (tuple, list)) and reading:
        reading = reading[0]
    if not isinstance(reading, int):
        return None
    return "enabled" if reading == enabled_value else "disabled"


def _error_code(exc: Exception) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _query(nvml: Any, fn_name: str, *args: Any, unsupported: Any = None) -> Any:
    """One NVML call: NOT_SUPPORTED -> ``unsupported``; any other failure -> None."""
    fn = getattr(nvml, fn_name, None)
    if fn is None:
        return unsupported
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - NVMLError and ctypes errors alike
        return unsupported if _error_code(exc) in _NOT_SUPPORTED_CODES else None


def _device(nvml: Any, index: int) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    capability = _query(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
    memory = _query(nvml, "nvmlDeviceGetMemoryInfo", handle)
    mig = _query(nvml, "nvmlDeviceGetMigMode", handle, unsupported="unsupported")
    ecc = _query(nvml, "nvmlDeviceGetEccMode", handle, unsupported="unsupported")
    total = getattr(memory, "total", None)
    return GpuDevice(
        index=index,
        name=_text(_query(nvml, "nvmlDeviceGetName", handle)),
        compute_capability=f"{capability[0]}.{capability[1]}" if isinstance(capability, (tuple, list)) else None,
        memory_total_bytes=int(total) if isinstance(total, int) else None,
        uuid_sha256=hash_uuid(_text(_query(nvml, "nvmlDeviceGetUUID", handle))),
        mig_mode="unsupported" if mig == "unsupported" else _mode(mig),  # type: ignore[arg-type]
        ecc_mode="unsupported" if ecc == "unsupported" else _mode(ecc),  # type: ignore[arg-type]
    )


def collect_gpu(nvml: Any | None = None) -> GpuInfo:
    """GPU section via NVML; ``nvml`` defaults to the real ``pynvml`` module."""
    if nvml is None:
        try:
            # lazy: NVML is optional (a GPU machine's package), loaded only to read a GPU
            import pynvml
        except ImportError:
            return GpuInfo(status="nvml_unavailable", detail="nvidia-ml-py (pynvml) is not installed")
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        if _error_code(exc) in _NO_DRIVER_CODES:
            return GpuInfo(status="no_driver", detail=f"NVML: {exc}")
        return GpuInfo(status="error", detail=f"NVML init failed: {exc}")
    try:
        count = nvml.nvmlDeviceGetCount()
        driver = _text(_query(nvml, "nvmlSystemGetDriverVersion"))
        cuda = cuda_driver_version_text(_query(nvml, "nvmlSystemGetCudaDriverVersion"))
        if not count:
            return GpuInfo(status="no_gpu", detail="NVML found no GPU", driver_version=driver, cuda_driver_version=cuda)
        devices = [_device(nvml, index) for index in range(count)]
    except Exception as exc:  # noqa: BLE001
        return GpuInfo(status="error", detail=f"NVML query failed: {exc}")
    finally:
        with contextlib.suppress(Exception):  # shutting down a half-initialised NVML is best effort
            nvml.nvmlShutdown()
    return GpuInfo(status="ok", driver_version=driver, cuda_driver_version=cuda, devices=devices)
