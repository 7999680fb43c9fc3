"""GPU collection through NVML, fed with real readings of real GPUs (tests/data/nvml)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pynvml
import pytest

from envlock.fingerprint.gpu import collect_gpu, cuda_driver_version_text
from tests.unit.fake_nvml import FakeNvml

NVML_DIR = Path(__file__).resolve().parent.parent / "data" / "nvml"
READINGS = sorted(NVML_DIR.glob("*.json"))


def test_there_are_several_real_readings() -> None:
    assert len(READINGS) >= 4


@pytest.mark.parametrize("path", READINGS, ids=[p.stem for p in READINGS])
def test_every_reading_maps_field_by_field(path: Path) -> None:
    reading = json.loads(path.read_text())
    fake = FakeNvml(reading)
    info = collect_gpu(fake)
    assert info.status == "ok"
    assert info.driver_version == reading["driver_version"]
    assert info.cuda_driver_version == cuda_driver_version_text(reading["cuda_driver_version"])
    assert fake.shutdown_called
    assert [d.index for d in info.devices] == list(range(len(reading["devices"])))
    for device, raw in zip(info.devices, reading["devices"], strict=True):
        assert device.name == raw["name"]
        major, minor = raw["compute_capability"]
        assert device.compute_capability == f"{major}.{minor}"
        assert device.memory_total_bytes == raw["memory_total_bytes"]
        if raw["uuid"] is None:
            assert device.uuid_sha256 is None
        else:
            assert device.uuid_sha256 == hashlib.sha256(raw["uuid"].encode()).hexdigest()
            assert raw["uuid"] not in info.model_dump_json()  # never stored raw


def test_mig_enabled_and_disabled_are_told_apart() -> None:
    enabled = collect_gpu(FakeNvml.from_file(NVML_DIR / "a100_sxm4_80gb_mig_enabled_535.json"))
    disabled = collect_gpu(FakeNvml.from_file(NVML_DIR / "a100_sxm4_80gb_mig_disabled_470.json"))
    assert enabled.devices[0].mig_mode == "enabled"
    assert disabled.devices[0].mig_mode == "disabled"


def test_not_supported_is_distinct_from_unknown() -> None:
    info = collect_gpu(FakeNvml.from_file(NVML_DIR / "gtx1080ti_windows_442.json"))
    assert info.devices[0].mig_mode == "unsupported"
    assert info.devices[0].ecc_mode == "unsupported"
    titan = collect_gpu(FakeNvml.from_file(NVML_DIR / "titan_v_plus_rtx5880_ada_570.json"))
    assert titan.devices[0].ecc_mode is None  # NVML failed: unknown, not "unsupported"


def test_ecc_enabled_reading() -> None:
    info = collect_gpu(FakeNvml.from_file(NVML_DIR / "a100_pcie_40gb_vgpu_host_565.json"))
    assert info.devices[0].ecc_mode == "enabled"
    assert info.cuda_driver_version is None  # nvidia-smi printed "Not Found"


def test_mixed_architectures_keep_their_order_and_capabilities() -> None:
    info = collect_gpu(FakeNvml.from_file(NVML_DIR / "titan_v_plus_rtx5880_ada_570.json"))
    assert [d.compute_capability for d in info.devices] == ["7.0", "8.9"]


@pytest.mark.parametrize(
    ("code", "status"),
    [(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no_driver"), (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "no_driver"),
     (pynvml.NVML_ERROR_NO_PERMISSION, "error")],
)
def test_init_failures_say_why(code: int, status: str) -> None:
    info = collect_gpu(FakeNvml({"devices": []}, init_error=code))
    assert info.status == status
    assert info.devices == []
    assert info.detail


def test_driver_without_gpus_is_no_gpu() -> None:
    info = collect_gpu(FakeNvml({"driver_version": "535.216.01", "cuda_driver_version": 12020, "devices": []}))
    assert info.status == "no_gpu"
    assert info.driver_version == "535.216.01"


@pytest.mark.parametrize(("raw", "text"), [(12040, "12.4"), (11000, "11.0"), (10020, "10.2"), (0, None), (None, None)])
def test_cuda_driver_version_text(raw: int | None, text: str | None) -> None:
    assert cuda_driver_version_text(raw) == text
