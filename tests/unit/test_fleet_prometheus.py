"""`envlock fleet --prometheus`'s reader: real answers of Prometheus 2.42 (tests/data/records), and
servers on loopback that are not a Prometheus, fail, trickle or flood. The reader against a real
Prometheus scraping real daemons is tests/integration/test_prometheus_fleet.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.errors import BAD_INPUT, ENVIRONMENT, BadInputError, EnvironmentProblem, EnvlockError
from envlock.fleet import prometheus as fp
from envlock.fleet.picture import analyse
from envlock.fleet.render import render_fleet
from tests.helpers import DATA_DIR

RECORDS = DATA_DIR / "records"
# Two daemons scraped by Prometheus 2.42 (Debian), a 2-probe golden: one as recorded, one with oneDNN off.
CLASSES = (RECORDS / "prometheus-2.42-query-envlock_numeric_class.json").read_bytes()
GOLDENS = (RECORDS / "prometheus-2.42-query-envlock_golden_info.json").read_bytes()
BAD_QUERY = (RECORDS / "prometheus-2.42-bad-query.json").read_bytes()  # its 400 answer to a malformed query
GOLDEN_DIGEST = "sha256:77dbdec0a1acb6149df1da5174266600f2a01cec68087d889a9d50c26f737cc1"


def _fleet(classes: bytes = CLASSES, goldens: bytes = GOLDENS) -> fp.PrometheusFleet:
    base = "http://prometheus:9090"
    return fp.build_fleet(base, fp.parse_vector(classes, base=base), fp.parse_vector(goldens, base=base))


def _answer(*samples: tuple[dict[str, str], str]) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": metric, "value": [1796303216.1, value]} for metric, value in samples]}}).encode()


def test_the_recorded_answers_give_two_classes_of_one_node_each() -> None:
    fleet = _fleet()
    assert [(r.node.instance, r.numeric_class, r.profile, r.golden_digest) for r in fleet.rows] == [
        ("127.0.0.1:38457", "0eaa820319d5", "default", GOLDEN_DIGEST),
        ("127.0.0.1:40173", "c6d2df55e9b4", "default", GOLDEN_DIGEST)]
    assert fleet.without_class == () and fleet.left_out == 0
    assert {p: list(c) for p, c in fleet.classes().items()} == {"default": ["0eaa820319d5", "c6d2df55e9b4"]}
    rows = fp.machine_rows(fleet)
    assert [(r.kind, r.hostname, r.numeric_class, r.profile, r.cells) for r in rows] == [
        ("prometheus", "127.0.0.1:38457", "0eaa820319d5", "default", {}),
        ("prometheus", "127.0.0.1:40173", "c6d2df55e9b4", "default", {})]
    assert rows[1].source == "http://prometheus:9090 envlock/127.0.0.1:40173"


def test_largest_class_first_profiles_apart_nodes_without_a_class_and_foreign_series() -> None:
    node = {"job": "envlock", "__name__": "envlock_numeric_class"}
    classes = _answer(
        ({**node, "instance": "a", "class": "c6d2df55e9b4", "profile": "default"}, "1"),
        ({**node, "instance": "b", "class": "0eaa820319d5", "profile": "default"}, "1"),
        ({**node, "instance": "c", "node": "gpu-7", "class": "0eaa820319d5", "profile": "default"}, "1"),
        ({**node, "instance": "d", "class": "0eaa820319d5", "profile": "portable-v1"}, "1"),
        ({**node, "instance": "e", "class": "not-a-class", "profile": "default"}, "1"),  # someone else's metric
        ({**node, "instance": "f", "class": "0eaa820319d5", "profile": "a b"}, "1"),
    )
    nodes = {"c": {"node": "gpu-7"}}
    goldens = _answer(*(({"job": "envlock", "instance": i, "digest": "sha256:ab", **nodes.get(i, {})}, "1")
                        for i in "abcdg"))
    fleet = _fleet(classes, goldens)
    assert {p: {c: [r.node.instance for r in rows] for c, rows in by.items()} for p, by in fleet.classes().items()} == {
        "default": {"0eaa820319d5": ["b", "c"], "c6d2df55e9b4": ["a"]}, "portable-v1": {"0eaa820319d5": ["d"]}}
    assert [n.instance for n in fleet.without_class] == ["g"] and fleet.left_out == 2
    assert [(r.hostname, r.numeric_class) for r in fp.machine_rows(fleet)] == [
        ("b", "0eaa820319d5"), ("gpu-7", "0eaa820319d5"), ("a", "c6d2df55e9b4"), ("d", "0eaa820319d5"), ("g", None)]
    text = render_fleet(analyse(fp.machine_rows(fleet)))
    assert "1 machine: d@?" in text and "gpu-7@?" in text


def test_labels_from_prometheus_are_escaped_when_rendered() -> None:
    hostile = "evil\x1b[2J\nnode"
    fleet = _fleet(_answer(({"job": "envlock", "instance": hostile, "class": "0eaa820319d5", "profile": "default"},
                            "1")), _answer())
    text = render_fleet(analyse(fp.machine_rows(fleet)))
    assert "\x1b" not in text and "evil\\x1b[2J\\nnode" in text
    assert all(line.isprintable() for line in text.splitlines())


@pytest.mark.parametrize(("url", "expected"), [
    ("http://prometheus:9090", "http://prometheus:9090/api/v1/query?query=envlock_numeric_class"),
    ("https://host/prometheus/", "https://host/prometheus/api/v1/query?query=envlock_numeric_class"),
    ("http://[::1]:9090/", "http://[::1]:9090/api/v1/query?query=envlock_numeric_class"),
])
def test_the_query_url(url: str, expected: str) -> None:
    assert fp.api_url(url, "envlock_numeric_class") == expected


@pytest.mark.parametrize("url", [
    "prometheus:9090", "ftp://prometheus/", "file:///etc/passwd", "http://", "http://host:99999",
    "http://host:port", "http://host/?query=up", "http://host/#x", "",
])
def test_a_url_that_is_not_a_prometheus_base_url_is_bad_input(url: str) -> None:
    with pytest.raises(BadInputError, match="--prometheus") as caught:
        fp.api_url(url, "envlock_numeric_class")
    assert caught.value.exit_code == BAD_INPUT and "\n" not in str(caught.value)


@pytest.mark.parametrize(("body", "why"), [
    (b"<html><body>Grafana</body></html>", "not JSON"),
    (b'{"reproduces": true}', "no status"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', "no vector result"),
    (b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "1"]}]}}',
     "a result that is not a sample"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested deeper than 64 levels"),
])
def test_an_answer_that_is_not_prometheus_is_one_line_naming_the_url(body: bytes, why: str) -> None:
    with pytest.raises(BadInputError, match="the answer is not Prometheus's HTTP API") as caught:
        fp.parse_vector(body, base="http://x:1")
    assert why in str(caught.value) and "http://x:1" in str(caught.value)


# ---- over real HTTP on loopback ----------------------------------------------------------------


@pytest.fixture()
def serve() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    """``serve(handle)``: an HTTP server on loopback answering every GET with ``handle(request)``; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(handle: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _reply(status: int, body: bytes, content_type: str = "application/json") -> Callable[[Any], None]:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    return handle


def _error(call: Callable[[], Any]) -> EnvlockError:
    with pytest.raises(EnvlockError) as caught:
        call()
    assert "\n" not in str(caught.value)
    return caught.value


def test_the_reader_asks_both_queries_over_http(serve) -> None:
    asked: list[str] = []

    def handle(request: BaseHTTPRequestHandler) -> None:
        asked.append(request.path)
        _reply(200, CLASSES if "numeric_class" in request.path else GOLDENS)(request)

    fleet = fp.read_prometheus(serve(handle) + "/prefix/")
    assert asked == ["/prefix/api/v1/query?query=envlock_numeric_class",
                     "/prefix/api/v1/query?query=envlock_golden_info"]
    assert len(fleet.rows) == 2


def test_nothing_listening_is_an_environment_problem() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = _error(lambda: fp.read_prometheus(f"http://127.0.0.1:{port}"))
    assert isinstance(error, EnvironmentProblem) and error.exit_code == ENVIRONMENT
    assert str(error) == f"cannot reach Prometheus at http://127.0.0.1:{port}: Connection refused"


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (503, b"Service Unavailable", EnvironmentProblem, "answered HTTP 503"),
    (400, BAD_QUERY, EnvironmentProblem, "answered HTTP 400: invalid parameter"),
    (404, b"not found\n", BadInputError, "the answer is not Prometheus's HTTP API (HTTP 404)"),  # e.g. a daemon's URL
    (200, b"envlock watch: /healthz /livez /status /drift /metrics\n", BadInputError, "not JSON"),
])
def test_what_a_server_answers_instead_is_one_line(serve, status: int, body: bytes, kind: type, text: str) -> None:
    url = serve(_reply(status, body))
    error = _error(lambda: fp.read_prometheus(url))
    assert isinstance(error, kind) and text in str(error) and url in str(error)


