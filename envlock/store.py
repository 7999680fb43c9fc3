"""The one place envlock files are read and written.

Every file carries ``kind`` and ``schema_version``. Reading validates, migrates older
versions one step at a time, and refuses newer ones; writing is atomic (temp file in the
same directory, fsync, then ``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from envlock.errors import BadFileError

M = TypeVar("M", bound=BaseModel)
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _current_umask() -> int:
    """The process umask, read without changing it (os.umask alone would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    The file gets ``mode`` if given (e.g. 0o755 for a script), else the mode a plain ``open()``
    would give (0666 less the umask), not the temp file's 0600: goldens are shared, and baked
    into images whose jobs run as another user. Replacing (not writing through) also means a
    hard link or symlink at ``path`` never carries the new content anywhere else.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, (0o666 & ~_current_umask()) if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8; the mode follows the umask."""
    if not isinstance(text, str):  # as a text-mode write would: never half-write a wrong value
        raise TypeError(f"atomic_write_text needs str, not {type(text).__name__}")
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_canonical(data: Any) -> str:
    """Stable JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def save_model(path: Path | str, model: BaseModel) -> None:
    atomic_write_text(path, dumps_canonical(model.model_dump(mode="json")))


def read_json_file(path: Path | str) -> Any:
    """Read a JSON file, turning every failure into a one-line ``BadFileError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadFileError(path, "no such file") from None
    except IsADirectoryError:
        raise BadFileError(path, "is a directory, not a file") from None
    except PermissionError:
        raise BadFileError(path, "permission denied") from None
    except OSError as exc:
        raise BadFileError(path, f"cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise BadFileError(path, "file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFileError(path, "not a text file (not UTF-8)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The parser ran off the end (or into an unterminated string): the file was cut short.
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise BadFileError(path, f"truncated JSON (ends at line {exc.lineno})") from None
        raise BadFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _first_validation_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"field '{where}': {first['msg']}{more}"


def load_model(
    path: Path | str,
    model: type[M],
    *,
    kind: str,
    current_version: int,
    migrations: dict[int, Migration] | None = None,
) -> M:
    """Load ``path`` as ``model``: check kind, migrate ``schema_version`` step by step, validate.

    ``migrations[n]`` turns a version-``n`` document into a version-``n+1`` one.
    """
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise BadFileError(path, f"expected a JSON object, found {type(data).__name__}")
    found_kind = data.get("kind")
    if found_kind != kind:
        what = f"'{found_kind}'" if found_kind is not None else "no 'kind' field"
        raise BadFileError(path, f"not an {kind} file ({what})")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadFileError(path, f"missing or invalid schema_version ({version!r})")
    if version > current_version:
        raise BadFileError(
            path,
            f"schema_version {version} is newer than this envlock understands "
            f"({current_version}); upgrade envlock to read it",
        )
    steps = migrations or {}
    while version < current_version:
        step = steps.get(version)
        if step is None:
            raise BadFileError(path, f"no migration from schema_version {version}")
        data = step(data)
        version += 1
        data["schema_version"] = version
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadFileError(path, _first_validation_problem(exc)) from None
