"""`envlock build -r FILE`: the pins of a requirements/lock file, and the check that the resolved
wheels are exactly those pins (pure: text in, typed pins and one-line errors out).

``-r`` is documented as "install the pins of this file", so every requirement line must pin one
version (``name==version``, as ``pip freeze``, ``pip-compile`` and ``uv pip compile`` write
them) and a ``--hash=sha256:...`` on it is enforced: the wheel resolved for that name must have
one of the listed sha256, or the build stops (exit 2, the file is wrong) before anything is
downloaded into an image. As with pip's ``--require-hashes``, hashes are all or nothing: a lock
with hashes on some lines and not on others is refused. envlock's own runtime dependencies that
the file does not name are resolved from the index as before (with their sha256).

Refused, one line each (exit 2), naming the line: an unpinned or ranged requirement
(``numpy>=1``, ``numpy==1.*``), a URL or path requirement, a hash of another algorithm, an option
that pulls in lines from elsewhere (``-r``, ``-c``, ``-e``), and per-line options other than
``--hash``. Index options (``--index-url``, ``--extra-index-url``, ``--find-links``,
``--trusted-host``) are ignored: the image's wheels come from envlock's own resolution, and the
hashes say which bytes are acceptable whatever the index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envlock.errors import BadInputError, one_line

# name[extras]==version[; marker]  (PEP 508 names, PEP 440 versions without wildcards)
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[A-Za-z0-9._,\s-]*\])?\s*"
    r"===?\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*(?P<marker>;.*)?"
)
_HASH = re.compile(r"--hash[=\s]\s*(?P<algorithm>[A-Za-z0-9]+):(?P<digest>\S*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_IGNORED_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host",
                    "--no-index", "--prefer-binary", "--only-binary", "--no-binary", "--pre")


@dataclass(frozen=True)
class Pin:
    """One requirement line of the file: what pip is asked for, and the sha256 it may resolve to."""

    name: str  # as written
    version: str
    requirement: str  # "name[extras]==version; marker", what the resolver gets (no hashes)
    sha256: tuple[str, ...]  # empty: the line has no hash
    line: int  # 1-based, of the line's first physical line

    @property
    def key(self) -> str:
        return normalize(self.name)


class Resolved(Protocol):
    """What a resolution says about one wheel (``wheelhouse.LockedWheel``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def sha256(self) -> str: ...


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first physical line number, text) of each line, continuations joined, comments dropped."""
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not parts:
            start = number
        continued = raw.endswith("\\")
        parts.append(raw[:-1] if continued else raw)
        if continued:
            continue
        line = re.sub(r"(^|\s)#.*", "", " ".join(parts)).strip()
        parts = []
        if line:
            yield start, line
    if parts:
        line = re.sub(r"(^|\s)#.*", "", " ".join(parts)).strip()
        if line:
            yield start, line


def _problem(path: Path | str, number: int, line: str, problem: str) -> BadInputError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return BadInputError(f"{one_line(str(path))}: line {number}: {one_line(shown)}: {problem}")


def _option_line(path: Path | str, number: int, line: str) -> None:
    option = line.split("=", 1)[0].split(None, 1)[0]
    if option in _IGNORED_OPTIONS:
        return
    if option in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
        raise _problem(path, number, line, "pulls in requirements from elsewhere, which -r cannot pin: "
                                           "inline that file's pins instead")
    raise _problem(path, number, line, "this option is not supported in a lock file for envlock build")


def _requirement_line(path: Path | str, number: int, line: str) -> Pin:
    spec, _, options = line.partition(" --")
    options = ("--" + options) if options else ""
    spec = spec.strip()
    match = _PIN.fullmatch(spec)
    if match is None:
        raise _problem(path, number, line, "not pinned to one version (write name==version): "
                                           "-r installs the pins of the file, it does not resolve ranges")
    hashes = [f"{m['algorithm']}:{m['digest']}" for m in _HASH.finditer(options)]
    rest = _HASH.sub("", options).strip()
    if rest:
        raise _problem(path, number, line, f"unsupported option {rest.split()[0]!r} (only --hash=sha256:...)")
    sha256 = []
    for item in hashes:
        algorithm, _, digest = item.partition(":")
        if algorithm != "sha256":
            raise _problem(path, number, line, f"a {algorithm} hash: envlock checks sha256 only")
        if not _SHA256.fullmatch(digest):
            raise _problem(path, number, line, "a sha256 hash must be 64 lowercase hex digits")
        sha256.append(digest)
    requirement = f"{match['name']}{match['extras'] or ''}=={match['version']}"
    if match["marker"]:
        requirement += f" {match['marker'].strip()}"
    return Pin(name=match["name"], version=match["version"], requirement=requirement,
               sha256=tuple(dict.fromkeys(sha256)), line=number)


def parse_lock(text: str, path: Path | str) -> list[Pin]:
    """The pins of a requirements/lock file; BadInputError (one line, naming the line) otherwise."""
    pins: list[Pin] = []
    seen: dict[str, Pin] = {}
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            _option_line(path, number, line)
            continue
        pin = _requirement_line(path, number, line)
        if pin.key in seen and "; " not in pin.requirement:
            raise _problem(path, number, line, f"{pin.name} is pinned twice (also on line {seen[pin.key].line})")
        seen.setdefault(pin.key, pin)
        pins.append(pin)
    if not pins:
        raise BadInputError(f"{one_line(str(path))}: no requirements in it")
    hashed = [p for p in pins if p.sha256]
    if hashed and len(hashed) != len(pins):
        bare = next(p for p in pins if not p.sha256)
        raise BadInputError(f"{one_line(str(path))}: line {bare.line}: {one_line(bare.requirement)} has no "
                            f"--hash while other lines do: hash every line or none (as pip --require-hashes does)")
    return pins


def check_resolved(pins: list[Pin], resolved: Iterable[Resolved], path: Path | str) -> None:
    """Every resolved wheel the file names is its pinned version with one of its sha256."""
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.key, []).append(pin)
    for wheel in resolved:
        candidates = by_name.get(normalize(wheel.name))
        if not candidates:
            continue  # envlock's own runtime dependencies the file does not name
        versions = {pin.version for pin in candidates}
        pin = candidates[0]
        if wheel.version not in versions:
            raise BadInputError(f"{one_line(str(path))}: line {pin.line}: {one_line(pin.requirement)}: resolved to "
                                f"{one_line(wheel.version)} instead (another requirement needs it)")
        allowed = {digest for p in candidates for digest in p.sha256}
        if allowed and wheel.sha256 not in allowed:
            raise BadInputError(
                f"{one_line(str(path))}: line {pin.line}: {one_line(pin.name)}=={one_line(pin.version)}: the wheel "
                f"{one_line(wheel.filename)} has sha256 {one_line(wheel.sha256)}, which the file does not allow "
                f"({', '.join(sorted(allowed))[:200]}): a wrong or stale hash; regenerate the lock")
