"""`envlock capture/diff/schema` through Typer's runner: outputs, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.models import MANIFEST_SCHEMA_VERSION, Manifest
from envlock.store import save_model
from tests.recorded import other_than

runner = CliRunner()


@pytest.fixture()
def manifest_file(recorded_manifest: Manifest, tmp_path: Path) -> Path:
    """A recorded machine's manifest as a user's file (never a capture of this host)."""
    path = tmp_path / "manifest.json"
    save_model(path, recorded_manifest)
    return path


def test_schema_is_the_manifest_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(Manifest.model_json_schema(), sort_keys=True))
    assert {"cpu", "gpu", "tensorflow", "digest"} <= set(schema["properties"])


def test_diff_identical_is_exit_0(manifest_file: Path) -> None:
    result = runner.invoke(app, ["diff", str(manifest_file), str(manifest_file)])
    assert result.exit_code == 0
    assert "identical" in result.stdout


def test_diff_with_a_difference_is_exit_1(manifest_file: Path, tmp_path: Path) -> None:
    data = json.loads(manifest_file.read_text())
    env = data["environment"]
    env["TF_ENABLE_ONEDNN_OPTS"] = other_than(env.get("TF_ENABLE_ONEDNN_OPTS"), "1", "0")
    data["host"]["hostname"] = "elsewhere"  # volatile: must not show up
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    result = runner.invoke(app, ["diff", str(manifest_file), str(changed)])
    assert result.exit_code == 1
    assert "critical" in result.stdout and "TF_ENABLE_ONEDNN_OPTS" in result.stdout
    assert "hostname" not in result.stdout
    as_json = runner.invoke(app, ["diff", str(manifest_file), str(changed), "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["identical"] is False
    assert [d["path"] for d in report["differences"]] == ["environment.TF_ENABLE_ONEDNN_OPTS"]
    assert report["differences"][0]["severity"] == "critical"


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    data = json.loads(good.read_text())
    text = good.read_text()
    cases: dict[str, Path] = {"missing": tmp / "does-not-exist.json", "directory": tmp}
    contents = {
        "empty": "",
        "truncated": text[: len(text) // 2],
        "not-json": "this is not json\n",
        "wrong-type": json.dumps({**data, "cpu": {**data["cpu"], "logical_cores": "many"}}),
        "newer-schema": json.dumps({**data, "schema_version": MANIFEST_SCHEMA_VERSION + 1}),
        "wrong-kind": json.dumps({**data, "kind": "something.else"}),
        "json-list": "[1, 2, 3]",
    }
    for name, content in contents.items():
        path = tmp / f"{name}.json"
        path.write_text(content)
        cases[name] = path
    return cases


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "not-json", "wrong-type",
                                  "newer-schema", "wrong-kind", "json-list"])
@pytest.mark.parametrize("position", ["old", "new"])
def test_bad_input_is_exit_2_with_one_line_naming_the_file(
    case: str, position: str, manifest_file: Path, tmp_path: Path
) -> None:
    bad = _bad_files(tmp_path, manifest_file)[case]
    args = [str(bad), str(manifest_file)] if position == "old" else [str(manifest_file), str(bad)]
    result = runner.invoke(app, ["diff", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0]
    assert "Traceback" not in result.output


def test_newer_schema_says_upgrade(manifest_file: Path, tmp_path: Path) -> None:
    bad = _bad_files(tmp_path, manifest_file)["newer-schema"]
    result = runner.invoke(app, ["diff", str(bad), str(manifest_file)])
    assert "newer" in result.stderr and "upgrade" in result.stderr


@pytest.mark.parametrize("args", [["capture", "--probes", "matmul"], ["capture", "--golden"],
                                  ["capture", "--golden", "--no-tf", "-o", "x.json"]])
def test_golden_flag_misuse_is_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["missing-dir/manifest.json", "."])
def test_unwritable_output_is_exit_2_with_one_line(target: str, tmp_path: Path) -> None:
    output = tmp_path / target
    result = runner.invoke(app, ["capture", "--no-tf", "-o", str(output)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(output) in lines[0]
