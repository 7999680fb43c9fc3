"""envlock's own wheel, for the image: built from the source tree envlock runs from (cached by
the sources' content) or, for an installed envlock, taken from the wheelhouse.

A side-effect module: it reads the source tree and runs ``pip wheel`` through ``envlock.runner``.
The third-party wheels are ``wheelhouse.py``'s job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from envlock.errors import EnvironmentProblem
from envlock.runner import run_streaming

Progress = Callable[[str], None]

# Reproducible envlock wheels: setuptools/wheel take zip timestamps from SOURCE_DATE_EPOCH, so the
# same source gives the same bytes, the same sha256 and a cached Docker layer.
SOURCE_DATE_EPOCH = "315532800"


def source_root() -> Path | None:
    """The repository envlock runs from, if it runs from one (editable install or checkout)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "envlock"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def source_digest(root: Path) -> str:
    """The sha256 over the source a wheel of envlock is built from (the cache key of the built wheel)."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", *sorted((root / "envlock").rglob("*")), *sorted((root / "images").glob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def envlock_wheel(version: str, *, cache_dir: Path, wheelhouse: Path, progress: Progress = lambda _: None) -> Path:
    """A wheel of this envlock: built from the source tree (cached by its content) or found in the wheelhouse."""
    root = source_root()
    if root is None:
        found = sorted(wheelhouse.glob(f"envlock-{version}-*.whl"))
        if not found:
            raise EnvironmentProblem(f"envlock is not running from a source tree; put envlock-{version}-*.whl "
                                     f"in the wheelhouse ({wheelhouse})")
        return found[-1]
    out = cache_dir / "envlock-wheels" / source_digest(root)
    built = sorted(out.glob("envlock-*.whl"))
    if built:
        return built[-1]
    progress(f"envlock: building a wheel from {root}")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    # Build from a clean copy of exactly the hashed sources: pip builds in-tree, and a stale
    # build/lib left in the user's checkout (e.g. a module since renamed) would end up in the wheel.
    with tempfile.TemporaryDirectory(prefix="envlock-src-") as tmp:
        src = Path(tmp) / "envlock-src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(root / "envlock", src / "envlock", symlinks=True, ignore=ignore)
        shutil.copytree(root / "images", src / "images", symlinks=True, ignore=ignore)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                "-w", str(out), str(src)]
        if run_streaming(argv, lambda line: progress("  " + line), env=env) != 0:
            raise EnvironmentProblem(f"could not build an envlock wheel from {root} (see the lines above)")
    built = sorted(out.glob("envlock-*.whl"))
    if not built:
        raise EnvironmentProblem(f"pip wheel left no envlock wheel in {out}")
    return built[-1]
