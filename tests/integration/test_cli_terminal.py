"""The CLI on a real terminal, with real TensorFlow: progress on stderr while verify, explain and
``capture --golden`` work, and nothing at all on stderr in CI or into a pipe (issue 16 item 8);
Ctrl-C (issue 17); a golden whose strings hold a lone surrogate or terminal escapes (issue 17).

The terminal is a pseudo-terminal (``pty``) on stderr; stdout is a pipe, as in ``envlock verify G
| less``. Each run is cut to one cheap probe: TensorFlow's import is most of its time."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from envlock.models import Manifest, with_digest
from tests.helpers import REFERENCE_GOLDEN, env_with, real_golden_data, reseal

CHEAP = ["--probes", "matmul.f32"]
pytestmark = pytest.mark.tf


def _environ(**changes: str | None) -> dict[str, str]:
    """A terminal's environment outside CI, with ``changes`` applied (None removes a variable)."""
    return env_with(**{"CI": None, "TERM": "xterm-256color", "COLUMNS": "100", **changes})


def _on_a_terminal(*args: str, env: dict[str, str], timeout: float = 240) -> tuple[int, bytes, bytes]:
    """``envlock ARGS`` with stderr on a pseudo-terminal: the exit code, stdout and what the terminal got."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "envlock", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=terminal, env=env)
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: the last holder of the terminal closed it
                    break
                if not data:
                    break
                screen += data
            elif proc.poll() is not None:
                break
        out = proc.stdout.read() if proc.stdout else b""
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, screen


def test_verify_on_a_terminal_shows_the_probe_running_then_clears_it(tensorflow_required: None) -> None:
    code, out, screen = _on_a_terminal("verify", str(REFERENCE_GOLDEN), *CHEAP, env=_environ())
    assert code in (0, 1), (out[-2000:], screen[-2000:])
    assert b"verify: starting the probe process" in screen and b"verify: probe 1/1 matmul.f32" in screen, screen
    assert screen.endswith(b"\x1b[2K"), screen[-200:]  # transient: erased before the report
    assert b"matmul (1)" in out and b"\x1b" not in out  # the report on stdout (the short view), undecorated


@pytest.mark.parametrize("ci", ["1", "true"])
def test_nothing_reaches_stderr_in_ci_even_on_a_terminal(tensorflow_required: None, ci: str) -> None:
    code, out, screen = _on_a_terminal("verify", str(REFERENCE_GOLDEN), *CHEAP, env=_environ(CI=ci))
    assert code in (0, 1) and b"matmul (1)" in out
    assert screen == b"", screen[:500]


def test_nothing_reaches_stderr_with_json_or_into_a_pipe(tensorflow_required: None) -> None:
    code, out, screen = _on_a_terminal("verify", str(REFERENCE_GOLDEN), *CHEAP, "--json", env=_environ())
    assert code in (0, 1) and json.loads(out)["golden"]
    assert screen == b"", screen[:500]
    proc = subprocess.run([sys.executable, "-m", "envlock", "verify", str(REFERENCE_GOLDEN), *CHEAP],
                          capture_output=True, env=_environ(), timeout=240, check=False)
    assert proc.returncode in (0, 1) and proc.stderr == b"", proc.stderr[:500]


def test_capture_golden_and_explain_show_progress(tensorflow_required: None, tmp_path: Path) -> None:
    code, _, screen = _on_a_terminal("capture", "--golden", "-o", str(tmp_path / "g.json"), *CHEAP,
                                     "--repeat", "1", env=_environ())
    assert code == 0, screen[-2000:]
    assert b"recording the golden: probe 1/1 matmul.f32" in screen, screen[-2000:]
    code, _, screen = _on_a_terminal("explain", str(REFERENCE_GOLDEN), *CHEAP, "--budget", "60", env=_environ())
    assert code in (0, 1), screen[-2000:]
    assert b"verify: probe 1/1 matmul.f32" in screen, screen[-2000:]


def test_ctrl_c_is_one_line_and_exit_130(tensorflow_required: None) -> None:
    """A terminal's Ctrl-C: SIGINT to the whole foreground process group, the probe child included."""
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "verify", str(REFERENCE_GOLDEN)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environ(), start_new_session=True)
    time.sleep(3)  # the probe child is importing TensorFlow or running probes
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err == b"envlock: interrupted\n", err[-2000:]


# ---------------------------------------------------------------- hostile strings in a golden


def _hostile_golden(path: Path, text: str) -> Path:
    """The shipped golden with ``text`` in its CPU model and in its skipped GPU probe's reason (which
    verify prints), both digests resealed, as anyone can."""
    data: dict[str, Any] = real_golden_data()
    data["manifest"]["cpu"]["model_name"] = text
    next(p for p in data["probes"] if p["name"] == "gpu.matmul")["reason"] = text
    data["manifest"]["digest"] = with_digest(Manifest.model_validate(data["manifest"])).digest
    path.write_text(json.dumps(reseal(data)), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [["verify"], ["explain", "--budget", "60"], ["verify", "--explain"]])
def test_a_golden_with_a_lone_surrogate_and_escapes_is_reported_not_a_traceback(
        tensorflow_required: None, tmp_path: Path, command: list[str]) -> None:
    golden = _hostile_golden(tmp_path / "g.json", "AMD \ud800 \x1b[2J\x1b]0;owned\x07 EPYC")
    proc = subprocess.run([sys.executable, "-m", "envlock", command[0], str(golden), *command[1:],
                           "--probes", "matmul.f32,gpu.matmul"],
                          capture_output=True, env=_environ(), timeout=240, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert b"Traceback" not in proc.stderr and proc.stderr == b"", proc.stderr[-3000:]
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout, proc.stdout[-2000:]
    if command[0] == "verify":  # verify's table shows the skipped probe's reason
        assert b"AMD \\ud800 \\x1b[2J" in proc.stdout, proc.stdout[-3000:]
