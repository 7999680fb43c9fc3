"""`envlock watch` with the REAL verify check (TensorFlow in a child) against the session golden.

Two daemons, one TF child each (~15 s): one in the golden's environment (reproduces), one with
oneDNN switched on (the fingerprint check sees the variable at once, the verify check sees the
probes move). The daemon itself must never map TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.environ import is_allowed
from tests.helpers import DAEMON_ENV, wait_for

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _env_of(golden: Path, **extra: str) -> dict[str, str]:
    """The daemon's environment: this one with its numerics variables replaced by the golden's."""
    recorded = json.loads(golden.read_text())["manifest"]["environment"]
    return {**{k: v for k, v in DAEMON_ENV.items() if not is_allowed(k)}, **recorded, **extra}


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_real_verify_reproduces_and_reports_per_probe_metrics(golden_path: Path, daemons) -> None:
    daemon = daemons(golden_path, "--verify-every", "6h", "--verify-timeout", "10m", env=_env_of(golden_path))
    [check] = wait_for(lambda: daemon.checks("verify"), what="the real verify check", timeout=600,
                       proc=daemon.proc, log=daemon.log_path)
    assert check["outcome"] == "pass", check
    assert daemon.get("/healthz") == (200, "ok\n")
    golden = json.loads(golden_path.read_text())
    recorded = {p["name"] for p in golden["probes"] if p["status"] != "skipped"}
    metrics = daemon.metrics()
    ulp = {dict(labels)["probe"]: v for (name, labels), v in metrics.items() if name == "envlock_probe_max_ulp"}
    assert recorded <= set(ulp) and all(v == 0 for v in ulp.values())
    assert metrics[("envlock_check_ok", (("kind", "verify"),))] == 1
    assert "envlock.reproduces=true" in daemon.nfd_path.read_text()
    assert "tensorflow" not in _maps(daemon.proc.pid)  # TF ran in the child only
    assert daemon.stop() == 0


def test_real_verify_sees_onednn_drift(golden_path: Path, daemons) -> None:
    # flip what the golden actually ran with (TF picks the default from the CPU's ISA)
    onednn_was_on = json.loads(golden_path.read_text())["manifest"]["tensorflow"]["onednn_enabled"]
    flipped = "0" if onednn_was_on else "1"
    daemon = daemons(golden_path, "--verify-every", "6h", "--verify-timeout", "10m",
                     env=_env_of(golden_path, TF_ENABLE_ONEDNN_OPTS=flipped))
    [fingerprint, *_] = wait_for(lambda: daemon.checks("fingerprint"), what="the fingerprint check")
    assert fingerprint["outcome"] == "drift" and "environment.TF_ENABLE_ONEDNN_OPTS" in fingerprint["drift"]
    [check] = wait_for(lambda: daemon.checks("verify"), what="the real verify check", timeout=600,
                       proc=daemon.proc, log=daemon.log_path)
    assert check["outcome"] == "drift", check
    assert any(path.startswith("probes.") for path in check["drift"])
    assert daemon.get("/healthz")[0] == 503
    metrics = daemon.metrics()
    moved = {dict(labels)["probe"] for (name, labels), v in metrics.items()
             if name == "envlock_probe_max_ulp" and v > 0}
    assert moved, "no probe moved with oneDNN flipped"
    drifted = {dict(labels)["path"] for (name, labels), v in metrics.items() if name == "envlock_drifted_field"}
    assert "environment.TF_ENABLE_ONEDNN_OPTS" in drifted and {f"probes.{p}" for p in moved} & drifted
    assert "envlock.reproduces=false" in daemon.nfd_path.read_text()
