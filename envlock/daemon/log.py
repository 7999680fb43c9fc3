"""The daemon's log: one JSON object per line on stderr, what a log shipper wants."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO


def _record(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}


class JsonLog:
    """Thread-safe: the loop and the health watchdog both log (a line is never interleaved)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = _record(event, fields)
        with self._lock:
            self.stream.write(json.dumps(record, sort_keys=False, default=str) + "\n")
            self.stream.flush()


def log_to_fd2(event: str, **fields: Any) -> None:
    """One line straight to file descriptor 2, bypassing ``JsonLog`` and its lock: for the last
    words of a process being forced out, whose stuck main thread may hold that lock."""
    with contextlib.suppress(OSError):
        os.write(2, (json.dumps(_record(event, fields), default=str) + "\n").encode())
