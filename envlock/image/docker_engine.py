"""The one module that talks to Docker (through the docker SDK). Everything else stays pure.

Errors come back as envlock errors with one line a person can act on: an unreachable daemon
is ``DockerUnavailable`` (exit 3) saying how to start one; a failed build is
``ImageBuildFailed`` naming the failing step and its last log lines.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envlock.errors import BadInputError, DockerUnavailable, EnvironmentProblem

Progress = Callable[[str], None]
LOG_TAIL = 12

START_HINT = ("start one (e.g. `sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST "
              "at a running daemon")


class ImageBuildFailed(EnvironmentProblem):
    """The Docker build failed; the message names the step and carries its last log lines."""


def connect(timeout: int = 600) -> Any:
    """A docker client whose daemon answered a ping, or ``DockerUnavailable``."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise DockerUnavailable("the docker Python SDK is not installed (pip install docker)") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DockerUnavailable(f"cannot reach the Docker daemon at {where} ({reason}); {START_HINT}") from None
    except Exception as exc:  # requests/urllib3 errors escape the SDK's own wrapping on some versions
        raise DockerUnavailable(f"cannot reach the Docker daemon at {where} ({type(exc).__name__}); "
                                f"{START_HINT}") from None
    return client


def image_id(client: Any, ref: str) -> str | None:
    """The local image ID for ``ref`` (tag, ID or digest), or None when it is not here.

    ``ref`` comes from ``--base-image``: a malformed one (the daemon answers 4xx) is bad input.
    """
    from docker.errors import APIError, DockerException, ImageNotFound
    from requests.exceptions import RequestException

    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None
    except APIError as exc:
        said = (str(exc.explanation or "").strip() or str(exc)).splitlines()[0]
        if exc.is_client_error():
            raise BadInputError(f"--base-image {ref}: {said}") from None
        raise DockerUnavailable(f"the Docker daemon failed to look up {ref} ({said})") from None
    except (DockerException, RequestException) as exc:  # requests errors escape the SDK's wrapping
        raise DockerUnavailable(f"lost the Docker daemon looking up {ref} ({type(exc).__name__}); "
                                f"{START_HINT}") from None


def build(client: Any, context_dir: Path, *, tag: str, nocache: bool = False, progress: Progress = lambda _: None,
          network_mode: str | None = None) -> str:
    """Build ``context_dir`` (classic builder), streaming each log line; returns the image ID."""
    step = "(before the first step)"
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    image: str | None = None
    try:
        events = client.api.build(path=str(context_dir), tag=tag, rm=True, forcerm=True, nocache=nocache,
                                  decode=True, network_mode=network_mode)
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
    except Exception as exc:
        from docker.errors import DockerException
        from requests.exceptions import ConnectionError as RequestsConnectionError

        if isinstance(exc, RequestsConnectionError | DockerException):
            raise DockerUnavailable(f"lost the Docker daemon during the build ({type(exc).__name__}); "
                                    f"{START_HINT}") from None
        raise
    if image is None:
        image = image_id(client, tag)
    if image is None:
        raise ImageBuildFailed(f"docker build of {context_dir} finished without an image (last step: {step})")
    return image
