"""Progress on stderr (issue 16 item 8): when it is drawn, and what it says. Fed recorded progress
events (the probe child's ``ProgressEvent`` lines); the real terminal is in
tests/integration/test_cli_terminal.py."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from envlock.cli.progress import TerminalProgress, progress_display, progress_wanted
from envlock.progress import NO_PROGRESS


@pytest.mark.parametrize(("tty", "as_json", "environ", "wanted"), [
    (True, False, {}, True),
    (True, False, {"CI": "false"}, True),  # a person saying "not CI"
    (True, False, {"CI": "0"}, True),
    (True, False, {"CI": ""}, True),
    (False, False, {}, False),  # a pipe or a file: a log, never a display
    (True, True, {}, False),  # --json: a program reads the output
    (True, False, {"CI": "1"}, False),
    (True, False, {"CI": "true"}, False),
    (True, False, {"CI": "yes please"}, False),
    (True, False, {"TERM": "dumb"}, False),  # no cursor movement: lines would pile up
    (False, True, {"CI": "1"}, False),
])
def test_progress_is_drawn_only_for_a_person_at_a_terminal(tty: bool, as_json: bool, environ: dict[str, str],
                                                           wanted: bool) -> None:
    assert progress_wanted(stderr_is_tty=tty, as_json=as_json, environ=environ) is wanted


def _display() -> TerminalProgress:
    return TerminalProgress(Console(file=io.StringIO(), force_terminal=True, width=100))


def test_verify_shows_the_probe_running_and_how_many_there_are() -> None:
    display = _display()
    display.stage("verify")
    assert re.fullmatch(r"verify: starting the probe process \(importing TensorFlow\), \d+ s", display.lines()[0])
    display.child_event("verify", {"event": "setup", "order": ["a.x", "b.y", "c.z"]})  # type: ignore[typeddict-unknown-key]
    display.child_event("verify", {"event": "start", "probe": "b.y", "repeat": 0})
    assert re.fullmatch(r"verify: probe 2/3 b.y, \d+ s", display.lines()[0]), display.lines()
    display.child_event("verify", {"event": "run", "probe": "b.y", "run": {"status": "ok", "seconds": 0.1}})
    display.child_event("verify", {"event": "start", "probe": "a.x", "repeat": 1})
    assert display.lines()[0].startswith("verify: probe 1/3 a.x, run 2, ")


def test_a_restarted_child_keeps_the_whole_suite_count() -> None:
    display = _display()
    display.stage("record")
    display.child_event("record", {"event": "setup", "order": ["a", "b", "c"]})  # type: ignore[typeddict-unknown-key]
    display.child_event("record", {"event": "setup", "order": ["c"]})  # type: ignore[typeddict-unknown-key]
    display.child_event("record", {"event": "start", "probe": "c", "repeat": 0})
    assert display.lines()[0].startswith("recording the golden: probe 3/3 c, ")


def test_explain_shows_candidates_left_the_budget_used_and_each_running_candidate() -> None:
    display = _display()
    display.stage("verify")
    display.stage("explain", candidates=3, budget=120)
    display.task_started("ONEDNN_MAX_CPU_ISA=AVX2")
    display.task_started("TF_ENABLE_ONEDNN_OPTS=0")
    display.child_event("ONEDNN_MAX_CPU_ISA=AVX2", {"event": "setup", "order": ["mixed.bf16_matmul"]})  # type: ignore[typeddict-unknown-key]
    display.child_event("ONEDNN_MAX_CPU_ISA=AVX2", {"event": "start", "probe": "mixed.bf16_matmul", "repeat": 0})
    head, *rows = display.lines()
    assert re.fullmatch(r"explain: candidates 0/3 done, 2 running, budget \d+ of 120 s used", head), head
    assert rows == ["  ONEDNN_MAX_CPU_ISA=AVX2: probe 1/1 mixed.bf16_matmul",
                    "  TF_ENABLE_ONEDNN_OPTS=0: starting the probe process (importing TensorFlow)"]
    display.task_finished("ONEDNN_MAX_CPU_ISA=AVX2")
    display.task_finished("TF_ENABLE_ONEDNN_OPTS=0")
    display.task_started("shrink: A + B")  # explain looks for a smaller set: one more than planned
    assert display.lines()[0].startswith("explain: candidates 2/3 done, 1 running")
    display.task_started("shrink: A + C")
    assert display.lines()[0].startswith("explain: candidates 2/4 done, 2 running")


def test_names_from_a_golden_are_redacted_and_escaped_before_they_are_drawn() -> None:
    display = _display()
    display.stage("explain", candidates=1, budget=10)
    hostile = "PIP_INDEX_URL=https://user:SECRETPW2@example.com/\x1b[2J\x1b]0;owned\x07\nREPRODUCES"
    display.task_started(hostile)
    display.child_event(hostile, {"event": "start", "probe": "user.\x1b[31mred", "repeat": 0})
    text = "\n".join(display.lines())
    assert "SECRETPW2" not in text and "\x1b" not in text and "\x07" not in text, text
    assert len(text.splitlines()) == 2, text  # the embedded newline forged no line


def test_the_drawing_goes_to_the_terminal_and_vanishes() -> None:
    screen = io.StringIO()
    display = TerminalProgress(Console(file=screen, force_terminal=True, width=100))
    display.start()
    display.stage("verify")
    display.child_event("verify", {"event": "start", "probe": "matmul.f32", "repeat": 0})
    display.stop()
    assert "matmul.f32" in screen.getvalue()
    assert screen.getvalue().endswith("\x1b[2K")  # transient: the last line is erased


def test_no_terminal_means_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    with progress_display(as_json=False) as progress:
        assert progress is NO_PROGRESS
