"""The runner's side of the probe child's sandbox with real (small, TF-free) processes: a child's
output is kept as a bounded tail, a child that cannot start says so at once, the limits parse, and
what a SIGKILLed run left behind is removed by the next (issue 17, classes 4 and 5; old catalogue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envlock.errors import ENVIRONMENT, BadInputError
from envlock.models import LockdownSettings
from envlock.probes.supervisor import PRIVATE_DIR_PREFIX, run_child
from envlock.runner import (
    GIB,
    MEMORY_LIMIT_ENV,
    OUTPUT_TAIL_BYTES,
    TASK_LIMIT_ENV,
    ChildLimits,
    CouldNotStart,
    Runner,
    default_child_limits,
    remove_stale_private_dirs,
)
from tests.helpers import REPO_ROOT, process_gone, run_python, wait_for_file_text

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl and RLIMIT_DATA")

FLOOD_MB = 200


@pytest.mark.processes("a child printing 200 MB: the parent's peak memory is what is tested")
@pytest.mark.parametrize("how", ["run_watched", "run"])
def test_a_flooding_child_costs_the_parent_only_a_tail(how: str) -> None:
    flood = (f"import sys; chunk = b'x' * (1 << 20)\nfor _ in range({FLOOD_MB}): sys.stdout.buffer.write(chunk); "
             "sys.stderr.buffer.write(chunk)\nsys.stdout.buffer.write(b'END')")
    call = ("r.run_watched(argv, timeout=120, watch=lambda: None)" if how == "run_watched"
            else "r.run(argv, timeout=120)")
    code = f"""
        import json, resource, sys
        from envlock.runner import Runner
        r, argv = Runner(), [sys.executable, "-c", {flood!r}]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {call}
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({{"grew_kib": grew, "stdout": len(result.stdout), "end": result.stdout.endswith("END")}}))
    """
    report = json.loads(run_python(code, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}).stdout.splitlines()[-1])
    limit = OUTPUT_TAIL_BYTES if how == "run_watched" else 16 * 1024 * 1024
    assert report["end"] and report["stdout"] <= limit
    assert report["grew_kib"] < 64 * 1024, f"the parent grew {report['grew_kib'] // 1024} MiB reading {FLOOD_MB} MB"


@pytest.mark.processes("starting a non-executable interpreter is what is tested")
def test_a_probe_child_that_cannot_start_says_so_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interpreter = tmp_path / "python"
    interpreter.write_bytes(b"\x7fELF not really")
    interpreter.chmod(0o644)
    monkeypatch.setattr(sys, "executable", str(interpreter))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(CouldNotStart) as caught:
        run_child(probe_names=["matmul.f32"], repeat=1, settings=LockdownSettings(), env=dict(os.environ))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert caught.value.exit_code == ENVIRONMENT and "\n" not in message
    assert message.startswith("the probe process could not start: Permission denied") and str(interpreter) in message
    assert "did not finish" not in message
    assert not list(tmp_path.glob(f"{PRIVATE_DIR_PREFIX}*"))


def test_the_limits_have_defaults_and_can_be_set_or_turned_off() -> None:
    default = default_child_limits({})
    assert default.memory_bytes is not None and default.memory_bytes >= 16 * GIB
    assert default.max_tasks is not None and default.max_tasks >= 4096 and default.subreaper
    assert default_child_limits({MEMORY_LIMIT_ENV: "24G", TASK_LIMIT_ENV: "500"}) == \
        ChildLimits(memory_bytes=24 * GIB, max_tasks=500)
    assert default_child_limits({MEMORY_LIMIT_ENV: "512MiB"}).memory_bytes == 512 * 1024**2
    assert default_child_limits({MEMORY_LIMIT_ENV: "off", TASK_LIMIT_ENV: "0"}) == \
        ChildLimits(memory_bytes=None, max_tasks=None)
    with pytest.raises(ValueError, match=MEMORY_LIMIT_ENV):
        default_child_limits({MEMORY_LIMIT_ENV: "lots"})


def test_a_malformed_limit_is_bad_input_before_any_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TASK_LIMIT_ENV, "-3")
    with pytest.raises(BadInputError, match=TASK_LIMIT_ENV):
        run_child(probe_names=["matmul.f32"], repeat=1, settings=LockdownSettings(), env={})


@pytest.mark.processes("a child under the limits: its data limit and its private working directory")
def test_a_limited_child_runs_with_its_data_limit(tmp_path: Path) -> None:
    code = "import os, resource; print(resource.getrlimit(resource.RLIMIT_DATA)[0], os.getcwd())"
    result = Runner().run_watched([sys.executable, "-c", code], timeout=60, watch=lambda: None, cwd=tmp_path,
                                  limits=ChildLimits(memory_bytes=3 * GIB, max_tasks=100))
    assert result is not None and result.returncode == 0, result
    assert result.stdout.split() == [str(3 * GIB), str(tmp_path)]


# A stand-in for `envlock verify` killed mid-run: a private directory named as the supervisor names it.
KILLED_PARENT = """
import time
from envlock.runner import make_private_dir
from envlock.probes.supervisor import PRIVATE_DIR_PREFIX
print(make_private_dir(PRIVATE_DIR_PREFIX), flush=True)
time.sleep(300)
"""


@pytest.mark.processes("a parent SIGKILLed with its private directory in place")
def test_the_next_run_removes_what_a_sigkilled_run_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], env=env, stdout=handle)
    try:
        left = Path(wait_for_file_text(out))
        live = tmp_path / f"{PRIVATE_DIR_PREFIX}{os.getpid()}-mine"  # a live owner's: kept
        live.mkdir()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert process_gone(proc.pid) and left.is_dir()
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        monkeypatch.setattr("tempfile.tempdir", None)
        remove_stale_private_dirs(PRIVATE_DIR_PREFIX)
        assert not left.exists() and live.is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
