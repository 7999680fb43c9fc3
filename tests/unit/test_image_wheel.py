"""envlock's own wheel for the image (envlock/image/wheel.py), without running pip: the wheel of
an installed envlock comes from the wheelhouse, a source tree's is cached by the sources' content."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import EnvironmentProblem
from envlock.image import wheel


def _no_pip(*_args: object, **_kwargs: object) -> int:
    raise AssertionError("pip ran, but the wheel was there already")


def _source_tree(root: Path) -> Path:
    (root / "envlock" / "__pycache__").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "envlock"\n')
    (root / "envlock" / "__init__.py").write_text("")
    (root / "envlock" / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    (root / "images" / "base-images.cfg").write_text("[x]\n")
    return root


def test_an_installed_envlock_takes_its_wheel_from_the_wheelhouse(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheel, "source_root", lambda: None)
    monkeypatch.setattr(wheel, "run_streaming", _no_pip)
    house = tmp_path / "wheelhouse"
    house.mkdir()
    with pytest.raises(EnvironmentProblem, match=r"not running from a source tree; put envlock-0\.1\.0-\*\.whl"):
        wheel.envlock_wheel("0.1.0", cache_dir=tmp_path / "cache", wheelhouse=house)
    (house / "envlock-0.1.0-py3-none-any.whl").write_bytes(b"w")
    (house / "envlock-0.2.0-py3-none-any.whl").write_bytes(b"other version")
    assert wheel.envlock_wheel("0.1.0", cache_dir=tmp_path / "cache", wheelhouse=house) == \
        house / "envlock-0.1.0-py3-none-any.whl"


def test_a_source_tree_wheel_is_cached_by_the_sources_content(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = _source_tree(tmp_path / "src")
    monkeypatch.setattr(wheel, "source_root", lambda: root)
    monkeypatch.setattr(wheel, "run_streaming", _no_pip)
    cache = tmp_path / "cache"
    built = cache / "envlock-wheels" / wheel.source_digest(root) / "envlock-0.1.0-py3-none-any.whl"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"wheel")
    assert wheel.envlock_wheel("0.1.0", cache_dir=cache, wheelhouse=tmp_path / "house") == built


def test_the_source_digest_follows_sources_not_bytecode(tmp_path: Path) -> None:
    root = _source_tree(tmp_path)
    digest = wheel.source_digest(root)
    (root / "envlock" / "__pycache__" / "x.pyc").write_bytes(b"recompiled")
    assert wheel.source_digest(root) == digest
    (root / "envlock" / "__init__.py").write_text("X = 1\n")
    assert wheel.source_digest(root) != digest
