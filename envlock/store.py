"""The one place envlock files are read and written.

Every file carries ``kind`` and ``schema_version``. Reading validates, migrates older
versions one step at a time, and refuses newer ones; writing is atomic (temp file in the
same directory, fsync, then ``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import select
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from envlock.errors import BadFileError
from envlock.limits import MAX_INPUT_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH, MAX_WRITE_STALL_SECONDS

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


def _node_kind(mode: int) -> str:
    """What a non-regular node is, for a one-line message."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_problem(exc: OSError | ValueError, doing: str) -> str:
    """One short phrase for a failed system call on a path (the same words wherever a file is read)."""
    if isinstance(exc, ValueError):  # os.stat/os.open on a path with a NUL byte
        return "invalid path (it contains a NUL byte)"
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return f"cannot {doing} ({exc.strerror or exc})"


def _temp_prefix(name: str) -> str:
    """``.{name}.`` cut so the temp name (prefix + 8 random + ``.tmp``) fits NAME_MAX (255 bytes)."""
    short = os.fsencode(name)[:200]  # a cut UTF-8 character round-trips through surrogateescape
    return f".{os.fsdecode(short)}."


def output_target(path: Path | str) -> tuple[Path, bool]:
    """Where a write to ``path`` goes, and whether it is written through (FIFO, character device).

    Checked before slow work and again when writing: a regular file, a symlink to one, or a path
    that does not exist yet is replaced atomically *at the resolved target*, so a symlink stays a
    symlink; a FIFO or character device (``/dev/null``, ``/dev/stdout``, a terminal) is written
    through and never replaced; anything else (a directory, a socket, a block device) is refused.
    """
    path = Path(path)
    try:
        found = os.stat(path)
    except FileNotFoundError:  # nothing there yet (or a dangling symlink: create what it names, as open() does)
        return Path(os.path.realpath(path)), False
    except (OSError, ValueError) as exc:
        raise BadFileError(path, os_problem(exc, "write")) from None
    if stat.S_ISFIFO(found.st_mode) or stat.S_ISCHR(found.st_mode):
        return path, True
    if stat.S_ISDIR(found.st_mode):
        raise BadFileError(path, "is a directory; give a file name")
    if not stat.S_ISREG(found.st_mode):
        raise BadFileError(path, f"is {_node_kind(found.st_mode)}: envlock writes regular files, FIFOs and "
                                 "character devices only")
    resolved = Path(os.path.realpath(path))
    try:
        same = os.stat(resolved)
    except (OSError, ValueError):
        same = None
    if same is None or (same.st_dev, same.st_ino) != (found.st_dev, found.st_ino):
        # e.g. /proc/self/fd/N of a deleted file: there is no name to replace atomically
        raise BadFileError(path, "names a file that has no path envlock could replace; give the file's own path")
    return resolved, False


def check_output_path(path: Path | str) -> None:
    """Refuse an unusable output path with one line before spending seconds producing the output."""
    target, write_through = output_target(path)
    if not write_through and not target.parent.is_dir():
        raise BadFileError(path, f"the directory does not exist ({target.parent})")


def _write_through(path: Path, data: bytes) -> None:
    """Write ``data`` into an existing FIFO or character device, never creating or truncating it.

    Non-blocking throughout: a FIFO with no reader is one line at once (ENXIO), and a reader that
    stops reading for ``MAX_WRITE_STALL_SECONDS`` is one line, never a hang.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise BadFileError(path, "is a FIFO with no reader (start the reader first)") from None
        raise
    try:
        opened = os.fstat(fd)
        if not (stat.S_ISFIFO(opened.st_mode) or stat.S_ISCHR(opened.st_mode)):
            raise BadFileError(path, "was replaced while envlock was opening it; not written")
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                if not poller.poll(MAX_WRITE_STALL_SECONDS * 1000):
                    raise BadFileError(path, f"its reader took nothing for {MAX_WRITE_STALL_SECONDS:.0f} s; "
                                             "gave up writing") from None
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    The file gets ``mode`` if given (e.g. 0o755 for a script), else the mode a plain ``open()``
    would give (0666 less the umask), not the temp file's 0600: goldens are shared, and baked
    into images whose jobs run as another user. A hard link at ``path`` never carries the new
    content anywhere else; a symlink keeps pointing where it did, at the new file. A FIFO or
    character device is written through, and nothing else but a regular file is ever replaced
    (``output_target``): ``-o /dev/null`` stays a device. Refusals are ``BadFileError``.
    """
    path = Path(path)
    target, write_through = output_target(path)
    if write_through:
        _write_through(path, data)
        return
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, (0o666 & ~_current_umask()) if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(target).st_mode
            if not stat.S_ISREG(now):  # swapped for a device/FIFO/link since output_target looked
                raise BadFileError(path, f"became {_node_kind(now)} while envlock was writing; not replaced")
        os.replace(tmp_name, target)
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


