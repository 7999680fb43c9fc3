"""Values that come from a golden or the environment (docs/untrusted-input.md, classes 1 and 3).

Class 1: a golden can run code. The integrity digest is a checksum, so an attacker edits the
golden and reseals it (``envlock.golden.seal``), exactly as these tests do. Its environment must
never reach a process (verify --golden-env, lockdown(golden=)) or an image (build) unless it is
allow-listed, short, printable text; other golden fields that reach pip must have sane shapes.

Class 3: secrets in values. Credentials in URLs, query strings and ``key=value`` pairs, and home
directories, are redacted at capture and wherever a value leaves the process.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import envlock
from envlock.daemon.checks import fingerprint_check
from envlock.daemon.config import verify_argv
from envlock.diff import diff_manifests
from envlock.display import render_differences, render_manifest, render_report
from envlock.environ import MAX_VALUE_LENGTH, capture_environment, environment_problem, golden_environment_changes
from envlock.errors import BAD_INPUT, BadFileError, BadInputError
from envlock.golden import load_golden
from envlock.image import wheelhouse
from envlock.image.spec import check_golden_for_image, spec_from_golden
from envlock.locking import redacted
from envlock.models import Distribution, LockdownSettings
from envlock.probes.compare import Tolerance
from envlock.redact import needs_redaction, redact_value
from envlock.verdict import ProbeVerdict, build_report
from envlock.verify import child_environment
from tests.helpers import (
    BASE_IMAGE,
    HOSTILE_DISTRIBUTIONS,
    XLA_FLAGS_NEEDING_REDACTION,
    assert_no_secret,
    env_with,
    evil_package,
    imported_in_a_fresh_python,
    make_hostile_golden,
    make_manifest,
    run_python,
    with_distribution,
    with_python,
    write_hostile_golden,
)

# ---------------------------------------------------------------- hostile names and values


# Names that run code, change what is loaded or leak, and which must never be applied from a golden.
CODE_RUNNING_NAMES = [
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONWARNINGS", "PYTHONBREAKPOINT",
    "PYTHONUSERBASE", "PYTHONEXECUTABLE", "PYTHONPLATLIBDIR", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
    "GCONV_PATH", "BASH_ENV", "ENV", "PATH", "HOME", "SHELL", "IFS", "PS4", "SHELLOPTS", "TMPDIR", "PERL5OPT",
    "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "GIT_SSH_COMMAND", "DOCKER_HOST", "http_proxy", "HTTPS_PROXY",
    "AWS_SECRET_ACCESS_KEY", "TF_VAR_db_password", "TF_HTTP_PASSWORD", "XLA_TOKEN", "pythonpath", "Xla_FLAGS",
    "XLA_FLAGS ", " XLA_FLAGS", "XLA_FLAGS=1", "", "X" * 1000, "OMP_\u00e9",
]

BAD_VALUES = [
    "a\nb", "a\rb", "a\0b", "\x1b[31mred", "tab\there", "\x7f", "caf\u00e9", "\u202eevil", "x" * (MAX_VALUE_LENGTH + 1),
    "\u2028", 2, None, ["1"], {"a": "b"}, True,
]


# ---------------------------------------------------------------- class 1: refused on load


@pytest.mark.parametrize("where", ["lockdown_env", "manifest_env"])
@pytest.mark.parametrize("name", CODE_RUNNING_NAMES)
def test_a_golden_with_a_code_running_variable_is_refused_on_load(tmp_path: Path, where: str, name: str) -> None:
    path = write_hostile_golden(tmp_path / "golden.json", **{where: {"TF_ENABLE_ONEDNN_OPTS": "1", name: "/tmp/x"}})
    with pytest.raises(BadFileError) as caught:
        load_golden(path)
    message = str(caught.value)
    assert caught.value.exit_code == BAD_INPUT and "\n" not in message and "environment" in message
    assert ascii(name[:10])[1:-1] in message  # names the variable, escaped


@pytest.mark.parametrize("where", ["lockdown_env", "manifest_env"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_golden_with_a_bad_value_is_refused_on_load(tmp_path: Path, where: str, value: Any) -> None:
    path = write_hostile_golden(tmp_path / "golden.json", **{where: {"XLA_FLAGS": value}})
    with pytest.raises(BadFileError) as caught:
        load_golden(path)
    assert "\n" not in str(caught.value) and "environment" in str(caught.value)


def test_too_many_variables_are_refused(tmp_path: Path) -> None:
    env = {f"OMP_X{i}": "1" for i in range(1000)}
    with pytest.raises(BadFileError, match="at most"):
        load_golden(write_hostile_golden(tmp_path / "golden.json", lockdown_env=env))


def test_an_ordinary_golden_environment_loads(tmp_path: Path) -> None:
    env = {"TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_dump_to=/tmp/d",
           "OMP_NUM_THREADS": "2", "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONHASHSEED": "0"}
    loaded = load_golden(write_hostile_golden(tmp_path / "golden.json", manifest_env=env, lockdown_env=env))
    assert loaded.lockdown.environment == env == loaded.manifest.environment


# ---------------------------------------------------------------- class 1: each use site checks again


@pytest.mark.parametrize("name", ["PYTHONPATH", "LD_PRELOAD", "BASH_ENV", "PYTHONSTARTUP"])
def test_use_sites_refuse_a_golden_built_without_validation(name: str) -> None:
    golden = make_hostile_golden(lockdown_env={name: "/tmp/evil"})
    with pytest.raises(BadInputError, match=name):
        golden_environment_changes({"PATH": "/bin"}, golden.lockdown.environment)
    with pytest.raises(BadInputError, match=name):
        child_environment(golden, {"PATH": "/bin"}, golden_env=True)
    with pytest.raises(BadInputError, match=name):
        spec_from_golden(golden.manifest, golden.lockdown, variant="cpu", base=BASE_IMAGE, golden_digest=golden.digest,
                         envlock_version="0.1.0", compat=None)
    assert child_environment(golden, {"PATH": "/bin"}, golden_env=False) == {"PATH": "/bin"}


@pytest.mark.processes("a fresh interpreter: its environment, imports and sitecustomize")
def test_lockdown_with_a_hostile_golden_exports_nothing_and_imports_no_tensorflow(tmp_path: Path) -> None:
    package, marker = evil_package(tmp_path)
    golden = write_hostile_golden(tmp_path / "golden.json",
                                  lockdown_env={"PYTHONPATH": str(package), "LD_PRELOAD": str(tmp_path / "x.so")})
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        before = dict(os.environ)
        import envlock
        try:
            envlock.lockdown(golden={str(golden)!r})
            print("accepted")
        except envlock.errors.EnvlockError as exc:
            print("refused", exc.exit_code)
        subprocess.run([sys.executable, "-c", "pass"], check=False)  # would import a planted sitecustomize
        print("environ unchanged", os.environ == before)
        print("tensorflow imported", "tensorflow" in sys.modules)
    """)
    proc = run_python(script, env=env_with(), timeout=300)
    assert "refused 2" in proc.stdout, proc.stdout + proc.stderr
    assert "environ unchanged True" in proc.stdout and "tensorflow imported False" in proc.stdout
    assert not marker.exists()


