"""Helpers for hostile-input tests: forged goldens made from a real one, and the CLI run the way
an attacker's victim runs it (a fresh process), bounded in time and memory so that a regression
fails the test instead of hanging it or exhausting the machine."""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from envlock.models import canonical_sha256

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_GOLDEN = REPO_ROOT / "goldens" / "cpu-reference.json"
CLI_MEMORY_LIMIT = 2 * 1024**3  # far above what envlock needs short of TensorFlow; far below the host's


def real_golden_data() -> dict[str, Any]:
    """The shipped golden as plain JSON data (a fresh copy each call, free to mutate)."""
    return copy.deepcopy(_REAL_GOLDEN_DATA)


_REAL_GOLDEN_DATA: dict[str, Any] = json.loads(REAL_GOLDEN.read_text(encoding="utf-8"))


def reseal(data: dict[str, Any]) -> dict[str, Any]:
    """Recompute a golden's outer digest, as anyone can: it is a checksum, not a signature."""
    data["digest"] = canonical_sha256({k: v for k, v in data.items() if k != "digest"})
    return data


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY_LIMIT, CLI_MEMORY_LIMIT))


def run_envlock(*args: str | bytes | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``python -m envlock ARGS`` in a fresh process: at most ``timeout`` seconds (a hang fails the
    test with TimeoutExpired) and ``CLI_MEMORY_LIMIT`` of address space (an unbounded read fails
    instead of swapping the machine). Output stays bytes: an escaped message must be checked as
    the terminal would get it."""
    return subprocess.run([sys.executable, "-m", "envlock", *args], capture_output=True, timeout=timeout,
                          preexec_fn=_limit_memory, check=False, env=dict(os.environ))


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single ``envlock: error:`` line of a failed run; fails unless it is exactly one line."""
    err = proc.stderr.decode("utf-8", errors="strict")
    lines = err.splitlines()  # also splits on \x1c-\x1e, \x85, U+2028/2029: what a log reader would split on
    assert len(lines) == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert lines[0].startswith("envlock: error: ") and "Traceback" not in err, err
    assert lines[0].isprintable(), f"unescaped control characters: {lines[0]!r}"
    return lines[0]
