"""Strict validation (docs/untrusted-input.md, classes 4 and 8): a resealed golden or a hand-made manifest with a
wrong-typed, out-of-range or inconsistent value is refused on load (exit 2, one line), before any of
it reaches TensorFlow; every golden and manifest envlock itself wrote still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.errors import BAD_INPUT, BadFileError
from envlock.golden import load_any_manifest, load_golden
from envlock.models import load_manifest
from tests.helpers import COERCIONS, GOLDEN_MUTATIONS, REPO_ROOT, Mutation, real_golden_data, reseal, set_at, write_json
from tests.recorded import RECORDED_MACHINES


@pytest.mark.parametrize("mutation", sorted(COERCIONS))
def test_a_golden_with_a_coercible_wrong_type_is_refused(tmp_path: Path, mutation: str) -> None:
    data = real_golden_data()
    COERCIONS[mutation](data)
    path = write_json(tmp_path / "golden.json", reseal(data))
    with pytest.raises(BadFileError, match="field '") as info:
        load_golden(path)
    assert info.value.exit_code == BAD_INPUT


@pytest.mark.parametrize("mutation", sorted(GOLDEN_MUTATIONS))
def test_a_resealed_golden_with_a_bad_value_is_refused(tmp_path: Path, mutation: str) -> None:
    data = real_golden_data()
    GOLDEN_MUTATIONS[mutation](data)
    path = write_json(tmp_path / "golden.json", reseal(data))
    with pytest.raises(BadFileError) as info:
        load_golden(path)
    assert info.value.exit_code == BAD_INPUT and "\n" not in str(info.value)
    with pytest.raises(BadFileError):
        load_any_manifest(path)  # diff reads goldens through the same validation


MANIFEST_MUTATIONS: dict[str, Mutation] = {
    "cores as a string": set_at("cpu.logical_cores", "2"),
    "negative cores": set_at("cpu.logical_cores", -1),
    "flag as a number": set_at("cpu.isa.avx2", 1),
    "threads as a float": set_at("tensorflow.intra_op_threads", 2.0),
    "negative gpu index": set_at("gpu.devices", [{"index": -1}]),
    "schema_version as a string": set_at("schema_version", "1"),
    "schema_version 99": set_at("schema_version", 99),
}


@pytest.mark.parametrize("mutation", sorted(MANIFEST_MUTATIONS))
def test_a_manifest_with_a_bad_value_is_refused(tmp_path: Path, mutation: str) -> None:
    data = json.loads(RECORDED_MACHINES["intel-xeon-amx"].read_text())
    MANIFEST_MUTATIONS[mutation](data)
    path = write_json(tmp_path / "manifest.json", data)
    with pytest.raises(BadFileError):
        load_manifest(path)


SHIPPED_GOLDENS = sorted((REPO_ROOT / "goldens").glob("*.json"))
SHIPPED_MANIFESTS = sorted(RECORDED_MACHINES.values())


@pytest.mark.parametrize("path", SHIPPED_GOLDENS, ids=lambda p: p.name)
def test_every_shipped_golden_still_loads(path: Path) -> None:
    golden = load_golden(path)
    assert golden.probes and 1 <= golden.repeat <= 100


@pytest.mark.parametrize("path", SHIPPED_MANIFESTS, ids=lambda p: p.name)
def test_every_recorded_manifest_still_loads(path: Path) -> None:
    assert load_manifest(path).digest.startswith("sha256:")


def test_shipped_goldens_include_both_recorded_machines() -> None:
    assert {p.name for p in SHIPPED_GOLDENS} >= {"cpu-reference.json", "intel-xeon-amx-2vcpu.json"}


@pytest.mark.parametrize("mutation", sorted(COERCIONS))
def test_a_coercion_after_sealing_fails_the_integrity_check(tmp_path: Path, mutation: str) -> None:
    data = reseal(real_golden_data())
    COERCIONS[mutation](data)
    with pytest.raises(BadFileError, match="integrity digest does not match") as info:
        load_golden(write_json(tmp_path / "golden.json", data))
    assert info.value.exit_code == BAD_INPUT
