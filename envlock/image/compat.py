"""The TensorFlow -> Python/CUDA/cuDNN/driver table (data in images/tf-compat.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from envlock.image.data import compat_data


class TfCompat(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tensorflow: str
    python: str
    cuda: str
    cudnn: str
    compiler: str | None = None
    bazel: str | None = None
    source: str
    and_cuda: dict[str, str] = Field(default_factory=dict)
    toolkit_driver: str | None = None
    minimum_driver: str | None = None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def lookup(tf_version: str | None, data: dict[str, Any] | None = None) -> TfCompat | None:
    """The row for ``tf_version``'s major.minor, with the drivers its CUDA needs; None if unknown."""
    if not tf_version:
        return None
    data = compat_data() if data is None else data
    minor = ".".join(tf_version.split(".")[:2])
    for row in data["tensorflow"]:
        if row["tensorflow"] == minor:
            drivers = data.get("cuda_drivers", {}).get(row["cuda"], {})
            return TfCompat(**row, **drivers)
    return None


def python_supported(row: TfCompat, python_version: str | None) -> bool | None:
    if not python_version:
        return None
    low, _, high = row.python.partition("-")
    version = _version_tuple(python_version)[:2]
    return _version_tuple(low) <= version <= _version_tuple(high or low)


def driver_problem(row: TfCompat, driver_version: str | None) -> str | None:
    """One line when ``driver_version`` is older than what ``row``'s CUDA needs, else None."""
    if row.minimum_driver is None:
        return None
    if not driver_version:
        return (f"the golden records no NVIDIA driver; TensorFlow {row.tensorflow} (CUDA {row.cuda}) needs "
                f"driver >= {row.minimum_driver} on the host that runs this image")
    if _version_tuple(driver_version) < _version_tuple(row.minimum_driver):
        return (f"TensorFlow {row.tensorflow} needs CUDA {row.cuda}, which needs NVIDIA driver >= "
                f"{row.minimum_driver}; the golden's driver is {driver_version}")
    if row.toolkit_driver and _version_tuple(driver_version) < _version_tuple(row.toolkit_driver):
        return (f"the golden's driver {driver_version} runs CUDA {row.cuda} only through minor-version "
                f"compatibility (full support from {row.toolkit_driver}); PTX JIT may fail")
    return None
