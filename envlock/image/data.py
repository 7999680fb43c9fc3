"""Read the image package data: templates, pinned base images, the TF/CUDA table.

The files live in the repository's ``images/`` directory; ``envlock/image/data`` is a symlink
to it, so the same files are package data in a wheel and data at the top of the repository.
"""

from __future__ import annotations

import configparser
import json
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
    return [
        BaseImage(name=section, image=parser[section]["image"], tag=parser[section]["tag"],
                  python=parser[section].get("python"))
        for section in parser.sections()
    ]


def pinned_bases() -> list[BaseImage]:
    return parse_base_images(read_text("base-images.cfg"))


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