# ---------------------------------------------------------------- class 1: package fields that reach pip


@pytest.mark.parametrize(("name", "version"), HOSTILE_DISTRIBUTIONS)
def test_hostile_distribution_names_and_versions_never_reach_pip(name: str, version: str) -> None:
    # `envlock build` with such a golden: tests/integration/test_cli_refusals.py
    manifest = with_distribution(make_manifest(), name, version)
    with pytest.raises(BadInputError, match="refusing to build"):
        wheelhouse.package_set(manifest, variant="cpu", compat=None, envlock_requirements=[])


@pytest.mark.parametrize(("section", "field", "value"), [
    ("tensorflow", "version", "2.21.0 --index-url http://evil"),
    ("tensorflow", "version", "2.21.0\nRUN x"),
    ("python", "version", "3.11 --index-url http://evil"),
    ("host", "architecture", "x86_64 --platform any"),
    ("gpu", "driver_version", "\u00b2\u00b3"),
    ("gpu", "driver_version", "9" * 5000),
])
def test_hostile_platform_fields_are_refused_before_pip(section: str, field: str, value: str) -> None:
    manifest = make_manifest()
    part = getattr(manifest, section).model_copy(update={field: value})
    with pytest.raises(BadInputError, match="refusing to build"):
        check_golden_for_image(manifest.model_copy(update={section: part}), LockdownSettings())


