"""End to end with a real Docker daemon: build an image from the session golden on a base made
locally (debootstrap + docker import, no registry), then run it.

One image is built per module and reused; wheels and resolutions are cached under a stable
directory (ENVLOCK_TEST_CACHE, default ~/.cache/envlock-tests) so a re-run only pays for Docker.
Needs: a running dockerd, debootstrap (first run only) and the index/mirror for the first download.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from envlock import __version__
from envlock.golden import load_golden
from envlock.image import compat, data
from envlock.image.render import render
from envlock.image.spec import spec_from_golden
from tests.helpers import BASE_TAG, IMAGE_TAG, build_env, envlock_cli, run_command, tail

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _inspect(ref: str) -> dict:  # type: ignore[type-arg]
    proc = run_command("docker", "image", "inspect", ref)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]  # type: ignore[no-any-return]


def _baked_env(ref: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in _inspect(ref)["Config"]["Env"])


def test_build_streams_progress_and_prints_the_image_id(build: subprocess.CompletedProcess[str]) -> None:
    assert "Step 1/" in build.stderr and "wheelhouse:" in build.stderr
    image_id = build.stdout.strip().splitlines()[-1]
    assert image_id == _inspect(IMAGE_TAG)["Id"]


def test_image_is_labelled_non_root_and_has_determinism_env(build: subprocess.CompletedProcess[str],
                                                            golden_path: Path) -> None:
    golden = json.loads(golden_path.read_text())
    config = _inspect(IMAGE_TAG)["Config"]
    labels = config["Labels"]
    assert labels["io.envlock.golden.digest"] == golden["digest"]
    assert labels["io.envlock.manifest.digest"] == golden["manifest"]["digest"]
    assert labels["io.envlock.tensorflow.version"] == golden["manifest"]["tensorflow"]["version"]
    assert labels["org.opencontainers.image.base.name"] == BASE_TAG
    assert config["User"] == "envlock"
    env = _baked_env(IMAGE_TAG)
    assert env["TF_DETERMINISTIC_OPS"] == "1" and env["PYTHONHASHSEED"] == "0"
    assert env["ENVLOCK_GOLDEN"] == "/etc/envlock/golden.json"
    id_proc = run_command("docker", "run", "--rm", "--entrypoint", "id", IMAGE_TAG, "-u")
    assert id_proc.returncode == 0 and id_proc.stdout.strip() != "0"


def test_verify_inside_the_container_reproduces_the_host_golden(build: subprocess.CompletedProcess[str],
                                                                golden_path: Path) -> None:
    # No golden argument: `envlock verify` finds it through ENVLOCK_GOLDEN baked into the image.
    proc = run_command("docker", "run", "--rm", IMAGE_TAG, "envlock", "verify", "--json")
    assert proc.returncode == 0, f"verify in the container:\n{proc.stdout[-3000:]}\n{tail(proc.stderr)}"
    report = json.loads(proc.stdout)
    assert report["reproduces"] is True
    assert report["golden_digest"] == json.loads(golden_path.read_text())["digest"]
    assert any(p["status"] == "identical" for p in report["probes"])


def _perturbed_onednn(ref: str) -> str:
    """The opposite of the oneDNN setting baked from the golden: a change that moves matmul/conv bits."""
    return "0" if _baked_env(ref).get("TF_ENABLE_ONEDNN_OPTS") == "1" else "1"


def test_entrypoint_fails_fast_on_a_perturbed_environment(build: subprocess.CompletedProcess[str]) -> None:
    flip = _perturbed_onednn(IMAGE_TAG)
    proc = run_command("docker", "run", "--rm", "-e", f"TF_ENABLE_ONEDNN_OPTS={flip}", IMAGE_TAG,
                "python3", "-c", "print('user-command-ran')")
    assert proc.returncode == 1, tail(proc.stderr)
    assert "user-command-ran" not in proc.stdout
    assert "does not reproduce" in proc.stderr


def test_on_drift_warn_only_warns_and_runs_the_command(build: subprocess.CompletedProcess[str]) -> None:
    flip = _perturbed_onednn(IMAGE_TAG)
    proc = run_command("docker", "run", "--rm", "-e", f"TF_ENABLE_ONEDNN_OPTS={flip}", "-e", "ENVLOCK_ON_DRIFT=warn",
                IMAGE_TAG, "python3", "-c", "print('user-command-ran')")
    assert proc.returncode == 0, tail(proc.stderr)
    assert "user-command-ran" in proc.stdout
    assert "warning" in proc.stderr


def test_gpu_context_only_writes_a_complete_context(golden_path: Path, tmp_path: Path) -> None:
    context = tmp_path / "gpu-context"
    proc = envlock_cli("build", "--gpu", "--golden", str(golden_path), "--context-only", str(context),
                       env=build_env(), timeout=3600)
    assert proc.returncode == 0, tail(proc.stderr, 40)
    assert proc.stdout.strip() == str(context)
    golden = load_golden(golden_path)
    row = compat.lookup(golden.manifest.tensorflow.version)
    spec = spec_from_golden(golden.manifest, golden.lockdown, variant="gpu",
                            base=data.base_for_python(golden.manifest.python.version),
                            golden_digest=golden.digest, envlock_version=golden.envlock_version, compat=row)
    spec = spec.model_copy(update={"envlock_version": __version__})
    assert (context / "Dockerfile").read_text() == render(spec)
    lock = (context / "requirements.lock").read_text()
    assert f"tensorflow=={golden.manifest.tensorflow.version} \\" in lock
    assert row is not None and f"nvidia-cudnn-cu12=={row.and_cuda['nvidia-cudnn-cu12']}" in lock
    pinned = [line for line in lock.splitlines() if "==" in line]
    assert len(pinned) == lock.count("--hash=sha256:")
    wheels = {p.name for p in (context / "wheelhouse").glob("*.whl")}
    assert len(wheels) == len(pinned)
    assert (context / "envlock" / "golden.json").read_bytes() == golden_path.read_bytes()
    assert os.access(context / "envlock" / "entrypoint.sh", os.X_OK)
    assert list(context.joinpath("envlock").glob("envlock-*.whl"))


def test_build_with_the_daemon_unreachable_exits_3_with_one_line(golden_path: Path) -> None:
    proc = envlock_cli("build", "--golden", str(golden_path),
                       env=build_env(DOCKER_HOST="unix:///nonexistent/docker.sock"), timeout=120)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Docker daemon" in lines[0] and "start" in lines[0]


def test_build_failure_names_the_step_and_its_log(golden_path: Path, docker_required: None, tmp_path: Path) -> None:
    # A base with no shell and no python: the first RUN must fail, and say where.
    empty = tmp_path / "empty.tar"
    subprocess.run(["tar", "-cf", str(empty), "-T", "/dev/null"], check=True)
    imported = run_command("docker", "import", str(empty), "envlock-test/empty:latest")
    assert imported.returncode == 0, imported.stderr
    proc = envlock_cli("build", "--golden", str(golden_path), "--base-image", "envlock-test/empty:latest",
                       "--tag", "envlock-test/broken:latest", env=build_env(), timeout=1200)
    assert proc.returncode == 3, tail(proc.stderr)
    error = proc.stderr[proc.stderr.index("envlock: error:"):]
    assert "docker build failed at Step" in error and "RUN python3 -m venv" in error
    assert "last log lines" in error
