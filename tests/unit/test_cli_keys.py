"""Class 7 (issue 17): a key file that is not a plain, readable, bounded file is one line and exit 2
in every command that takes one (verify, explain, capture --golden --sign, watch, build), never an
IsADirectoryError traceback. The key is read before anything else runs, so no process starts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.errors import BAD_INPUT
from envlock.signing import MAX_KEY_FILE_BYTES
from tests.helpers import REFERENCE_GOLDEN


def _directory(tmp: Path) -> Path:
    (tmp / "keys.d").mkdir()
    return tmp / "keys.d"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "key.fifo")
    return tmp / "key.fifo"


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def _unreadable(tmp: Path) -> Path:
    # root reads a mode-000 file; /proc/self/mem is a regular file whose read fails (EIO) for anyone
    if os.geteuid() == 0:
        return Path("/proc/self/mem")
    path = tmp / "key"
    path.write_text("ssh-ed25519 AAAA\n")
    path.chmod(0)
    return path


def _empty(tmp: Path) -> Path:
    (tmp / "key").write_bytes(b"")
    return tmp / "key"


def _huge(tmp: Path) -> Path:
    path = tmp / "key"
    with path.open("wb") as handle:  # sparse: 4 GiB on paper, nothing on disk; a whole read would not fit
        handle.truncate(4 * 1024**3)
    return path


KEYS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "directory": (_directory, "is a directory"),
    "fifo": (_fifo, "not a regular file"),
    "symlink loop": (_symlink_loop, "cannot read"),
    "unreadable": (_unreadable, "cannot read"),
    "empty": (_empty, "file is empty"),
    "huge": (_huge, f"over {MAX_KEY_FILE_BYTES} bytes"),
}

COMMANDS: dict[str, list[str]] = {
    "verify": ["verify", str(REFERENCE_GOLDEN), "--trusted-key", "KEY"],
    "explain": ["explain", str(REFERENCE_GOLDEN), "--trusted-key", "KEY"],
    "capture": ["capture", "--golden", "-o", "OUT", "--probes", "matmul.f32", "--sign", "KEY"],
    "watch": ["watch", "--once", "--golden", str(REFERENCE_GOLDEN), "--state-dir", "STATE", "--trusted-key", "KEY"],
    "build": ["build", "--golden", str(REFERENCE_GOLDEN), "--context-only", "CTX", "--trusted-key", "KEY"],
}


@pytest.mark.parametrize("kind", list(KEYS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unusable_key_file_is_one_line_and_exit_2(tmp_path: Path, command: str, kind: str) -> None:
    make, says = KEYS[kind]
    key = make(tmp_path)
    places = {"KEY": str(key), "OUT": str(tmp_path / "g.json"), "STATE": str(tmp_path / "state"),
              "CTX": str(tmp_path / "ctx")}
    result = CliRunner().invoke(app, [places.get(a, a) for a in COMMANDS[command]])
    lines = result.stderr.splitlines()
    assert result.exit_code == BAD_INPUT, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("envlock: error: "), result.stderr
    assert says in lines[0] and str(key) in lines[0], lines[0]
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "ctx").exists()
