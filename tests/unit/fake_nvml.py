"""A pynvml-like module replaying a real GPU reading from tests/data/nvml.

Errors are raised as the real ``pynvml.NVMLError`` classes (the package is installed even
without a GPU), so the collector's error handling is exercised against the genuine types.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
UNKNOWN = pynvml.NVML_ERROR_UNKNOWN


class FakeNvml:
    def __init__(self, reading: dict[str, Any], *, init_error: int | None = None) -> None:
        self.reading = reading
        self.init_error = init_error
        self.shutdown_called = False

    @classmethod
    def from_file(cls, path: Path) -> FakeNvml:
        return cls(json.loads(path.read_text()))

    @staticmethod
    def _answer(value: Any) -> Any:
        if value is None:
            raise pynvml.NVMLError(UNKNOWN)
        if value == "not_supported":
            raise pynvml.NVMLError(NOT_SUPPORTED)
        return tuple(value) if isinstance(value, list) else value

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdown_called = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.reading["devices"])

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self._answer(self.reading["driver_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return self._answer(self.reading["cuda_driver_version"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:  # noqa: N802
        return self.reading["devices"][index]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:  # noqa: N802
        return self._answer(handle["name"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:  # noqa: N802
        return self._answer(handle["uuid"])

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict[str, Any]) -> tuple[int, int]:  # noqa: N802
        return self._answer(handle["compute_capability"])

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=self._answer(handle["memory_total_bytes"]))

    def nvmlDeviceGetMigMode(self, handle: dict[str, Any]) -> tuple[int, int]:  # noqa: N802
        return self._answer(handle["mig_mode"])

    def nvmlDeviceGetEccMode(self, handle: dict[str, Any]) -> tuple[int, int]:  # noqa: N802
        return self._answer(handle["ecc_mode"])
