"""Golden files: round trip, integrity digest, every malformed case is one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from envlock.errors import BAD_INPUT, BadFileError, IntegrityError
from envlock.golden import (
    GOLDEN_SCHEMA_VERSION,
    Golden,
    OutputRecord,
    ProbeRecord,
    compute_golden_digest,
    load_golden,
    probe_record,
    save_golden,
    seal,
)
from envlock.models import (
    CpuInfo,
    GpuInfo,
    HostInfo,
    LockdownSettings,
    Manifest,
    MemoryInfo,
    NumericInfo,
    PythonInfo,
    TensorflowInfo,
    with_digest,
)
from envlock.probes.compare import summarize_array
from envlock.probes.registry import all_probes
from envlock.results import ProbeInfo, ProbeRun
from tests.helpers import probe_run, reseal


def _manifest() -> Manifest:
    return with_digest(Manifest(
        envlock_version="0.1.0", captured_at="2026-01-01T00:00:00+00:00", host=HostInfo(os="Linux"),
        cpu=CpuInfo(vendor="AuthenticAMD", logical_cores=2), memory=MemoryInfo(), numeric=NumericInfo(),
        gpu=GpuInfo(status="no_gpu"), tensorflow=TensorflowInfo(status="present", version="2.21.0"),
        python=PythonInfo(version="3.11.2"), environment={"TF_ENABLE_ONEDNN_OPTS": "1"},
    ))


def _golden() -> Golden:
    output = OutputRecord.model_validate(summarize_array("product", np.arange(1000, dtype=np.float32)))
    probes = [
        ProbeRecord(name="matmul.f32", tags=["matmul"], group="canary", status="ok", outputs=[output]),
        ProbeRecord(name="gpu.matmul", tags=["gpu"], group="canary", status="skipped", reason="no GPU"),
    ]
    return seal(Golden(envlock_version="0.1.0", created_at="2026-01-01T00:00:00+00:00", manifest=_manifest(),
                       lockdown=LockdownSettings(intra_op_threads=2, inter_op_threads=2), repeat=2, probes=probes))


@pytest.fixture()
def golden_file(tmp_path: Path) -> Path:
    path = tmp_path / "golden.json"
    save_golden(path, _golden())
    return path


def test_round_trip_keeps_everything(golden_file: Path) -> None:
    loaded = load_golden(golden_file)
    assert loaded == _golden()
    assert loaded.digest == compute_golden_digest(loaded)
    assert loaded.probe("matmul.f32") is not None and loaded.probe("nope") is None


def test_save_seals_an_unsealed_golden(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    save_golden(path, _golden().model_copy(update={"digest": ""}))
    assert load_golden(path).digest.startswith("sha256:")


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change", [
    lambda d: d["probes"][0]["outputs"][0].update(sha256="sha256:" + "0" * 64),
    lambda d: d["lockdown"].update(seed=43),
    lambda d: d["manifest"]["environment"].update(TF_ENABLE_ONEDNN_OPTS="0"),
    lambda d: d["probes"].pop(),
], ids=["output-hash", "seed", "manifest-env", "dropped-probe"])
def test_any_edit_fails_the_integrity_check(golden_file: Path, change) -> None:  # type: ignore[no-untyped-def]
    _edit(golden_file, change)
    with pytest.raises(IntegrityError) as info:
        load_golden(golden_file)
    assert info.value.exit_code == BAD_INPUT
    assert "\n" not in str(info.value) and "integrity digest" in str(info.value)


def test_missing_digest_is_an_integrity_error(golden_file: Path) -> None:
    _edit(golden_file, lambda d: d.update(digest=""))
    with pytest.raises(IntegrityError, match="no integrity digest"):
        load_golden(golden_file)


@pytest.mark.parametrize(("content", "expected"), [
    ("", "empty"),
    ("{\"kind\": \"envlock.golden\", ", "truncated"),
    ("not json at all", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"kind": "envlock.manifest", "schema_version": 1}), "not an envlock.golden file"),
    (json.dumps({"kind": "envlock.golden", "schema_version": GOLDEN_SCHEMA_VERSION + 1}), "newer"),
    (json.dumps({"kind": "envlock.golden", "schema_version": "one"}), "schema_version"),
    (json.dumps({"kind": "envlock.golden", "schema_version": 1}), "no integrity digest"),
    (json.dumps(reseal({"kind": "envlock.golden", "schema_version": 1})), "field"),
])
def test_malformed_goldens_are_one_line_bad_file_errors(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadFileError) as info:
        load_golden(path)
    message = str(info.value)
    assert info.value.exit_code == BAD_INPUT and "\n" not in message and expected in message


def test_wrong_field_type_is_named(golden_file: Path) -> None:
    # Resealed as written (anyone can recompute the checksum): validation names the field.
    _edit(golden_file, lambda d: (d["probes"][0].update(status="great"), reseal(d)))
    with pytest.raises(BadFileError, match="probes.0.status"):
        load_golden(golden_file)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadFileError, match="no such file"):
        load_golden(tmp_path / "absent.json")


def test_probe_record_marks_repeat_differences_nondeterministic() -> None:
    registered = all_probes()["matmul.f32"]
    probe = ProbeInfo(name=registered.name, tags=registered.tags, group=registered.group)
    a, b = np.zeros(4, np.float32), np.ones(4, np.float32)
    assert probe_record(probe, [probe_run(a), probe_run(a)]).status == "ok"
    record = probe_record(probe, [probe_run(a), probe_run(b)])
    assert record.status == "nondeterministic" and not record.outputs
    skipped = probe_record(probe, [ProbeRun(status="skipped", reason="no GPU visible")])
    assert skipped.status == "skipped" and skipped.reason == "no GPU visible"


def test_saved_golden_follows_the_umask_not_0600(golden_file: Path) -> None:
    # Images run their jobs as another user: the atomic temp file's 0600 must not stick.
    umask = os.umask(0)
    os.umask(umask)
    assert golden_file.stat().st_mode & 0o777 == 0o666 & ~umask
