"""Outputs under real shell redirections (issue 17, class 3), a full disk, and a report with a lone
surrogate: the CLI in a fresh process, the way a user runs it.

``capture -o /dev/stdout >> log.txt`` used to replace log.txt with a new file (earlier lines gone),
``verify G --report G`` replaced the golden with the report (exit 0), and a full disk or a lone
surrogate was a traceback. Now: appended, refused (exit 2, one line, nothing touched), exit 3 in
one line with no temporary file left, and an escaped report.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from envlock.models import Manifest, with_digest
from tests.helpers import REFERENCE_GOLDEN, one_error_line, real_golden_data, reseal, write_json

CHEAP_PROBE = "gpu.matmul"  # skipped in the reference golden (no GPU): the whole verify path, no TF probe run
ENVLOCK = shlex.join([sys.executable, "-m", "envlock"])


def _shell(command: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"{ENVLOCK} {command}"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    path = tmp_path / "G.json"
    path.write_bytes(REFERENCE_GOLDEN.read_bytes())
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text("earlier line\n")
    return path


def test_capture_to_dev_stdout_appended_to_a_log_keeps_the_log(tmp_path: Path, log: Path) -> None:
    inode = log.stat().st_ino
    proc = _shell("capture --no-tf -o /dev/stdout >> log.txt", tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert text.startswith("earlier line\n{\n") and log.stat().st_ino == inode
    manifest = json.loads(text[len("earlier line\n"):text.index("\n}\n") + 3])
    assert manifest["kind"] == "envlock.manifest"
    assert "manifest written to /dev/stdout" in text  # the summary follows the manifest, in order


def test_capture_to_dev_stdout_with_truncating_redirect_writes_the_manifest(tmp_path: Path, log: Path) -> None:
    proc = _shell("capture --no-tf --json -o /dev/stdout > log.txt", tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = log.read_text().split("\n}\n", 1)  # -o's copy, then --json's on the same descriptor
    assert json.loads(first + "}") == json.loads(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_verify_report_to_dev_stdout_appended_to_a_log_keeps_the_log(tmp_path: Path, golden: Path, log: Path) -> None:
    proc = _shell(f"verify G.json --probes {CHEAP_PROBE} --report /dev/stdout >> log.txt", tmp_path)
    assert proc.returncode == 3, proc.stderr  # nothing verified: the one probe is a recorded skip
    one_error_line(proc)
    text = log.read_text()
    assert text.startswith("earlier line\n{\n")
    assert json.loads(text[len("earlier line\n"):text.index("\n}\n") + 3])["golden_digest"].startswith("sha256:")


@pytest.mark.parametrize("command", [
    f"verify G.json --probes {CHEAP_PROBE} --report G.json",
    f"verify --golden G.json --probes {CHEAP_PROBE} --report ./link.json",
    "explain G.json --emit-env G.json",
    "explain G.json --report R.json --emit-env R.json",
    "explain G.json --report G.json",
    "capture --golden -o G.json --sign link.json",  # the signing key would be replaced by the golden
])
def test_an_output_that_is_an_input_or_another_output_is_refused(tmp_path: Path, golden: Path, command: str) -> None:
    (tmp_path / "link.json").symlink_to("G.json")
    before = golden.read_bytes()
    proc = _shell(command, tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "is also an input of this command" in line or "is given as two outputs" in line, line
    assert golden.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.json", "link.json"]  # R.json never made


def test_a_report_with_a_lone_surrogate_is_written_escaped(tmp_path: Path) -> None:
    data = real_golden_data()
    data["manifest"]["cpu"]["model_name"] = "\ud800 cpu"  # what a resealed golden can hold ("\ud800" in JSON)
    data["manifest"]["digest"] = with_digest(Manifest.model_validate(data["manifest"])).digest
    write_json(tmp_path / "S.json", reseal(data))
    proc = _shell(f"verify S.json --probes {CHEAP_PROBE} --report r.json", tmp_path)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert any(d.get("old") == "\ud800 cpu" for d in report["differences"])
    as_json = _shell(f"verify S.json --probes {CHEAP_PROBE} --json", tmp_path)
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["golden_digest"].startswith("sha256:"), as_json.stderr


# ---------------------------------------------------------------- a full disk


@contextlib.contextmanager
def _tiny_tmpfs(directory: Path) -> Iterator[bool]:
    """A 64 KiB tmpfs at ``directory`` where this process may mount one (root), unmounted afterwards."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)],
                             capture_output=True, check=False).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


def _assert_full_disk_is_one_line(proc: subprocess.CompletedProcess[str], directory: Path, kept: list[str]) -> None:
    assert proc.returncode == 3, proc.stderr
    assert "no space left on device" in one_error_line(proc)
    assert sorted(p.name for p in directory.iterdir()) == kept  # no temporary file left behind
    assert (directory / "m.json").read_text() == "old manifest\n"  # the old file, whole


def test_a_full_tmpfs_is_one_line_exit_3_and_leaves_no_temp_file(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with _tiny_tmpfs(disk) as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the same path")
        (disk / "m.json").write_text("old manifest\n")
        (disk / "filler").write_bytes(b"\0" * 60_000)  # a manifest is ~20 KB: it cannot fit in what is left
        proc = _shell("capture --no-tf -o disk/m.json", tmp_path)
        _assert_full_disk_is_one_line(proc, disk, ["filler", "m.json"])


def _small_file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_file_size_limit_is_one_line_exit_3_and_leaves_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.json").write_text("old manifest\n")
    proc = _shell("capture --no-tf -o out/m.json", tmp_path, preexec_fn=_small_file_size_limit,
                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    _assert_full_disk_is_one_line(proc, out, ["m.json"])