def test_ordinary_package_fields_pass() -> None:
    manifest = with_python(make_manifest(), distributions=[
        Distribution(name=n, version=v) for n, v in [("tensorflow_cpu", "2.21.0"), ("torch", "2.5.1+cpu"),
                                                     ("zope.interface", "7.0"), ("pkg", "1.0rc1.post2.dev3"),
                                                     ("x", "1!2.0")]])
    check_golden_for_image(manifest, LockdownSettings())


# ---------------------------------------------------------------- class 3: redact_value


@pytest.mark.parametrize(("value", "expected"), [
    ("--xla_dump_to=https://host/x?token=abc", "--xla_dump_to=https://host/x?token=REDACTED"),
    ("https://user:pass@host/", "https://REDACTED@host/"),
    ("https://ghp_abcdef@github.com/o/r.git", "https://REDACTED@github.com/o/r.git"),
    ("https://u:p@ss@host/p", "https://REDACTED@host/p"),
    ("s3://AKIA:sec@bucket/k?X-Amz-Signature=zz&X-Amz-Credential=c#frag=1",
     "s3://REDACTED@bucket/k?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED#frag=REDACTED"),
    ("gs://b/o?sig=s;se=2030", "gs://b/o?sig=REDACTED;se=REDACTED"),
    ("https://h/p?opaquesecret", "https://h/p?REDACTED"),
    ("HTTPS://h/p?Token=x --next=1", "HTTPS://h/p?Token=REDACTED --next=1"),
    ("--xla_dump_to=/home/alice/dumps", "--xla_dump_to=~/dumps"),
    ("/home/alice", "~"),
    ("/root/.cache/x:/Users/bob/y", "~/.cache/x:~/y"),
    ("file:///home/carol/x", "file://~/x"),
    ("--password=hunter2 --api_key=k --auth_token=t", "--password=REDACTED --api_key=REDACTED --auth_token=REDACTED"),
    ("client_secret=abc,pass=x", "client_secret=REDACTED,pass=REDACTED"),
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer REDACTED"),
])
def test_redact_value(value: str, expected: str) -> None:
    assert redact_value(value) == expected
    assert redact_value(expected) == expected  # idempotent: a redacted value stays as it is


def test_redact_value_uses_home_when_given() -> None:
    assert redact_value("--xla_dump_to=/var/lib/ci/d", home="/var/lib/ci/") == "--xla_dump_to=~/d"
    assert redact_value("/var/lib/cix/d", home="/var/lib/ci") == "/var/lib/cix/d"
    assert redact_value("/usr/lib", home="/") == "/usr/lib"  # HOME=/ must not turn every path into ~


@pytest.mark.parametrize("value", [
    "1", "0", "--tf_xla_auto_jit=2", "--xla_cpu_enable_fast_math=false --xla_dump_to=/tmp/d", ":4096:8", "AVX2",
    "--xla_disable_hlo_passes=fusion,cse", "granularity=fine,compact,1,0", "/rootfs/x", "/srv/home/alice/x",
    "~/already", "KEYSTONE", "0,1", "--xla_gpu_autotune_level=0", "true",
])
def test_ordinary_values_are_unchanged(value: str) -> None:
    assert not needs_redaction(value) and redact_value(value) == value


@pytest.mark.parametrize("value", [
    "a" * 200_000, "://" * 70_000, "a=" * 100_000, "-" * 200_000 + "=", "/home/" * 40_000, "?&=" * 70_000,
    "https://" + "@" * 200_000, "x://" + "a:" * 100_000, "bearer " * 30_000, "/root" * 40_000, "=" * 200_000,
])
def test_redaction_is_linear_on_hostile_input(value: str) -> None:
    started = time.monotonic()
    redact_value(value, home="/h")
    assert time.monotonic() - started < 5  # generous: quadratic backtracking would take minutes


# ---------------------------------------------------------------- class 3: wherever a value leaves


SECRET_ENV = {"XLA_FLAGS": "--xla_dump_to=https://host/x?token=abc123", "TF_XLA_FLAGS": "--x=https://u:pw456@h/",
              "NCCL_DEBUG_FILE": "/home/alice/nccl.log"}
