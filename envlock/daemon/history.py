"""Check history and drift events in SQLite, under the daemon's state directory.

WAL journal + ``synchronous=FULL``: each check and the drift events it opens or resolves are
written in ONE transaction, so a crash (or a kill -9, or a power cut) mid-write loses at most
the check being written, never one already recorded. One connection shared by the loop,
the verify worker and HTTP threads, serialised by a lock (writes are a few per minute).

A check's lists (its drift, tolerated differences, vouched keys, probe summaries) are stored
ONCE, content-addressed: ``details`` holds each distinct set by its sha256, and a check refers
to it. A machine that keeps drifting the same way (a golden with 20,000 differing distributions,
checked every minute) adds one small row per check, not the 20,000 differences again.

Schema versions (``PRAGMA user_version``), upgraded in place on open, one step at a time:
1. each check's full result as JSON in ``checks.summary``;
2. ``checks.summary`` keeps the scalars, ``checks.details`` names a row of ``details``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envlock.daemon.results import DETAIL_FIELDS, CheckResult, safe_text
from envlock.errors import BadFileError

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    ok INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    golden_digest TEXT,
    summary TEXT NOT NULL,
    details TEXT REFERENCES details(digest)
);
CREATE INDEX IF NOT EXISTS checks_kind_time ON checks(kind, started_at);
CREATE INDEX IF NOT EXISTS checks_time ON checks(started_at);
CREATE INDEX IF NOT EXISTS checks_details ON checks(details);
CREATE TABLE IF NOT EXISTS details (
    digest TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    severity TEXT NOT NULL,
    reason TEXT NOT NULL,
    started_at REAL NOT NULL,
    started_check INTEGER NOT NULL REFERENCES checks(id),
    resolved_at REAL,
    resolved_check INTEGER REFERENCES checks(id)
);
-- at most one open event per thing that drifted
CREATE UNIQUE INDEX IF NOT EXISTS drift_open_path ON drift_events(path) WHERE resolved_at IS NULL;
"""


def _split(result: CheckResult) -> tuple[str, str, str]:
    """(summary JSON without the lists, details JSON, its digest). ASCII JSON: a lone surrogate
    from a golden is escaped (``\\ud800``), never a UnicodeEncodeError in SQLite."""
    data = result.to_dict()
    details = {name: data.pop(name) for name in DETAIL_FIELDS}
    body = json.dumps(details, sort_keys=True, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(body.encode("ascii")).hexdigest()
    return json.dumps(data, sort_keys=True), body, digest


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE checks ADD COLUMN details TEXT REFERENCES details(digest)")
    conn.execute("CREATE TABLE IF NOT EXISTS details (digest TEXT PRIMARY KEY, body TEXT NOT NULL)")
    rows = conn.execute("SELECT id, summary FROM checks").fetchall()
    for row in rows:
        summary, body, digest = _split(CheckResult.from_dict(json.loads(row["summary"])))
        conn.execute("INSERT OR IGNORE INTO details (digest, body) VALUES (?, ?)", (digest, body))
        conn.execute("UPDATE checks SET summary = ?, details = ? WHERE id = ?", (summary, digest, row["id"]))


# version -> the step that upgrades a history of that version to the next
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2}


def _reconcile_drift(conn: sqlite3.Connection, result: CheckResult, check_id: int) -> None:
    """Open events for newly drifted paths, resolve open ones of this kind that no longer drift."""
    now = result.started_at + result.duration_s
    # paths as stored: a lone surrogate (from a golden) escaped, so it matches next time too
    current = {safe_text(item.path): item for item in result.drift}
    open_rows = conn.execute(
        "SELECT id, path FROM drift_events WHERE kind = ? AND resolved_at IS NULL", (result.kind,)
    ).fetchall()
    open_paths = {row["path"] for row in open_rows}
    for row in open_rows:
        if row["path"] not in current:
            conn.execute(
                "UPDATE drift_events SET resolved_at = ?, resolved_check = ? WHERE id = ?",
                (now, check_id, row["id"]),
            )
    for path, item in sorted(current.items()):
        if path not in open_paths:
            # a path can move between kinds only if the golden changed; close it there first
            conn.execute(
                "UPDATE drift_events SET resolved_at = ?, resolved_check = ?"
                " WHERE path = ? AND resolved_at IS NULL",
                (now, check_id, path),
            )
            conn.execute(
                "INSERT INTO drift_events (kind, path, severity, reason, started_at, started_check)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (result.kind, path, safe_text(item.severity), safe_text(item.reason), now, check_id),
            )


def _prune(conn: sqlite3.Connection, now: float, retention_s: float | None) -> None:
    if retention_s is None:
        return
    # drift events keep their checks (foreign keys); everything else ages out, and so do
    # the details no remaining check refers to
    deleted = conn.execute(
        "DELETE FROM checks WHERE started_at < ? AND id NOT IN (SELECT started_check FROM drift_events)"
        " AND id NOT IN (SELECT resolved_check FROM drift_events WHERE resolved_check IS NOT NULL)",
        (now - retention_s,),
    ).rowcount
    if deleted:
        conn.execute("DELETE FROM details WHERE digest NOT IN (SELECT details FROM checks WHERE details IS NOT NULL)")


