"""The probe child with real TensorFlow: a golden's environment cannot make it write outside its
private directory, nothing a probe starts outlives the run, and a module that hangs while it is
imported is stopped by --probe-timeout (issue 17, classes 1, 4 and 5).

Each run costs a TF import in a fresh child, so every test runs one small probe selection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, envlock_cli, one_error_line, process_gone, real_golden_data, reseal, write_json

pytestmark = [pytest.mark.tf, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl")]


def _private_env(tmp_path: Path) -> dict[str, str]:
    """envlock's own HOME and TMPDIR in ``tmp_path``: whatever the child writes there would show."""
    for part in ("home", "tmp"):
        (tmp_path / part).mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp")}


def test_a_golden_environment_cannot_write_outside_the_child(tensorflow_required: None, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    data = real_golden_data()
    data["lockdown"]["environment"] = {
        **data["lockdown"]["environment"],
        "XLA_FLAGS": f"--xla_dump_to={outside / 'xla'} --xla_dump_hlo_as_text",
        "KERAS_HOME": str(outside / "keras"),
        "TF_NUM_INTRAOP_THREADS": "999999",
    }
    golden = write_json(tmp_path / "hostile.json", reseal(data))
    env = _private_env(tmp_path)
    proc = envlock_cli("verify", str(golden), "--golden-env", "--probes", "compile.xla,training.keras_fit", "--json",
                       env=env, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert not outside.exists(), sorted(str(p) for p in outside.rglob("*"))
    assert not list((tmp_path / "home").iterdir()), "the child wrote into the user's HOME"
    assert not list((tmp_path / "tmp").iterdir()), "the child left files in TMPDIR"
    notes = [note for note in json.loads(proc.stdout)["notes"] if note.startswith("refused to apply")]
    assert len(notes) == 1, notes
    for name in ("XLA_FLAGS: --xla_dump_to", "KERAS_HOME", "TF_NUM_INTRAOP_THREADS"):
        assert name in notes[0]
    assert str(outside) not in notes[0]  # a reason never quotes the value


SPAWNING_MODULE = """
    import json, os, subprocess, sys, time
    import numpy as np
    import envlock

    @envlock.probe("user.spawner", tags=["rng"], group="stable", dtype="float32", description="starts processes")
    def spawner(ctx):
        pids = []
        pid = os.fork()
        if pid == 0:  # a fork() copy of the probe process
            time.sleep(300)
            os._exit(0)
        pids.append(pid)
        sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
        pids.append(subprocess.Popen(sleep).pid)
        pids.append(subprocess.Popen(sleep, start_new_session=True).pid)
        # a grandchild whose parent exits at once: an orphan
        quiet = "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"  # run() waits for its pipes' EOF
        orphan = subprocess.run([sys.executable, "-c", "import subprocess, sys; "
                                 f"print(subprocess.Popen(sys.argv[1:], start_new_session=True, {quiet}).pid)",
                                 *sleep],
                                capture_output=True, text=True, check=True)
        pids.append(int(orphan.stdout))
        facts = {"pids": pids, "cwd": os.getcwd(), "home": os.environ.get("HOME"),
                 "tmpdir": os.environ.get("TMPDIR"), "cgroup": open("/proc/self/cgroup").read()}
        import resource
        facts["rlimit_data"] = resource.getrlimit(resource.RLIMIT_DATA)[0]
        with open(FACTS, "a") as out:
            out.write(json.dumps(facts) + "\\n")
        return {"x": np.arange(4, dtype=np.float32)}
"""


def _spawning_module(tmp_path: Path) -> tuple[Path, Path]:
    facts = tmp_path / "facts.jsonl"
    module = tmp_path / "spawning_probes.py"
    module.write_text(f"FACTS = {str(facts)!r}\n" + textwrap.dedent(SPAWNING_MODULE), encoding="utf-8")
    return module, facts


def test_nothing_a_probe_starts_outlives_capture_or_verify(tensorflow_required: None, tmp_path: Path) -> None:
    module, facts = _spawning_module(tmp_path)
    env = _private_env(tmp_path)
    golden = tmp_path / "golden.json"
    for args in (["capture", "--golden", "-o", str(golden), "--probes", "user.spawner"],
                 ["verify", str(golden)]):
        proc = envlock_cli(*args, "--probe-module", str(module), env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs = [json.loads(line) for line in facts.read_text().splitlines()]
        left = [pid for pid in runs[-1]["pids"] if not process_gone(pid, timeout_s=5)]
        assert not left, f"{args[0]}: still running after it returned: {left}"
        assert not list((tmp_path / "tmp").iterdir()), f"{args[0]} left its private directory behind"
    for run in runs:  # the probe ran in a private directory, with a data limit
        private = Path(run["cwd"]).parent
        assert private.name.startswith("envlock-probes-") and private.parent == tmp_path / "tmp"
        assert run["home"] == str(private / "home") and run["tmpdir"] == str(private / "tmp")
        assert 0 < run["rlimit_data"] < 2**62


def test_a_module_that_hangs_while_imported_is_stopped_by_the_probe_timeout(tensorflow_required: None,
                                                                            tmp_path: Path) -> None:
    module = tmp_path / "hangs_on_import.py"
    module.write_text("import time\ntime.sleep(600)\n", encoding="utf-8")
    started = time.monotonic()
    proc = envlock_cli("capture", "--golden", "-o", str(tmp_path / "g.json"), "--probe-module", str(module),
                       "--probe-timeout", "5", env=_private_env(tmp_path), timeout=240, cwd=REPO_ROOT)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc)
    assert "hangs_on_import.py" in line and "did not finish importing" in line and "--probe-timeout" in line
    assert elapsed < 120, f"took {elapsed:.0f} s"  # the TF import, then 5 s: never the 900 s child limit


LOADER = Path("/lib64/ld-linux-x86-64.so.2")


@pytest.mark.parametrize("command", [["capture"], ["capture", "--golden", "--probes", "rng.op_seed", "-o", "g.json"],
                                     ["verify", str(REPO_ROOT / "goldens/cpu-reference.json")],
                                     ["explain", str(REPO_ROOT / "goldens/cpu-reference.json")]],
                         ids=["capture", "capture-golden", "verify", "explain"])
def test_a_non_executable_interpreter_is_one_line_at_once(command: list[str], tmp_path: Path) -> None:
    """envlock running from an interpreter without its execute bit (started through the dynamic loader,
    as a noexec mount forces): every command says the child could not start, at once, exit 3."""
    if not LOADER.exists():
        pytest.skip("no x86-64 glibc loader to start a non-executable interpreter with")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    interpreter = venv / "bin" / "python"
    interpreter.write_bytes(Path(sys._base_executable).read_bytes())
    interpreter.chmod(0o644)
    (venv / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text(), encoding="utf-8")
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    proc = subprocess.run([str(LOADER), str(interpreter), "-m", "envlock", *command], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    line = one_error_line(proc)
    assert "could not start: Permission denied" in line and str(interpreter) in line, line
    assert time.monotonic() - started < 60
