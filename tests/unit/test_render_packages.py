"""The image's package set, lock text and context rules: pure functions, no pip, no docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import BadInputError
from envlock.image import compat, wheelhouse
from envlock.image.build import requirements_file
from envlock.image.render import DOCKERIGNORE
from tests.helpers import REPO_ROOT, make_manifest


def test_cpu_package_set_pins_the_golden_and_skips_its_dev_tools() -> None:
    packages = wheelhouse.package_set(make_manifest(), variant="cpu", compat=None, envlock_requirements=["typer>=0.12"])
    assert packages.requirements == ["tensorflow-cpu==2.21.0", "typer>=0.12"]
    assert "numpy==2.4.6" in packages.constraints
    # dev tools are constraints only: installed if (and only if) something needs them
    assert "pytest==9.2.0" not in packages.requirements
    assert not any(c.startswith("envlock==") for c in packages.constraints)


def test_gpu_package_set_uses_and_cuda_with_the_tested_cuda_wheels() -> None:
    row = compat.lookup("2.21.0")
    packages = wheelhouse.package_set(make_manifest(), variant="gpu", compat=row, envlock_requirements=[])
    assert packages.requirements == ["tensorflow[and-cuda]==2.21.0"]
    assert "nvidia-cudnn-cu12==9.3.0.75" in packages.constraints
    assert not any(c.lower().startswith("tensorflow_cpu") for c in packages.constraints)
    assert packages.notes and "tensorflow-cpu" in packages.notes[0]


def test_platform_tags_cover_older_manylinux_for_the_base_glibc() -> None:
    tags = wheelhouse.platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert all(t != "linux_x86_64" for t in tags)  # never locally built, unportable wheels


def test_lock_text_is_sorted_and_every_line_is_hashed() -> None:
    lock = [wheelhouse.LockedWheel("Numpy", "2.4.6", "n.whl", "u", "a" * 64),
            wheelhouse.LockedWheel("absl_py", "2.5.1", "a.whl", "u", "b" * 64)]
    text = wheelhouse.lock_text(lock)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == ["absl-py==2.5.1 \\", f"    --hash=sha256:{'b' * 64}", "numpy==2.4.6 \\",
                    f"    --hash=sha256:{'a' * 64}"]


def test_report_parsing_keeps_the_index_sha256() -> None:
    report = {"install": [{"metadata": {"name": "six", "version": "1.17.0"},
                           "download_info": {"url": "https://x/six-1.17.0-py2.py3-none-any.whl",
                                             "archive_info": {"hashes": {"sha256": "c" * 64}}}}]}
    [wheel] = wheelhouse.parse_report(report)
    assert (wheel.name, wheel.filename, wheel.sha256) == ("six", "six-1.17.0-py2.py3-none-any.whl", "c" * 64)


def test_top_level_dockerignore_is_the_context_allow_list() -> None:
    assert (REPO_ROOT / ".dockerignore").read_text() == DOCKERIGNORE


def test_requirements_file_pins_are_read_with_their_hashes_without_comments(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# pinned\nnumpy==2.4.6 \\\n    --hash=sha256:{'a' * 64}\n--index-url https://x\n"
                    f"tensorflow-cpu==2.21.0 --hash=sha256:{'b' * 64}\n")
    pins = requirements_file(lock)
    assert [(p.requirement, p.sha256) for p in pins] == [("numpy==2.4.6", ("a" * 64,)),
                                                         ("tensorflow-cpu==2.21.0", ("b" * 64,))]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(BadInputError, match="no requirements"):
        requirements_file(empty)
