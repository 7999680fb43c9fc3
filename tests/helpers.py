"""What the test layers share, one definition each: paths, the CLI and Python in fresh processes,
waiting on processes and files, HTTP and metrics, forged goldens, a hand-made manifest, and the
`envlock watch` process harness.

Test modules import helpers from here (and the recorded machines from tests/recorded.py), never
from another test module or a conftest; fixtures live in the conftest files.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client.parser import text_string_to_metric_families

import envlock.capture
from envlock import __version__
from envlock.environ import is_allowed, with_changes
from envlock.fingerprint.cpu import parse_proc_cpuinfo
from envlock.golden import Golden, OutputRecord, ProbeRecord, save_golden, seal
from envlock.image.data import BaseImage
from envlock.models import (
    CpuInfo,
    Distribution,
    GpuInfo,
    HostInfo,
    LockdownSettings,
    Manifest,
    MemoryInfo,
    NumericInfo,
    PythonInfo,
    TensorflowInfo,
    canonical_sha256,
    with_digest,
)
from envlock.probes.compare import summarize_array
from envlock.results import ProbeRun, parse_output

# ---------------------------------------------------------------- paths and CI

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
# The project's own golden (recorded on an AMD EPYC Zen 4, see README): a real file for loaders
# and mutations; unit tests never run its probes.
REFERENCE_GOLDEN = REPO_ROOT / "goldens" / "cpu-reference.json"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(available: bool, what: str) -> None:
    """Skip locally, fail loudly in CI, when a component a test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is missing", pytrace=False)
    pytest.skip(f"{what} is not available on this machine")


# ---------------------------------------------------------------- the CLI and Python in a fresh process


def env_with(**changes: str | None) -> dict[str, str]:
    """This process's environment with ``changes`` applied (``None`` removes a variable)."""
    return with_changes(os.environ, changes)


def envlock_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process (the way a user runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "envlock", *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd, check=False,
    )


CLI_MEMORY_LIMIT = 2 * 1024**3  # far above what envlock needs short of TensorFlow; far below the host's


def limit_memory() -> None:
    """A ``preexec_fn``: the child gets ``CLI_MEMORY_LIMIT`` of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY_LIMIT, CLI_MEMORY_LIMIT))


def run_envlock(*args: str | bytes | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``python -m envlock ARGS`` the way an attacker's victim runs it: in a fresh process, at most
    ``timeout`` seconds (a hang fails the test with TimeoutExpired) and ``CLI_MEMORY_LIMIT`` of
    address space (an unbounded read fails instead of swapping the machine). Output stays bytes: an
    escaped message must be checked as the terminal would get it."""
    return subprocess.run([sys.executable, "-m", "envlock", *args], capture_output=True, timeout=timeout,
                          preexec_fn=limit_memory, check=False, env=dict(os.environ))


def one_error_line(proc: subprocess.CompletedProcess[bytes] | subprocess.CompletedProcess[str]) -> str:
    """The single ``envlock: error:`` line of a failed run; fails unless it is exactly one line."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", errors="strict")
    lines = err.splitlines()  # also splits on \x1c-\x1e, \x85, U+2028/2029: what a log reader would split on
    assert len(lines) == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert lines[0].startswith("envlock: error: ") and "Traceback" not in err, err
    assert lines[0].isprintable(), f"unescaped control characters: {lines[0]!r}"
    return lines[0]


def python_argv(code: str) -> list[str]:
    """This Python running ``code`` (dedented): an argv for a child."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def python_command(code: str) -> str:
    """The same as one shell command line (what ``--verify-command`` takes)."""
    return shlex.join(python_argv(code))


def run_python(code: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter from the repository root; fails the test if it fails."""
    proc = subprocess.run([*python_argv(code), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def imported_in_a_fresh_python(code: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter holds after running ``code``: what a user's process
    imports, whatever this test process happened to import before."""
    report = f"import json as _j, sys as _s\nprint(_j.dumps([m for m in {sorted(modules)!r} if m in _s.modules]))"
    probe = f"{textwrap.dedent(code)}\n{report}"
    return list(json.loads(run_python(probe).stdout.splitlines()[-1]))


# ---------------------------------------------------------------- processes and files


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: neither gone nor a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def process_gone(pid: int, *, timeout_s: float = 10.0) -> bool:
    """Whether ``pid`` ends (exits, or is a zombie nobody reaped yet) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 60, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> Any:
    """The first true value of ``predicate``; fails the test after ``timeout`` or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) waiting for {what}: "
                        f"{log.read_text()[-2000:] if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f": {log.read_text()[-2000:]}" if log else ""))
        time.sleep(0.05)


