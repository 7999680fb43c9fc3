"""Hostile input files (docs/untrusted-input.md, classes 4 and 5): every reader refuses non-regular files without
blocking, reads a bounded amount, never recurses without bound, and says so in one line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envlock.errors import BadFileError
from envlock.golden import load_any_manifest, load_golden
from envlock.image.build import requirements_file
from envlock.limits import MAX_INPUT_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH
from envlock.models import load_manifest
from envlock.store import json_shape_problem, read_input_bytes, read_json_file
from tests.helpers import (
    REFERENCE_GOLDEN,
    REPO_ROOT,
    limit_memory,
    real_golden_data,
    reseal,
    run_python,
)

LOADERS: dict[str, Callable[[Path], Any]] = {
    "read_json_file": read_json_file, "load_golden": load_golden, "load_manifest": load_manifest,
    "load_any_manifest": load_any_manifest, "requirements": requirements_file,
}


def _special_files(tmp_path: Path, unix_socket: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "golden.fifo"
    os.mkfifo(fifo)
    link_to_fifo = tmp_path / "link-to-fifo.json"
    link_to_fifo.symlink_to(fifo)
    link_to_zero = tmp_path / "zero.json"
    link_to_zero.symlink_to("/dev/zero")
    return {
        "fifo": (fifo, "is a FIFO"),
        "symlink to a fifo": (link_to_fifo, "is a FIFO"),
        "/dev/zero": (Path("/dev/zero"), "is a character device"),
        "symlink to /dev/zero": (link_to_zero, "is a character device"),
        "/dev/null": (Path("/dev/null"), "is a character device"),
        "socket": (unix_socket, "is a socket"),
        "directory": (tmp_path, "is a directory"),
    }


@pytest.mark.processes("a bounded child: a regression blocks on a FIFO or reads /dev/zero without end")
def test_every_reader_refuses_non_regular_files_at_once(tmp_path: Path, unix_socket: Path) -> None:
    # In a child with a time and memory limit: before the fix a FIFO blocked forever and
    # /dev/zero was read until memory ran out.
    special = _special_files(tmp_path, unix_socket)
    cases = [(loader, name, str(path), problem) for loader in sorted(LOADERS)
             for name, (path, problem) in special.items()]
    code = ("import json, sys\nfrom tests.unit.test_hostile_files import LOADERS\n"
            "for loader, _, path, _ in json.loads(sys.argv[1]):\n"
            "    try:\n        LOADERS[loader](path)\n        print('ACCEPTED')\n"
            "    except Exception as exc:\n        print(type(exc).__name__, str(exc).replace(chr(10), '<NL>'))\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True,
                          timeout=60, preexec_fn=limit_memory, check=False, cwd=REPO_ROOT)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(cases), proc.stderr
    for (loader, name, _, problem), line in zip(cases, lines, strict=True):
        assert line.startswith("BadFileError") and problem in line and "<NL>" not in line, (loader, name, line)


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    link = tmp_path / "golden.json"
    link.symlink_to(REFERENCE_GOLDEN)
    assert load_golden(link).digest == load_golden(REFERENCE_GOLDEN).digest


@pytest.mark.processes("a bounded child: a regression blocks on a FIFO or reads /dev/zero without end")
def test_lockdown_refuses_a_fifo_golden_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "golden.json"
    os.mkfifo(fifo)
    code = ("import envlock\nfrom envlock.errors import BadFileError\n"
            f"try:\n    envlock.lockdown(golden={str(fifo)!r})\nexcept BadFileError as exc:\n    print(exc)\n")
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0 and "is a FIFO" in proc.stdout, proc.stderr
    assert "tensorflow" not in proc.stderr.lower()


def test_a_file_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "golden.json"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(MAX_INPUT_BYTES + 1)
    with pytest.raises(BadFileError, match="larger than 16 MiB"):
        load_golden(big)
    exactly = tmp_path / "exactly.bin"
    exactly.write_bytes(b"x" * 1000)
    assert read_input_bytes(exactly, max_bytes=1000) == b"x" * 1000
    with pytest.raises(BadFileError, match="larger than"):
        read_input_bytes(exactly, max_bytes=999)


def _nested(depth: int, inner: str = "1") -> str:
    text = inner
    for level in range(depth):
        text = f'{{"k": {text}}}' if level % 2 else f"[{text}]"
    return text


@pytest.mark.parametrize("where", ["top", "build_info", "probe_tags", "lockdown"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 50_000])
def test_deep_nesting_is_one_line_in_every_loader(tmp_path: Path, where: str, depth: int) -> None:
    data = real_golden_data()
    marker = "__DEEP__"
    if where == "top":
        text = _nested(depth)
    else:
        if where == "build_info":
            data["manifest"]["tensorflow"]["build_info"] = {"x": marker}
        elif where == "probe_tags":
            data["probes"][0]["tags"] = marker
        else:
            data["lockdown"]["seed"] = marker
        text = json.dumps(reseal(data)).replace(f'"{marker}"', _nested(depth))
    path = tmp_path / "deep.json"
    path.write_text(text)
    for name, loader in LOADERS.items():
        if name == "requirements":
            continue
        with pytest.raises(BadFileError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            loader(path)


def test_nesting_just_under_the_cap_still_parses(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(_nested(MAX_JSON_DEPTH))
    assert read_json_file(path) is not None


def _true_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


def _random_json(rng: random.Random, depth: int) -> Any:
    tricky = ['[', ']', '{', '}', '\\', '"', '\\"[', '[[["', '\\\\', 'é[', '']
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([1, None, True, 2.5, "".join(rng.choices(tricky, k=rng.randint(0, 4)))])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {"".join(rng.choices(tricky, k=3)): _random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))}


def test_depth_check_agrees_with_the_parsed_depth_even_with_brackets_and_escapes_in_strings() -> None:
    rng = random.Random(10)
    for _ in range(400):
        value = _random_json(rng, rng.randint(1, 12))
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])).encode()
        for limit in (1, 3, 6, 10):
            too_deep = json_shape_problem(raw, max_depth=limit) is not None
            assert too_deep == (_true_depth(value) > limit), (raw, limit)


def test_too_many_containers_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text("[" + "{}," * MAX_JSON_CONTAINERS + "{}]")
    with pytest.raises(BadFileError, match="arrays/objects"):
        read_json_file(path)


@pytest.mark.parametrize(("content", "problem"), [
    ('{"kind": "envlock.golden", "schema_version": ' + "1" * 5000 + "}", "not usable JSON"),
    (b"\xff\xfe\x00\x01binary", "not a text file"),
    ('{"kind": "envlock.golden"' + ', "a": 1' * 10 + ", \"b\": [" + "\"x\"," * 10 + "]}", "not valid JSON"),
])
def test_near_json_is_one_line(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = tmp_path / "golden.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name in ("load_golden", "load_manifest", "load_any_manifest"):
        with pytest.raises(BadFileError, match=problem):
            LOADERS[name](path)


def test_a_binary_requirements_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    path.write_bytes(b"numpy==2.4.6\n\xff\xfe\x00\x80\x81\n")
    with pytest.raises(BadFileError, match="not a text file"):
        requirements_file(path)
    path.write_text(f"numpy==2.4.6 --hash=sha256:{'0' * 64}\n# comment\n")
    assert [pin.requirement for pin in requirements_file(path)] == ["numpy==2.4.6"]
