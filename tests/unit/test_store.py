"""store.py: the one reading path (kind, schema_version, migrations, validation) and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from envlock.errors import BAD_INPUT, BadFileError
from envlock.store import atomic_write_text, load_model, save_model


class Doc(BaseModel):
    kind: str = "envlock.test"
    schema_version: int = 3
    name: str
    count: int


MIGRATIONS = {
    1: lambda d: {**d, "name": d.pop("title")},
    2: lambda d: {**d, "count": d.get("count", 0)},
}


def _load(path: Path) -> Doc:
    return load_model(path, Doc, kind="envlock.test", current_version=3, migrations=MIGRATIONS)


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "doc.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    save_model(path, Doc(name="a", count=2))
    assert _load(path) == Doc(name="a", count=2)
    text = path.read_text()
    assert text.endswith("\n") and list(json.loads(text)) == sorted(json.loads(text))


def test_migrates_step_by_step(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"kind": "envlock.test", "schema_version": 1, "title": "old"}))
    assert _load(path) == Doc(name="old", count=0, schema_version=3)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "file is empty"),
        ("   \n", "file is empty"),
        ('{"kind": "envlock.test", "schema_version": 3, "na', "truncated JSON"),
        ("not json at all", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not a text file"),
        ("[1, 2]", "expected a JSON object"),
        ('{"kind": "other", "schema_version": 3}', "not an envlock.test file"),
        ('{"schema_version": 3}', "no 'kind' field"),
        ('{"kind": "envlock.test", "schema_version": "3"}', "invalid schema_version"),
        ('{"kind": "envlock.test", "schema_version": 9, "name": "x", "count": 1}', "newer than this envlock"),
        ('{"kind": "envlock.test", "schema_version": 3, "name": "x", "count": "many"}', "field 'count'"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(BadFileError) as info:
        _load(path)
    message = str(info.value)
    assert problem in message
    assert message.startswith(str(path))
    assert "\n" not in message
    assert info.value.exit_code == BAD_INPUT


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BadFileError, match="no such file"):
        _load(tmp_path / "absent.json")
    with pytest.raises(BadFileError, match="is a directory"):
        _load(tmp_path)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    atomic_write_text(path, "old\n")


    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]  # fails mid-write
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"], "temp file left behind"


def test_atomic_write_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    atomic_write_text(path, "one\n")
    inode_before = os.stat(path).st_ino
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert os.stat(path).st_ino != inode_before  # a rename, not an in-place rewrite


def test_written_files_follow_the_umask_not_the_temp_files_0600(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
