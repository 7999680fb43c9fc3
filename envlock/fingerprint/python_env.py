"""The Python interpreter and every installed distribution, each with a RECORD digest.

Two wheels of the same version built differently (another compiler, another BLAS) have
different RECORD files -- RECORD lists every installed file with its own hash -- so a sha256
over RECORD tells them apart where the version string cannot.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from envlock.models import Distribution, PythonInfo

# envlock itself is left out: its version is recorded separately and kept out of the digest,
# so upgrading the tool does not make the same machine look different.
_EXCLUDED = {"envlock"}


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name ("Typing_Extensions" -> "typing-extensions")."""
    return re.sub(r"[-_.]+", "-", name).lower()


# Lines of RECORD that the *installer* writes, not the wheel: they differ between two
# installs of the very same wheel (another pip, another interpreter path in a script's
# shebang, compiled bytecode), so they are left out of the digest.
_INSTALLER_WRITTEN = re.compile(
    r"(^\.\./)"  # console scripts outside site-packages (shebang names the interpreter)
    r"|(\.dist-info/(INSTALLER|REQUESTED|RECORD|direct_url\.json)$)"
    r"|(__pycache__/)|(\.pyc$)"
)


def record_digest(record_text: str | None) -> str | None:
    """sha256 over the wheel-content lines of RECORD (path and hash), in sorted order."""
    if record_text is None:
        return None
    kept = []
    for line in record_text.splitlines():
        path, _, rest = line.partition(",")
        path = path.strip().strip('"')
        if not path or _INSTALLER_WRITTEN.search(path):
            continue
        file_hash = rest.partition(",")[0]
        kept.append(f"{path},{file_hash}")
    return hashlib.sha256("\n".join(sorted(kept)).encode("utf-8")).hexdigest()


# (dist-info directory, (size, mtime_ns) of its METADATA and RECORD) -> (name, version, RECORD digest).
# A long-running process (`envlock watch`) re-fingerprints every minute; re-reading and re-hashing
# 60-odd RECORD files each time cost ~0.15 s, the stat calls that prove nothing changed ~1 ms.
# An install or upgrade rewrites RECORD (a new size or mtime), so it is never served stale.
_DIST_CACHE: dict[str, tuple[tuple[tuple[int, int] | None, ...], tuple[str | None, str, str | None]]] = {}


def _stamp(directory: str, name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(directory, name))
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def read_distribution(dist: Any) -> tuple[str | None, str, str | None]:
    """An installed distribution's (name, version, digest of its RECORD): the one place that reads it."""
    name = dist.metadata["Name"] if dist.metadata else None
    return name, str(dist.version), record_digest(dist.read_text("RECORD"))


def _cached_distribution(dist: Any) -> tuple[str | None, str, str | None]:
    directory = getattr(dist, "_path", None)  # PathDistribution's dist-info folder; others are not cached
    if directory is None:
        return read_distribution(dist)
    directory = str(directory)
    stamps = (_stamp(directory, "METADATA"), _stamp(directory, "PKG-INFO"), _stamp(directory, "RECORD"))
    cached = _DIST_CACHE.get(directory)
    if cached is not None and cached[0] == stamps:
        return cached[1]
    value = read_distribution(dist)
    _DIST_CACHE[directory] = (stamps, value)
    return value


def distributions_from(dists: Iterable[Any]) -> list[Distribution]:
    """Distribution list from importlib.metadata distributions; first on sys.path wins, as at import."""
    found: dict[str, Distribution] = {}
    for dist in dists:
        name, version, record = _cached_distribution(dist)
        if not name:
            continue
        key = normalize_name(name)
        if key in found or key in _EXCLUDED:
            continue
        found[key] = Distribution(name=key, version=version, record_sha256=record)
    return [found[key] for key in sorted(found)]


def collect_python() -> PythonInfo:
    return PythonInfo(
        version=platform.python_version() or None,
        implementation=platform.python_implementation() or None,
        compiler=platform.python_compiler() or None,
        executable=sys.executable or None,
        distributions=distributions_from(metadata.distributions()),
    )