def test_capture_redacts_but_keeps_ordinary_values() -> None:
    captured = capture_environment({**SECRET_ENV, "OMP_NUM_THREADS": "2", "HOME": "/home/alice",
                                    "KMP_AFFINITY": "granularity=fine", "ONEDNN_VERBOSE": "a\nb"})
    assert_no_secret(repr(captured))
    assert captured["OMP_NUM_THREADS"] == "2" and captured["KMP_AFFINITY"] == "granularity=fine"
    assert captured["XLA_FLAGS"] == "--xla_dump_to=https://host/x?token=REDACTED"
    assert captured["NCCL_DEBUG_FILE"] == "~/nccl.log"
    assert "ONEDNN_VERBOSE" not in captured  # could not be loaded back: left out, not recorded broken
    assert environment_problem(captured) is None
    assert capture_environment({"NCCL_DEBUG_FILE": "/opt/ci/c", "HOME": "/opt/ci"}) == {"NCCL_DEBUG_FILE": "~/c"}


def test_differences_reports_and_renders_carry_no_secret() -> None:
    # The golden comes from an older envlock or a hostile person: its manifest holds secrets verbatim.
    golden = make_hostile_golden(manifest_env=SECRET_ENV, skipped_reason="no GPU at https://u:pw456@h/?token=abc123")
    here = make_manifest(env={"XLA_FLAGS": "--xla_dump_to=/home/alice/other"})
    differences = diff_manifests(golden.manifest, here)
    assert {d.path for d in differences} >= {"environment.XLA_FLAGS", "environment.TF_XLA_FLAGS"}
    assert_no_secret(repr([d.model_dump() for d in differences]))
    assert_no_secret(render_differences(differences))
    assert_no_secret(render_manifest(golden.manifest))
    verdict = ProbeVerdict(name="gpu.matmul", status="skipped", reason=golden.probes[1].reason)
    report = build_report(Path("g.json"), golden, here.digest, [verdict], differences, tolerance=Tolerance(), repeat=1,
                     golden_env=False, stable_drifted=False, timings={})
    assert_no_secret(report.model_dump_json())
    assert_no_secret(render_report(report))


def test_daemon_fingerprint_check_carries_no_secret() -> None:
    golden = make_hostile_golden(manifest_env=SECRET_ENV)
    result = fingerprint_check(golden.manifest, golden_digest=golden.digest, environ={},
                               capture=lambda _environ: make_manifest(env={}))
    assert result.outcome == "drift"
    assert_no_secret(repr(result.to_dict()) + str(result.reason))


@pytest.mark.parametrize("value", XLA_FLAGS_NEEDING_REDACTION)
def test_build_refuses_to_bake_a_value_that_needs_redaction(tmp_path: Path, value: str) -> None:
    # `envlock build` with such a golden: tests/integration/test_cli_refusals.py
    golden = write_hostile_golden(tmp_path / "golden.json", lockdown_env={"XLA_FLAGS": value})
    loaded = load_golden(golden)  # loads: verify and lockdown may use it; only an image refuses it
    with pytest.raises(BadInputError, match="redact"):
        spec_from_golden(loaded.manifest, loaded.lockdown, variant="cpu", base=BASE_IMAGE, golden_digest=loaded.digest,
                         envlock_version="0.1.0", compat=None)


def test_lockdown_problem_messages_carry_no_secret() -> None:
    assert redacted("--xla_dump_to=https://h/?token=abc123") == "--xla_dump_to=https://h/?token=REDACTED"
    assert redacted(None) is None


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 2**32}, {"seed": "42"}, {"seed": True},
                                    {"intra_op_threads": -1}, {"inter_op_threads": 10**6}])
@pytest.mark.processes("what a fresh interpreter imports")
def test_lockdown_refuses_out_of_range_controls_before_tensorflow(kwargs: dict[str, Any]) -> None:
    """A negative thread count SIGABRTs TensorFlow, taking the user's process with it: refused first."""
    with pytest.raises(BadInputError, match="lockdown: "):
        envlock.lockdown(**kwargs)
    # Asked of a fresh interpreter: whether this process holds TensorFlow depends on the tests before.
    assert imported_in_a_fresh_python(f"""
        import envlock
        from envlock.errors import BadInputError
        try:
            envlock.lockdown(**{kwargs!r})
        except BadInputError:
            pass
    """, ["tensorflow"]) == []


def test_the_daemons_verify_child_gets_the_trusted_keys(tmp_path: Path) -> None:
    keys = [tmp_path / "ci.pub", tmp_path / "backup.pub"]
    argv = verify_argv(tmp_path / "golden.json", None, keys)
    assert argv[-4:] == ["--trusted-key", str(keys[0]), "--trusted-key", str(keys[1])]
    assert "--trusted-key" not in verify_argv(tmp_path / "golden.json", None)
