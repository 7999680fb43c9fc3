"""HTTP endpoints, health rule and metrics, on a real loopback server with a real history."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envlock.daemon.board import StateBoard
from envlock.daemon.config import parse_listen
from envlock.daemon.goldens import LoadedGolden
from envlock.daemon.history import History, open_history
from envlock.daemon.http import HttpServer
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import CheckResult, DriftItem, ProbeSummary
from envlock.daemon.state import DaemonState
from envlock.errors import BadInputError, EnvironmentProblem
from tests.helpers import http_get, metric_samples


def _golden(digest: str) -> LoadedGolden:
    return LoadedGolden(manifest=None, digest=digest, stat_key=(0, 0, 0))  # type: ignore[arg-type]


def _board(history: History, golden_path: str = "/g.json", digest: str = "sha256:g0") -> StateBoard:
    return StateBoard(DaemonState(golden_path=golden_path, golden=_golden(digest)), history)


def _serve(board: StateBoard, host: str, port: int, **limits: Any) -> HttpServer:
    return HttpServer(board, Metrics(lambda: board.state), host, port, **limits)


@pytest.fixture()
def served(tmp_path: Path):
    history = open_history(tmp_path)
    state = _board(history)
    server = _serve(state, "127.0.0.1", 0)
    server.start()
    yield state, server.address[1]
    server.stop()
    history.close()


@contextlib.contextmanager
def _serving_on(host: str, tmp_path: Path, *, unavailable: str) -> Iterator[HttpServer]:
    """A started server on ``host`` with an empty history; the test skips if ``host`` cannot be bound."""
    history = open_history(tmp_path)
    try:
        state = _board(history, "g", "sha256:g")
        try:
            server = _serve(state, host, 0)
        except EnvironmentProblem:
            pytest.skip(unavailable)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        history.close()


def _fp(outcome: str = "pass", drift: tuple[str, ...] = (), at: float = 100.0) -> CheckResult:
    items = [DriftItem(p, "critical", f"{p}: 1 -> absent") for p in drift]
    return CheckResult(kind="fingerprint", started_at=at, duration_s=0.25, outcome=outcome,
                       reason=items[0].reason if items else None, drift=items, fingerprint_digest="sha256:f")


def test_no_check_yet_is_503(served) -> None:
    _, port = served
    assert http_get(port, "/healthz")[0::2] == (503, "no check yet\n")
    assert http_get(port, "/livez")[0] == 200


def test_health_follows_the_last_checks(served) -> None:
    state, port = served
    state.apply(_fp())
    assert http_get(port, "/healthz")[0::2] == (200, "ok\n")
    state.apply(_fp("drift", ("environment.TF_ENABLE_ONEDNN_OPTS",)))
    assert http_get(port, "/healthz")[0::2] == (
        503, "fingerprint drift: environment.TF_ENABLE_ONEDNN_OPTS: 1 -> absent\n")
    state.apply(_fp())
    state.apply(CheckResult(kind="verify", started_at=200, duration_s=900, outcome="timeout",
                            reason="verify timed out after 900 s (killed)", golden_digest="sha256:g0"))
    assert http_get(port, "/healthz")[0::2] == (503, "verify timeout: verify timed out after 900 s (killed)\n")
    state.set_golden(_golden("sha256:g1"))  # a new golden forgets the old verify
    assert http_get(port, "/healthz")[0] == 200


def test_metrics_parse_and_carry_check_results(served) -> None:
    state, port = served
    state.apply(_fp("drift", ("environment.X",), at=123.0))
    state.apply(CheckResult(
        kind="verify", started_at=130.0, duration_s=20.0, outcome="drift", reason="probe matmul: drift",
        golden_digest="sha256:g0",
        drift=[DriftItem("probes.matmul", "critical", "probe matmul: drift")],
        probes=[ProbeSummary("matmul", "drift", 812.0, 3e-7), ProbeSummary("rng", "identical", 0.0, 0.0)],
    ))
    status, ctype, body = http_get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    samples = metric_samples(body)
    assert samples[("envlock_check_ok", (("kind", "fingerprint"),))] == 0
    assert samples[("envlock_check_last_timestamp_seconds", (("kind", "fingerprint"),))] == 123.0
    assert samples[("envlock_check_last_duration_seconds", (("kind", "verify"),))] == 20.0
    assert samples[("envlock_checks_total", (("kind", "fingerprint"), ("outcome", "drift")))] == 1
    assert samples[("envlock_checks_total", (("kind", "verify"), ("outcome", "pass")))] == 0
    assert samples[("envlock_probe_max_ulp", (("probe", "matmul"),))] == 812.0
    assert samples[("envlock_probe_ok", (("probe", "rng"),))] == 1
    assert samples[("envlock_drifted_field", (("kind", "fingerprint"), ("path", "environment.X"),
                                               ("severity", "critical")))] == 1
    assert samples[("envlock_drifted_field", (("kind", "verify"), ("path", "probes.matmul"),
                                               ("severity", "critical")))] == 1
    assert samples[("envlock_healthy", ())] == 0
    assert samples[("envlock_golden_info", (("digest", "sha256:g0"),))] == 1
    state.apply(_fp())  # resolved: the drifted series for that field disappears
    assert not any(name == "envlock_drifted_field" and ("kind", "fingerprint") in labels
                   for name, labels in metric_samples(http_get(port, "/metrics")[2]))


def test_status_is_json_with_history(served) -> None:
    state, port = served
    state.apply(_fp("drift", ("cpu.isa.avx2",)))
    state.apply(_fp())
    status, ctype, body = http_get(port, "/status")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert data["healthy"] is True and data["golden"] == {"path": "/g.json", "digest": "sha256:g0", "error": None}
    assert data["last"]["fingerprint"]["outcome"] == "pass" and data["last"]["verify"] is None
    assert data["history"]["checks_by_kind"] == {"fingerprint": {"drift": 1, "pass": 1}}
    [event] = data["history"]["recent_drift_events"]
    assert event["path"] == "cpu.isa.avx2" and event["resolved_at"] is not None


def test_unknown_path_is_404(served) -> None:
    assert http_get(served[1], "/nope")[0] == 404


def test_keep_alive_serves_many_requests_on_one_connection(served) -> None:
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(20):
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.close()


def test_busy_port_is_an_environment_problem(served) -> None:
    state, port = served
    with pytest.raises(EnvironmentProblem, match=f"cannot listen on 127.0.0.1:{port}: address already in use"):
        _serve(state, "127.0.0.1", port)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9109", ("127.0.0.1", 9109)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80)),  # noqa: S104
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [
    "9109", ":9109", "localhost:http", "127.0.0.1:70000", "host:",
    # ports: only ASCII digits (int() takes underscores, spaces, signs and Unicode digits)
    "127.0.0.1:19_145", "127.0.0.1:\uff11\uff19\uff11\uff14\uff15", "127.0.0.1:\u0661\u0662", "127.0.0.1: 80",
    "127.0.0.1:+80", "127.0.0.1:-1", "127.0.0.1:080000", "127.0.0.1:99999999999999999999", "127.0.0.1:0x50",
    # hosts: required, well formed, IPv6 in brackets; no wildcard spelled any other way
    "[]:9109", "[:9109", "::1:9109", "[::1:9109", "[127.0.0.1]:80", "[::1]x:80", "*:9109", "256.0.0.1:80",
    "1.2.3:80", "01.2.3.4:80", "127.0.0.1 :80", "bad host:80", "-leading.example:80", "h\u00f6st:80",
    "\uff11\uff12\uff17.0.0.1:80", "a..b:80", "name.invalid:80", "x" * 300 + ":80", "127.0.0.1\n:80",
])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(BadInputError, match="--listen"):
        parse_listen(text)


def test_parse_listen_binds_exactly_the_named_address() -> None:
    assert parse_listen("localhost:9109") in {("127.0.0.1", 9109), ("::1", 9109)}
    assert parse_listen("[::]:1") == ("::", 1)
    assert parse_listen("0.0.0.0:65535") == ("0.0.0.0", 65535)  # noqa: S104 - named explicitly


def test_ipv6_any_does_not_also_bind_ipv4(tmp_path: Path) -> None:
    """"[::]" names IPv6 only; Linux would otherwise also accept IPv4 on it (dual stack)."""
    with _serving_on("::", tmp_path, unavailable="IPv6 is not configured") as server:
        v6only = server.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        assert v6only == 1


def test_ipv6_loopback_when_available(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with _serving_on("::1", tmp_path, unavailable="IPv6 loopback is not configured") as server:
        assert http_get(server.address[1], "/livez", host="::1")[0] == 200


def test_a_history_that_cannot_be_written_does_not_stop_serving(served, monkeypatch: pytest.MonkeyPatch) -> None:
    state, port = served

    def disk_full(result: CheckResult) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(state.history, "record", disk_full)
    assert state.apply(_fp("drift", ("environment.X",))) is None
    assert http_get(port, "/healthz")[0::2] == (503, "fingerprint drift: environment.X: 1 -> absent\n")
    status = json.loads(http_get(port, "/status")[2])
    assert "database or disk is full" in status["history_error"]
    monkeypatch.undo()
    assert state.apply(_fp()) == 1
    assert json.loads(http_get(port, "/status")[2])["history_error"] is None


def test_a_verify_of_another_golden_is_recorded_but_never_served(served) -> None:
    """Backstop for a verify that finished while the golden was replaced: it goes to the history,
    but /healthz, /status and the metrics must not vouch for the new golden with it."""
    state, port = served
    state.apply(_fp())
    stale = CheckResult(kind="verify", started_at=101.0, duration_s=3.0, outcome="pass",
                        golden_digest="sha256:old", fingerprint_digest="sha256:m")
    check_id = state.apply(stale)
    recorded = state.history.last("verify")
    assert check_id is not None and recorded is not None and recorded.golden_digest == "sha256:old"
    assert state.last("verify") is None and not state.reproduces()
    assert json.loads(http_get(port, "/status")[2])["last"]["verify"] is None
    samples = metric_samples(http_get(port, "/metrics")[2])
    assert ("envlock_check_ok", (("kind", "verify"),)) not in samples
    assert samples[("envlock_checks_total", (("kind", "verify"), ("outcome", "pass")))] == 0
    # a verify of the current golden is served as before
    state.apply(CheckResult(kind="verify", started_at=102.0, duration_s=3.0, outcome="pass", golden_digest="sha256:g0"))
    assert state.reproduces()


def test_an_overdue_check_turns_health_503(tmp_path: Path) -> None:
    """A wedged loop publishes nothing: time alone must turn health (and the metric) unhealthy."""
    now = [1000.0]
    history = open_history(tmp_path)
    state = StateBoard(DaemonState(golden_path="g", golden=_golden("sha256:g0"), fingerprint_every=60.0,
                                   verify_timeout=900.0), history, clock=lambda: now[0])
    metrics = Metrics(lambda: state.state, clock=lambda: now[0])
    try:
        state.apply(_fp(at=999.0))
        assert state.health() == (True, "ok")
        now[0] = 999.0 + 3 * 60 + 29  # within 3 intervals + 30 s slack
        assert state.health() == (True, "ok")
        now[0] = 999.0 + 3 * 60 + 31
        healthy, reason = state.health()
        assert not healthy and reason.startswith("fingerprint check overdue")
        assert metric_samples(metrics.render().decode())[("envlock_healthy", ())] == 0
        state.apply(_fp(at=now[0]))
        assert state.health() == (True, "ok")
        state.set_verify_running(True)  # since now[0]: the board's clock
        now[0] += 900 + 31
        state.apply(_fp(at=now[0]))
        assert state.health() == (False, "verify overdue: still running past its 900 s time limit")
    finally:
        history.close()


def test_a_client_that_sends_nothing_is_dropped_and_a_burst_of_200_scrapes_is_served(served) -> None:
    state, port = served
    state.apply(_fp())
    silent = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        started = time.monotonic()
        silent.settimeout(60)
        assert silent.recv(1) == b""  # the server closed it: not held open forever
        assert time.monotonic() - started < 30
    finally:
        silent.close()
    results: list[int] = []
    lock = threading.Lock()

    def scrape() -> None:
        try:
            code = http_get(port, "/healthz")[0]
        except OSError:
            code = -1
        with lock:
            results.append(code)

    threads = [threading.Thread(target=scrape) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results.count(200) == 200, sorted(set(results))


# ---- bounded against hostile goldens and clients ------------------------------------------


def test_status_is_bounded_and_drift_pages_hold_the_rest(served) -> None:
    """20,000 fake distributions made /status 10 MB: it shows the first few, the count and where
    the rest is, and /drift pages through all of them."""
    state, port = served
    paths = tuple(f"python.distributions.fake-{i:05d}" for i in range(20_000))
    state.apply(_fp("drift", paths))
    code, _, body = http_get(port, "/status")
    assert code == 200 and len(body) < 100_000, len(body)
    status = json.loads(body)
    assert len(status["current_drift"]) == 20 and status["current_drift_total"] == 20_000
    assert status["current_drift_more"] == "and 19980 more: GET /drift?offset=20"
    assert status["last"]["fingerprint"]["drift_total"] == 20_000
    assert len(status["last"]["fingerprint"]["drift"]) == 20
    assert status["history"]["open_drift_events_total"] == 20_000
    seen, offset = [], 0
    while offset is not None:
        code, _, body = http_get(port, f"/drift?offset={offset}")
        page = json.loads(body)
        assert code == 200 and len(page["items"]) <= 1000 and page["total"] == 20_000
        seen += [item["path"] for item in page["items"]]
        offset = page["next_offset"]
    assert tuple(seen) == paths
    assert json.loads(http_get(port, "/drift?kind=verify")[2])["total"] == 0
    assert http_get(port, "/drift?offset=-1")[0] == 400
    assert http_get(port, "/drift?kind=nope")[0] == 400
    samples = metric_samples(http_get(port, "/metrics")[2])
    assert samples[("envlock_drifted_fields", (("kind", "fingerprint"),))] == 20_000
    assert sum(name == "envlock_drifted_field" for name, _ in samples) == 100


def test_a_lone_surrogate_in_a_difference_is_served_escaped(served) -> None:
    state, port = served
    assert state.apply(_fp("drift", ("environment.X\ud800",))) == 1
    code, _, body = http_get(port, "/healthz")
    assert code == 503 and body == "fingerprint drift: environment.X\\ud800: 1 -> absent\n"
    assert json.loads(http_get(port, "/status")[2])["current_drift"][0]["path"] == "environment.X\ud800"
    samples = metric_samples(http_get(port, "/metrics")[2])
    assert ("envlock_drifted_field", (("kind", "fingerprint"), ("path", "environment.X\\ud800"),
                                      ("severity", "critical"))) in samples


def _threads_named(prefix: str) -> int:
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def test_a_slowloris_flood_holds_at_most_the_cap_and_health_answers_after(tmp_path: Path) -> None:
    """300 clients trickle headers one byte at a time (5,000 made 4,800 threads before): the
    server serves at most max_connections at once, cuts each request at its deadline even though
    bytes keep coming, and /healthz answers as soon as the flood stops."""
    history = open_history(tmp_path)
    state = _board(history, "g", "sha256:g")
    state.apply(_fp())
    server = _serve(state, "127.0.0.1", 0, max_connections=8, request_deadline_s=1.0)
    server.start()
    port = server.address[1]
    baseline = threading.active_count()
    clients: list[socket.socket] = []
    try:
        for _ in range(300):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            clients.append(client)
        most = 0
        cut = 0
        stop_at = time.monotonic() + 3.0  # three deadlines: every held slot is cut and refilled
        while time.monotonic() < stop_at:
            for client in clients:
                with contextlib.suppress(OSError):
                    client.send(b"a")
            most = max(most, threading.active_count() - baseline)
            time.sleep(0.1)
        for client in clients[:8]:
            client.settimeout(0.5)
            with contextlib.suppress(OSError):
                cut += client.recv(1) == b""
        assert most <= 8, f"{most} threads for 300 slow clients"
        assert cut >= 1, "a client trickling bytes was never cut off"
    finally:
        for client in clients:
            client.close()
    try:
        started = time.monotonic()
        assert http_get(server.address[1], "/healthz", timeout=10)[0] == 200
        assert time.monotonic() - started < 5
    finally:
        server.stop()
        history.close()
