"""A child dies with its parent, and a stopped parent leaves no temp files (real processes).

The parents here are small stand-ins that spawn exactly as envlock does (``runner.run_bounded``,
which ``Runner.run`` and so the probe child use; ``VerifyRunner``, which the daemon uses), because
the real ones need TensorFlow: tests/integration/test_verify_signals.py does the same with a real
``envlock verify``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envlock.runner import run_bounded
from tests.helpers import process_gone, wait_for_file_text

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"),
              pytest.mark.processes("whether children die with their parent is what is tested")]


def _sleeper(pid_file: Path) -> str:
    return f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"


def _start_parent(code: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# A stand-in for `envlock verify`: a temp dir like run_child's, the child run through the seam,
# and SIGTERM handled as the CLI handles it.
VERIFY_LIKE_PARENT = """
import sys, tempfile
from envlock.runner import Runner, stop_cleanly_on_sigterm
stop_cleanly_on_sigterm()
with tempfile.TemporaryDirectory(prefix="envlock-probes-"):
    Runner().run([sys.executable, "-c", {child!r}], timeout=600)
"""

# A stand-in for the daemon: the verify check on a worker thread, as Watcher runs it.
DAEMON_LIKE_PARENT = """
import os, sys, threading, time
from envlock.daemon.process import VerifyRunner
runner = VerifyRunner([sys.executable, "-c", {child!r}], timeout_s=600, golden_digest=None, env=os.environ)
threading.Thread(target=runner.run, daemon=True).start()
time.sleep(300)
"""


@pytest.mark.parametrize(("parent", "signum"), [
    (VERIFY_LIKE_PARENT, signal.SIGKILL), (VERIFY_LIKE_PARENT, signal.SIGTERM),
    (DAEMON_LIKE_PARENT, signal.SIGKILL),  # the daemon's SIGTERM is a clean stop: test_daemon_watch
], ids=["verify-SIGKILL", "verify-SIGTERM", "daemon-SIGKILL"])
def test_child_dies_with_its_parent(parent: str, signum: int, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    proc = _start_parent(parent.format(child=_sleeper(pid_file)), tmp_path)
    try:
        child = int(wait_for_file_text(pid_file))
        proc.send_signal(signum)
        proc.wait(timeout=30)
        assert process_gone(child), f"child {child} outlived its parent ({signal.Signals(signum).name})"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_sigterm_removes_the_temp_dir_and_kills_the_grandchildren(tmp_path: Path) -> None:
    pid_file, grandchild_file = tmp_path / "child.pid", tmp_path / "grandchild.pid"
    child = (
        "import subprocess, sys, os, time; "
        f"g = subprocess.Popen([sys.executable, '-c', {_sleeper(grandchild_file)!r}]); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    )
    proc = _start_parent(VERIFY_LIKE_PARENT.format(child=child), tmp_path)
    try:
        int(wait_for_file_text(pid_file))
        grandchild = int(wait_for_file_text(grandchild_file))
        assert list((tmp_path / "tmp").glob("envlock-probes-*"))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        assert "Traceback" not in stderr
        assert process_gone(grandchild)
        assert not list((tmp_path / "tmp").glob("envlock-probes-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_timed_out_command_is_killed_with_its_group(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild.pid"
    child = ("import subprocess, sys, time; "
             f"subprocess.Popen([sys.executable, '-c', {_sleeper(grandchild_file)!r}]); time.sleep(300)")
    assert run_bounded([sys.executable, "-c", child], timeout=3) is None
    assert process_gone(int(wait_for_file_text(grandchild_file)))
