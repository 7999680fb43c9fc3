"""`envlock cores` with real TensorFlow: a simulated mercurial core is caught, pinning holds for every
thread TensorFlow starts, healthy CPUs agree, bad input is one line; under `envlock watch
--cores-every` the per-CPU series and NFD label follow, and a real Prometheus with
deploy/cores-alerts.yaml fires the alert an operator's drain hook would act on.

No machine here has a defective core, so a user probe module fakes one: it flips one bit of its output
when it runs on the flip CPU (CPU 1 here: the second CPU this process may run on). It also fails
unless every thread of its process (TF's pools included) is confined to the CPU it runs on. With 2
CPUs the vote cannot say which side is wrong (the honest message); with 3 or more it names the CPU.
Each CPU costs a TF import, so the runs use small --probes selections.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers import (
    DAEMON_ENV,
    REPO_ROOT,
    Daemon,
    build_golden,
    env_with,
    envlock_cli,
    http_get,
    one_error_line,
    require,
    wait_for,
)

pytestmark = [pytest.mark.tf, pytest.mark.slow]

ALLOWED = sorted(os.sched_getaffinity(0))
FLIP_CPU = ALLOWED[1] if len(ALLOWED) > 1 else None
CHECKED = ALLOWED[:3]  # 3 when the machine has them: then the majority names the flip CPU

MERCURIAL = textwrap.dedent('''
    """A simulated mercurial core: one output bit flips on the CPU named by $FLIP_CPU."""
    import ctypes
    import os

    import envlock

    _getcpu = ctypes.CDLL(None).sched_getcpu  # Python's os has no sched_getcpu


    @envlock.probe("sim.mercurial", tags=["elementwise"], group="hardware", dtype="float32",
                   description="float32 reciprocal; one bit flipped on the flip CPU")
    def mercurial(ctx):
        y = ctx.tf.math.reciprocal(ctx.tf.constant([1.0, 3.0, 7.0], dtype="float32")).numpy()
        cpu = _getcpu()
        if cpu == int(os.environ["FLIP_CPU"]):
            y.view("uint32")[1] ^= 1  # the lowest mantissa bit of 1/3
        # Pinning, seen from inside: every thread of the process (TF's pools too) may run on this CPU only.
        tids = os.listdir("/proc/self/task")
        off = [t for t in tids if os.sched_getaffinity(int(t)) != {cpu}]
        if off or len(tids) < 2:
            raise RuntimeError(f"threads {off} of {len(tids)} are not pinned to CPU {cpu}")
        return {"reciprocal": y}


    @envlock.probe("sim.steady", tags=["elementwise"], group="hardware", dtype="float32",
                   description="the same reciprocal, never flipped")
    def steady(ctx):
        return {"reciprocal": ctx.tf.math.reciprocal(ctx.tf.constant([1.0, 3.0, 7.0], dtype="float32"))}
''')


@pytest.fixture(scope="module")
def mercurial_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cores") / "mercurial_core.py"
    path.write_text(MERCURIAL, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def caught(tensorflow_required: None, mercurial_module: Path) -> tuple[int, dict, str]:
    if FLIP_CPU is None:
        pytest.skip("needs 2 or more CPUs to compare")
    cpus = ",".join(map(str, CHECKED))
    proc = envlock_cli("cores", "--json", "--cpus", cpus, "--probe-module", str(mercurial_module),
                       "--probes", "hw.reciprocal,sim.mercurial,sim.steady", "--jobs", "2",
                       env=env_with(FLIP_CPU=str(FLIP_CPU)))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_the_flipped_bit_is_caught_on_its_cpu(caught: tuple[int, dict, str]) -> None:
    code, report, _ = caught
    assert code == 1
    assert report["probes"] == ["hw.reciprocal", "sim.mercurial", "sim.steady"]
    votes = {v["probe"]: v for v in report["votes"]}
    assert votes["hw.reciprocal"]["status"] == votes["sim.steady"]["status"] == "agree"
    flipped = votes["sim.mercurial"]
    assert flipped["outputs"] == ["reciprocal"]  # the bit (the probe raises if a thread ran unpinned)
    assert sorted(c for g in flipped["groups"] for c in g) == CHECKED
    health = {h["cpu"]: h for h in report["health"]}
    if len(CHECKED) >= 3:
        assert report["verdict"] == "deviates" and flipped["deviating"] == [FLIP_CPU]
        assert report["summary"] == (f"CPU {FLIP_CPU} deviates from the others on probes sim.mercurial: "
                                     "suspect a defective core")
        assert health[FLIP_CPU]["health"] == "suspect"
        assert all(h["health"] == "healthy" for cpu, h in health.items() if cpu != FLIP_CPU)
    else:
        assert report["verdict"] == "undecided" and flipped["status"] == "split"
        assert report["summary"].startswith(f"CPUs {CHECKED[0]} and {CHECKED[1]} disagree on probes sim.mercurial: "
                                            "with 2 CPUs a vote cannot say which one is wrong")
        assert "3 or more CPUs" in report["summary"]
        assert {h["health"] for h in health.values()} == {"undecided"}


def test_a_healthy_machine_agrees_with_every_thread_pinned(tensorflow_required: None, mercurial_module: Path) -> None:
    """No flip (FLIP_CPU names no CPU): the hardware probes and the canaries agree bitwise on every
    CPU, and the simulated probes ran (they raise when any thread of their process is not pinned)."""
    if FLIP_CPU is None:
        pytest.skip("needs 2 or more CPUs to compare")
    proc = envlock_cli("cores", "--cpus", ",".join(map(str, ALLOWED[:2])), "--probe-module", str(mercurial_module),
                       "--jobs", "2", env=env_with(FLIP_CPU="-1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("all 2 CPUs agree on ") and "(bitwise, 1 run each)" in first
    assert "hw (7)" in proc.stdout and "sim (2)" in proc.stdout and "matmul (2)" in proc.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--cpus", "99999"], "is not a range of CPUs"),
    (["--cpus", str(max(ALLOWED) + 1)], "is not one this process may run on"),
    (["--cpus", "0,x"], "'x' is not a CPU number"),
    (["--probes", "no.such_probe"], "unknown probe(s): no.such_probe"),
    (["--repeat", "0"], "'--repeat'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    proc = envlock_cli("cores", *args)
    assert proc.returncode == 2, proc.stderr
    assert says in one_error_line(proc)


def test_a_probe_module_that_does_not_import_is_exit_2(tensorflow_required: None, tmp_path: Path) -> None:
    bad = tmp_path / "broken_probes.py"
    bad.write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    proc = envlock_cli("cores", "--cpus", str(ALLOWED[0]), "--probe-module", str(bad))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc)
    assert "broken_probes.py" in line and "RuntimeError: boom" in line


# ---- under the daemon: `watch --cores-every`, scraped by a real Prometheus with deploy/cores-alerts.yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prometheus(tmp: Path, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """A real Prometheus scraping the daemon every second, evaluating envlock's cores alerts."""
    require(shutil.which("prometheus") is not None, "prometheus (Debian package prometheus)")
    port = _free_port()
    config = tmp / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        rule_files: [{REPO_ROOT / "deploy" / "cores-alerts.yaml"}]
        scrape_configs:
          - job_name: envlock
            static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
    """), encoding="utf-8")
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log,
                            start_new_session=True)
    return proc, port


def _alerts(port: int) -> list[dict]:
    query = urllib.parse.quote('ALERTS{alertname="EnvlockSuspectCore",alertstate="firing"}')
    try:
        status, _, body = http_get(port, f"/api/v1/query?query={query}")
    except OSError:
        return []
    return json.loads(body)["data"]["result"] if status == 200 else []


def test_watch_exports_per_cpu_health_and_prometheus_fires_the_drain_alert(
        tensorflow_required: None, mercurial_module: Path, tmp_path: Path) -> None:
    if FLIP_CPU is None:
        pytest.skip("needs 2 or more CPUs to compare")
    golden = build_golden(tmp_path / "golden.json")
    cores = shlex.join([sys.executable, "-m", "envlock", "cores", "--json", "--cpus", ",".join(map(str, CHECKED)),
                        "--probe-module", str(mercurial_module), "--probes", "sim.mercurial,sim.steady"])
    daemon = Daemon(tmp_path, golden, "--verify-every", "0", "--cores-every", "1h", "--cores-command", cores,
                    env={**DAEMON_ENV, "FLIP_CPU": str(FLIP_CPU)})
    prometheus, prom_port = _prometheus(tmp_path, daemon.port)
    try:
        (check,) = wait_for(lambda: daemon.checks("cores"), what="the cores check", timeout=300, proc=daemon.proc,
                            log=daemon.log_path)
        assert check["outcome"] == "drift" and check["exit_code"] == 1, check
        healthy = {dict(labels)["cpu"]: value for (name, labels), value in daemon.metrics().items()
                   if name == "envlock_cpu_healthy"}
        bad = {str(FLIP_CPU)} if len(CHECKED) >= 3 else {str(c) for c in CHECKED}  # 2 CPUs: both undecided
        assert healthy == {str(c): 0.0 if str(c) in bad else 1.0 for c in CHECKED}
        assert daemon.get("/healthz")[0] == 200  # the node's reproducibility is the golden's business
        assert "envlock.cores-healthy=false" in daemon.nfd_path.read_text()
        assert daemon.status()["last"]["cores"]["cpus"] == [
            {"cpu": c, "health": "healthy" if str(c) not in bad else "suspect" if len(CHECKED) >= 3 else "undecided"}
            for c in CHECKED]
        firing = wait_for(lambda: {a["metric"]["cpu"] for a in _alerts(prom_port)} or None,
                          what="Prometheus to fire EnvlockSuspectCore", timeout=60, proc=prometheus)
        assert firing == bad
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        assert daemon.stop() == 0
