"""HTTP endpoints: /healthz, /livez, /status, /drift, /metrics. Loopback by default.

The standard library's ThreadingHTTPServer is enough: a handful of scrapers, tiny responses.
HTTP/1.1 keep-alive so a scraper reuses its connection. Handlers only read the current
``DaemonState`` (``StateBoard.state``, an immutable value) and never run a check, so a running
verify never slows them down.

Bounded against slow or hostile clients: at most MAX_CONNECTIONS connections are served at once
(one thread each; more wait in the listen backlog, then in the kernel), and each request's line
and headers must arrive within REQUEST_DEADLINE_S of the server starting to wait for them. A
per-read timeout alone would not do: a client trickling one header byte every few seconds
(slowloris) resets it forever. One reaper thread shuts down a connection past its deadline.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs

from envlock.daemon.board import StateBoard
from envlock.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from envlock.daemon.metrics import Metrics
from envlock.daemon.results import KINDS, CheckKind
from envlock.daemon.views import DRIFT_PAGE_MAX
from envlock.errors import EnvironmentProblem

# A client gets this long to send each request (and a keep-alive connection to idle): a client
# that connects and sends nothing (slowloris) frees its thread after it, never holds it forever.
CONNECTION_TIMEOUT_S = 10.0
# Connections the kernel queues while every thread is busy starting: a burst of 200 concurrent
# scrapes is queued, not refused (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 512
# Connections served at once (a thread each). Scrapers hold one each for a few milliseconds; a
# flood of slow clients holds at most these, each for at most REQUEST_DEADLINE_S.
MAX_CONNECTIONS = 32
# From waiting for a request (a new connection, or the next request on a keep-alive one) to
# having its whole request line and headers: past it the connection is cut.
REQUEST_DEADLINE_S = 10.0


class _Deadlines:
    """The reaper: one thread that shuts down every connection whose request is not in by its deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._expired: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envlock-http-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def arm(self, sock: socket.socket) -> None:
        with self._lock:
            self._armed[id(sock)] = (time.monotonic() + self.seconds, sock)
            self._expired.discard(id(sock))

    def disarm(self, sock: socket.socket) -> bool:
        """Stop watching ``sock``; True when it was already cut for missing its deadline."""
        with self._lock:
            self._armed.pop(id(sock), None)
            expired = id(sock) in self._expired
            self._expired.discard(id(sock))
            return expired

    def _run(self) -> None:
        period = min(0.25, self.seconds / 4)
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._lock:
                late = [(key, sock) for key, (deadline, sock) in self._armed.items() if deadline <= now]
                for key, _ in late:
                    del self._armed[key]
                    self._expired.add(key)
            for _, sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the handler's blocked read with EOF


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown
    block_on_close = False  # nor does stop() wait for one (the deadline ends it soon anyway)
    allow_reuse_address = True  # restart right after a stop without waiting for TIME_WAIT
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 max_connections: int, request_deadline_s: float) -> None:
        self.slots = threading.BoundedSemaphore(max_connections)
        self.closing = threading.Event()
        self.deadlines = _Deadlines(request_deadline_s)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve on a thread once one of the MAX_CONNECTIONS slots is free; until then the accept
        loop waits, and new connections wait in the backlog (a burst of scrapes is served late,
        not refused)."""
        while not self.slots.acquire(timeout=0.2):
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.deadlines.disarm(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-response is not news, and never a traceback on stderr


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # "[::]" names the IPv6 addresses only: without this Linux binds IPv4 too (dual stack)
        with contextlib.suppress(OSError, AttributeError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    text = values[-1]
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ValueError(f"{name} must be a whole number")
    return int(text)


def _make_handler(state: StateBoard, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server: _Server

        protocol_version = "HTTP/1.1"
        server_version = "envlock-watch"
        timeout = CONNECTION_TIMEOUT_S
        # Headers and body in ONE send: with the default unbuffered writes, Nagle's algorithm
        # holds the small body back until the client's delayed ACK, ~40 ms per keep-alive request.
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # one log line per CHECK, not per scrape

        def handle_one_request(self) -> None:
            self.server.deadlines.arm(self.connection)
            super().handle_one_request()

        def parse_request(self) -> bool:
            ok = super().parse_request()
            if self.server.deadlines.disarm(self.connection):
                self.close_connection = True  # cut at its deadline: what was parsed is truncated
                return False
            return ok

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            path, _, query = self.path.partition("?")
            if path == "/healthz":
                healthy, reason = state.health()
                body = (reason + "\n").encode("utf-8", "backslashreplace")  # a golden's lone surrogate, escaped
                self._send(200 if healthy else 503, body, "text/plain; charset=utf-8")
            elif path == "/livez":
                self._send(200, b"alive\n", "text/plain; charset=utf-8")
            elif path == "/status":
                body = json.dumps(state.status(), indent=2, sort_keys=True).encode() + b"\n"
                self._send(200, body, "application/json")
            elif path == "/drift":
                self._drift(parse_qs(query))
            elif path == "/metrics":
                self._send(200, metrics.render(), METRICS_CONTENT_TYPE)
            elif path == "/":
                self._send(200, b"envlock watch: /healthz /livez /status /drift /metrics\n",
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        do_HEAD = do_GET  # noqa: N815

        def _drift(self, query: dict[str, list[str]]) -> None:
            """/drift?kind=fingerprint|verify&list=drift|tolerated&offset=N&limit=M: every current
            difference, DRIFT_PAGE_MAX at most per page (/status shows the first few)."""
            kind = query["kind"][-1] if query.get("kind") else None
            which = (query.get("list") or ["drift"])[-1]
            try:
                if kind not in (None, *KINDS) or which not in ("drift", "tolerated"):
                    raise ValueError(f"kind is one of {', '.join(KINDS)}; list is drift or tolerated")
                page = state.drift_page(kind=cast("CheckKind | None", kind), tolerated=which == "tolerated",
                                        offset=_query_int(query, "offset", 0),
                                        limit=_query_int(query, "limit", DRIFT_PAGE_MAX))
            except ValueError as exc:
                self._send(400, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                return
            self._send(200, json.dumps(page, indent=2, sort_keys=True).encode() + b"\n", "application/json")

    return Handler


class HttpServer:
    """Bound at construction (so a busy port fails before any check runs); served on a thread."""

    def __init__(self, board: StateBoard, metrics: Metrics, host: str, port: int, *,
                 max_connections: int = MAX_CONNECTIONS, request_deadline_s: float = REQUEST_DEADLINE_S) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _make_handler(board, metrics), max_connections=max_connections,
                                        request_deadline_s=request_deadline_s)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EnvironmentProblem(f"cannot listen on {host}:{port}: address already in use") from None
            raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        # a short poll interval only bounds how long stop() waits; requests never wait on it
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="envlock-http", daemon=True
        )

    @property
    def socket(self) -> socket.socket:
        """The listening socket."""
        return self._server.socket

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._server.deadlines.start()
        self._thread.start()

    def stop(self) -> None:
        self._server.closing.set()
        self._server.deadlines.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
