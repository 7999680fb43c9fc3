"""Redaction, second round (issue 17, class 2): pairs nested in a flag's value, other spellings of a
home directory, and the paths a manifest records (the interpreter, the loaded libraries).

The first round's cases stay in test_hostile_values.py; the property over random positions is in
tests/fuzz/test_redaction.py.
"""

from __future__ import annotations

import json
import time

import pytest

from envlock.capture import redact_locations
from envlock.environ import capture_environment
from envlock.fingerprint.loaded_libs import parse_proc_maps
from envlock.models import LoadedLibrary, compute_digest, load_manifest, with_digest
from envlock.redact import redact_value
from tests.helpers import DATA_DIR

# ---------------------------------------------------------------- a pair inside another pair's value


@pytest.mark.parametrize(("value", "expected"), [
    # the two that got through: the first --x= pair swallowed the rest of the value
    ("--xla_dump_to=/var/xd?token=S3cret", "--xla_dump_to=/var/xd?token=REDACTED"),
    ("--flag=token=S3cret", "--flag=token=REDACTED"),
    ("--a=b=c=password=S3cret --next=1", "--a=b=c=password=REDACTED --next=1"),
    ("--xla_dump_to=/d/api_key=S3cret,x=1", "--xla_dump_to=/d/api_key=REDACTED,x=1"),
    ("--flag=x.secret=S3cret;y=2", "--flag=x.secret=REDACTED;y=2"),
    ("--flag=5token=S3cret", "--flag=5token=REDACTED"),  # a key may start with a digit
    ("--flag=token=a=b=c", "--flag=token=REDACTED"),  # a credential's value runs to the separator
    # a URL nested in another URL: each "://" gets its user information checked
    ("a://b/https://user:S3cret@h/", "a://b/https://REDACTED@h/"),
    ("s3://x/y?next=https://u:S3cret@h/", "s3://x/y?next=REDACTED"),
    ("Authorization:\tBearer abcdefghijkl", "Authorization:\tBearer REDACTED"),  # any whitespace
])
def test_a_nested_pair_or_url_is_redacted(value: str, expected: str) -> None:
    assert redact_value(value) == expected
    assert redact_value(expected) == expected


def test_a_local_xla_flags_secret_is_redacted_at_capture() -> None:
    captured = capture_environment({"XLA_FLAGS": "--xla_dump_to=/var/xd?token=S3cret --xla_cpu_enable_fast_math=false",
                                    "TF_XLA_FLAGS": "--flag=token=S3cret"})
    assert "S3cret" not in json.dumps(captured)
    assert captured["XLA_FLAGS"] == "--xla_dump_to=/var/xd?token=REDACTED --xla_cpu_enable_fast_math=false"


# ---------------------------------------------------------------- other spellings of a home directory


@pytest.mark.parametrize(("value", "expected"), [
    ("//home/someuser", "~"),
    ("/./home/someuser", "~"),
    ("/home//someuser", "~"),
    ("/home/./someuser/x", "~/x"),
    ("///home///someuser//x/", "~/x/"),
    ("/srv/../home/someuser/x", "/srv/../~/x"),  # resolves to /home/someuser, lexically as the kernel would
    ("/../home/someuser", "/../~"),
    ("/mnt/c/Users/someuser", "~"),  # WSL
    ("/mnt/d/users/someuser/AppData", "~/AppData"),  # Windows paths ignore case
    ("/cygdrive/c/Users/someuser/x", "~/x"),
    ("/c/Users/someuser/x", "~/x"),  # MSYS, Git Bash
    ("C:\\Users\\someuser\\x", "~\\x"),
    ("--xla_dump_to=//home/someuser/d", "--xla_dump_to=~/d"),
    ("PATH=/opt/bin://home/someuser/bin", "PATH=/opt/bin://home/someuser/bin"),  # "x://" is a URL, see below
    ("/opt/bin:/home//someuser/bin", "/opt/bin:~/bin"),
    ("file:////home/someuser/x", "file://~/x"),
])
def test_every_spelling_of_a_home_directory_is_redacted(value: str, expected: str) -> None:
    assert redact_value(value) == expected
    assert redact_value(expected) == expected


@pytest.mark.parametrize("value", [
    "/srv/home/someuser/x",  # not at the root
    "/srv/./home/someuser",
    "/home/",  # no user name
    "/home/.",
    "/home/..",
    "https://home/someuser",  # a host called home
    "/mnt/cd/Users/x",  # not a drive letter
    "/mnt/c/Usersx/y",
    "relative/home/someuser",
])
def test_paths_that_only_look_like_a_home_are_unchanged(value: str) -> None:
    assert redact_value(value) == value


def test_home_is_matched_normalised_too() -> None:
    assert redact_value("/var//lib/./ci/d", home="/var/lib/ci") == "~/d"
    assert redact_value("/var/lib/ci/d", home="//var/lib//ci/") == "~/d"
    assert redact_value("/var/lib/cix", home="/var/lib/ci") == "/var/lib/cix"


@pytest.mark.parametrize("value", [
    "/.." * 70_000, "/home" * 40_000 + "/x", "//" * 100_000, "/./" * 70_000, "x=" * 100_000 + "token=1",
    "--a=" * 50_000, "://@" * 50_000, "/mnt/c" * 30_000, "C:\\" * 60_000,
])
def test_redaction_stays_linear(value: str) -> None:
    started = time.monotonic()
    redact_value(value, home="/.." * 1_000)
    assert time.monotonic() - started < 5  # generous: quadratic work would take minutes


# ---------------------------------------------------------------- the paths a manifest records


def test_the_interpreter_and_library_paths_lose_the_home_and_keep_the_digest() -> None:
    recorded = load_manifest(DATA_DIR / "manifests" / "intel_xeon_amx_2vcpu_tf2.21.0.json")
    venv = "/home//someuser/./venv"
    maps = (DATA_DIR / "proc_maps" / "tf_2.21_cpu_this_machine.txt").read_text()
    libraries = [LoadedLibrary(name=lib.name, version=lib.version, path=f"{venv}/lib/{lib.name}.so")
                 for lib in parse_proc_maps(maps)]
    assert libraries
    manifest = with_digest(recorded.model_copy(update={
        "python": recorded.python.model_copy(update={"executable": f"{venv}/bin/python"}),
        "tensorflow": recorded.tensorflow.model_copy(update={"loaded_libraries": libraries,
                                                             "detail": "loaded from /home/someuser/venv"}),
    }))

    redacted = redact_locations(manifest, home=None)

    assert "someuser" not in redacted.model_dump_json()
    assert redacted.python.executable == "~/venv/bin/python"
    assert {lib.path for lib in redacted.tensorflow.loaded_libraries} == {
        f"~/venv/lib/{lib.name}.so" for lib in libraries}
    assert compute_digest(redacted) == manifest.digest == recorded.digest  # where, not what: not in the digest


def test_a_manifest_without_a_home_in_it_is_unchanged() -> None:
    recorded = load_manifest(DATA_DIR / "manifests" / "intel_xeon_amx_2vcpu_tf2.21.0.json")
    assert redact_locations(recorded, home="/home/someone") == recorded