def test_an_answer_larger_than_the_limit_is_cut_off(serve) -> None:
    url = serve(_reply(200, b" " * (3 * 1024 * 1024)))
    error = _error(lambda: fp.read_prometheus(url, max_bytes=1024 * 1024))
    assert isinstance(error, BadInputError) and "larger than 1 MiB" in str(error)


def test_a_server_that_trickles_is_cut_off_at_the_deadline(serve) -> None:
    stop = threading.Event()

    def trickle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.end_headers()
        while not stop.is_set():  # a byte every 50 ms: no single read ever times out
            try:
                request.wfile.write(b" ")
                request.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)

    url = serve(trickle)
    t0 = time.monotonic()
    try:
        error = _error(lambda: fp.read_prometheus(url, timeout_s=1.0))
    finally:
        stop.set()
    assert isinstance(error, EnvironmentProblem) and "did not answer within 1 s" in str(error)
    assert time.monotonic() - t0 < 5


def test_a_redirect_away_from_http_is_not_followed(serve) -> None:
    def to_ftp(request: BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", "ftp://127.0.0.1/etc/passwd")
        request.send_header("Content-Length", "0")
        request.end_headers()

    error = _error(lambda: fp.read_prometheus(serve(to_ftp)))
    assert isinstance(error, BadInputError) and "HTTP 302" in str(error)


# ---- `envlock fleet --prometheus` ------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["fleet", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("envlock: error: ") and stderr[:-1].isprintable(), stderr
    return stderr


def test_fleet_prometheus_gives_the_classes_of_the_scraped_nodes(serve) -> None:
    url = serve(lambda request: _reply(200, CLASSES if "numeric_class" in request.path else GOLDENS)(request))
    code, out, _ = _cli("--prometheus", url)
    assert code == 1  # two classes in the group of Prometheus's nodes
    assert "127.0.0.1:38457" in out and "127.0.0.1:40173" in out
    code, out, _ = _cli("--prometheus", url, "--json")
    data = json.loads(out)
    assert code == 1 and data["machines"] == 2
    assert sorted(c["numeric_class"] for g in data["groups"] for c in g["classes"]) == ["0eaa820319d5", "c6d2df55e9b4"]


@pytest.mark.parametrize(("args", "code", "text"), [
    ((), BAD_INPUT, "give goldens or verify reports (FILE...), or --prometheus URL"),
    (("--prometheus", "ftp://prometheus/"), BAD_INPUT, "not an http:// or https:// URL"),
    (("--prometheus", "http://127.0.0.1:9", "--plot", "map.png"), BAD_INPUT, "use --plot with files only"),
])
def test_fleet_prometheus_usage_errors_are_one_line(args: tuple[str, ...], code: int, text: str) -> None:
    exit_code, _, err = _cli(*args)
    assert exit_code == code and text in _one_line(err)


def test_fleet_prometheus_unreachable_or_not_prometheus(serve) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = _cli("--prometheus", f"http://127.0.0.1:{port}")
    assert code == ENVIRONMENT and "cannot reach Prometheus" in _one_line(err)
    code, _, err = _cli("--prometheus", serve(_reply(404, b"not found\n", "text/plain")))
    assert code == BAD_INPUT and "not Prometheus's HTTP API" in _one_line(err)