def wait_for_file_text(path: Path, *, timeout_s: float = 30.0) -> str:
    """The non-empty content of ``path`` once something has written it (fails the test after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.05)
    pytest.fail(f"nothing was written to {path} within {timeout_s} s")


# ---------------------------------------------------------------- HTTP and metrics


def http_get(port: int, path: str, *, host: str = "127.0.0.1", timeout: float = 10) -> tuple[int, str, str]:
    """GET ``path``: the status, the Content-Type and the body."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# ---------------------------------------------------------------- goldens and manifests


def real_golden_data() -> dict[str, Any]:
    """The shipped golden as plain JSON data (a fresh copy each call, free to mutate)."""
    return copy.deepcopy(_REAL_GOLDEN_DATA)


_REAL_GOLDEN_DATA: dict[str, Any] = json.loads(REFERENCE_GOLDEN.read_text(encoding="utf-8"))


def reseal(data: dict[str, Any]) -> dict[str, Any]:
    """Recompute a golden's outer digest, as anyone can: it is a checksum, not a signature."""
    data["digest"] = canonical_sha256({k: v for k, v in data.items() if k != "digest"})
    return data


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def probe_run(values: np.ndarray, *, output: str = "product") -> ProbeRun:
    """What the probe child reports for one run of a probe whose one output is ``values``."""
    return ProbeRun(status="ok", outputs=(parse_output(summarize_array(output, values)),))


BASE_IMAGE = BaseImage(name="test", image="sha256:" + "ab" * 32, tag="envlock-base:bookworm", python="3.11")


def make_manifest(*, onednn: bool | None = False, env: dict[str, str] | None = None,
                  driver: str | None = None) -> Manifest:
    """A hand-made manifest with fixed values (the expected Dockerfiles in tests/data/image rest on it)."""
    manifest = Manifest(
        envlock_version="0.1.0", captured_at="2026-01-01T00:00:00Z",
        host=HostInfo(os="Linux", architecture="x86_64", glibc="2.36"), cpu=CpuInfo(), memory=MemoryInfo(),
        numeric=NumericInfo(),
        gpu=GpuInfo(status="ok", driver_version=driver) if driver else GpuInfo(status="no_gpu"),
        tensorflow=TensorflowInfo(status="present", version="2.21.0", onednn_enabled=onednn),
        python=PythonInfo(version="3.11.7", distributions=[
            Distribution(name="tensorflow_cpu", version="2.21.0"), Distribution(name="numpy", version="2.4.6"),
            Distribution(name="pytest", version="9.2.0"), Distribution(name="envlock", version="0.1.0")]),
        environment={"TF_XLA_FLAGS": "--tf_xla_auto_jit=0", "OMP_NUM_THREADS": "2"},
        digest="sha256:" + "ef" * 32,  # fixed, so model changes elsewhere do not move the expected files
    )
    # model_copy does not validate: a hostile environment gets in, as through a resealed golden.
    return manifest if env is None else manifest.model_copy(update={"environment": env})


# ---------------------------------------------------------------- goldens made by hand, and forged ones


def make_golden(env: dict[str, str] | None = None, created_at: str = "2026-01-01T00:00:00+00:00") -> Golden:
    """A sealed golden around ``make_manifest``, its one probe a recorded skip."""
    return seal(Golden(envlock_version="0.1.0", created_at=created_at, manifest=with_digest(make_manifest(env=env)),
                       lockdown=LockdownSettings(seed=42, intra_op_threads=2, inter_op_threads=1), repeat=2,
                       probes=[ProbeRecord(name="rng.tf_global", tags=["rng"], group="stable", status="skipped")]))


def write_golden(path: Path, **kwargs: object) -> Golden:
    golden = make_golden(**kwargs)  # type: ignore[arg-type]
    save_golden(path, golden)
    return golden


