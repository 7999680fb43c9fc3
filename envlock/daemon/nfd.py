"""Node Feature Discovery (NFD) feature file: node labels saying whether this node reproduces.

nfd-worker's ``local`` source reads ``key=value`` lines from files in
``/etc/kubernetes/node-feature-discovery/features.d/``. Keys without a namespace become
``feature.node.kubernetes.io/<key>`` labels (allowed by nfd-master by default). Files whose
names start with a dot are ignored by NFD, which is exactly the temp file ``atomic_write_text``
writes before its ``os.replace``, so NFD never reads a half-written file.

An ``# +expiry-time=`` directive makes NFD drop the labels if the daemon stops refreshing the
file (dead daemon, deleted DaemonSet): a node must never keep claiming it reproduces.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from envlock.store import atomic_write_text

PREFIX = "envlock."
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str | None) -> str:
    """A valid Kubernetes label value: <= 63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    if not text:
        return ""
    value = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return value.strip("-._")


def short_digest(digest: str | None, length: int = 12) -> str:
    """``sha256:0123abcd...`` -> ``0123abcd0123`` (enough to tell goldens/fingerprints apart)."""
    if not digest:
        return ""
    return label_value(digest.split(":", 1)[-1][:length])


def feature_lines(
    *, reproduces: bool, healthy: bool, fingerprint_digest: str | None, golden_digest: str | None,
    verify_outcome: str | None, numeric_class: str | None = None, numeric_profile: str | None = None,
    cores_healthy: bool | None = None,
) -> dict[str, str]:
    """The labels. The numeric class and its profile come from the last conclusive verify and are
    left out (so NFD removes the labels) until one reported them, and after the golden changes.
    ``cores_healthy``: the last cores check (``--cores-every``) found every CPU agreeing (True) or
    not (False); None (no cores check, or one that could not run): no label."""
    features = {
        f"{PREFIX}reproduces": "true" if reproduces else "false",
        f"{PREFIX}healthy": "true" if healthy else "false",
        f"{PREFIX}golden-digest": short_digest(golden_digest),
        f"{PREFIX}fingerprint-digest": short_digest(fingerprint_digest),
        f"{PREFIX}verify": label_value(verify_outcome or "pending"),
        f"{PREFIX}numeric-class": label_value(numeric_class) if numeric_class and numeric_profile else "",
        f"{PREFIX}numeric-profile": label_value(numeric_profile) if numeric_class and numeric_profile else "",
        f"{PREFIX}cores-healthy": "" if cores_healthy is None else "true" if cores_healthy else "false",
    }
    return {k: v for k, v in features.items() if v}


def render(features: dict[str, str], *, expires_at: datetime | None) -> str:
    lines = ["# written by envlock watch; do not edit (rewritten after every check)"]
    if expires_at is not None:
        stamp = expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"# +expiry-time={stamp}")
    lines += [f"{key}={value}" for key, value in sorted(features.items())]
    return "\n".join(lines) + "\n"


def write_features(path: Path, features: dict[str, str], *, expires_at: datetime | None) -> None:
    atomic_write_text(path, render(features, expires_at=expires_at))
