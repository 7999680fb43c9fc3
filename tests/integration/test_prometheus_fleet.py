"""A REAL Prometheus (Debian's package) scraping two `envlock watch` daemons on loopback, with the
rules of deploy/prometheus-rules.yaml, and `envlock fleet --prometheus` reading it (issue 20).

The golden has one probe, matmul.f32, recorded here with real TensorFlow. One daemon runs in the
golden's environment, the other with TF_ENABLE_ONEDNN_OPTS flipped against what the golden ran
with: oneDNN on or off moves matmul.f32 on both recorded vendors (tests/integration/test_verify.py),
so its verify reports another numeric class. The recording rule gives 2; the flipped daemon is
restarted without the flip, on the same port and state directory (so the same Prometheus
instance, and a restart that must not reuse the old verify), and the rule gives 1, while the
class-change alert fires for that instance only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envlock.environ import is_allowed
from envlock.fleet import prometheus as fleet_prometheus
from tests.helpers import DAEMON_ENV, REPO_ROOT, Daemon, envlock_cli, require, tail, wait_for

pytestmark = [pytest.mark.tf, pytest.mark.slow]

RULES = REPO_ROOT / "deploy" / "prometheus-rules.yaml"
RULES_TEST = Path(__file__).parent / "prometheus" / "rules_test.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"Debian's {name} (scripts/install-prometheus.sh)")
    assert path is not None
    return path


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 4 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


# ---- a real Prometheus -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:  # noqa: S310 - loopback
            data = json.loads(response.read())
        assert data["status"] == "success", data
        return data["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("/api/v1/query", query=promql)["result"]
        return result

    def scalar(self, promql: str, **labels: str) -> float | None:
        """The value of the one sample of ``promql`` with these labels (None: no such sample)."""
        matching = [s for s in self.query(promql) if all(s["metric"].get(k) == v for k, v in labels.items())]
        assert len(matching) <= 1, matching
        return float(matching[0]["value"][1]) if matching else None


def start_prometheus(tmp: Path, targets: list[str], started: list[Any]) -> Prometheus:
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "envlock", "static_configs": [{"targets": targets}]}],
    }))
    port = _free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    prometheus = Prometheus(proc, f"http://127.0.0.1:{port}", log)
    started.append(prometheus)  # killed by the fixture even if it never gets ready

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(ready, what="Prometheus to be ready", timeout=60, proc=proc, log=log)
    return prometheus


class _Daemon(Daemon):
    """A Daemon in ``started`` before it starts: killed at the end even if it never starts listening."""

    def __init__(self, started: list[Any], *args: Any, **kwargs: Any) -> None:
        started.append(self)
        super().__init__(*args, **kwargs)


@pytest.fixture()
def processes() -> Iterator[list[Any]]:
    """Every daemon and Prometheus the test starts, killed (with their process groups) at the end."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for thing in reversed(started):
            proc = getattr(thing, "proc", None)  # None: Popen itself failed
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture(scope="module")
def one_probe_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A golden of matmul.f32 alone, recorded here with real TensorFlow in the daemons' environment."""
    path = tmp_path_factory.mktemp("golden") / "matmul.json"
    proc = envlock_cli("capture", "--golden", "--probes", "matmul.f32", "--repeat", "1", "-o", str(path),
                       env=DAEMON_ENV, timeout=600)
    assert proc.returncode == 0, tail(proc.stderr)
    return path


def _env_of(golden: Path, **extra: str) -> dict[str, str]:
    recorded = json.loads(golden.read_text())["manifest"]["environment"]
    return {**{k: v for k, v in DAEMON_ENV.items() if not is_allowed(k)}, **recorded, **extra}


def _class_of(daemon: Daemon) -> dict[str, Any] | None:
    numeric: dict[str, Any] | None = daemon.status()["numeric_class"]
    return numeric


def _cli_classes(stdout: str) -> dict[str, list[str]]:
    """``envlock fleet --json``'s classes and their machines' hostnames (the scrape targets)."""
    report = json.loads(stdout)
    return {c["numeric_class"]: sorted(m.rsplit("@", 1)[0] for m in c["machines"])
            for g in report["groups"] for c in g["classes"]}