def make_hostile_golden(*, manifest_env: dict[str, Any] | None = None, lockdown_env: dict[str, Any] | None = None,
                        manifest: Manifest | None = None, skipped_reason: str | None = None) -> Golden:
    """A golden edited after recording and resealed: model_copy skips validation, as a text editor does."""
    output = OutputRecord.model_validate(summarize_array("product", np.arange(16, dtype=np.float32)))
    probes = [ProbeRecord(name="matmul.f32", tags=["matmul"], group="canary", status="ok", outputs=[output])]
    if skipped_reason is not None:
        probes.append(ProbeRecord(name="gpu.matmul", tags=["gpu"], group="canary", status="skipped",
                                  reason=skipped_reason))
    golden = Golden(envlock_version="0.1.0", created_at="2026-01-01T00:00:00+00:00", manifest=make_manifest(),
                    lockdown=LockdownSettings(seed=42, intra_op_threads=2, inter_op_threads=1), repeat=1,
                    probes=probes)
    manifest = manifest or golden.manifest
    if manifest_env is not None:
        manifest = manifest.model_copy(update={"environment": manifest_env})
    lockdown = golden.lockdown
    if lockdown_env is not None:
        lockdown = lockdown.model_copy(update={"environment": lockdown_env})
    # An attacker reseals both digests: the manifest's own and the golden's.
    return seal(golden.model_copy(update={"manifest": with_digest(manifest), "lockdown": lockdown}))