def _setup(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise BadFileError(
            path, f"history schema {version} is newer than this envlock understands ({SCHEMA_VERSION})"
        )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    has_checks = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checks'").fetchone()
    if has_checks and version < SCHEMA_VERSION:
        try:
            _transaction(conn, lambda: _migrate(conn, max(version, 1)))
        except (ValueError, KeyError, TypeError) as exc:  # a row an older envlock did not write
            raise BadFileError(path, f"cannot migrate the history from schema {version} "
                                     f"({type(exc).__name__}: {exc}); move it aside") from None
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    while version < SCHEMA_VERSION:
        _MIGRATIONS[version](conn)
        version += 1
        conn.execute(f"PRAGMA user_version={version}")


def _transaction(conn: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    """Run ``work`` in one IMMEDIATE transaction. When it fails the original error is raised:
    SQLite has often rolled back already (a full disk, SQLITE_FULL), and a second ROLLBACK
    would only say "cannot rollback - no transaction is active", hiding why."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error being raised says what went wrong
                conn.execute("ROLLBACK")
        raise
    return value


class History:
    """The daemon's memory across restarts. Thread-safe."""

    def __init__(self, path: Path, *, retention_s: float | None = 90 * 86400.0) -> None:
        self.path = path
        self.retention_s = retention_s
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.DatabaseError as exc:
            raise BadFileError(path, f"cannot use as the history database ({exc})") from None
        try:
            self._conn.row_factory = sqlite3.Row
            _setup(self._conn, path)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise BadFileError(path, f"cannot use as the history database ({exc})") from None
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """One statement on the history's own connection, under its lock: for maintenance
        (``PRAGMA integrity_check``, ``wal_checkpoint``, a per-connection size cap) and tests."""
        with self._lock:
            return self._conn.execute(sql, parameters).fetchall()

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def record(self, result: CheckResult) -> int:
        """Store one check and reconcile drift events of its kind, atomically. Returns the check id."""
        with self._lock:
            return int(_transaction(self._conn, lambda: self._record_locked(result)))

    def _record_locked(self, result: CheckResult) -> int:
        conn = self._conn
        summary, body, digest = _split(result)
        conn.execute("INSERT OR IGNORE INTO details (digest, body) VALUES (?, ?)", (digest, body))
        cur = conn.execute(
            "INSERT INTO checks (kind, started_at, duration_s, ok, outcome, reason, golden_digest, summary, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (result.kind, result.started_at, result.duration_s, int(result.ok), result.outcome,
             safe_text(result.reason), safe_text(result.golden_digest), summary, digest),
        )
        check_id = int(cur.lastrowid or 0)
        if result.conclusive:
            _reconcile_drift(conn, result, check_id)
        _prune(conn, result.started_at, self.retention_s)
        return check_id

    def _result(self, row: sqlite3.Row | None) -> CheckResult | None:
        if row is None:
            return None
        data = json.loads(row["summary"])
        if row["body"] is not None:
            data.update(json.loads(row["body"]))
        return CheckResult.from_dict(data)

    # ---- reading -------------------------------------------------------------------------

    _SELECT_RESULT = ("SELECT checks.summary AS summary, details.body AS body FROM checks"
                      " LEFT JOIN details ON details.digest = checks.details")

    def last(self, kind: str) -> CheckResult | None:
        with self._lock:
            row = self._conn.execute(
                f"{self._SELECT_RESULT} WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)  # noqa: S608
            ).fetchone()
            return self._result(row)

    def last_passing(self, kind: str, golden_digest: str) -> CheckResult | None:
        with self._lock:
            row = self._conn.execute(
                f"{self._SELECT_RESULT} WHERE kind = ? AND ok = 1 AND golden_digest = ?"  # noqa: S608
                " ORDER BY id DESC LIMIT 1",
                (kind, safe_text(golden_digest)),
            ).fetchone()
            return self._result(row)

    def checks(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, kind, started_at, duration_s, ok, outcome, reason FROM checks ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{**dict(row), "ok": bool(row["ok"])} for row in rows]

    def drift_events(self, *, open_only: bool = False, limit: int = 50) -> list[dict[str, Any]]:
        where = "WHERE resolved_at IS NULL" if open_only else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, kind, path, severity, reason, started_at, resolved_at FROM drift_events {where}"  # noqa: S608
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(row) for row in rows]

    def summary(self) -> dict[str, Any]:
        """What /status shows: counts by kind and outcome, time span, drift events."""
        with self._lock:
            counts: dict[str, dict[str, int]] = {}
            for row in self._conn.execute("SELECT kind, outcome, COUNT(*) AS n FROM checks GROUP BY kind, outcome"):
                counts.setdefault(row["kind"], {})[row["outcome"]] = row["n"]
            span = self._conn.execute("SELECT MIN(started_at) AS first, MAX(started_at) AS last FROM checks").fetchone()
            total_events = self._conn.execute("SELECT COUNT(*) FROM drift_events").fetchone()[0]
            open_events = self._conn.execute(
                "SELECT COUNT(*) FROM drift_events WHERE resolved_at IS NULL").fetchone()[0]
        return {
            "database": str(self.path),
            "checks_by_kind": counts,
            "first_check_at": span["first"],
            "last_check_at": span["last"],
            "drift_events_total": total_events,
            "open_drift_events_total": open_events,  # the newest 20 follow; the current ones are /drift
            "open_drift_events": self.drift_events(open_only=True, limit=20),
            "recent_drift_events": self.drift_events(limit=10),
            "recent_checks": self.checks(limit=10),
        }


def open_history(state_dir: Path) -> History:
    """Create the state directory if needed and open its history database."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadFileError(state_dir, f"cannot create the state directory ({exc.strerror or exc})") from None
    if not state_dir.is_dir():
        raise BadFileError(state_dir, "state directory is not a directory")
    probe = state_dir / f".envlock-write-test-{time.monotonic_ns()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadFileError(state_dir, f"state directory is not writable ({exc.strerror or exc})") from None
    return History(state_dir / DB_NAME)
