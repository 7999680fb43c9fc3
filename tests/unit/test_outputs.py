"""Outputs never destroy what they should not (issue 17, class 3): a file this process holds open
(``/dev/stdout >> log``) is written through its descriptor -- appended where it was opened for
append -- not replaced; an output that is an input or another output is refused before any work;
a full disk is one line (exit 3) with no temporary file left; a lone surrogate is escaped, not a
crash; the lock that merges concurrent writers excludes them.

The shell cases themselves (real redirections) are in tests/integration/test_outputs_shell.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envlock.errors import BAD_INPUT, ENVIRONMENT, BadFileError, EnvironmentProblem
from envlock.store import (
    OutputWriteError,
    atomic_write_text,
    check_outputs,
    dumps_canonical,
    exclusive_lock,
    lock_path_for,
    output_target,
)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text("earlier line\n")
    return path


@pytest.fixture
def opened(log: Path) -> Iterator[tuple[int, Path]]:
    """``log`` open for append as the shell's ``>> log`` leaves it: a descriptor of this process."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    yield fd, log
    os.close(fd)


# ---------------------------------------------------------------- writing through an inherited descriptor


@pytest.mark.parametrize("spelling", ["/proc/self/fd/{fd}", "/dev/fd/{fd}", "/proc/{pid}/fd/{fd}",
                                      "/proc/thread-self/fd/{fd}"])
def test_a_descriptor_open_for_append_is_appended_to_not_replaced(opened: tuple[int, Path], spelling: str) -> None:
    fd, log = opened
    inode = log.stat().st_ino
    path = spelling.format(fd=fd, pid=os.getpid())
    assert output_target(path).method == "through_descriptor"
    atomic_write_text(path, "manifest\n")
    atomic_write_text(path, "report\n")
    assert log.read_text() == "earlier line\nmanifest\nreport\n"
    assert log.stat().st_ino == inode  # the same file: the shell's redirection still points at it
    assert sorted(p.name for p in log.parent.iterdir()) == ["log.txt"]  # no temp file


def test_a_symlink_to_a_descriptor_is_followed_to_it(opened: tuple[int, Path], tmp_path: Path) -> None:
    fd, log = opened
    link = tmp_path / "stdout"  # as /dev/stdout -> /proc/self/fd/1
    link.symlink_to(f"/proc/self/fd/{fd}")
    atomic_write_text(link, "x\n")
    assert log.read_text() == "earlier line\nx\n" and link.is_symlink()


def test_a_descriptor_not_open_for_append_is_written_at_its_offset(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_TRUNC)  # the shell's "> log"
    try:
        os.write(fd, b"before\n")
        atomic_write_text(f"/dev/fd/{fd}", "manifest\n")
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert log.read_text() == "before\nmanifest\nafter\n"


def test_a_closed_or_read_only_descriptor_is_one_line(log: Path) -> None:
    fd = os.open(log, os.O_RDONLY)
    try:
        with pytest.raises(BadFileError, match="open for reading only"):
            atomic_write_text(f"/proc/self/fd/{fd}", "x\n")
    finally:
        os.close(fd)
    with pytest.raises(BadFileError, match=f"descriptor {fd}, which is not open"):
        check_outputs([f"/dev/fd/{fd}"])
    assert log.read_text() == "earlier line\n"


# ---------------------------------------------------------------- an output that is an input or another output


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text("{}")
    (tmp_path / "link.json").symlink_to(golden.name)
    os.link(golden, tmp_path / "hard.json")
    for output in (golden, tmp_path / "link.json", tmp_path / "hard.json", tmp_path / "." / "golden.json"):
        with pytest.raises(BadFileError, match="is also an input of this command") as refused:
            check_outputs([output], inputs=[golden])
        assert refused.value.exit_code == BAD_INPUT
    assert golden.read_text() == "{}"


def test_an_inherited_descriptor_onto_an_input_is_refused(opened: tuple[int, Path]) -> None:
    fd, log = opened
    with pytest.raises(BadFileError, match=r"is also an input of this command \(.*log.txt\)"):
        check_outputs([f"/dev/fd/{fd}"], inputs=[log])


def test_one_file_as_two_outputs_is_refused_even_before_it_exists(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    with pytest.raises(BadFileError, match="is given as two outputs"):
        check_outputs([report, tmp_path / "sub" / ".." / "r.json"])
    (tmp_path / "alias").symlink_to(tmp_path)
    with pytest.raises(BadFileError, match="is given as two outputs"):
        check_outputs([report, tmp_path / "alias" / "r.json"])
    assert not report.exists()


def test_a_replaced_output_onto_a_written_through_one_is_refused(opened: tuple[int, Path]) -> None:
    fd, log = opened  # --report /dev/stdout --emit-env log.txt >> log.txt: the report would go to a deleted file
    with pytest.raises(BadFileError, match="is given as two outputs"):
        check_outputs([f"/dev/fd/{fd}", log])


def test_outputs_written_through_may_repeat(opened: tuple[int, Path]) -> None:
    fd, _log = opened
    check_outputs(["/dev/null", "/dev/null", f"/dev/fd/{fd}", f"/proc/self/fd/{fd}", None], inputs=[None])


def test_different_files_and_inputs_pass(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text("{}")
    check_outputs([tmp_path / "r.json", tmp_path / "env.sh"], inputs=[golden, tmp_path / "missing.pub"])


def test_need_directory_false_accepts_a_directory_made_later(tmp_path: Path) -> None:
    with pytest.raises(BadFileError, match="the directory does not exist"):
        check_outputs([tmp_path / "ctx" / "Dockerfile"])
    check_outputs([tmp_path / "ctx" / "Dockerfile"], need_directory=False)


# ---------------------------------------------------------------- a full disk, a lone surrogate


def test_a_full_device_is_one_line_exit_3() -> None:
    with pytest.raises(OutputWriteError, match="no space left on device") as failed:
        atomic_write_text("/dev/full", "report\n")  # a character device: written through, ENOSPC
    assert failed.value.exit_code == ENVIRONMENT and "\n" not in str(failed.value)
    assert isinstance(failed.value, OSError)  # callers handling file-system failures still catch it


def test_a_lone_surrogate_is_escaped_and_reads_back() -> None:
    data = {"model_name": "\ud800 cpu", "name": "caf\udce9", "ok": "é😀"}
    text = dumps_canonical(data)
    text.encode("utf-8")  # would raise UnicodeEncodeError (to a file or to stdout) if left raw
    assert "\\ud800" in text and "é😀" in text
    assert json.loads(text) == data


def test_a_lone_surrogate_in_any_text_is_written_escaped(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    atomic_write_text(path, json.dumps({"a": "\ud800"}, ensure_ascii=False))
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "\ud800"}


# ---------------------------------------------------------------- the lock of a read-modify-write


def test_the_lock_excludes_a_second_holder_and_times_out_in_one_line(tmp_path: Path) -> None:
    golden = tmp_path / "test_m.golden.json"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive_lock(golden):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    try:
        with pytest.raises(EnvironmentProblem, match="another process has held this lock"), \
                exclusive_lock(golden, timeout=0.2):
            pass
    finally:
        release.set()
        holder.join(10)
    with exclusive_lock(golden, timeout=1):  # free again once the holder is done
        pass
    assert lock_path_for(golden) == tmp_path / ".test_m.golden.json.lock" and lock_path_for(golden).exists()
    assert not golden.exists()  # the lock never creates the file it guards
