"""The one writer (docs/untrusted-input.md, class 2): a regular file is replaced atomically at the symlink's target,
a FIFO or character device is written through without blocking, and no other node is ever
replaced; a 255-byte file name works. Error messages stay one line (class 9)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from envlock.errors import BadFileError, one_line
from envlock.store import atomic_write_bytes, atomic_write_text, check_output_path


def test_a_symlink_to_a_regular_file_stays_a_symlink_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    inode = target.stat().st_ino
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_text() == "new\n" and target.stat().st_ino != inode  # replaced, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_what_it_names(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to("made.json")
    atomic_write_text(link, "x\n")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x\n"


def test_a_character_device_is_written_through_never_replaced(tmp_path: Path) -> None:
    link = tmp_path / "out.json"  # the link, not /dev/null itself: even a regression cannot harm the host
    link.symlink_to("/dev/null")
    atomic_write_text(link, "manifest\n")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_fifo_with_a_reader_gets_the_data_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    payload = b"x" * 300_000  # several pipe buffers: the writer must wait for the reader, not fail
    received = bytearray()
    # O_RDWR: a reader that exists before the writer opens, and never sees EOF before all is read.
    fd = os.open(fifo, os.O_RDWR)

    def read() -> None:
        while len(received) < len(payload):
            received.extend(os.read(fd, 65536))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    atomic_write_bytes(fifo, payload)
    reader.join(30)
    os.close(fd)
    assert bytes(received) == payload
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_without_a_reader_is_one_line_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadFileError, match="FIFO with no reader"):
        atomic_write_text(fifo, "report\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["report.fifo"]


def test_a_socket_or_directory_is_refused_and_left_alone(tmp_path: Path, unix_socket: Path) -> None:
    with pytest.raises(BadFileError, match="is a socket"):
        atomic_write_text(unix_socket, "x\n")
    assert stat.S_ISSOCK(os.lstat(unix_socket).st_mode)
    with pytest.raises(BadFileError, match="is a directory"):
        atomic_write_text(tmp_path, "x\n")
    with pytest.raises(BadFileError, match="is a socket"):
        check_output_path(unix_socket)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sock"]


@pytest.mark.parametrize("name", ["g" * 250 + ".json", "é" * 125 + ".json"], ids=["ascii", "two-byte"])
def test_a_255_byte_file_name_works(tmp_path: Path, name: str) -> None:
    assert len(os.fsencode(name)) == 255
    path = tmp_path / name
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]


# ------------------------------------------------------------------ class 9: one line, whatever a path holds


def test_one_line_escapes_only_what_would_break_the_line() -> None:
    assert one_line("plain é 中 path/x.json") == "plain é 中 path/x.json"
    assert one_line("a\nb\tc\x00\x7f\u2028\u202e") == "a\\nb\\tc\\x00\\x7f\\u2028\\u202e"
    assert one_line(os.fsdecode(b"x\xff")) == "x\\xff"
    assert one_line(one_line("a\nb")) == one_line("a\nb")
