"""HTTP endpoints: /healthz, /livez, /status, /metrics. Loopback by default.

The standard library's ThreadingHTTPServer is enough: a handful of scrapers, tiny responses.
HTTP/1.1 keep-alive so a scraper reuses its connection. Handlers only read ``DaemonState``
(cheap, lock-protected) and never run a check, so a running verify never slows them down.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from envlock.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from envlock.daemon.state import DaemonState
from envlock.errors import EnvironmentProblem

# A client gets this long to send each request (and a keep-alive connection to idle): a client
# that connects and sends nothing (slowloris) frees its thread after it, never holds it forever.
CONNECTION_TIMEOUT_S = 10.0
# Connections the kernel queues while every thread is busy starting: a burst of 200 concurrent
# scrapes is queued, not refused (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 512


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown
    allow_reuse_address = True  # restart right after a stop without waiting for TIME_WAIT
    request_queue_size = LISTEN_BACKLOG


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        # "[::]" names the IPv6 addresses only: without this Linux binds IPv4 too (dual stack)
        with contextlib.suppress(OSError, AttributeError):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def _make_handler(state: DaemonState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "envlock-watch"
        timeout = CONNECTION_TIMEOUT_S
        # Headers and body in ONE send: with the default unbuffered writes, Nagle's algorithm
        # holds the small body back until the client's delayed ACK, ~40 ms per keep-alive request.
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # one log line per CHECK, not per scrape

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                healthy, reason = state.health()
                self._send(200 if healthy else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
            elif path == "/livez":
                self._send(200, b"alive\n", "text/plain; charset=utf-8")
            elif path == "/status":
                body = json.dumps(state.status(), indent=2, sort_keys=True).encode() + b"\n"
                self._send(200, body, "application/json")
            elif path == "/metrics":
                self._send(200, state.metrics.render(), METRICS_CONTENT_TYPE)
            elif path == "/":
                self._send(200, b"envlock watch: /healthz /livez /status /metrics\n", "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        do_HEAD = do_GET  # noqa: N815

    return Handler


class HttpServer:
    """Bound at construction (so a busy port fails before any check runs); served on a thread."""

    def __init__(self, state: DaemonState, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _make_handler(state))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EnvironmentProblem(f"cannot listen on {host}:{port}: address already in use") from None
            raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        # a short poll interval only bounds how long stop() waits; requests never wait on it
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="envlock-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
