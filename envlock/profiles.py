"""Numerics profiles: named, versioned sets of settings that change which numeric path TensorFlow takes.

``portable`` routes a model through XLA with platform-dependent math off and caps oneDNN at an
instruction set both recorded CPU vendors have, so that its numerics depend only on operations IEEE-754
specifies bit for bit (division, sqrt) and on kernels both vendors run alike. The profiles are data,
per TensorFlow version, in ``envlock/data/profiles.json`` (each setting with the measurement that
justifies it, and which probes the profile was measured to cover on both vendors); see docs/portable.md.

Base layer (standard library only): the probe child, ``lockdown()`` before TensorFlow starts and the
image renderer read it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from envlock.errors import BadInputError

PROFILES_FILE = "profiles.json"
PROFILES_KIND = "envlock.profiles"


@dataclass(frozen=True)
class Setting:
    name: str  # an environment variable
    value: str
    why: str  # the measurement behind it


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    tensorflow: tuple[str, ...]  # "major.minor" releases it was measured on
    settings: tuple[Setting, ...]
    requires_isa: tuple[str, ...]  # CPU features (envlock's IsaSummary names) both machines must have
    covered: tuple[str, ...]  # built-in probes measured bit-identical across both vendors under it
    not_covered: dict[str, str]  # built-in probe -> why the profile does not make it portable
    summary: str
    measured: str  # the cross-vendor experiment that measured ``covered``

    @property
    def environment(self) -> dict[str, str]:
        return {s.name: s.value for s in self.settings}

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def covers(self, probe: str) -> bool | None:
        """True: measured portable; False: known not to be; None: not measured (a user probe, say)."""
        if probe in self.covered:
            return True
        if probe in self.not_covered:
            return False
        return None


@functools.cache
def _document() -> dict[str, Any]:
    text = resources.files("envlock").joinpath("data", PROFILES_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    if data.get("kind") != PROFILES_KIND:
        raise AssertionError(f"envlock/data/{PROFILES_FILE} is not an {PROFILES_KIND} file")  # pragma: no cover
    return data


def _parse(name: str, raw: dict[str, Any]) -> Profile:
    return Profile(
        name=name, version=int(raw["version"]), tensorflow=tuple(raw["tensorflow"]),
        settings=tuple(Setting(s["name"], s["value"], s["why"]) for s in raw["settings"]),
        requires_isa=tuple(raw.get("requires_isa", ())), covered=tuple(raw.get("covered", ())),
        not_covered=dict(raw.get("not_covered", {})), summary=raw["summary"], measured=raw.get("measured", ""))


def all_profiles() -> list[Profile]:
    """Every profile version in the table, newest version of each name last."""
    return [_parse(name, raw) for name, versions in _document()["profiles"].items()
            for raw in sorted(versions, key=lambda v: int(v["version"]))]


def profile_names() -> list[str]:
    return list(_document()["profiles"])


def _minor(tf_version: str | None) -> str | None:
    if not tf_version:
        return None
    parts = tf_version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None


def latest(name: str, tf_version: str | None = None) -> Profile:
    """The newest version of profile ``name`` (for this TensorFlow, when it is known); unknown: BadInputError."""
    versions = [p for p in all_profiles() if p.name == name]
    if not versions:
        raise BadInputError(f"unknown numerics profile {name!r} (known: {', '.join(profile_names())})")
    minor = _minor(tf_version)
    if minor is not None:
        measured = [p for p in versions if minor in p.tensorflow]
        if not measured:
            raise BadInputError(f"the {name} profile was not measured on TensorFlow {tf_version} (only on "
                                f"{', '.join(sorted({t for p in versions for t in p.tensorflow}))}): its settings "
                                "may not make this TensorFlow portable")
        versions = measured
    return versions[-1]


def lookup(name: str, version: int) -> Profile:
    """Profile ``name`` at exactly ``version`` (as a golden records it); unknown: BadInputError."""
    for profile in all_profiles():
        if profile.name == name and profile.version == version:
            return profile
    known = ", ".join(p.label for p in all_profiles())
    raise BadInputError(f"unknown numerics profile {name!r} version {version!r} (this envlock knows {known}): "
                        "upgrade envlock, or re-record the golden")


def apply_to(environ: dict[str, str], profile: Profile) -> dict[str, str]:
    """``environ`` with the profile's settings in force (a copy)."""
    env = dict(environ)
    env.update(profile.environment)
    return env
