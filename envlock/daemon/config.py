"""What `envlock watch` was asked to do: its options, parsed and checked before anything runs.

Parsing only: no threads, no file read, nothing started (``--listen`` resolves a host name, once);
every problem is a ``BadInputError`` (exit 2) raised before the golden is read or a port is bound.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envlock.errors import BadInputError

if TYPE_CHECKING:
    from envlock.signing import TrustedKey

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h|d)", re.ASCII)
_PLAIN_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Every duration option lies in this range (0 only where an option says it disables something):
# long enough that the daemon is not a busy loop, short enough that a deadline computed from it
# (a timestamp, an NFD expiry) can never overflow.
MIN_DURATION_S = 0.1
MAX_DURATION_S = 30 * 86400.0


def parse_duration(text: str, *, option: str, allow_zero: bool = False) -> float:
    """``30s``, ``5m``, ``6h``, ``1h30m``, ``500ms`` or plain seconds (``0.5``) -> seconds.

    ASCII digits only (no ``1_0``, no full-width digits, no exponent, no ``inf``), and within
    MIN_DURATION_S..MAX_DURATION_S (or exactly 0 with ``allow_zero``): BadInputError otherwise."""
    value = text.strip().lower()
    if _PLAIN_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise BadInputError(f"{option} {text!r}: expected a duration like 30s, 5m, 6h or 1h30m")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds == 0 and allow_zero:
        return 0.0
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        zero = "0 or " if allow_zero else ""
        raise BadInputError(f"{option} {text!r}: must be {zero}between {MIN_DURATION_S:g}s and 30d")
    return seconds


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


def default_state_dir() -> Path:
    if os.environ.get("ENVLOCK_STATE_DIR"):
        return Path(os.environ["ENVLOCK_STATE_DIR"])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/envlock")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "envlock"


def verify_argv(golden: Path, command: str | None, trusted_key_files: Sequence[Path] = ()) -> list[str]:
    """The verify child's argv. A custom command is split like a shell would (no shell runs it);
    ``{golden}`` anywhere in it is replaced by the golden's path. The child re-reads the golden, so
    it is given the daemon's trusted keys too: a swap between the daemon's check and the child's
    read is refused by the child as well."""
    if command is None:
        keys = [arg for path in trusted_key_files for arg in ("--trusted-key", str(path))]
        return [sys.executable, "-m", "envlock", "verify", str(golden), "--json", *keys]
    return [part.replace("{golden}", str(golden)) for part in _split_command(command, "--verify-command")]


def _split_command(command: str, option: str) -> list[str]:
    """``command`` split like a shell would (no shell runs it); an empty or unbalanced one is exit 2."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BadInputError(f"{option}: {exc}") from None
    if not argv:
        raise BadInputError(f"{option}: empty command")
    return argv


def cores_argv(command: str | None) -> list[str]:
    """The cores check's argv: ``python -m envlock cores --json``, or a custom command split like a
    shell would (no shell runs it), e.g. with ``--cpus`` or ``--jobs``."""
    if command is None:
        return [sys.executable, "-m", "envlock", "cores", "--json"]
    return _split_command(command, "--cores-command")


@dataclass
class WatchConfig:
    golden_path: Path
    state_dir: Path
    # The daemon's environment as it STARTED (snapshot taken by the CLI before any capture): both
    # checks use it, never os.environ, which the capture's imports write to (KMP_DUPLICATE_LIB_OK).
    environ: dict[str, str]
    fingerprint_every: float = 60.0
    verify_every: float = 6 * 3600.0  # 0 disables the verify check
    verify_timeout: float = 15 * 60.0
    listen: tuple[str, int] | None = ("127.0.0.1", 9109)  # None: no HTTP (--once)
    nfd_features_file: Path | None = None
    trusted_keys: tuple[TrustedKey, ...] = ()  # each (re)loaded golden must be signed by one of them
    verify_command: list[str] = field(default_factory=list)
    once: bool = False
    # a NEW fingerprint drift brings the next verify forward, but not closer than this to the last
    reverify_min_interval: float = 600.0
    # `envlock cores --json` on a schedule (per-CPU known-answer checks); 0 disables it (the default)
    cores_every: float = 0.0
    cores_timeout: float = 60 * 60.0
    cores_command: list[str] = field(default_factory=lambda: cores_argv(None))
