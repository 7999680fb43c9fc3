"""Shared test fixtures.

Components a test needs (TensorFlow, a Docker daemon) are *required* in CI: when missing
there the test fails loudly instead of skipping. Locally (CI unset) it skips with a reason.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.models import Manifest
from tests.recorded import RECORDED_MACHINES
from tests.recorded import recorded_manifest as load_recorded_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
# The project's own golden (recorded on an AMD EPYC Zen 4, see README): a real file for loaders
# and mutations; unit tests never run its probes.
REFERENCE_GOLDEN = REPO_ROOT / "goldens" / "cpu-reference.json"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip locally, fail loudly in CI, when a component a test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is missing", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session", params=sorted(RECORDED_MACHINES))
def recorded_manifest(request: pytest.FixtureRequest) -> Manifest:
    """A real manifest of each recorded machine in turn (never this host's)."""
    return load_recorded_manifest(request.param)


@pytest.fixture(scope="session")
def tensorflow_required() -> None:
    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow")


def env_with(**changes: str | None) -> dict[str, str]:
    """This process's environment with ``changes`` applied (``None`` removes a variable)."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def envlock_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process (the way a user runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "envlock", *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd, check=False,
    )


@pytest.fixture(scope="session")
def golden_path(tensorflow_required: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One golden recorded on this machine for the whole session (one TF process)."""
    path = tmp_path_factory.mktemp("golden") / "golden.json"
    proc = envlock_cli("capture", "--golden", "-o", str(path))
    assert proc.returncode == 0, f"recording the session golden failed:\n{proc.stdout}\n{proc.stderr}"
    return path


def process_gone(pid: int, *, timeout_s: float = 10.0) -> bool:
    """Whether ``pid`` ends (exits, or is a zombie nobody reaped yet) within ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def wait_for_file_text(path: Path, *, timeout_s: float = 30.0) -> str:
    """The non-empty content of ``path`` once something has written it (fails the test after ``timeout_s``)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.05)
    pytest.fail(f"nothing was written to {path} within {timeout_s} s")
