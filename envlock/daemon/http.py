"""HTTP endpoints: /healthz, /livez, /status, /metrics. Loopback by default.

The standard library's ThreadingHTTPServer is enough: a handful of scrapers, tiny responses.
HTTP/1.1 keep-alive so a scraper reuses its connection. Handlers only read ``DaemonState``
(cheap, lock-protected) and never run a check, so a running verify never slows them down.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from envlock.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from envlock.daemon.state import DaemonState
from envlock.errors import BadInputError, EnvironmentProblem

_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
# RFC 1123 host names, ASCII only: no spaces, no "*", no full-width or other Unicode look-alikes.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (address to bind, port); port 0 picks a free port.

    Strict, because a listen address decides who can reach the daemon: the port is 1-5 ASCII
    digits (no ``19_145``, no full-width digits), the host is required and is an IPv4 address,
    a bracketed IPv6 address or a host name that resolves here. A host name is resolved once,
    to the one address that is bound, so nothing wider than what was named is ever bound.
    Every malformed value is bad usage (exit 2), never an environment problem.
    """
    def bad(problem: str) -> BadInputError:
        return BadInputError(f"--listen {value!r}: {problem}")

    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise bad("expected HOST:PORT, e.g. 127.0.0.1:9109 or [::1]:9109")
    if not _PORT.fullmatch(port_text):
        raise bad(f"port {port_text!r} is not a number (ASCII digits 0-65535)")
    port = int(port_text)
    if port > 65535:
        raise bad("port must be between 0 and 65535")
    if host.startswith("["):
        if not host.endswith("]"):
            raise bad("an IPv6 address goes in brackets, e.g. [::1]:9109")
        return _ip_literal(host[1:-1], 6, bad), port
    if ":" in host:
        raise bad("an IPv6 address goes in brackets, e.g. [::1]:9109")
    if host.isascii() and host.replace(".", "").isdigit():
        return _ip_literal(host, 4, bad), port
    if not _HOSTNAME.fullmatch(host):
        raise bad(f"{host!r} is not a host name or IP address")
    return _resolve(host, bad), port


def _ip_literal(text: str, version: int, bad: Callable[[str], BadInputError]) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise bad(f"{text!r} is not an IPv{version} address") from None
    if address.version != version or not text.isascii():
        raise bad(f"{text!r} is not an IPv{version} address")
    return str(address)


def _resolve(name: str, bad: Callable[[str], BadInputError]) -> str:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise bad(f"host name {name!r} does not resolve here") from None
    for family in (socket.AF_INET, socket.AF_INET6):  # IPv4 first: what "localhost" usually means
        for info in infos:
            if info[0] == family:
                return str(info[4][0])
    raise bad(f"host name {name!r} has no IPv4 or IPv6 address")


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