def test_a_real_prometheus_counts_two_classes_then_one(one_probe_golden: Path, tmp_path: Path, processes) -> None:
    t0 = time.monotonic()
    golden = json.loads(one_probe_golden.read_text())
    flipped = "0" if golden["manifest"]["tensorflow"]["onednn_enabled"] else "1"
    common = ("--verify-every", "1h", "--verify-timeout", "5m")
    plain = _Daemon(processes, tmp_path, one_probe_golden, *common, name="plain", state_dir=tmp_path / "plain-state",
                    env=_env_of(one_probe_golden))
    flip_state = tmp_path / "flip-state"
    flip = _Daemon(processes, tmp_path, one_probe_golden, *common, name="flip", state_dir=flip_state,
                   env=_env_of(one_probe_golden, TF_ENABLE_ONEDNN_OPTS=flipped))
    plain_at, flip_at = f"127.0.0.1:{plain.port}", f"127.0.0.1:{flip.port}"
    prometheus = start_prometheus(tmp_path, [plain_at, flip_at], processes)

    # each daemon's first verify (a TensorFlow child each) reports its class
    plain_class = wait_for(lambda: _class_of(plain), what="the plain daemon's class", timeout=300,
                           proc=plain.proc, log=plain.log_path)
    flip_class = wait_for(lambda: _class_of(flip), what="the flipped daemon's class", timeout=300,
                          proc=flip.proc, log=flip.log_path)
    assert plain_class["class"] == golden["numeric_class"] and plain_class["matches_golden"] is True
    assert flip_class["class"] != plain_class["class"] and flip_class["golden_class"] == golden["numeric_class"]
    wait_for(lambda: f"envlock.numeric-class={flip_class['class']}\n" in flip.nfd_path.read_text(),
             what="the flipped node's NFD class label")

    wait_for(lambda: prometheus.scalar("envlock_numeric_classes:count") == 2, what="the rule to give 2 classes",
             timeout=60, proc=prometheus.proc, log=prometheus.log)
    assert prometheus.scalar("profile:envlock_numeric_classes:count", profile="default") == 2
    assert prometheus.scalar("golden_profile:envlock_numeric_classes:count", digest=golden["digest"]) == 2
    series = {s["metric"]["instance"]: s["metric"]["class"] for s in prometheus.query("envlock_numeric_class")}
    assert series == {plain_at: plain_class["class"], flip_at: flip_class["class"]}  # one series per node

    fleet = fleet_prometheus.read_prometheus(prometheus.url)
    assert {row.node.instance: row.numeric_class for row in fleet.rows} == series
    assert {row.golden_digest for row in fleet.rows} == {golden["digest"]}
    assert list(fleet.classes()) == ["default"] and len(fleet.classes()["default"]) == 2
    cli = envlock_cli("fleet", "--prometheus", prometheus.url, "--json", timeout=120)
    assert cli.returncode == 1, cli.stderr  # one group (the scraped nodes), two classes
    assert _cli_classes(cli.stdout) == {plain_class["class"]: [plain_at], flip_class["class"]: [flip_at]}

    # the flipped node runs without the flip again: same port (same Prometheus instance), same state
    # directory, whose fresh verify it must not reuse, as the machine changed across the restart
    assert flip.stop() == 0
    flip = _Daemon(processes, tmp_path, one_probe_golden, *common, "--listen", flip_at, name="unflipped",
                   state_dir=flip_state, env=_env_of(one_probe_golden))
    assert flip.port == int(flip_at.rsplit(":", 1)[1])
    wait_for(lambda: (c := _class_of(flip)) and c["class"] == plain_class["class"], what="the class without the flip",
             timeout=300, proc=flip.proc, log=flip.log_path)
    assert any(e["event"] == "not_restored" for e in flip.events())

    wait_for(lambda: prometheus.scalar("envlock_numeric_classes:count") == 1
             and len(prometheus.query("envlock_numeric_class")) == 2,
             what="the rule to give 1 class over both nodes", timeout=60, proc=prometheus.proc, log=prometheus.log)
    assert prometheus.scalar("profile:envlock_numeric_classes:count", profile="default") == 1
    assert prometheus.scalar("golden_profile:envlock_numeric_classes:count", digest=golden["digest"]) == 1

    # the alert: the flipped instance had two classes within 15 minutes, the other one did not
    def firing() -> list[str]:
        alerts = prometheus.api("/api/v1/alerts")["alerts"]
        return sorted(a["labels"]["instance"] for a in alerts
                      if a["labels"]["alertname"] == "EnvlockNumericClassChanged" and a["state"] == "firing")

    wait_for(lambda: firing() == [flip_at], what="the class-change alert for the flipped node", timeout=60)
    after = fleet_prometheus.read_prometheus(prometheus.url)
    assert {row.numeric_class for row in after.rows} == {plain_class["class"]} and len(after.rows) == 2
    cli = envlock_cli("fleet", "--prometheus", prometheus.url, "--json", timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert _cli_classes(cli.stdout) == {plain_class["class"]: sorted([plain_at, flip_at])}
    print(f"real Prometheus fleet test: {time.monotonic() - t0:.1f} s")  # noqa: T201

