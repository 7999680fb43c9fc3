"""History: one transaction per check, drift events opened and resolved, survives restarts and crashes."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envlock.daemon.history import DB_NAME, SCHEMA_VERSION, History, open_history
from envlock.daemon.results import CheckResult, DriftItem, ProbeSummary
from envlock.errors import BadFileError


def _check(kind: str = "fingerprint", outcome: str = "pass", at: float = 1000.0, drift: list[str] = (), **kw):
    items = [DriftItem(path=p, severity="critical", reason=f"{p} moved") for p in drift]
    return CheckResult(kind=kind, started_at=at, duration_s=0.5, outcome=outcome,
                       reason=items[0].reason if items else kw.pop("reason", None), drift=items, **kw)


@pytest.fixture()
def history(tmp_path: Path):
    h = open_history(tmp_path / "state")
    yield h
    h.close()


def test_record_round_trips_the_full_result(history: History) -> None:
    result = CheckResult(
        kind="verify", started_at=1234.5, duration_s=12.0, outcome="drift", reason="probe matmul: drift",
        golden_digest="sha256:aa", fingerprint_digest="sha256:bb", exit_code=1,
        drift=[DriftItem("probes.matmul", "critical", "probe matmul: drift")],
        probes=[ProbeSummary("matmul", "drift", 12.0, 3e-7)],
    )
    check_id = history.record(result)
    assert check_id == 1
    assert history.last("verify") == result
    assert history.last("fingerprint") is None


def test_drift_events_open_once_and_resolve_when_gone(history: History) -> None:
    history.record(_check(at=1, drift=["environment.A"]))
    history.record(_check(at=2, drift=["environment.A", "cpu.isa.avx2"]))
    open_paths = {e["path"] for e in history.drift_events(open_only=True)}
    assert open_paths == {"environment.A", "cpu.isa.avx2"}
    assert len(history.drift_events()) == 2  # A was not opened twice
    history.record(_check(at=3, drift=["cpu.isa.avx2"]))
    events = {e["path"]: e for e in history.drift_events()}
    assert events["environment.A"]["resolved_at"] == pytest.approx(3.5)
    assert events["cpu.isa.avx2"]["resolved_at"] is None


def test_errors_and_timeouts_leave_drift_events_alone(history: History) -> None:
    history.record(_check(kind="verify", at=1, outcome="drift", drift=["probes.matmul"]))
    history.record(_check(kind="verify", at=2, outcome="timeout", reason="verify timed out"))
    history.record(_check(kind="verify", at=3, outcome="error", reason="verify was killed by SIGSEGV"))
    assert [e["path"] for e in history.drift_events(open_only=True)] == ["probes.matmul"]


def test_each_kind_resolves_only_its_own_events(history: History) -> None:
    history.record(_check(kind="verify", at=1, outcome="drift", drift=["probes.matmul"]))
    history.record(_check(kind="fingerprint", at=2, outcome="pass"))
    assert [e["path"] for e in history.drift_events(open_only=True)] == ["probes.matmul"]


def test_summary_counts_by_kind_and_outcome(history: History) -> None:
    for i, outcome in enumerate(["pass", "pass", "drift", "error"]):
        history.record(_check(at=10 + i, outcome=outcome, drift=["x.y"] if outcome == "drift" else []))
    history.record(_check(kind="verify", at=20, outcome="timeout", reason="t"))
    summary = history.summary()
    assert summary["checks_by_kind"] == {"fingerprint": {"pass": 2, "drift": 1, "error": 1}, "verify": {"timeout": 1}}
    assert summary["first_check_at"] == 10 and summary["last_check_at"] == 20
    assert summary["drift_events_total"] == 1
    assert [c["id"] for c in summary["recent_checks"]] == [5, 4, 3, 2, 1]


def test_history_survives_reopening(tmp_path: Path) -> None:
    h = open_history(tmp_path)
    h.record(_check(at=1, outcome="drift", drift=["environment.A"]))
    h.close()
    h = open_history(tmp_path)
    assert h.last("fingerprint").drift[0].path == "environment.A"
    assert h.drift_events(open_only=True)[0]["path"] == "environment.A"
    h.record(_check(at=2))
    assert h.summary()["checks_by_kind"]["fingerprint"] == {"drift": 1, "pass": 1}
    h.close()


def test_old_checks_are_pruned_but_drift_event_checks_are_kept(tmp_path: Path) -> None:
    h = History(tmp_path / DB_NAME, retention_s=100)
    h.record(_check(at=1, outcome="drift", drift=["a.b"]))  # kept: a drift event starts here
    h.record(_check(at=2, outcome="error", reason="capture failed"))  # aged out
    h.record(_check(at=3))  # kept: resolves the event
    h.record(_check(at=500))
    assert [c["started_at"] for c in h.checks()] == [500, 3, 1]
    h.close()


def test_database_is_in_wal_mode(history: History) -> None:
    conn = sqlite3.connect(history.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.processes("a writer killed mid-transaction is what is tested")
def test_a_crash_mid_write_loses_nothing_already_recorded(tmp_path: Path) -> None:
    """A real process records 3 checks, then dies by SIGKILL inside a 4th write's transaction."""
    script = textwrap.dedent("""
        import os, signal, sys
        from envlock.daemon.history import open_history
        from envlock.daemon.results import CheckResult
        from pathlib import Path
        h = open_history(Path(sys.argv[1]))
        for i in range(3):
            h.record(CheckResult(kind="fingerprint", started_at=float(i), duration_s=0.1, outcome="pass"))
        h.execute("BEGIN IMMEDIATE")
        h.execute("INSERT INTO checks (kind, started_at, duration_s, ok, outcome, summary)"
                     " VALUES ('fingerprint', 9, 0, 1, 'pass', '{}')")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    h = open_history(tmp_path)
    assert [c["started_at"] for c in h.checks()] == [2.0, 1.0, 0.0]
    assert h.execute("PRAGMA integrity_check")[0][0] == "ok"
    h.record(_check(at=10))  # and it is still writable
    h.close()


def test_not_a_database_is_one_line_bad_file(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_text("this is not sqlite " * 100)
    with pytest.raises(BadFileError, match="cannot use as the history database"):
        open_history(tmp_path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BadFileError, match="newer than this envlock"):
        open_history(tmp_path)


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadFileError, match="state directory"):
        open_history(tmp_path / "file")


# ---- size, hostile text, a full disk -----------------------------------------------------


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_a_difference_is_stored_once_and_referred_to_after_that(tmp_path: Path) -> None:
    """A golden with 20,000 differing distributions, checked again and again: the differences are
    stored once (content-addressed), each later check adds a row of its own, not 4.5 MB."""
    h = open_history(tmp_path)
    drift = [DriftItem(f"python.distributions.fake-{i}", "warning", f"fake-{i}: 1.0 -> absent", '"1.0"')
             for i in range(20_000)]
    first = CheckResult(kind="fingerprint", started_at=1.0, duration_s=0.5, outcome="drift",
                        reason="fake-0: 1.0 -> absent (and 19999 more)", drift=drift)
    h.record(first)
    h.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # sizes of the main file, not of the WAL's history
    after_first = _db_bytes(h.path)
    for i in range(2, 12):
        h.record(dataclasses.replace(first, started_at=float(i)))
    h.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    per_check = (_db_bytes(h.path) - after_first) / 10
    assert per_check < 20_000, f"{per_check:.0f} bytes per repeated check"
    assert h.last("fingerprint") == dataclasses.replace(first, started_at=11.0)
    assert h.summary()["open_drift_events_total"] == 20_000
    assert len(h.summary()["open_drift_events"]) == 20
    h.close()


def test_details_no_check_refers_to_are_pruned(tmp_path: Path) -> None:
    h = History(tmp_path / DB_NAME, retention_s=100)
    h.record(_check(at=1, outcome="error", reason="capture failed", probes=[ProbeSummary("a", "drift")]))
    h.record(_check(at=500))
    rows = h.execute("SELECT COUNT(*) FROM details")[0][0]
    assert rows == 1  # only the passing check's (empty) lists are left
    h.close()


def test_a_version_1_history_is_migrated_in_place(tmp_path: Path) -> None:
    """Histories written before the details table (schema 1) are upgraded on open, nothing lost."""
    old = CheckResult(kind="verify", started_at=5.0, duration_s=1.0, outcome="drift", reason="probe m: drift",
                      golden_digest="sha256:g", drift=[DriftItem("probes.m", "critical", "probe m: drift")],
                      probes=[ProbeSummary("m", "drift", 3.0, 1e-7)])
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript("""
        CREATE TABLE checks (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at REAL NOT NULL,
            duration_s REAL NOT NULL, ok INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT,
            golden_digest TEXT, summary TEXT NOT NULL);
        CREATE TABLE drift_events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, path TEXT NOT NULL,
            severity TEXT NOT NULL, reason TEXT NOT NULL, started_at REAL NOT NULL,
            started_check INTEGER NOT NULL REFERENCES checks(id), resolved_at REAL,
            resolved_check INTEGER REFERENCES checks(id));
        PRAGMA user_version=1;
    """)
    conn.execute("INSERT INTO checks (kind, started_at, duration_s, ok, outcome, reason, golden_digest, summary)"
                 " VALUES ('verify', 5, 1, 0, 'drift', 'probe m: drift', 'sha256:g', ?)",
                 (json.dumps(old.to_dict(), sort_keys=True),))
    conn.execute("INSERT INTO drift_events (kind, path, severity, reason, started_at, started_check)"
                 " VALUES ('verify', 'probes.m', 'critical', 'probe m: drift', 6, 1)")
    conn.commit()
    conn.close()
    h = open_history(tmp_path)
    assert h.execute("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 2
    assert h.last("verify") == old
    assert [e["path"] for e in h.drift_events(open_only=True)] == ["probes.m"]
    h.record(dataclasses.replace(old, started_at=10.0))
    assert len(h.drift_events()) == 1  # the migrated open event is still the open one
    h.close()
    conn = sqlite3.connect(tmp_path / "broken.sqlite3")
    conn.executescript("CREATE TABLE checks (id INTEGER PRIMARY KEY, summary TEXT); PRAGMA user_version=1;")
    conn.execute("INSERT INTO checks (summary) VALUES ('not json')")
    conn.commit()
    conn.close()
    with pytest.raises(BadFileError, match="cannot migrate the history from schema 1"):
        History(tmp_path / "broken.sqlite3")


def test_a_lone_surrogate_from_a_golden_is_recorded_escaped(history: History) -> None:
    """A resealed golden may hold "\\ud800" (valid JSON, not encodable as UTF-8): the daemon used
    to die writing that difference to its history."""
    item = DriftItem("environment.X\ud800", "critical", "environment.X\ud800: 'a\ud800' -> absent", '"a\\ud800"')
    result = CheckResult(kind="fingerprint", started_at=1.0, duration_s=0.1, outcome="drift",
                         reason=item.reason, golden_digest="sha256:\ud800", drift=[item])
    history.record(result)
    history.record(dataclasses.replace(result, started_at=2.0))
    assert history.last("fingerprint") == dataclasses.replace(result, started_at=2.0)  # the lists round-trip
    [event] = history.drift_events()
    assert event["path"] == "environment.X\\ud800"  # escaped, and opened once, not on every check
    assert history.checks()[0]["reason"] == "environment.X\\ud800: 'a\\ud800' -> absent"


def test_a_full_disk_reports_the_real_error_not_the_rollback(history: History) -> None:
    """SQLite rolls a transaction back itself when the disk is full; a second ROLLBACK used to
    replace "database or disk is full" with "cannot rollback - no transaction is active"."""
    # the database's size cap is a per-connection setting: the history's own connection
    history.execute(f"PRAGMA max_page_count={history.execute('PRAGMA page_count')[0][0] + 2}")
    big = [DriftItem(f"p.{i}", "critical", "r" * 200) for i in range(200)]
    with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
        history.record(CheckResult(kind="fingerprint", started_at=1.0, duration_s=0.1, outcome="drift",
                                   reason="r", drift=big))
    assert not history.in_transaction and history.checks() == []
    history.execute("PRAGMA max_page_count=1073741823")
    assert history.record(_check(at=2)) == 1  # space again: recording goes on


def test_the_numeric_class_round_trips_and_old_rows_have_none(history: History) -> None:
    """A verify's numeric class is stored with it; a row written before 0.4 lacks the fields."""
    result = CheckResult(kind="verify", started_at=10.0, duration_s=1.0, outcome="pass",
                         numeric_class="0eaa820319d5", golden_numeric_class="0eaa820319d5", numeric_profile="default")
    history.record(result)
    assert history.last("verify") == result
    old = {"kind": "verify", "started_at": 5.0, "duration_s": 1.0, "outcome": "pass", "drift": [], "probes": [],
           "tolerated": [], "vouched": []}
    assert CheckResult.from_dict(old).numeric_class is None
    # a tampered row cannot put an arbitrary string into a label
    tampered = {**old, "numeric_class": 'x"} 1\nevil', "numeric_profile": "a b"}
    assert (CheckResult.from_dict(tampered).numeric_class, CheckResult.from_dict(tampered).numeric_profile) == (None,
                                                                                                              None)
