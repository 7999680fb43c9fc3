"""A real `envlock verify` stopped mid-run (SIGTERM or SIGKILL) leaves no probe child running, and
after SIGTERM no envlock-probes-* temp directory (real TensorFlow child)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, process_gone

pytestmark = [pytest.mark.tf,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")]


def _probe_child_of(parent: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and b"envlock.probes.child" in cmdline:
                return int(entry)
        time.sleep(0.05)
    pytest.fail("the probe child did not start")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_verify_stops_its_probe_child(signum: int, tensorflow_required: None, tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "verify", str(REPO_ROOT / "goldens/cpu-reference.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        child = _probe_child_of(proc.pid)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
        assert process_gone(child), f"probe child {child} outlived `envlock verify` ({signal.Signals(signum).name})"
        if signum == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
            assert not list(tmp_path.glob("envlock-probes-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
