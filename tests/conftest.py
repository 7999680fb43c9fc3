"""Shared test fixtures (the helpers they use are in tests/helpers.py).

Components a test needs (TensorFlow, a Docker daemon) are *required* in CI: when missing
there the test fails loudly instead of skipping. Locally (CI unset) it skips with a reason.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from envlock.models import Manifest
from tests.helpers import envlock_cli, require, write_keypair
from tests.recorded import RECORDED_MACHINES
from tests.recorded import recorded_manifest as load_recorded_manifest


@pytest.fixture(scope="session", params=sorted(RECORDED_MACHINES))
def recorded_manifest(request: pytest.FixtureRequest) -> Manifest:
    """A real manifest of each recorded machine in turn (never this host's)."""
    return load_recorded_manifest(request.param)


@pytest.fixture(scope="session")
def tensorflow_required() -> None:
    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow")


@pytest.fixture(scope="session")
def golden_path(tensorflow_required: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One golden recorded on this machine for the whole session (one TF process)."""
    path = tmp_path_factory.mktemp("golden") / "golden.json"
    proc = envlock_cli("capture", "--golden", "-o", str(path))
    assert proc.returncode == 0, f"recording the session golden failed:\n{proc.stdout}\n{proc.stderr}"
    return path


@pytest.fixture()
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening unix socket in tmp_path: a path no reader or writer may open as a file."""
    path = tmp_path / "out.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        yield path


@pytest.fixture()
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh Ed25519 key pair (private, public) in OpenSSH format."""
    return write_keypair(tmp_path, "id_ed25519")
