"""`envlock watch` as a real process on loopback: health, metrics, drift and recovery, hung and
crashing verify children, SIGTERM, restart, bad input.

Goldens here are built from a real no-TF capture of this machine (the cheap check only reads the
manifest); the verify check is an injected probe command (--verify-command) that passes, hangs
or crashes. The one test with a real verify uses the session `golden_path` (test_watch_tf.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DAEMON_ENV, alive, build_golden, python_command, wait_for

PASS_REPORT = {"reproduces": True, "exit_code": 0, "golden_digest": None, "manifest_digest": None, "differences": [],
               "probes": [{"name": "matmul_f32", "status": "identical", "max_ulp": 0.0, "max_rel_error": 0.0,
                           "mismatched": 0, "reason": None, "causes": []}]}


@pytest.fixture()
def matching_golden(tmp_path: Path) -> Path:
    return build_golden(tmp_path / "golden.json")


# ---- serving ------------------------------------------------------------------------------


def test_serves_health_status_and_metrics(daemons, matching_golden: Path) -> None:
    daemon = daemons(matching_golden, "--verify-every", "0")
    wait_for(lambda: daemon.get("/healthz") == (200, "ok\n"), what="healthy")
    status = daemon.status()
    assert status["healthy"] is True and status["pid"] == daemon.proc.pid
    assert status["last"]["fingerprint"]["outcome"] == "pass"
    assert status["history"]["checks_by_kind"]["fingerprint"]["pass"] >= 1
    metrics = daemon.metrics()
    assert metrics[("envlock_check_ok", (("kind", "fingerprint"),))] == 1
    assert metrics[("envlock_checks_total", (("kind", "fingerprint"), ("outcome", "pass")))] >= 1
    assert metrics[("envlock_healthy", ())] == 1
    assert metrics[("process_resident_memory_bytes", ())] > 0
    features = daemon.nfd_path.read_text().splitlines()
    assert "envlock.healthy=true" in features and "envlock.reproduces=false" in features  # no verify ran
    assert all(e["event"] != "non-json" for e in daemon.events())
    assert daemon.get("/nope")[0] == 404


def test_drift_goes_503_with_the_reason_then_recovers(daemons, tmp_path: Path) -> None:
    golden = build_golden(tmp_path / "golden.json", environment={"TF_ENABLE_ONEDNN_OPTS": "1"})
    daemon = daemons(golden, "--verify-every", "0")
    code, body = wait_for(lambda: (r := daemon.get("/healthz"))[0] == 503 and r[1] != "no check yet\n" and r,
                          what="a drift verdict")
    assert body.startswith("fingerprint drift: environment.TF_ENABLE_ONEDNN_OPTS: 1 -> ")
    drifted = daemon.metrics()
    assert drifted[("envlock_drifted_field", (("kind", "fingerprint"), ("path", "environment.TF_ENABLE_ONEDNN_OPTS"),
                                              ("severity", "critical")))] == 1
    assert "envlock.healthy=false" in daemon.nfd_path.read_text()
    # the operator fixes the golden (atomic replace); the daemon re-reads it on change
    build_golden(tmp_path / "fixed.json")
    os.replace(tmp_path / "fixed.json", golden)
    wait_for(lambda: daemon.get("/healthz") == (200, "ok\n"), what="recovery")
    status = daemon.status()
    [event] = status["history"]["recent_drift_events"]
    assert event["path"] == "environment.TF_ENABLE_ONEDNN_OPTS" and event["resolved_at"] is not None
    assert status["current_drift"] == []
    assert any(e["event"] == "golden_reloaded" for e in daemon.events())
    assert "envlock.healthy=true" in daemon.nfd_path.read_text()


# ---- verify children that misbehave ---------------------------------------------------------


def test_hanging_verify_is_killed_and_recorded_while_serving(daemons, matching_golden: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = python_command(f"""
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        time.sleep(600)
    """)
    daemon = daemons(matching_golden, "--verify-every", "1h", "--verify-timeout", "3s", "--verify-command", hang)
    wait_for(pids.exists, what="the verify child")
    # while the child hangs, the daemon answers and keeps running fingerprint checks
    assert daemon.metrics()[("envlock_verify_running", ())] == 1
    n = len(daemon.checks("fingerprint"))
    wait_for(lambda: len(daemon.checks("fingerprint")) > n + 1, what="fingerprint checks during verify")
    [check] = wait_for(lambda: daemon.checks("verify"), what="the timeout")
    assert check["outcome"] == "timeout" and check["reason"] == "verify timed out after 3 s (killed)"
    assert daemon.get("/healthz")[0] == 503
    assert daemon.status()["last"]["verify"]["reason"] == "verify timed out after 3 s (killed)"
    child, grandchild = map(int, pids.read_text().split())
    wait_for(lambda: not alive(child) and not alive(grandchild), what="the verify process group to die", timeout=10)
    metrics = daemon.metrics()
    assert metrics[("envlock_checks_total", (("kind", "verify"), ("outcome", "timeout")))] == 1
    assert metrics[("envlock_verify_running", ())] == 0
    assert daemon.proc.poll() is None


def test_crashing_verify_is_recorded_as_an_error(daemons, matching_golden: Path) -> None:
    crash = python_command("""
        import os, sys
        sys.stderr.write("loading probes\\nprobe conv2d: segfault coming\\n"); sys.stderr.flush()
        os.kill(os.getpid(), 11)
    """)
    daemon = daemons(matching_golden, "--verify-every", "1h", "--verify-command", crash)
    [check] = wait_for(lambda: daemon.checks("verify"), what="the crash verdict")
    assert check["exit_code"] == -11 and check["outcome"] == "error"
    assert check["reason"] == "verify was killed by SIGSEGV: probe conv2d: segfault coming"
    assert daemon.get("/healthz")[0] == 503
    assert daemon.status()["last"]["verify"]["exit_code"] == -11
    n = len(daemon.checks("fingerprint"))
    wait_for(lambda: len(daemon.checks("fingerprint")) > n, what="the daemon to keep checking")
    assert "envlock.reproduces=false" in daemon.nfd_path.read_text()


def test_passing_verify_labels_the_node_as_reproducing(daemons, matching_golden: Path) -> None:
    ok = python_command(f"print({json.dumps(json.dumps(PASS_REPORT))})")
    daemon = daemons(matching_golden, "--verify-every", "1h", "--verify-command", ok)
    wait_for(lambda: daemon.checks("verify"), what="the verify check")
    assert daemon.get("/healthz") == (200, "ok\n")
    assert daemon.metrics()[("envlock_probe_ok", (("probe", "matmul_f32"),))] == 1
    features = daemon.nfd_path.read_text()
    assert "envlock.reproduces=true" in features and "envlock.verify=pass" in features
    assert "# +expiry-time=" in features


# ---- lifecycle ------------------------------------------------------------------------------


def test_sigterm_exits_0_kills_verify_and_history_survives_restart(daemons, matching_golden: Path,
                                                                   tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = python_command(f"""
        import os, time
        open({str(pids)!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    """)
    first = daemons(matching_golden, "--verify-every", "1h", "--verify-command", hang, name="first")
    wait_for(lambda: pids.exists() and len(first.checks("fingerprint")) >= 2, what="checks and a running verify")
    before = first.status()["history"]["checks_by_kind"]["fingerprint"]["pass"]
    assert first.stop(signal.SIGTERM) == 0
    wait_for(lambda: not alive(int(pids.read_text())), what="the verify child to be killed", timeout=10)
    assert [e["event"] for e in first.events()][-3:] == ["stopping", "verify_abandoned", "stopped"]
    # restart on the same state dir: the history is still there and keeps growing
    second = daemons(matching_golden, "--verify-every", "0", name="second", state_dir=first.state_dir)
    wait_for(lambda: second.get("/healthz")[0] == 200, what="the restarted daemon")
    history = second.status()["history"]
    assert history["checks_by_kind"]["fingerprint"]["pass"] > before
    assert "verify" not in history["checks_by_kind"]  # the abandoned verify was not recorded
    last_before = max(e["check_id"] for e in first.checks())
    assert min(e["check_id"] for e in second.checks()) == last_before + 1  # ids continue: same database
    assert second.stop(signal.SIGINT) == 0


def test_kill_9_loses_no_recorded_check(daemons, matching_golden: Path) -> None:
    daemon = daemons(matching_golden, "--verify-every", "0")
    wait_for(lambda: len(daemon.checks()) >= 4, what="a few checks")
    daemon.proc.kill()
    daemon.proc.wait(timeout=30)
    logged = {e["check_id"] for e in daemon.checks()}
    conn = sqlite3.connect(daemon.state_dir / "history.sqlite3")
    stored = {row[0] for row in conn.execute("SELECT id FROM checks")}
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert logged <= stored  # every check the daemon announced is on disk


def test_once_exits_0_when_healthy_and_1_on_drift(matching_golden: Path, tmp_path: Path) -> None:
    ok = python_command(f"print({json.dumps(json.dumps(PASS_REPORT))})")
    base = [sys.executable, "-m", "envlock", "watch", "--once", "--verify-command", ok]
    proc = subprocess.run([*base, "--golden", str(matching_golden), "--state-dir", str(tmp_path / "s1")],
                          capture_output=True, text=True, env=DAEMON_ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("fingerprint  pass") and proc.stdout.endswith("HEALTHY\n")
    drifted = build_golden(tmp_path / "drifted.json", environment={"OMP_NUM_THREADS": "1"})
    proc = subprocess.run([*base, "--golden", str(drifted), "--state-dir", str(tmp_path / "s2")],
                          capture_output=True, text=True, env=DAEMON_ENV, timeout=120)
    assert proc.returncode == 1
    checks = [json.loads(line) for line in proc.stderr.splitlines() if '"event": "check"' in line]
    assert checks[0]["reason"].startswith("environment.OMP_NUM_THREADS: 1 -> ")
    summary = proc.stdout.splitlines()  # the one answer a person reads; the JSON log stays on stderr
    assert summary[0].startswith("fingerprint  drift    environment.OMP_NUM_THREADS: 1 -> ")
    assert summary[-1].startswith("NOT HEALTHY: fingerprint drift: environment.OMP_NUM_THREADS")


# ---- bad input ------------------------------------------------------------------------------


def _run_watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envlock", "watch", *args], capture_output=True, text=True,
                          env=DAEMON_ENV, timeout=60)


@pytest.fixture()
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--fingerprint-every", "5q"], "--fingerprint-every '5q': expected a duration"),
    (["--verify-timeout", "0"], "--verify-timeout '0': must be between 0.1s and 30d"),
    (["--fingerprint-every", "99999999999999999999d"], "must be between 0.1s and 30d"),
    (["--listen", "127.0.0.1:19_145"], "is not a number"),
    (["--listen", "*:9109"], "is not a host name"),
    (["--listen", "nowhere"], "--listen 'nowhere': expected HOST:PORT"),
    (["--bogus"], "No such option: --bogus"),
    (["--listen"], "requires an argument"),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str, matching_golden: Path,
                                        tmp_path: Path) -> None:
    proc = _run_watch("--golden", str(matching_golden), "--state-dir", str(tmp_path), *args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("envlock: error: ")
    assert message in proc.stderr


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ('{"kind": "envlock.golden", "schema_version": 1, ', "truncated JSON"),
    ('{"kind": "envlock.manifest", "schema_version": 1}', "not an envlock.golden file"),
])
def test_unreadable_golden_exits_2_before_binding_the_port(content: str | None, message: str, tmp_path: Path,
                                                            busy_port: int) -> None:
    golden = tmp_path / "golden.json"
    if content is not None:
        golden.write_text(content)
    proc = _run_watch("--golden", str(golden), "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{busy_port}")
    assert proc.returncode == 2  # not 3: the golden is checked before the (busy) port
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_tampered_golden_exits_2(matching_golden: Path, tmp_path: Path) -> None:
    data = json.loads(matching_golden.read_text())
    data["manifest"]["environment"]["TF_ENABLE_ONEDNN_OPTS"] = "1"
    matching_golden.write_text(json.dumps(data))
    proc = _run_watch("--golden", str(matching_golden), "--state-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "integrity" in proc.stderr


def test_missing_golden_option_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in DAEMON_ENV.items() if k != "ENVLOCK_GOLDEN"}
    proc = subprocess.run([sys.executable, "-m", "envlock", "watch", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "envlock: error: no golden given: pass --golden FILE or set ENVLOCK_GOLDEN\n"


def test_busy_port_exits_3_with_one_line(matching_golden: Path, tmp_path: Path, busy_port: int) -> None:
    proc = _run_watch("--golden", str(matching_golden), "--state-dir", str(tmp_path),
                      "--listen", f"127.0.0.1:{busy_port}")
    assert proc.returncode == 3
    assert proc.stderr == f"envlock: error: cannot listen on 127.0.0.1:{busy_port}: address already in use\n"


# ---- a full disk ----------------------------------------------------------------------------


@pytest.fixture()
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (root only), unmounted after it."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30, check=False)


def test_a_full_disk_is_reported_as_such_and_the_daemon_keeps_serving(daemons, matching_golden: Path,
                                                                      tiny_tmpfs: Path) -> None:
    """SQLite rolls back on a full disk itself; the history said "cannot rollback - no transaction
    is active" instead of what happened. Now: the real error, one line, and checks go on."""
    daemon = daemons(matching_golden, "--verify-every", "0", state_dir=tiny_tmpfs / "state")
    wait_for(lambda: daemon.get("/healthz") == (200, "ok\n"), what="healthy")
    with open(tiny_tmpfs / "filler", "wb") as filler:  # noqa: PTH123 - written until the disk is full
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    failed = wait_for(lambda: next((e for e in daemon.events() if e.get("event") == "history_write_failed"), None),
                      what="a failed history write", proc=daemon.proc, log=daemon.log_path)
    assert "database or disk is full" in failed["error"], failed
    assert "cannot rollback" not in daemon.log_path.read_text()
    assert "\n" not in failed["error"]
    assert daemon.get("/healthz") == (200, "ok\n")  # the machine is fine; /status says why nothing is recorded
    assert "database or disk is full" in daemon.status()["history_error"]
    (tiny_tmpfs / "filler").unlink()
    wait_for(lambda: daemon.status()["history_error"] is None, what="recording again once there is space")
    assert daemon.stop() == 0
