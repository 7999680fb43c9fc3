"""README's commands, run exactly as written, in order, in a scratch directory that holds the repository's
goldens/ and examples/ (the two set-up commands are the main job and CI themselves).

Only what holds on every machine kind is asserted: each command exits with a code README documents for
it (a verify may drift on another CPU), never with a traceback, and says something.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.tf, pytest.mark.slow]

README = REPO_ROOT / "README.md"
SET_UP = {"bash scripts/main-job.sh", "bash .ci/run"}
# What each command may exit with (README: exit codes); anything else fails.
EXPECTED = {"capture": {0}, "diff": {0, 1}, "verify": {0, 1}, "explain": {0, 1}, "build": {0}, "watch": {0, 1},
            "cores": {0, 1}, "fleet": {0, 1}}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and command not in SET_UP:
                commands.append(command)
    return commands


def test_readme_has_its_two_set_up_commands_and_examples() -> None:
    assert [c for b in _blocks("bash") for c in b.splitlines() if c.strip() in SET_UP] == sorted(SET_UP, reverse=True)
    assert {c.split()[1] for c in readme_commands()} >= set(EXPECTED)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO_ROOT / "goldens", root / "goldens")
    shutil.copytree(REPO_ROOT / "examples", root / "examples")
    return root


def test_every_readme_command_runs_as_written(tensorflow_required: None, scratch: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for command in readme_commands():
        assert command.startswith("envlock "), f"README command not covered by this test: {command}"
        proc = subprocess.run(["bash", "-c", command], cwd=scratch, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        allowed = EXPECTED[command.split()[1]]
        assert proc.returncode in allowed, \
            f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, f"{command}\n{proc.stderr[-3000:]}"
        assert proc.stdout.strip(), command
    assert (scratch / "golden.json").is_file() and (scratch / "image-context" / "Dockerfile").is_file()


def test_the_readme_python_example_runs(tensorflow_required: None, scratch: Path) -> None:
    (example,) = _blocks("python")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", "XLA_FLAGS", "ONEDNN_MAX_CPU_ISA")}
    proc = subprocess.run([sys.executable, "-c", example], cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("portable v1 ")
