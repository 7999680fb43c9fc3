"""The one module that talks to Docker (through the docker SDK). Everything else stays pure.

Errors come back as envlock errors with one line a person can act on: an unreachable daemon
is ``DockerUnavailable`` (exit 3) saying how to start one; a failed build is
``ImageBuildFailed`` naming the failing step and its last log lines.

The docker SDK (with requests and urllib3, ~0.2 s) is imported inside the functions that use it,
so importing this module costs nothing: ``--context-only`` builds and the other commands never
load it.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envlock.errors import BadInputError, DockerUnavailable, ImageBuildFailed
from envlock.redact import redact_value

Progress = Callable[[str], None]
LOG_TAIL = 12

# A daemon must answer a ping (and the API version query) this fast: a socket that accepts and never
# answers is a broken daemon, reported in seconds, not after the SDK's minutes.
PING_TIMEOUT_S = 10
# Every other API call (image lookups) must answer within this.
API_TIMEOUT_S = 60
# A build streams its log; a step may legitimately print nothing for a long while (pip installing
# TensorFlow), so the stream's silence limit is generous. The ping already proved the daemon answers.
BUILD_SILENCE_TIMEOUT_S = 3600

START_HINT = ("start one (e.g. `sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST "
              "at a running daemon")


def _no_answer(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a read/connect timeout of the HTTP layer."""
    from requests.exceptions import Timeout  # lazy: requests (~0.1 s) loads with the docker SDK, not with this module
    from urllib3.exceptions import TimeoutError as Urllib3Timeout  # lazy: urllib3 loads with the docker SDK

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Timeout | Urllib3Timeout | socket.timeout):
            return True
        current = current.__cause__ or current.__context__
    return "timed out" in str(exc).lower()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What the SDK, requests, urllib3 and the socket raise when the daemon is gone or silent."""
    from docker.errors import DockerException  # lazy: the docker SDK (~0.2 s) loads only when Docker is used
    from requests.exceptions import RequestException  # lazy: requests (~0.1 s) loads with the docker SDK
    from urllib3.exceptions import HTTPError as Urllib3Error  # lazy: urllib3 loads with the docker SDK

    return DockerException, RequestException, Urllib3Error, OSError


def connect(timeout: int = PING_TIMEOUT_S) -> Any:
    """A docker client whose daemon answered a ping within ``timeout`` s, or ``DockerUnavailable``."""
    try:
        import docker  # lazy: ~0.2 s to import; --context-only and the other commands never need it
        from docker.errors import DockerException  # lazy: part of the docker SDK, imported just above
    except ImportError:
        raise DockerUnavailable("the docker Python SDK is not installed (pip install docker)") from None
    # DOCKER_HOST may carry credentials (tcp://user:pass@host): messages show it redacted.
    where = redact_value(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), os.environ.get("HOME"))
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # requests/urllib3 errors escape the SDK's own wrapping on some versions
        if _no_answer(exc):
            raise DockerUnavailable(f"the Docker daemon at {where} accepted the connection but did not answer "
                                    f"within {timeout} s; restart it (e.g. `sudo systemctl restart docker`) or "
                                    "point DOCKER_HOST at a working daemon") from None
        detail = str(exc) if isinstance(exc, DockerException) else ""
        reason = detail.splitlines()[0][:160] if detail.strip() else type(exc).__name__
        raise DockerUnavailable(f"cannot reach the Docker daemon at {where} ({reason}); {START_HINT}") from None
    client.api.timeout = API_TIMEOUT_S
    return client


def image_id(client: Any, ref: str) -> str | None:
    """The local image ID for ``ref`` (tag, ID or digest), or None when it is not here.

    ``ref`` comes from ``--base-image``: a malformed one (the daemon answers 4xx) is bad input.
    """
    from docker.errors import APIError, ImageNotFound  # lazy: the docker SDK (~0.2 s) loads only when Docker is used

    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None
    except APIError as exc:
        said = (str(exc.explanation or "").strip() or str(exc)).splitlines()[0]
        if exc.is_client_error():
            raise BadInputError(f"--base-image {ref}: {said}") from None
        raise DockerUnavailable(f"the Docker daemon failed to look up {ref} ({said})") from None
    except _transport_errors() as exc:  # requests/urllib3 errors escape the SDK's wrapping
        what = "no answer" if _no_answer(exc) else type(exc).__name__
        raise DockerUnavailable(f"lost the Docker daemon looking up {ref} ({what}); {START_HINT}") from None


def build(client: Any, context_dir: Path, *, tag: str, nocache: bool = False, progress: Progress = lambda _: None,
          network_mode: str | None = None) -> str:
    """Build ``context_dir`` (classic builder), streaming each log line; returns the image ID."""
    step = "(before the first step)"
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    image: str | None = None
    try:
        events = client.api.build(path=str(context_dir), tag=tag, rm=True, forcerm=True, nocache=nocache,
                                  decode=True, network_mode=network_mode, timeout=BUILD_SILENCE_TIMEOUT_S)
        for event in events:
            if "stream" in event:
                for line in event["stream"].splitlines():
                    if not line.strip():
                        continue
                    if line.startswith("Step "):
                        step = " ".join(line.split())  # RUN lines arrive with their continuation spaces
                        tail.clear()
                    tail.append(line)
                    progress(line)
            elif "aux" in event and "ID" in event["aux"]:
                image = event["aux"]["ID"]
            elif "error" in event:
                message = event.get("error", "").strip()
                lines = "\n    ".join([*tail, message])
                raise ImageBuildFailed(f"docker build failed at {step}: {message.splitlines()[-1] if message else ''}"
                                       f"\n  last log lines:\n    {lines}")
    except ImageBuildFailed:
        raise
    except _transport_errors() as exc:
        what = f"silent for {BUILD_SILENCE_TIMEOUT_S} s" if _no_answer(exc) else type(exc).__name__
        raise DockerUnavailable(f"lost the Docker daemon during the build ({what}); {START_HINT}") from None
    if image is None:
        image = image_id(client, tag)
    if image is None:
        raise ImageBuildFailed(f"docker build of {context_dir} finished without an image (last step: {step})")
    return image
