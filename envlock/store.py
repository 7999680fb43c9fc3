"""The one place envlock files are read and written.

Every file carries ``kind`` and ``schema_version``. Reading validates, migrates older
versions one step at a time, and refuses newer ones; writing is atomic (temp file in the
same directory, fsync, then ``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import select
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from envlock.errors import BAD_INPUT, ENVIRONMENT, BadFileError, EnvironmentProblem, EnvlockError
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


# The descriptor directories of this very process: /proc/self/fd and /proc/thread-self/fd as the
# kernel resolves them (/dev/stdout -> /proc/self/fd/1, /dev/fd -> /proc/self/fd).
_OWN_FD_DIR = re.compile(r"/proc/(?P<pid>[0-9]+)(?:/task/[0-9]+)?/fd")
_MAX_LINKS = 40  # as the kernel's ELOOP limit
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

WriteMethod = Literal["replace", "through_path", "through_descriptor"]


@dataclass(frozen=True)
class OutputTarget:
    """Where a write to a path goes (``output_target``).

    ``replace``: a regular file (or a path that does not exist yet) replaced atomically at ``path``,
    the resolved target; ``through_path``: a FIFO or character device opened at ``path`` and
    written into; ``through_descriptor``: a regular file this process already holds open as
    ``descriptor`` (``/dev/stdout`` under ``>> log``), written at that descriptor's offset, so
    ``>>`` appends and ``>`` writes where the shell left it. ``identity`` says which file it is:
    (device, inode), or the resolved path when nothing is there yet.
    """

    path: Path
    method: WriteMethod
    identity: tuple[int, int] | str
    descriptor: int | None = None

    @property
    def write_through(self) -> bool:
        return self.method != "replace"


class OutputWriteError(EnvlockError, OSError):
    """Writing an output failed in the file system: one line naming the file. Exit 3 when the disk,
    the quota or the file-size limit is full (the machine's problem), else 2. Also an ``OSError``,
    so code that handles failed file-system calls (the daemon's label writer) still handles it."""

    def __init__(self, path: Path | str, exc: OSError) -> None:
        full = exc.errno in _DISK_FULL
        problem = ("no space left on device (or over the quota or file-size limit); nothing was written"
                   if full else os_problem(exc, "write"))
        super().__init__(f"{path}: cannot write: {problem}")
        self.errno = exc.errno
        self.strerror = exc.strerror
        self.exit_code = ENVIRONMENT if full else BAD_INPUT


def _inherited_descriptor(path: Path) -> int | None:
    """N when ``path`` names one of this process's own descriptors (``/dev/stdout``, ``/dev/fd/N``,
    ``/proc/self/fd/N``), following symlinks one hop at a time; else None. Opening such a path
    anew would open the file it points to at offset 0, and replacing it would replace that file."""
    current = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        directory, name = os.path.split(current)
        found = _OWN_FD_DIR.fullmatch(os.path.realpath(directory))
        if found and int(found["pid"]) == os.getpid() and name.isdigit():
            return int(name)
        try:
            link = os.readlink(current)
        except (OSError, ValueError):  # not a symlink, or not there: a plain path
            return None
        current = os.path.join(directory, link)
    return None


def _descriptor_target(path: Path, descriptor: int) -> OutputTarget:
    try:
        found = os.fstat(descriptor)
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
    except OSError:
        raise BadFileError(path, f"names file descriptor {descriptor}, which is not open") from None
    identity = (found.st_dev, found.st_ino)
    if stat.S_ISFIFO(found.st_mode) or stat.S_ISCHR(found.st_mode):
        return OutputTarget(path, "through_path", identity)  # opened anew: non-blocking, without shared flags
    if not stat.S_ISREG(found.st_mode):
        raise BadFileError(path, f"is {_node_kind(found.st_mode)}: envlock writes regular files, FIFOs and "
                                 "character devices only")
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise BadFileError(path, f"names file descriptor {descriptor}, which is open for reading only")
    return OutputTarget(path, "through_descriptor", identity, descriptor)


def output_target(path: Path | str) -> OutputTarget:
    """Where a write to ``path`` goes (``OutputTarget``), or one line why it cannot.

    Checked before slow work and again when writing: a regular file, a symlink to one, or a path
    that does not exist yet is replaced atomically *at the resolved target*, so a symlink stays a
    symlink; a FIFO or character device (``/dev/null``, a pipe, a terminal) is written through and
    never replaced; a regular file this process holds open (``/dev/stdout`` redirected to a file)
    is written through that descriptor; anything else (a directory, a socket, a block device) is
    refused.
    """
    path = Path(path)
    descriptor = _inherited_descriptor(path)
    if descriptor is not None:
        return _descriptor_target(path, descriptor)
    try:
        found = os.stat(path)
    except FileNotFoundError:  # nothing there yet (or a dangling symlink: create what it names, as open() does)
        created = os.path.realpath(path)
        return OutputTarget(Path(created), "replace", created)
    except (OSError, ValueError) as exc:
        raise BadFileError(path, os_problem(exc, "write")) from None
    if stat.S_ISFIFO(found.st_mode) or stat.S_ISCHR(found.st_mode):
        return OutputTarget(path, "through_path", (found.st_dev, found.st_ino))
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
        # e.g. /proc/<pid>/fd/N of a deleted file: there is no name to replace atomically
        raise BadFileError(path, "names a file that has no path envlock could replace; give the file's own path")
    return OutputTarget(resolved, "replace", (found.st_dev, found.st_ino))


def check_output_path(path: Path | str) -> OutputTarget:
    """Refuse an unusable output path with one line before spending seconds producing the output."""
    target = output_target(path)
    if not target.write_through and not target.path.parent.is_dir():
        raise BadFileError(path, f"the directory does not exist ({target.path.parent})")
    return target


def _input_identity(path: Path | str) -> tuple[int, int] | str:
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return os.path.realpath(path)
    return found.st_dev, found.st_ino


def check_outputs(outputs: Iterable[Path | str | None], *, inputs: Iterable[Path | str | None] = (),
                  need_directory: bool = True) -> None:
    """Refuse, with one line (exit 2), before any work: an unusable output (``check_output_path``),
    an output that is one of the command's inputs (``verify G --report G`` would replace the golden
    with the report), or one file given as two outputs (``--report R --emit-env R``). "The same"
    is the same inode (a symlink or hard link to it counts), or the same resolved path for a file
    that does not exist yet. Two outputs written through (``/dev/null`` twice, ``/dev/stdout``
    twice) are fine: each is written in turn, nothing is replaced. ``None`` entries are skipped.
    ``need_directory=False`` accepts an output whose directory is made later (a build context)."""
    input_ids = {_input_identity(path): Path(path) for path in inputs if path is not None}
    claimed: list[tuple[Path, OutputTarget]] = []
    for path in (Path(p) for p in outputs if p is not None):
        target = check_output_path(path) if need_directory else output_target(path)
        if target.identity in input_ids:
            named = input_ids[target.identity]
            alias = "" if named == path else f" ({named})"
            raise BadFileError(path, f"is also an input of this command{alias}; writing it would replace that "
                                     "input: give another output file")
        for earlier, other in claimed:
            if other.identity == target.identity and not (other.write_through and target.write_through):
                alias = "" if earlier == path else f" (as {earlier})"
                raise BadFileError(path, f"is given as two outputs of this command{alias}: give two different files")
        claimed.append((path, target))


def _write_descriptor(path: Path, descriptor: int, data: bytes) -> None:
    """Write all of ``data`` at the descriptor's own offset (appended if it is open for append)."""
    for stream in (sys.stdout, sys.stderr):  # what Python buffered for the same descriptor goes first
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.fileno() == descriptor:
                stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]
    with contextlib.suppress(OSError):
        os.fsync(descriptor)


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


def _replace(path: Path, target: Path, data: bytes, mode: int | None) -> None:
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


def atomic_write_bytes(path: Path | str, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    The file gets ``mode`` if given (e.g. 0o755 for a script), else the mode a plain ``open()``
    would give (0666 less the umask), not the temp file's 0600: goldens are shared, and baked
    into images whose jobs run as another user. A hard link at ``path`` never carries the new
    content anywhere else; a symlink keeps pointing where it did, at the new file. A FIFO or
    character device is written through, and so is a file this process holds open
    (``/dev/stdout >> log`` appends to the log); nothing else but a regular file is ever replaced
    (``output_target``): ``-o /dev/null`` stays a device. Refusals are ``BadFileError``; a failed
    write is ``OutputWriteError`` (a full disk is exit 3) and leaves no temporary file behind.
    """
    path = Path(path)
    target = output_target(path)
    try:
        if target.method == "through_descriptor":
            assert target.descriptor is not None
            _write_descriptor(path, target.descriptor, data)
        elif target.method == "through_path":
            _write_through(path, data)
        else:
            _replace(path, target.path, data, mode)
    except EnvlockError:
        raise
    except OSError as exc:
        raise OutputWriteError(path, exc) from None


def atomic_write_text(path: Path | str, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8; the mode follows the umask. A lone surrogate
    (from a file that escaped one, or a file name that was not UTF-8) is written as its escape
    ``\\udXXX`` -- in JSON text exactly the escape that reads back as the same string."""
    if not isinstance(text, str):  # as a text-mode write would: never half-write a wrong value
        raise TypeError(f"atomic_write_text needs str, not {type(text).__name__}")
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_canonical(data: Any) -> str:
    """Stable JSON text: sorted keys, two-space indent, trailing newline. A lone surrogate in a
    string is written as its ``\\udXXX`` escape (what it was read from), so the text always encodes
    as UTF-8 -- to a file or to stdout -- and reads back as the same data."""
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    if _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


LOCK_TIMEOUT_SECONDS = 120.0


def lock_path_for(path: Path | str) -> Path:
    """The lock file of ``path``: ``.NAME.lock`` beside it (hidden, as the temp files are)."""
    path = Path(path)
    return path.with_name(f".{os.fsdecode(os.fsencode(path.name)[:240])}.lock")


@contextlib.contextmanager
def exclusive_lock(path: Path | str, *, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``'s lock file while the block runs: a read-modify-write
    of ``path`` by several processes at once (pytest-xdist workers, parallel CI jobs) then loses
    nothing. The lock is on a file of its own because ``path`` itself is replaced (a new inode) by
    every atomic write. The lock file stays: removing it would let a waiter lock a file already
    unlinked. Waits at most ``timeout`` seconds (EnvironmentProblem, exit 3), never forever; the
    kernel drops the lock of a process that dies holding it."""
    lock = lock_path_for(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, 0o666)
    except (OSError, ValueError) as exc:
        raise BadFileError(lock, os_problem(exc, "create the lock file")) from None
    try:
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EnvironmentProblem(f"{lock}: another process has held this lock for more than "
                                             f"{timeout:.0f} s; not written") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    # One pass over the whole text where it holds no backslash (envlock's own files hold none: a fleet
    # reads thousands), three where it does; the brackets are then counted in what is left. Escaped
    # backslashes and quotes hold no bracket: the counts are the text's own.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    structure = unescaped.translate(None, _NOT_STRUCTURE)
    opening = structure.count(b"[") + structure.count(b"{")
    if opening > max_containers or structure.count(b"]") + structure.count(b"}") > max_containers:
        return f"more than {max_containers} JSON arrays/objects: not an envlock file"
    if opening <= max_depth:
        return None
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
