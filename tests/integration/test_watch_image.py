"""The CPU image from `envlock build` runs `envlock watch` as its command.

Reuses the build fixtures of test_build_docker.py (tests/integration/conftest.py: same golden,
base and tag: Docker's layer cache makes the second build take seconds). The container runs as
the image's non-root user with its default state directory; the image deliberately sets
determinism variables the recording machine lacked, so the first fingerprint check fails until
the verify reproduces with those differences present, after which /healthz answers 200.
`docker stop` exits 0.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import IMAGE_TAG, http_get, run_command

pytestmark = [pytest.mark.docker, pytest.mark.tf, pytest.mark.slow]
CONTAINER = "envlock-test-watch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str] | None:
    """Status and body, or None while the container does not answer yet."""
    try:
        status, _, body = http_get(port, path, timeout=5)
    except OSError:
        return None
    return status, body


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_command("docker", *args, timeout=timeout)


@pytest.fixture()
def container(build: subprocess.CompletedProcess[str]):
    _docker("rm", "-f", CONTAINER)
    port = _free_port()
    proc = _docker("run", "-d", "--name", CONTAINER, "-p", f"127.0.0.1:{port}:9109", IMAGE_TAG,
                   "envlock", "watch", "--listen", "0.0.0.0:9109", "--fingerprint-every", "2s")
    assert proc.returncode == 0, proc.stderr
    yield port
    _docker("rm", "-f", CONTAINER)


def test_the_built_image_runs_the_daemon(container: int) -> None:
    port = container
    deadline = time.monotonic() + 600
    while _get(port, "/healthz") != (200, "ok\n"):
        state = _docker("inspect", "--format", "{{.State.Running}}", CONTAINER).stdout.strip()
        assert state == "true", _docker("logs", CONTAINER).stderr[-3000:]
        assert time.monotonic() < deadline, _docker("logs", CONTAINER).stderr[-3000:]
        time.sleep(1)
    result = _get(port, "/status")
    assert result is not None
    status = json.loads(result[1])
    assert status["last"]["verify"]["outcome"] == "pass"
    assert status["golden"]["path"] == "/etc/envlock/golden.json"  # from ENVLOCK_GOLDEN in the image
    assert status["history"]["database"].startswith("/home/")  # the non-root user's state dir
    metrics = _get(port, "/metrics")
    assert metrics is not None
    names = {family.name for family in text_string_to_metric_families(metrics[1])}
    assert {"envlock_healthy", "envlock_probe_max_ulp", "envlock_drifted_field"} <= names
    stop = _docker("stop", "--time", "30", CONTAINER)
    assert stop.returncode == 0, stop.stderr
    assert _docker("inspect", "--format", "{{.State.ExitCode}}", CONTAINER).stdout.strip() == "0"
    logs = [json.loads(line) for line in _docker("logs", CONTAINER).stderr.splitlines() if line.startswith("{")]
    assert logs[-1]["event"] == "stopped"
