"""Fixtures shared by integration modules: the Docker image build and `envlock watch` daemons."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    BASE_TAG,
    IMAGE_TAG,
    REPO_ROOT,
    Daemon,
    build_env,
    docker_answers,
    envlock_cli,
    require,
    run_command,
    tail,
)


@pytest.fixture(scope="module")
def docker_required() -> None:
    require(docker_answers(), "a running Docker daemon")


@pytest.fixture(scope="module")
def base_image(docker_required: None) -> str:
    proc = run_command(str(REPO_ROOT / "images" / "make-base.sh"), BASE_TAG, timeout=1800)
    assert proc.returncode == 0, f"images/make-base.sh failed:\n{tail(proc.stderr)}"
    assert proc.stdout.strip().splitlines()[-1].startswith("sha256:")
    return BASE_TAG


@pytest.fixture(scope="module")
def build(golden_path: Path, base_image: str) -> subprocess.CompletedProcess[str]:
    """One image per module (Docker's layer cache makes a second module's build take seconds)."""
    proc = envlock_cli("build", "--golden", str(golden_path), "--base-image", base_image, "--tag", IMAGE_TAG,
                       env=build_env(), timeout=2400)
    assert proc.returncode == 0, f"envlock build failed:\n{tail(proc.stderr, 60)}"
    return proc


@pytest.fixture()
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Starts `envlock watch` processes (``daemons(golden, *args, **kw)``) and kills them after the test."""
    started: list[Daemon] = []

    def start(golden: Path, *args: str, **kw: Any) -> Daemon:
        daemon = Daemon(tmp_path, golden, *args, **kw)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
