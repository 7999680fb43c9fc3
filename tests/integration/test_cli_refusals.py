"""The real CLI, in a fresh process, refusing hostile input (docs/untrusted-input.md): one line on stderr, exit 2
(3 for an absent Docker), before any work -- no TensorFlow, no pip, no Docker, nothing written.

A fresh process is the point: the exit status and the bytes a terminal gets, and a hang or an
unbounded read fails the test (``run_envlock``'s time and memory limits) instead of the session.
What each refusal rests on is unit-tested in tests/unit/test_hostile_*.py and test_strict_goldens.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from envlock.errors import BAD_INPUT
from tests.helpers import (
    COERCIONS,
    GOLDEN_MUTATIONS,
    HOSTILE_DISTRIBUTIONS,
    REFERENCE_GOLDEN,
    XLA_FLAGS_NEEDING_REDACTION,
    assert_no_secret,
    env_with,
    envlock_cli,
    evil_package,
    make_manifest,
    one_error_line,
    real_golden_data,
    reseal,
    run_envlock,
    with_distribution,
    write_golden,
    write_hostile_golden,
    write_json,
)

# ---------------------------------------------------------------- files that are not regular files (class 5)


@pytest.mark.parametrize("command", [["verify"], ["diff", str(REFERENCE_GOLDEN)], ["build", "--context-only", "CTX",
                                                                             "--golden"]])
def test_cli_commands_refuse_a_fifo_golden_in_one_line(tmp_path: Path, command: list[str]) -> None:
    fifo = tmp_path / "golden.json"
    os.mkfifo(fifo)
    args = [str(tmp_path / "ctx") if a == "CTX" else a for a in command]
    proc = run_envlock(*args, str(fifo), timeout=60)
    assert proc.returncode == BAD_INPUT
    assert "is a FIFO (named pipe), not a regular file" in one_error_line(proc)


def test_build_reads_a_bad_requirements_file_before_anything_else(tmp_path: Path) -> None:
    golden = write_json(tmp_path / "golden.json", real_golden_data())
    fifo = tmp_path / "requirements.lock"
    os.mkfifo(fifo)
    proc = run_envlock("build", "--golden", str(golden), "-r", str(fifo), "--context-only", str(tmp_path / "ctx"))
    assert proc.returncode == BAD_INPUT and "is a FIFO" in one_error_line(proc)
    assert not (tmp_path / "ctx").exists()


def test_cli_refuses_a_socket_output_before_doing_any_work(tmp_path: Path, unix_socket: Path) -> None:
    proc = run_envlock("verify", str(REFERENCE_GOLDEN), "--report", str(unix_socket))
    assert proc.returncode == BAD_INPUT and "is a socket" in one_error_line(proc)
    proc = run_envlock("capture", "--no-tf", "-o", str(unix_socket))
    assert proc.returncode == BAD_INPUT and "is a socket" in one_error_line(proc)
    assert stat.S_ISSOCK(os.lstat(unix_socket).st_mode)


# ---------------------------------------------------------------- one line, whatever a path holds (class 9)


HOSTILE_NAMES = {
    "newline": "a\nb.json",
    "carriage return": "a\rb.json",
    "escape sequence": "\x1b[2J\x1b[31mred.json",
    "unicode line separator": "a\u2028b\u2029c.json",
    "next line": "a\x85b.json",
    "file separator": "a\x1cb.json",
    "bidi override": "a\u202eb.json",
    "tab and nul-free controls": "a\tb\x07c.json",
}


@pytest.mark.parametrize(("name", "command"), [(name, ("verify", "diff", "report")[i % 3])
                                                for i, name in enumerate(sorted(HOSTILE_NAMES))])
def test_a_path_with_control_characters_gives_one_escaped_line(tmp_path: Path, name: str, command: str) -> None:
    path = tmp_path / HOSTILE_NAMES[name]
    args = {"verify": ["verify", str(path)], "diff": ["diff", str(path), str(REFERENCE_GOLDEN)],
            "report": ["verify", str(REFERENCE_GOLDEN), "--report", str(tmp_path / "no-such-dir" / path.name)]}[command]
    proc = run_envlock(*args)
    assert proc.returncode == BAD_INPUT
    line = one_error_line(proc)
    assert "\x1b" not in line and "\u202e" not in line


def test_a_path_that_is_not_utf8_gives_one_line(tmp_path: Path) -> None:
    path = os.fsencode(tmp_path) + b"/bad\xff\xfe\nname.json"
    proc = run_envlock("verify", path)
    assert proc.returncode == BAD_INPUT
    assert "bad\\xff\\xfe\\nname.json: no such file" in one_error_line(proc)


def test_a_field_name_with_a_newline_in_a_golden_gives_one_line(tmp_path: Path) -> None:
    data = real_golden_data()
    data["lockdown"]["bad\nkey\u2028"] = 1
    path = write_json(tmp_path / "golden.json", reseal(data))
    proc = run_envlock("verify", str(path))
    assert proc.returncode == BAD_INPUT and "bad\\nkey\\u2028" in one_error_line(proc)


def test_a_bad_option_value_with_a_newline_gives_one_line() -> None:
    proc = run_envlock("verify", str(REFERENCE_GOLDEN), "--tolerance", "ulp:\nx\x1b")
    assert proc.returncode == BAD_INPUT
    one_error_line(proc)


# ---------------------------------------------------------------- forged goldens (classes 4 and 8)


def test_verify_refuses_a_string_repeat_instead_of_reproducing(tmp_path: Path) -> None:
    data = real_golden_data()
    COERCIONS["repeat as a string"](data)
    proc = run_envlock("verify", str(write_json(tmp_path / "golden.json", reseal(data))))
    assert proc.returncode == BAD_INPUT and "field 'repeat'" in one_error_line(proc)


@pytest.mark.parametrize(("mutation", "expected"), [
    ("seed 2**32", "lockdown.seed"), ("no probes", "probes"), ("bogus manifest digest", "manifest's digest"),
    ("nested schema_version 99", "manifest.schema_version"), ("base64 with bad characters", "base64"),
    ("negative intra-op threads", "intra_op_threads"),
])
def test_verify_refuses_a_forged_golden_before_tensorflow(tmp_path: Path, mutation: str, expected: str) -> None:
    data = real_golden_data()
    GOLDEN_MUTATIONS[mutation](data)
    path = write_json(tmp_path / "golden.json", reseal(data))
    proc = run_envlock("verify", str(path))  # before the fix: exit 0 (REPRODUCES) or 3 (TF child crashed)
    assert proc.returncode == BAD_INPUT
    assert expected in one_error_line(proc)


# ---------------------------------------------------------------- a golden's values (classes 1 and 3)


def _build_context_only(golden: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """`envlock build --context-only` of ``golden``: the run, the context directory and the cache."""
    context, cache = tmp_path / "ctx", tmp_path / "cache"
    proc = envlock_cli("build", "--golden", str(golden), "--context-only", str(context),
                       env=env_with(ENVLOCK_CACHE_DIR=str(cache)), timeout=120)
    return proc, context, cache


def test_verify_golden_env_never_runs_a_golden_sitecustomize(tmp_path: Path) -> None:
    package, marker = evil_package(tmp_path)
    golden = write_hostile_golden(tmp_path / "golden.json", lockdown_env={"PYTHONPATH": str(package)})
    proc = envlock_cli("verify", str(golden), "--golden-env", "--repeat", "1", timeout=300)
    assert proc.returncode == BAD_INPUT, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "PYTHONPATH" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not marker.exists()


def test_build_never_bakes_a_code_running_variable(tmp_path: Path) -> None:
    package, _ = evil_package(tmp_path)
    golden = write_hostile_golden(tmp_path / "golden.json", lockdown_env={"PYTHONPATH": str(package)},
                                  manifest_env={"LD_PRELOAD": "/tmp/x.so"})
    proc, context, cache = _build_context_only(golden, tmp_path)
    assert proc.returncode == BAD_INPUT, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not context.exists() and not cache.exists()


@pytest.mark.parametrize(("name", "version"), HOSTILE_DISTRIBUTIONS)
def test_build_refuses_hostile_distribution_names_and_versions_before_pip(name: str, version: str,
                                                                          tmp_path: Path) -> None:
    # wheelhouse.package_set's own refusal: tests/unit/test_hostile_values.py
    golden = write_hostile_golden(tmp_path / "golden.json", manifest=with_distribution(make_manifest(), name, version))
    proc, context, cache = _build_context_only(golden, tmp_path)
    assert proc.returncode == BAD_INPUT and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not context.exists() and not (cache / "locks").exists()


@pytest.mark.parametrize("value", XLA_FLAGS_NEEDING_REDACTION)
def test_build_refuses_to_bake_a_value_that_needs_redaction(tmp_path: Path, value: str) -> None:
    # spec_from_golden's own refusal: tests/unit/test_hostile_values.py
    golden = write_hostile_golden(tmp_path / "golden.json", lockdown_env={"XLA_FLAGS": value})
    proc, context, _ = _build_context_only(golden, tmp_path)
    assert proc.returncode == BAD_INPUT and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "XLA_FLAGS" in proc.stderr and "redact" in proc.stderr
    assert_no_secret(proc.stderr + proc.stdout)
    assert not context.exists()


# ---------------------------------------------------------------- a Docker that never answers (class 5)


class _SilentDocker:
    """A Docker socket that is there but never answers, in one of several ways (a real unix socket)."""

    def __init__(self, path: str, mode: str) -> None:
        self.mode, self.conns = mode, []  # type: ignore[var-annotated]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        if mode != "never-accepts":  # the kernel still completes the connect: the backlog holds it
            self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.mode == "reads-never-answers":
                conn.recv(65536)
            elif self.mode == "headers-then-silence":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n")
            elif self.mode == "half-status-line":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 2")

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


SILENT_DOCKER_MODES = ["accepts-never-reads", "reads-never-answers", "headers-then-silence", "half-status-line",
                       "never-accepts"]


def test_build_against_a_docker_socket_that_never_answers_exits_3_promptly(tmp_path: Path) -> None:
    """The real CLI in subprocesses (one per kind of silence, run side by side): one line, exit 3,
    well inside the 60 s the test allows (the SDK's default would wait 60 s per call, envlock's old one 600 s)."""
    golden = tmp_path / "golden.json"
    write_golden(golden)
    short_dir = tempfile.mkdtemp(prefix="dk", dir="/tmp")  # a unix socket path must stay under 108 bytes
    dockers, procs = [], {}
    start = time.monotonic()
    try:
        for mode in SILENT_DOCKER_MODES:
            dockers.append(_SilentDocker(f"{short_dir}/{mode}.sock", mode))
            env = {**os.environ, "DOCKER_HOST": f"unix://{short_dir}/{mode}.sock",
                   "ENVLOCK_CACHE_DIR": str(tmp_path / mode)}
            procs[mode] = subprocess.Popen([sys.executable, "-m", "envlock", "build", "--golden", str(golden),
                                            "--base-image", "envlock-base:bookworm"],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        results = {mode: (proc.communicate(timeout=60)[1], proc.returncode) for mode, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for docker in dockers:
            docker.close()
        shutil.rmtree(short_dir, ignore_errors=True)
    assert time.monotonic() - start < 45
    for mode, (stderr, code) in results.items():
        lines = stderr.splitlines()
        assert code == 3, (mode, stderr)
        assert len(lines) == 1 and lines[0].startswith("envlock: error: "), (mode, stderr)
        assert "Docker daemon" in lines[0] and "Traceback" not in stderr, (mode, stderr)
