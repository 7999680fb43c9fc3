"""The golden the daemon checks against, read at start and again whenever its file changes.

The daemon reads a replaced golden by itself, whatever the reader below it does: only a regular
file, at most MAX_GOLDEN_BYTES, and on another thread for at most GOLDEN_LOAD_TIMEOUT_S, so a
FIFO, /dev/zero or a wedged mount can never stop the checks or the handling of SIGTERM.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.errors import BadFileError, EnvlockError
from envlock.golden import load_golden
from envlock.models import Manifest
from envlock.signing import TrustedKey, check_signature
from envlock.store import os_problem

MAX_GOLDEN_BYTES = 64 * 1024 * 1024
GOLDEN_LOAD_TIMEOUT_S = 10.0

StatKey = tuple[int, int, int]


@dataclass(frozen=True)
class LoadedGolden:
    manifest: Manifest
    digest: str
    stat_key: StatKey


def stat_key(path: Path) -> StatKey | None:
    """What tells a replaced (or rewritten) golden file from the one last read; None: no file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def load_golden_file(path: Path, trusted_keys: Sequence[TrustedKey] = ()) -> LoadedGolden:
    """Load and integrity-check the golden (BadFileError -> exit 2 at start); with ``trusted_keys``
    also its signature (a swap to a golden they did not sign is refused like any bad golden)."""
    key = stat_key(path)  # before reading: a replace during the read is then seen by the next check
    golden = load_golden(path)  # sealed: always has a digest, or raises
    if trusted_keys:
        check_signature(golden, path, trusted_keys)
    # no stat (the file appeared during the read): a key no file has, so the next check re-reads it
    return LoadedGolden(manifest=golden.manifest, digest=golden.digest, stat_key=key or (0, 0, 0))


class BoundedGoldenLoader:
    """``load_golden_file`` off the calling thread, bounded in time, size and kind of file.

    Every failure is a ``BadFileError`` naming the file (exit 2 at start; a reported, survived
    error on reload). A read that does not finish is abandoned on its daemon thread, and no new
    read starts until it ends: a stuck file never piles up threads."""

    def __init__(self, *, timeout_s: float = GOLDEN_LOAD_TIMEOUT_S, stop: threading.Event | None = None) -> None:
        self.timeout_s = timeout_s
        self._stop = stop or threading.Event()
        self._stuck: threading.Thread | None = None

    def load(self, path: Path, trusted_keys: Sequence[TrustedKey] = ()) -> LoadedGolden:
        if self._stuck is not None and self._stuck.is_alive():
            raise BadFileError(path, "an earlier read of it is still stuck; not reading it again until that ends")
        self._check_kind(path)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["golden"] = load_golden_file(path, trusted_keys)
            except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError, ...: reported below
                box["error"] = exc

        thread = threading.Thread(target=work, name="envlock-golden-load", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.timeout_s
        while thread.is_alive() and time.monotonic() < deadline and not self._stop.is_set():
            thread.join(timeout=0.1)
        if thread.is_alive():
            self._stuck = thread
            raise BadFileError(path, f"reading it did not finish within {self.timeout_s:g} s")
        error = box.get("error")
        if error is None:
            golden: LoadedGolden = box["golden"]
            return golden
        if isinstance(error, EnvlockError):
            raise error
        if isinstance(error, OSError):
            raise BadFileError(path, error.strerror or type(error).__name__)
        raise BadFileError(path, f"cannot be loaded ({type(error).__name__})")

    @staticmethod
    def _check_kind(path: Path) -> None:
        try:
            st = os.stat(path)
        except (OSError, ValueError) as exc:
            raise BadFileError(path, os_problem(exc, "read it")) from None
        if not stat.S_ISREG(st.st_mode):
            raise BadFileError(path, "not a regular file (a FIFO, device or directory is never read)")
        if st.st_size > MAX_GOLDEN_BYTES:
            raise BadFileError(path, f"too large ({st.st_size} bytes; a golden is at most {MAX_GOLDEN_BYTES})")