def write_hostile_golden(path: Path, **kwargs: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns when it serialises a non-str value as str
        save_golden(path, make_hostile_golden(**kwargs))
    return path


def evil_package(tmp_path: Path) -> tuple[Path, Path]:
    """A directory whose sitecustomize.py, if Python ever imports it, leaves a marker file."""
    package, marker = tmp_path / "evil", tmp_path / "PWNED"
    package.mkdir()
    (package / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return package, marker


def with_python(manifest: Manifest, **python: Any) -> Manifest:
    return manifest.model_copy(update={"python": manifest.python.model_copy(update=python)})


def with_distribution(manifest: Manifest, name: str, version: str) -> Manifest:
    """``manifest`` with one more installed distribution, unvalidated (as a resealed golden carries it)."""
    return with_python(manifest, distributions=[*manifest.python.distributions,
                                                Distribution.model_construct(name=name, version=version)])


# Package fields a golden could use to steer pip: every one must be refused before pip runs.
HOSTILE_DISTRIBUTIONS = [
    ("numpy\n--index-url http://evil/simple", "2.4.6"),
    ("--extra-index-url=http://evil/simple", "1"),
    ("-r /etc/shadow", "1"),
    ("evil @ https://evil/evil.whl", "1"),
    ("numpy", "2.4.6\n--index-url http://evil/simple"),
    ("numpy", "2.4.6 --hash=sha256:00"),
    ("numpy", "2.4.6; python_version>'0'"),
    ("numpy", "*"),
    ("numpy", ""),
    ("", "1.0"),
    ("a" * 300, "1.0"),
    ("numpy", "1" * 300),
]

SECRETS = ("abc123", "pw456", "alice")  # what the secret-carrying values in the tests hold
# Values an image must not bake: each holds one of SECRETS, or a home directory.
XLA_FLAGS_NEEDING_REDACTION = ["--xla_dump_to=https://host/x?token=abc123", "--xla_dump_to=/home/alice/d",
                               "--xla_dump_to=https://u:pw456@h/"]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


# Edits of a real golden's JSON data (``real_golden_data``), each applied and then resealed.
Mutation = Callable[[dict[str, Any]], None]


def set_at(path: str, value: Any) -> Mutation:
    """Sets the dotted ``path`` (list indices as numbers) to ``value``."""
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _first_output(data: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in data["probes"] if p["outputs"])["outputs"][0]


def _output(field: str, value: Any) -> Mutation:
    return lambda data: _first_output(data).__setitem__(field, value)


def _duplicate_probe(data: dict[str, Any]) -> None:
    data["probes"].append(dict(data["probes"][0]))


def _duplicate_output(data: dict[str, Any]) -> None:
    probe = next(p for p in data["probes"] if p["outputs"])
    probe["outputs"].append(dict(probe["outputs"][0]))


def _coerce(path: str, convert: Callable[[Any], Any]) -> Mutation:
    """The same value in another type: what lax validation turned back into the original."""
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        node[last] = convert(node[last])
    return mutate


# Before the fix, lax validation coerced each back to the sealed value and the digest (then computed
# over the validated model) matched: accepted, exit 0. The digest is now checked over the file as
# written, so each is applied and then resealed, as an attacker would: strict validation refuses it.
COERCIONS: dict[str, Mutation] = {
    "repeat as a string": _coerce("repeat", str),
    "repeat as a float": _coerce("repeat", float),
    "seed as a string": _coerce("lockdown.seed", str),
    "op_determinism as 1": _coerce("lockdown.op_determinism", int),
    "op_determinism as a string": _coerce("lockdown.op_determinism", lambda v: str(v).lower()),
    "thread count as a string": _coerce("lockdown.intra_op_threads", str),
    "nested schema_version as a string": _coerce("manifest.schema_version", str),
    "cores as a string": _coerce("manifest.cpu.logical_cores", str),
    "isa flag as 0/1": _coerce("manifest.cpu.isa.avx2", int),
    "shape entries as strings": lambda data: _first_output(data).__setitem__(
        "shape", [str(n) for n in _first_output(data)["shape"]]),
}


# Applied *before* resealing: anyone can recompute the outer digest.
GOLDEN_MUTATIONS: dict[str, Mutation] = {
    "repeat as true": set_at("repeat", True),
    # out of range
    "repeat 0": set_at("repeat", 0),
    "repeat 101": set_at("repeat", 101),
    "repeat 10**12": set_at("repeat", 10**12),
    "seed -1": set_at("lockdown.seed", -1),
    "seed 2**32": set_at("lockdown.seed", 2**32),
    "seed 2**64": set_at("lockdown.seed", 2**64),
    "negative intra-op threads": set_at("lockdown.intra_op_threads", -1),
    "negative inter-op threads": set_at("lockdown.inter_op_threads", -8),
    "huge thread count": set_at("lockdown.intra_op_threads", 1_000_000),
    "negative manifest threads": set_at("manifest.tensorflow.intra_op_threads", -1),
    "negative cores": set_at("manifest.cpu.logical_cores", -2),
    "negative affinity": set_at("manifest.cpu.affinity", [-1]),
    "negative memory": set_at("manifest.memory.total_bytes", -1),
    "negative shape": _output("shape", [-1]),
    "enormous shape": _output("shape", [2**70]),
    "stride 0": _output("sample_stride", 0),
    "stride 2**70": _output("sample_stride", 2**70),
    # inconsistent or broken content
    "nested schema_version 99": set_at("manifest.schema_version", 99),
    "nested schema_version 0": set_at("manifest.schema_version", 0),
    "nested kind": set_at("manifest.kind", "envlock.golden"),
    "bogus manifest digest": set_at("manifest.digest", "sha256:" + "0" * 64),
    "empty manifest digest": set_at("manifest.digest", ""),
    "no probes": set_at("probes", []),
    "a probe twice": _duplicate_probe,
    "an output twice": _duplicate_output,
    "base64 with bad characters": _output("sample_b64", "!!!!"),
    "base64 with bad padding": _output("sample_b64", "AAA"),
    "base64 of a partial element": _output("sample_b64", base64.b64encode(b"\0\0\0").decode()),
    "base64 of a huge sample": _output("sample_b64", base64.b64encode(b"\0" * 8 * 10_000).decode()),
    "object dtype": _output("dtype", "object"),
    "string dtype": _output("dtype", "<U10"),
    "not a sha256": _output("sha256", "sha256:xyz"),
    "NaN statistic": _output("stats", {"min": float("nan"), "max": 1.0, "mean": 0.5, "abs_max": 1.0}),
    "infinite statistic": _output("stats", {"min": 0.0, "max": float("inf"), "mean": 0.5, "abs_max": 1.0}),
    "unknown group": set_at("probes.0.group", "cosmic"),
}


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """An unencrypted Ed25519 key pair in OpenSSH format, as `ssh-keygen -t ed25519 -N ''` writes it."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = directory / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public = directory / f"{name}.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b" test@envlock\n")
    return private, public


# ---------------------------------------------------------------- goldens of the other machine kinds

GOLDENS = {
    "amd-epyc-zen4": REPO_ROOT / "goldens" / "cpu-reference.json",
    "intel-xeon-amx": REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu.json",
    # the whole current suite (layer, mixed-precision and hardware-arithmetic probes, intermediates)
    "amd-epyc-zen4-full-suite": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu.json",
    # the same suite recorded on the Intel Xeon with AMX on 2026-12-03 (tests/data/README.md)
    "intel-xeon-amx-full-suite": DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" / "golden-full-suite.json",
}


def cpu_identity(cpu: CpuInfo) -> tuple[object, ...]:
    return cpu.vendor, cpu.family, cpu.model, tuple(sorted(cpu.flags))


def this_cpu() -> CpuInfo:
    return parse_proc_cpuinfo(Path("/proc/cpuinfo").read_text())


# ---------------------------------------------------------------- Docker builds

# Wheels and resolutions are cached under a stable directory so a re-run only pays for Docker.
BUILD_CACHE = Path(os.environ.get("ENVLOCK_TEST_CACHE") or Path.home() / ".cache" / "envlock-tests")
BASE_TAG = "envlock-base:bookworm"
IMAGE_TAG = "envlock-test/e2e:cpu"


def build_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "ENVLOCK_CACHE_DIR": str(BUILD_CACHE), **extra}


def run_command(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def tail(text: str, n: int = 30) -> str:
    return "\n".join(text.splitlines()[-n:])


def docker_answers() -> bool:
    try:
        import docker  # lazy: the Docker SDK is only needed by the Docker tests, not by every session's start

        docker.from_env(timeout=10).ping()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- `envlock watch` as a process

# The daemon's environment: this one without any numerics-related variable, so a golden built
# with the same environment matches it and one with an extra variable does not.
DAEMON_ENV = {k: v for k, v in os.environ.items() if not is_allowed(k)}


def build_golden(path: Path, *, environment: dict[str, str] | None = None, env: dict[str, str] = DAEMON_ENV) -> Path:
    """A golden-like file from a real no-TF capture taken with the daemon's environment."""
    manifest = envlock.capture.capture_manifest(include_tf=False, environ=env)
    if environment:
        manifest = with_digest(manifest.model_copy(update={"environment": {**manifest.environment, **environment}}))
    # A golden holds at least one probe; a skipped one keeps the daemon's own checks free of TensorFlow.
    probe = ProbeRecord(name="gpu.matmul", tags=["gpu", "matmul"], group="canary", status="skipped",
                        reason="no GPU visible to TensorFlow")
    golden = Golden(envlock_version=__version__, created_at=datetime.now(timezone.utc).isoformat(),
                    manifest=manifest, lockdown=LockdownSettings(), repeat=1, probes=[probe])
    save_golden(path, golden)
    return path


class Daemon:
    """`envlock watch` in its own process (and process group), JSON log lines in a file."""

    def __init__(self, tmp: Path, golden: Path, *args: str, name: str = "daemon", state_dir: Path | None = None,
                 env: dict[str, str] = DAEMON_ENV) -> None:
        self.log_path = tmp / f"{name}.log"
        self.state_dir = state_dir or tmp / "state"
        self.nfd_path = tmp / f"{name}.features"
        argv = [sys.executable, "-m", "envlock", "watch", "--golden", str(golden), "--listen", "127.0.0.1:0",
                "--state-dir", str(self.state_dir), "--fingerprint-every", "0.5s",
                "--nfd-features-file", str(self.nfd_path), *args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         env=env, start_new_session=True)
        self.port = self._wait_listening()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "non-json", "line": line})
        return out

    def _wait_listening(self) -> int:
        started = wait_for(lambda: next((e for e in self.events() if e.get("event") == "started"), None),
                           what="the daemon to start", proc=self.proc, log=self.log_path)
        return int(started["listen"].rsplit(":", 1)[1])

    def get(self, path: str) -> tuple[int, str]:
        status, _, body = http_get(self.port, path)
        return status, body

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("/status")[1])

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return metric_samples(self.get("/metrics")[1])

    def checks(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == "check" and kind in (None, e["kind"])]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
