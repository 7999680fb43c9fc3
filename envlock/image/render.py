"""Render a Dockerfile from a template and an ``ImageSpec``. Pure: returns text, touches nothing."""

from __future__ import annotations

import re

from envlock.image.data import dockerfile_template
from envlock.image.spec import ENV_NAME, LABEL_NAME, ImageSpec, check_line, check_pairs

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

DOCKERIGNORE = """\
# envlock build contexts hold only what the Dockerfile copies; ignore everything else so a
# stray file (credentials, .git, caches) can never end up in the image or the build log.
*
!Dockerfile
!requirements.lock
!wheelhouse/*.whl
!envlock/golden.json
!envlock/entrypoint.sh
!envlock/self.lock
!envlock/*.whl
"""


def _quote(value: str) -> str:
    """A Dockerfile double-quoted word: ENV/LABEL expand ``$`` and treat ``\\`` and ``"`` specially.

    Line breaks cannot be escaped at all (a newline ends the instruction): ``render`` refuses them.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _pairs(items: dict[str, str]) -> str:
    return " \\\n    ".join(f"{key}={_quote(value)}" for key, value in sorted(items.items()))


def _variant_block(spec: ImageSpec) -> str:
    if spec.variant == "cpu":
        return ""
    driver = f"NVIDIA driver >= {spec.minimum_driver}" if spec.minimum_driver else "a recent NVIDIA driver"
    return (
        f"# GPU: CUDA {spec.cuda or '(unknown)'} and cuDNN come from the hash-pinned nvidia-* wheels of\n"
        "# tensorflow[and-cuda], not from a CUDA base image; the host needs only the driver\n"
        f"# ({driver}), which the NVIDIA container toolkit mounts in.\n"
        "ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility\n"
    )


def render(spec: ImageSpec, template: str | None = None) -> str:
    """The Dockerfile for ``spec``; ``template`` defaults to images/Dockerfile.tmpl."""
    # spec_from_golden already checked a golden's values; a spec made or edited another way
    # (a reference JSON, a test) must not be able to inject instructions either.
    check_pairs("environment", spec.environment, ENV_NAME)
    check_pairs("label", spec.labels, LABEL_NAME)
    for what, value in (("base image tag", spec.base.tag), ("base image", spec.base.image),
                        ("envlock version", spec.envlock_version), ("venv", spec.venv), ("user", spec.user),
                        ("cuda", spec.cuda or ""), ("minimum driver", spec.minimum_driver or "")):
        check_line(what, value)
    text = dockerfile_template() if template is None else template
    values = {
        "header": spec.labels.get("org.opencontainers.image.title", f"envlock image ({spec.variant})"),
        "envlock_version": spec.envlock_version,
        "base_tag": spec.base.tag,
        "base_image": spec.base.image,
        "venv": spec.venv,
        "user": spec.user,
        "uid": str(spec.uid),
        "variant_block": _variant_block(spec),
        "environment": _pairs(spec.environment),
        "labels": _pairs(spec.labels),
    }

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]  # a KeyError here is a template bug, not user input

    return _PLACEHOLDER.sub(substitute, text)
