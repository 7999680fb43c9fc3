"""One example-based regression test per class of docs/untrusted-input.md, next to the properties that hunt for
more of each. Real files, FIFOs, processes and sockets; subprocesses with timeouts (no hang)."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from envlock.errors import EnvlockError
from envlock.locking import lockdown
from tests.fuzz.helpers import CHEAP_PROBE, GOLDEN_DATA, Raw, deep, dump, reseal, run_cli
from tests.helpers import REFERENCE_GOLDEN, env_with


def _golden(tmp_path: Path, changes: dict[tuple[Any, ...], Any], name: str = "golden.json") -> Path:
    data = copy.deepcopy(GOLDEN_DATA)
    for path, value in changes.items():
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    target = tmp_path / name
    raw = any(isinstance(v, Raw) for v in changes.values())
    target.write_bytes(dump(data if raw else reseal(data, inner=("manifest", "digest") not in changes)))
    return target


def _verify(golden: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(["verify", str(golden), "--probes", CHEAP_PROBE, *extra])


# 1 ------------------------------------------------------------ a golden can run code


@pytest.mark.parametrize("name", ["PYTHONPATH", "LD_PRELOAD"])
def test_class1_golden_environment_outside_the_allow_list_is_refused(tmp_path: Path, name: str) -> None:
    golden = _golden(tmp_path, {("lockdown", "environment", name): str(tmp_path)})
    assert _verify(golden, "--golden-env")[0] == 2
    build = run_cli(["build", "--golden", str(golden), "--context-only", str(tmp_path / "ctx")],
                    env=env_with(PIP_NO_INDEX="1", ENVLOCK_CACHE_DIR=str(tmp_path / "cache")))
    assert build[0] == 2

    before = os.environ.get(name)
    with pytest.raises(EnvlockError):
        lockdown(golden=golden)
    assert os.environ.get(name) == before


# 2 ------------------------------------------------------------ the atomic writer and special files


def test_class2_capture_o_onto_a_fifo_keeps_the_fifo_and_long_names_work(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    run_cli(["capture", "--no-tf", "-o", str(fifo)], timeout=30)
    assert fifo.is_fifo()
    long_name = tmp_path / ("g" * 250 + ".json")
    assert run_cli(["capture", "--no-tf", "-o", str(long_name)])[0] == 0


# 3 ------------------------------------------------------------ secrets in values


def test_class3_credentials_and_home_are_redacted_from_the_manifest(tmp_path: Path) -> None:
    home = str(Path.home())
    env = env_with(XLA_FLAGS=f"--xla_dump_to=https://alice:hunter2@example.com/d?token=tok123 {home}/dumps")
    code, out, _ = run_cli(["capture", "--no-tf", "--json"], env=env)
    assert code == 0
    assert "hunter2" not in out and "tok123" not in out
    assert f"{home}/dumps" not in out


# 4 ------------------------------------------------------------ tracebacks and unbounded reads


def test_class4_deep_nesting_is_one_line(tmp_path: Path) -> None:
    nested = tmp_path / "deep.json"
    nested.write_bytes(dump(deep(100_000)))
    assert run_cli(["diff", str(nested), str(nested)])[0] == 2
    assert _verify(_golden(tmp_path, {("lockdown", "seed"): deep(100_000)}))[0] == 2


def test_class4_dev_zero_is_refused_in_bounded_memory() -> None:
    assert run_cli(["diff", "/dev/zero", "/dev/zero"], timeout=60)[0] == 2


def test_class4_broken_base64_and_negative_threads_are_bad_goldens(tmp_path: Path) -> None:
    broken = _golden(tmp_path, {("probes", 0, "outputs", 0, "sample_b64"): "!!!not base64"}, "b64.json")
    assert _verify(broken)[0] == 2
    negative = _golden(tmp_path, {("lockdown", "intra_op_threads"): -1}, "threads.json")
    assert _verify(negative)[0] == 2


def test_class4_binary_requirements_and_huge_intervals(tmp_path: Path) -> None:
    binary = tmp_path / "requirements.lock"
    binary.write_bytes(b"\xff\xfe\x00tensorflow\x80")
    code, _, _ = run_cli(["build", "--golden", str(REFERENCE_GOLDEN), "--context-only", str(tmp_path / "ctx"),
                          "-r", str(binary)], env=env_with(PIP_NO_INDEX="1", ENVLOCK_CACHE_DIR=str(tmp_path / "c")))
    assert code == 2
    code, _, _ = run_cli(["watch", "--golden", str(REFERENCE_GOLDEN), "--once", "--verify-every", "0",
                          "--fingerprint-every", "1e40s", "--state-dir", str(tmp_path / "st")])
    assert code == 2


# 5 ------------------------------------------------------------ hangs


@pytest.mark.parametrize("command", ["diff", "verify", "build", "watch"])
def test_class5_a_fifo_as_input_is_refused_not_waited_on(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "golden.fifo"
    os.mkfifo(fifo)
    args = {"diff": ["diff", str(fifo), str(REFERENCE_GOLDEN)], "verify": ["verify", str(fifo)],
            "build": ["build", "--golden", str(fifo), "--context-only", str(tmp_path / "ctx")],
            "watch": ["watch", "--golden", str(fifo), "--once", "--state-dir", str(tmp_path / "st")]}[command]
    assert run_cli(args, timeout=30)[0] == 2


def test_class5_repeat_is_capped(tmp_path: Path) -> None:
    assert run_cli(["verify", str(REFERENCE_GOLDEN), "--probes", "rng.numpy_legacy", "--repeat", "1000000000"],
                   timeout=30)[0] == 2
    assert run_cli(["verify", str(_golden(tmp_path, {("repeat",): 10**9})), "--probes", "rng.numpy_legacy"],
                   timeout=30)[0] == 2


def test_class5_a_docker_socket_that_never_answers_is_exit_3(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (the kernel does) and never answers
        port = silent.getsockname()[1]
        code, _, _ = run_cli(["build", "--golden", str(REFERENCE_GOLDEN)], timeout=120,
                             env=env_with(DOCKER_HOST=f"tcp://127.0.0.1:{port}", PIP_NO_INDEX="1",
                                          ENVLOCK_CACHE_DIR=str(tmp_path / "cache")))
    assert code == 3


# 6 ------------------------------------------------------------ orphans


@pytest.mark.tf
def test_class6_probe_child_dies_with_a_killed_verify(tensorflow_required: None, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "verify", str(REFERENCE_GOLDEN), "--probes",
                             "rng.numpy_legacy"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while not parent.children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    children = parent.children(recursive=True)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=15)
    for leftover in alive:
        leftover.kill()
    assert not alive, f"probe children outlived a SIGKILLed verify: {[p.pid for p in alive]}"


# 7 ------------------------------------------------------------ the daemon dies or lies


def test_class7_daemon_survives_a_pathological_golden_swap_and_honours_sigterm(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    golden.write_bytes(REFERENCE_GOLDEN.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "envlock", "watch", "--golden", str(golden), "--listen",
                             "127.0.0.1:0", "--fingerprint-every", "0.2s", "--verify-every", "0", "--state-dir",
                             str(tmp_path / "st")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        listen = None
        deadline = time.monotonic() + 60
        while listen is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith("{") and json.loads(line).get("event") == "started":
                listen = json.loads(line)["listen"]
        assert listen, "the daemon did not start"
        swap = tmp_path / "swap.json"
        swap.write_bytes(dump(deep(100_000)))
        os.replace(swap, golden)
        time.sleep(3)
        assert proc.poll() is None, "the daemon died when its golden was replaced by a pathological file"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# 8 ------------------------------------------------------------ wrong exit codes


@pytest.mark.parametrize("change", [
    {("repeat",): "2"}, {("lockdown", "seed"): "42"}, {("lockdown", "op_determinism"): 1},
    {("manifest", "schema_version"): "1"}, {("manifest", "schema_version"): 99}, {("probes",): []},
    {("manifest", "digest"): "sha256:" + "0" * 64}, {("lockdown", "seed"): 2**64},
], ids=["repeat-str", "seed-str", "determinism-int", "nested-version-str", "nested-version-99", "no-probes",
        "bogus-manifest-digest", "seed-out-of-range"])
def test_class8_strictly_validated_goldens_exit_2(tmp_path: Path, change: dict[tuple[Any, ...], Any]) -> None:
    golden = _golden(tmp_path, change)
    args = ["verify", str(golden)] + ([] if ("probes",) in change else ["--probes", CHEAP_PROBE])
    assert run_cli(args)[0] == 2


@pytest.mark.parametrize("listen", ["127.0.0.1:19_145", "127.0.0.1:１９１４５", "127.0.0.1: 9109", "999.1.1.1:9109"])
def test_class8_malformed_listen_is_exit_2(tmp_path: Path, listen: str) -> None:
    code, _, _ = run_cli(["watch", "--golden", str(REFERENCE_GOLDEN), "--listen", listen, "--verify-every", "0",
                          "--state-dir", str(tmp_path / "st")], timeout=30)
    assert code == 2


# 9 ------------------------------------------------------------ messages


def test_class9_control_characters_in_a_path_stay_on_one_line(tmp_path: Path) -> None:
    odd = tmp_path / "a\nb\x1b[31m.json"
    odd.write_text("not json")
    _, _, err = run_cli(["diff", str(odd), str(odd)])
    assert "\x1b" not in err
