"""explain's budget, redaction and environment file, for real (issue 17: class 4's budget, class 2's
explain output, and the stale ``--emit-env`` file)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import SECRETS, assert_no_secret, env_with, envlock_cli, write_hostile_golden

pytestmark = [pytest.mark.tf, pytest.mark.slow]

# Three probes that hang in every process after the first two (capture's and verify's): explain's
# candidate children run into the deadline in each of them in turn.
SLEEPY = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    import numpy as np

    from envlock import ProbeContext, probe

    PIDS = Path({pids!r})


    def _hang_after_two_processes() -> None:
        with PIDS.open("a") as f:
            f.write(f"{{os.getpid()}}\\n")
        if len(set(PIDS.read_text().split())) > 2:
            time.sleep(600)


    def _value() -> dict:
        _hang_after_two_processes()
        return {{"x": np.full(4, float(os.environ.get("OMP_NUM_THREADS", "0")))}}


    @probe("user.sleepy_a", tags=["numpy"], group="canary", dtype="float64", description="hangs in explain")
    def sleepy_a(ctx: ProbeContext) -> dict:
        return _value()


    @probe("user.sleepy_b", tags=["numpy"], group="canary", dtype="float64", description="hangs in explain")
    def sleepy_b(ctx: ProbeContext) -> dict:
        return _value()


    @probe("user.sleepy_c", tags=["numpy"], group="canary", dtype="float64", description="hangs in explain")
    def sleepy_c(ctx: ProbeContext) -> dict:
        return _value()
''')
BUDGET = 30
MARGIN = 8  # interpreter start, the CLI's imports, killing the last child and writing the report


def test_nothing_runs_past_the_budget(tensorflow_required: None, tmp_path: Path) -> None:
    module, golden = tmp_path / "sleepy.py", tmp_path / "golden.json"
    module.write_text(SLEEPY.format(pids=str(tmp_path / "pids")))
    probes = "user.sleepy_a,user.sleepy_b,user.sleepy_c"
    proc = envlock_cli("capture", "--golden", "--probe-module", str(module), "--probes", probes, "--repeat", "1",
                       "-o", str(golden), env=env_with(OMP_NUM_THREADS=None))
    assert proc.returncode == 0, proc.stderr[-2000:]
    started = time.monotonic()
    proc = envlock_cli("explain", str(golden), "--probe-module", str(module), "--json", "--budget", str(BUDGET),
                       env=env_with(OMP_NUM_THREADS="3"))
    wall = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert wall <= BUDGET + MARGIN, (wall, report["timings"], [(c["id"], c["status"]) for c in report["candidates"]])
    statuses = {c["id"]: c["status"] for c in report["candidates"]}
    assert statuses["unset OMP_NUM_THREADS"] == "stopped (budget)", statuses
    assert "unset OMP_NUM_THREADS" in report["not_tried"]
    assert {f["status"] for f in report["findings"]} == {"not proved"}


SECRET_GOLDEN_ENV = {"NCCL_COMM_ID": "https://u:pw456@h:1/?token=abc123", "NCCL_DEBUG_FILE": "/home/alice/nccl.log"}


def test_a_foreign_golden_s_secrets_stay_out_and_no_stale_environment_file(tensorflow_required: None,
                                                                          tmp_path: Path) -> None:
    golden = write_hostile_golden(tmp_path / "golden.json", manifest_env=SECRET_GOLDEN_ENV,
                                  lockdown_env=SECRET_GOLDEN_ENV)
    report_file, env_file = tmp_path / "explain.json", tmp_path / "env.sh"
    env_file.write_text("export STALE_FROM_AN_EARLIER_RUN=1\n")
    proc = envlock_cli("explain", str(golden), "--report", str(report_file), "--emit-env", str(env_file),
                       "--budget", "90")
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads(report_file.read_text())  # what --json prints: the same dump
    ids = [c["id"] for c in report["candidates"]]
    # A URL and a file path are not values these variables may be given: refused, never planned ...
    assert not any(i.startswith(("NCCL_COMM_ID", "NCCL_DEBUG_FILE")) for i in ids), ids
    assert "refused to apply 2 of the golden's environment variable(s): NCCL_COMM_ID: " in proc.stdout
    assert "NCCL_DEBUG_FILE: names a directory or file" in proc.stdout
    for text in (proc.stdout, proc.stderr, report_file.read_text(), env_file.read_text()):
        assert_no_secret(text)  # ... and their values shown nowhere
    assert SECRETS[0] not in json.dumps(report)

    # Nothing reproduces a made-up golden: the file says so instead of keeping the stale one.
    written = env_file.read_text()
    assert "STALE_FROM_AN_EARLIER_RUN" not in written and "no environment reproduces" in written
    assert "says so" in proc.stdout
    # `source env.sh && run-the-job` stops there (an interactive shell is not closed: `return`, not `exit`).
    for how in (f"source {env_file} && echo went-on", f"bash {env_file} && echo went-on"):
        sourced = subprocess.run(["bash", "-c", how], capture_output=True, text=True, check=False)
        assert sourced.returncode == 1 and "went-on" not in sourced.stdout, how
        assert "no environment reproduces" in sourced.stderr