def _open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file at ``path`` (a symlink to one is fine), or one line:
    checked by stat before opening (opening a device can have effects: a tape rewinds), opened
    non-blocking (a FIFO never blocks), and checked again on the descriptor (a node swapped in
    between is refused too)."""
    try:
        found = os.stat(path)
    except (OSError, ValueError) as exc:
        raise BadFileError(path, os_problem(exc, "read")) from None
    if not stat.S_ISREG(found.st_mode):
        raise BadFileError(path, f"is {_node_kind(found.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise BadFileError(path, os_problem(exc, "read")) from None
    try:
        opened = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise BadFileError(path, os_problem(exc, "read")) from None
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise BadFileError(path, f"is {_node_kind(opened.st_mode)}, not a regular file")
    return fd


def require_regular_file(path: Path | str) -> None:
    """One line (BadFileError) unless ``path`` is a regular file (or a symlink to one)."""
    os.close(_open_regular(Path(path)))


def sha256_of_file(path: Path | str) -> str:
    """The sha256 (hex) of a regular file of any size, streamed (wheels run to hundreds of MB);
    like ``read_input_bytes`` it refuses anything but a regular file in one line, never blocking."""
    path = Path(path)
    fd = _open_regular(path)
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    except OSError as exc:
        raise BadFileError(path, os_problem(exc, "read")) from None
    finally:
        os.close(fd)
    return digest.hexdigest()


def read_input_bytes(path: Path | str, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file a user handed in, read without ever blocking or reading without end.

    Only a regular file is read (a symlink to one is fine): a FIFO, device, socket or directory
    is refused with one line before anything could block, and the file is opened non-blocking
    and checked again on the open descriptor, so one swapped in between is refused too. At most
    ``max_bytes`` are accepted (``/dev/zero`` or a multi-GB file never reaches memory).
    """
    path = Path(path)
    fd = _open_regular(path)
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:  # read one byte past the cap to know the file is larger
            chunk = os.read(fd, min(max_bytes + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise BadFileError(path, os_problem(exc, "read")) from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise BadFileError(path, f"larger than {max_bytes // (1 << 20)} MiB: not a file envlock reads")
    return b"".join(chunks)


def read_input_text(path: Path | str) -> str:
    """``read_input_bytes`` decoded as UTF-8; a binary file is one line, not a traceback."""
    raw = read_input_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFileError(path, "not a text file (not UTF-8)") from None


_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
_TO_SQUARE = bytes.maketrans(b"{}", b"[]")


def json_shape_problem(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH,
                       max_containers: int = MAX_JSON_CONTAINERS) -> str | None:
    """Why JSON text is too deep or has too many arrays/objects to parse -- decided before parsing.

    Linear time, no recursion, no per-token objects: drop escaped backslashes and quotes, keep only
    quotes and brackets (UTF-8 never puts an ASCII byte inside a multi-byte character), drop the
    brackets inside strings; then each pass deletes the innermost ``[]`` pairs, so a document
    empties in exactly its depth. Malformed text that is not deep is left to the JSON parser.
    """
    opening = raw.count(b"[") + raw.count(b"{")
    if opening > max_containers or raw.count(b"]") + raw.count(b"}") > max_containers:
        return f"more than {max_containers} JSON arrays/objects: not an envlock file"
    if opening <= max_depth:
        return None
    structure = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # Adjacent quotes have no bracket between them: dropping them keeps every bracket's side
    # (inside/outside a string) and leaves at most two quotes per remaining bracket.
    outside = b"".join(structure.replace(b'""', b"").split(b'"')[::2])
    brackets = outside.translate(_TO_SQUARE)
    if b"[" * (max_depth + 1) in brackets:
        return f"JSON nested deeper than {max_depth} levels: not an envlock file"
    for _ in range(max_depth):
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:
            return None
        brackets = shorter
    return f"JSON nested deeper than {max_depth} levels: not an envlock file" if b"[]" in brackets else None


def read_json_file(path: Path | str) -> Any:
    """Read a JSON file, turning every failure into a one-line ``BadFileError``."""
    path = Path(path)
    raw = read_input_bytes(path)
    if not raw.strip():
        raise BadFileError(path, "file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFileError(path, "not a text file (not UTF-8)") from None
    shape_problem = json_shape_problem(raw)  # before json.loads: it recurses, and builds every object
    if shape_problem:
        raise BadFileError(path, shape_problem)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The parser ran off the end (or into an unterminated string): the file was cut short.
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise BadFileError(path, f"truncated JSON (ends at line {exc.lineno})") from None
        raise BadFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise BadFileError(path, f"not usable JSON ({exc})") from None


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
    check_as_written: Callable[[dict[str, Any]], None] | None = None,
) -> M:
    """Load ``path`` as ``model``: check kind, migrate ``schema_version`` step by step, validate.

    ``migrations[n]`` turns a version-``n`` document into a version-``n+1`` one.
    ``check_as_written`` sees the document as the file has it, before any migration or default
    (an integrity digest covers what was written, so fields added later never break it).
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
    if check_as_written is not None:
        check_as_written(data)
    steps = migrations or {}
    while version < current_version:
        step = steps.get(version)
        if step is None:
            raise BadFileError(path, f"no migration from schema_version {version}")
        data = step(data)
        version += 1
        data["schema_version"] = version
    try:
        # Strict: a file says 2, not "2", and true, not 1 -- lax coercion would hide a forged value.
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BadFileError(path, _first_validation_problem(exc)) from None
    except RecursionError:  # cannot happen below MAX_JSON_DEPTH; never a traceback if it does
        raise BadFileError(path, "nested too deeply to validate") from None
