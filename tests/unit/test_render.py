"""Dockerfile rendering: pure, exact full-text comparison with expected files (cog-style).

The inputs are a hand-made manifest and lockdown, so the expected files only change when the
template, the spec rules or these inputs change. Regenerate on purpose with
ENVLOCK_REGENERATE_EXPECTED=1 and review the diff.
"""

from __future__ import annotations

import os

import pytest

from envlock.errors import BadInputError
from envlock.image import compat
from envlock.image.data import base_for_python, parse_base_images
from envlock.image.render import DOCKERIGNORE, render
from envlock.image.spec import DETERMINISM_ENV, spec_from_golden
from envlock.models import LockdownSettings
from tests.helpers import BASE_IMAGE, DATA_DIR, REPO_ROOT, make_manifest

EXPECTED = DATA_DIR / "image"


LOCKDOWN = LockdownSettings(seed=42, op_determinism=True, intra_op_threads=2, inter_op_threads=1,
                            environment={"TF_XLA_FLAGS": "--tf_xla_auto_jit=0", "OMP_NUM_THREADS": "2",
                                         "CUDA_VISIBLE_DEVICES": "0"})


def make_spec(variant: str):  # type: ignore[no-untyped-def]
    manifest = make_manifest(driver="535.54.03" if variant == "gpu" else None)
    return spec_from_golden(manifest, LOCKDOWN, variant=variant, base=BASE_IMAGE,  # type: ignore[arg-type]
                            golden_digest="sha256:" + "cd" * 32, envlock_version="0.1.0",
                            compat=compat.lookup("2.21.0"))


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_render_matches_expected_file_exactly(variant: str) -> None:
    text = render(make_spec(variant))
    expected_file = EXPECTED / f"Dockerfile.{variant}.expected"
    if os.environ.get("ENVLOCK_REGENERATE_EXPECTED") == "1":
        expected_file.write_text(text)
    assert text == expected_file.read_text()


def test_render_is_pure_and_stable() -> None:
    spec = make_spec("cpu")
    assert render(spec) == render(spec.model_copy(deep=True))
    assert "{{" not in render(spec)


def test_determinism_env_is_baked_and_golden_values_kept() -> None:
    env = make_spec("cpu").environment
    for name, value in DETERMINISM_ENV.items():
        assert env[name] == value
    assert env["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=0"  # the golden's own XLA setting
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["TF_NUM_INTRAOP_THREADS"] == "2" and env["TF_NUM_INTEROP_THREADS"] == "1"
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0"  # what the golden actually ran with, made explicit
    assert env["ENVLOCK_GOLDEN"] == "/etc/envlock/golden.json"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the recording host's devices are not baked
    assert list(env) == sorted(env)


def test_onednn_follows_the_golden_when_it_was_on() -> None:
    manifest = make_manifest(onednn=True, env={})
    spec = spec_from_golden(manifest, LockdownSettings(), variant="cpu", base=BASE_IMAGE, golden_digest="sha256:x",
                            envlock_version="0.1.0", compat=None)
    assert spec.environment["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert "TF_NUM_INTRAOP_THREADS" not in spec.environment


def test_labels_carry_digests_and_versions() -> None:
    cpu, gpu = make_spec("cpu").labels, make_spec("gpu").labels
    assert cpu["io.envlock.golden.digest"] == "sha256:" + "cd" * 32
    assert cpu["io.envlock.manifest.digest"].startswith("sha256:")
    assert cpu["io.envlock.tensorflow.version"] == "2.21.0"
    assert cpu["org.opencontainers.image.base.digest"] == BASE_IMAGE.image
    assert "io.envlock.cuda.version" not in cpu
    assert gpu["io.envlock.cuda.version"] == "12.5" and gpu["io.envlock.cudnn.version"] == "9.3"


def test_values_with_dollar_and_quotes_are_escaped() -> None:
    spec = make_spec("cpu")
    spec.environment["XLA_FLAGS"] = 'a "b" $HOME \\x'
    assert 'XLA_FLAGS="a \\"b\\" \\$HOME \\\\x"' in render(spec)


def test_gpu_render_uses_no_cuda_base_image() -> None:
    text = render(make_spec("gpu"))
    from_lines = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert from_lines and all(BASE_IMAGE.image in line for line in from_lines)
    assert "nvidia/cuda" not in text
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in text


def test_dockerignore_excludes_everything_but_the_context_files() -> None:
    lines = DOCKERIGNORE.splitlines()
    assert "*" in lines and "!wheelhouse/*.whl" in lines and "!envlock/golden.json" in lines


def test_base_for_python_picks_the_matching_pin_or_says_what_to_do() -> None:
    bases = parse_base_images("[a]\n# human tag\ntag = x:1\nimage = sha256:1\npython = 3.11\n")
    assert base_for_python("3.11.7", bases).tag == "x:1"
    with pytest.raises(BadInputError, match="images/make-base.sh"):
        base_for_python("3.12.1", bases)


def test_committed_pins_are_digests_with_a_human_tag() -> None:
    for base in parse_base_images((REPO_ROOT / "images" / "base-images.cfg").read_text()):
        assert base.image.startswith("sha256:") or "@sha256:" in base.image
        assert len(base.image.split("sha256:")[-1]) == 64
        assert base.tag


@pytest.mark.parametrize("value", ["--a\nRUN echo pwned", "--a\rRUN echo pwned", "a\0b"])
def test_a_golden_value_with_a_line_break_is_refused_naming_the_key(value: str) -> None:
    manifest = make_manifest(env={"XLA_FLAGS": value})
    with pytest.raises(BadInputError, match="golden environment XLA_FLAGS: contains a line break"):
        spec_from_golden(manifest, LockdownSettings(), variant="cpu", base=BASE_IMAGE, golden_digest="sha256:x",
                         envlock_version="0.1.0", compat=None)
    lockdown = LockdownSettings().model_copy(update={"environment": {"XLA_FLAGS": value}})
    with pytest.raises(BadInputError, match="XLA_FLAGS"):
        spec_from_golden(make_manifest(), lockdown, variant="cpu", base=BASE_IMAGE, golden_digest="sha256:x",
                         envlock_version="0.1.0", compat=None)


@pytest.mark.parametrize("key", ["BAD NAME", "A=B", "1X", "X\nRUN echo pwned", ""])
def test_a_golden_key_that_is_not_an_env_name_is_refused(key: str) -> None:
    with pytest.raises(BadInputError, match="not a valid name"):
        spec_from_golden(make_manifest(env={key: "1"}), LockdownSettings(), variant="cpu", base=BASE_IMAGE,
                         golden_digest="sha256:x", envlock_version="0.1.0", compat=None)


def test_a_base_tag_with_a_line_break_is_refused() -> None:
    base = BASE_IMAGE.model_copy(update={"tag": "x:1\nRUN echo pwned"})
    with pytest.raises(BadInputError, match="base image tag"):
        spec_from_golden(make_manifest(), LockdownSettings(), variant="cpu", base=base, golden_digest="sha256:x",
                         envlock_version="0.1.0", compat=None)


def test_render_itself_refuses_line_breaks_in_a_hand_edited_spec() -> None:
    spec = make_spec("cpu")
    spec.environment["XLA_FLAGS"] = "--a\nRUN echo pwned"
    with pytest.raises(BadInputError, match="XLA_FLAGS"):
        render(spec)
    spec = make_spec("cpu")
    spec.labels["io.example.note"] = "a\nRUN echo pwned"
    with pytest.raises(BadInputError, match=r"label io\.example\.note"):
        render(spec)
