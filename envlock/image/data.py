"""Read the image package data: templates, pinned base images, the TF/CUDA table.

The files live in the repository's ``images/`` directory; ``envlock/image/data`` is a symlink
to it, so the same files are package data in a wheel and data at the top of the repository.
"""

from __future__ import annotations

import configparser
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

from envlock.errors import BadInputError


class BaseImage(BaseModel):
    """A pinned base image: ``image`` is what ``FROM`` uses (a digest or image ID), ``tag`` the human name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    image: str
    tag: str
    python: str | None = None
    # The base's glibc decides which manylinux wheels run on it (pip is told the platform tags).
    glibc: str | None = None


def read_text(name: str) -> str:
    return resources.files("envlock.image").joinpath("data", name).read_text(encoding="utf-8")


def entrypoint_script() -> bytes:
    return resources.files("envlock.image").joinpath("entrypoint.sh").read_bytes()


def dockerfile_template() -> str:
    return read_text("Dockerfile.tmpl")


@cache
def _compat_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(read_text("tf-compat.json"))
    return data


def compat_data() -> dict[str, Any]:
    return _compat_data()


def parse_base_images(text: str) -> list[BaseImage]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    for section in parser.sections():
        glibc = parser[section].get("glibc")
        if glibc is not None and not re.fullmatch(r"\d+\.\d+", glibc):
            raise BadInputError(f"base-images.cfg [{section}]: glibc must look like 2.36, not {glibc!r}")
    return [
        BaseImage(name=section, image=parser[section]["image"], tag=parser[section]["tag"],
                  python=parser[section].get("python"), glibc=parser[section].get("glibc"))
        for section in parser.sections()
    ]


def pinned_bases() -> list[BaseImage]:
    return parse_base_images(read_text("base-images.cfg"))


def glibc_for(base: BaseImage, python_version: str | None, bases: list[BaseImage] | None = None) -> str:
    """The glibc to pick wheels for: ``base``'s own, else that of the pin a command-line base matches
    (by tag or image), else the pinned base for the golden's Python, else the oldest pinned glibc
    (older manylinux wheels run on newer glibc, never the other way round)."""
    if base.glibc:
        return base.glibc
    bases = pinned_bases() if bases is None else bases
    minor = ".".join((python_version or "").split(".")[:2])
    for candidates in ([b for b in bases if base.tag == b.tag or base.image == b.image],
                       [b for b in bases if b.python == minor]):
        for known in candidates:
            if known.glibc:
                return known.glibc
    versions = sorted((b.glibc for b in bases if b.glibc), key=lambda v: tuple(int(x) for x in v.split(".")[:2]))
    if versions:
        return versions[0]
    raise BadInputError(f"cannot tell which glibc base image {base.tag} has; add 'glibc = X.Y' to its section "
                        "in images/base-images.cfg")


def base_for_python(python_version: str | None, bases: list[BaseImage] | None = None) -> BaseImage:
    """The pinned base whose Python has the golden's major.minor (cp3XY wheels must fit it)."""
    bases = pinned_bases() if bases is None else bases
    minor = ".".join((python_version or "").split(".")[:2])
    for base in bases:
        if base.python == minor:
            return base
    known = ", ".join(f"{b.tag} (Python {b.python})" for b in bases) or "none"
    raise BadInputError(
        f"no pinned base image has Python {minor or '(unknown)'} (pinned: {known}); "
        "make one with images/make-base.sh and pass --base-image"
    )
