"""Strict validation (docs/untrusted-input.md, classes 4 and 8): a resealed golden or a hand-made manifest with a
wrong-typed, out-of-range or inconsistent value is refused on load (exit 2, one line), before any of
it reaches TensorFlow; every golden and manifest envlock itself wrote still loads."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envlock.errors import BAD_INPUT, BadFileError
from envlock.golden import load_any_manifest, load_golden
from envlock.models import load_manifest
from tests.helpers import REPO_ROOT, one_error_line, real_golden_data, reseal, run_envlock, write_json
from tests.recorded import RECORDED_MACHINES

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _first_output(data: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in data["probes"] if p["outputs"])["outputs"][0]


def _output(field: str, value: Any) -> Mutation:
    return lambda data: _first_output(data).__setitem__(field, value)


def _duplicate_probe(data: dict[str, Any]) -> None:
    data["probes"].append(dict(data["probes"][0]))


def _duplicate_output(data: dict[str, Any]) -> None:
    probe = next(p for p in data["probes"] if p["outputs"])
    probe["outputs"].append(dict(probe["outputs"][0]))


def _coerce(path: str, convert: Callable[[Any], Any]) -> Mutation:
    """The same value in another type: what lax validation turned back into the original."""
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        node[last] = convert(node[last])
    return mutate


# Before the fix, lax validation coerced each back to the sealed value and the digest (then computed
# over the validated model) matched: accepted, exit 0. The digest is now checked over the file as
# written, so each is applied and then resealed, as an attacker would: strict validation refuses it.
COERCIONS: dict[str, Mutation] = {
    "repeat as a string": _coerce("repeat", str),
    "repeat as a float": _coerce("repeat", float),
    "seed as a string": _coerce("lockdown.seed", str),
    "op_determinism as 1": _coerce("lockdown.op_determinism", int),
    "op_determinism as a string": _coerce("lockdown.op_determinism", lambda v: str(v).lower()),
    "thread count as a string": _coerce("lockdown.intra_op_threads", str),
    "nested schema_version as a string": _coerce("manifest.schema_version", str),
    "cores as a string": _coerce("manifest.cpu.logical_cores", str),
    "isa flag as 0/1": _coerce("manifest.cpu.isa.avx2", int),
    "shape entries as strings": lambda data: _first_output(data).__setitem__(
        "shape", [str(n) for n in _first_output(data)["shape"]]),
}


@pytest.mark.parametrize("mutation", sorted(COERCIONS))
def test_a_golden_with_a_coercible_wrong_type_is_refused(tmp_path: Path, mutation: str) -> None:
    data = real_golden_data()
    COERCIONS[mutation](data)
    path = write_json(tmp_path / "golden.json", reseal(data))
    with pytest.raises(BadFileError, match="field '") as info:
        load_golden(path)
    assert info.value.exit_code == BAD_INPUT


def test_verify_refuses_a_string_repeat_instead_of_reproducing(tmp_path: Path) -> None:
    data = real_golden_data()
    COERCIONS["repeat as a string"](data)
    proc = run_envlock("verify", str(write_json(tmp_path / "golden.json", reseal(data))))
    assert proc.returncode == BAD_INPUT and "field 'repeat'" in one_error_line(proc)


# Applied *before* resealing: anyone can recompute the outer digest.
GOLDEN_MUTATIONS: dict[str, Mutation] = {
    "repeat as true": _set("repeat", True),
    # out of range
    "repeat 0": _set("repeat", 0),
    "repeat 101": _set("repeat", 101),
    "repeat 10**12": _set("repeat", 10**12),
    "seed -1": _set("lockdown.seed", -1),
    "seed 2**32": _set("lockdown.seed", 2**32),
    "seed 2**64": _set("lockdown.seed", 2**64),
    "negative intra-op threads": _set("lockdown.intra_op_threads", -1),
    "negative inter-op threads": _set("lockdown.inter_op_threads", -8),
    "huge thread count": _set("lockdown.intra_op_threads", 1_000_000),
    "negative manifest threads": _set("manifest.tensorflow.intra_op_threads", -1),
    "negative cores": _set("manifest.cpu.logical_cores", -2),
    "negative affinity": _set("manifest.cpu.affinity", [-1]),
    "negative memory": _set("manifest.memory.total_bytes", -1),
    "negative shape": _output("shape", [-1]),
    "enormous shape": _output("shape", [2**70]),
    "stride 0": _output("sample_stride", 0),
    "stride 2**70": _output("sample_stride", 2**70),
    # inconsistent or broken content
    "nested schema_version 99": _set("manifest.schema_version", 99),
    "nested schema_version 0": _set("manifest.schema_version", 0),
    "nested kind": _set("manifest.kind", "envlock.golden"),
    "bogus manifest digest": _set("manifest.digest", "sha256:" + "0" * 64),
    "empty manifest digest": _set("manifest.digest", ""),
    "no probes": _set("probes", []),
    "a probe twice": _duplicate_probe,
    "an output twice": _duplicate_output,
    "base64 with bad characters": _output("sample_b64", "!!!!"),
    "base64 with bad padding": _output("sample_b64", "AAA"),
    "base64 of a partial element": _output("sample_b64", base64.b64encode(b"\0\0\0").decode()),
    "base64 of a huge sample": _output("sample_b64", base64.b64encode(b"\0" * 8 * 10_000).decode()),
    "object dtype": _output("dtype", "object"),
    "string dtype": _output("dtype", "<U10"),
    "not a sha256": _output("sha256", "sha256:xyz"),
    "NaN statistic": _output("stats", {"min": float("nan"), "max": 1.0, "mean": 0.5, "abs_max": 1.0}),
    "infinite statistic": _output("stats", {"min": 0.0, "max": float("inf"), "mean": 0.5, "abs_max": 1.0}),
    "unknown group": _set("probes.0.group", "cosmic"),
}


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


@pytest.mark.parametrize(("mutation", "expected"), [
    ("seed 2**32", "lockdown.seed"), ("no probes", "probes"), ("bogus manifest digest", "manifest's digest"),
    ("nested schema_version 99", "manifest.schema_version"), ("base64 with bad characters", "base64"),
    ("negative intra-op threads", "intra_op_threads"),
])
def test_verify_refuses_a_forged_golden_before_tensorflow(tmp_path: Path, mutation: str, expected: str) -> None:
    data = real_golden_data()
    GOLDEN_MUTATIONS[mutation](data)
    path = write_json(tmp_path / "golden.json", reseal(data))
    proc = run_envlock("verify", str(path))  # before the fix: exit 0 (REPRODUCES) or 3 (TF child crashed)
    assert proc.returncode == BAD_INPUT
    assert expected in one_error_line(proc)


MANIFEST_MUTATIONS: dict[str, Mutation] = {
    "cores as a string": _set("cpu.logical_cores", "2"),
    "negative cores": _set("cpu.logical_cores", -1),
    "flag as a number": _set("cpu.isa.avx2", 1),
    "threads as a float": _set("tensorflow.intra_op_threads", 2.0),
    "negative gpu index": _set("gpu.devices", [{"index": -1}]),
    "schema_version as a string": _set("schema_version", "1"),
    "schema_version 99": _set("schema_version", 99),
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
