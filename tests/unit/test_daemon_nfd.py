"""NFD feature file: valid Kubernetes label values, expiry directive, atomic writes NFD ignores."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envlock.daemon import nfd

# Kubernetes label value: empty, or <= 63 chars, alphanumeric at both ends, [-_.A-Za-z0-9] inside
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
# label name part of a key without a prefix (NFD adds feature.node.kubernetes.io/)
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@pytest.mark.parametrize("text", [
    "sha256:0123456789abcdef", "--weird value with spaces & symbols!!--", "x" * 200, "-.-", "ok", "1.2.3+cu121",
])
def test_label_values_are_always_valid(text: str) -> None:
    value = nfd.label_value(text)
    assert LABEL_VALUE.match(value), value
    assert len(value) <= 63


def test_short_digest_drops_the_algorithm() -> None:
    assert nfd.short_digest("sha256:0123456789abcdef") == "0123456789ab"
    assert nfd.short_digest(None) == ""


def test_feature_lines_are_valid_labels_and_omit_unknowns() -> None:
    features = nfd.feature_lines(reproduces=True, healthy=True, fingerprint_digest="sha256:" + "a" * 64,
                                 golden_digest=None, verify_outcome=None)
    assert features == {"envlock.reproduces": "true", "envlock.healthy": "true",
                        "envlock.fingerprint-digest": "a" * 12, "envlock.verify": "pending"}
    for key, value in features.items():
        assert LABEL_NAME.match(key) and LABEL_VALUE.match(value)


def test_render_has_the_expiry_directive_and_sorted_lines() -> None:
    text = nfd.render({"envlock.b": "1", "envlock.a": "2"},
                      expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    lines = text.splitlines()
    assert "# +expiry-time=2030-01-02T03:04:05Z" in lines
    assert [line for line in lines if not line.startswith("#")] == ["envlock.a=2", "envlock.b=1"]


def test_write_is_atomic_through_a_dot_file_nfd_ignores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "envlock"
    target.write_text("envlock.reproduces=true\n")
    seen: list[str] = []
    import os

    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        assert target.read_text() == "envlock.reproduces=true\n"  # old content until the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    nfd.write_features(target, {"envlock.reproduces": "false"}, expires_at=None)
    assert target.read_text().endswith("envlock.reproduces=false\n")
    assert seen and seen[0].startswith(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envlock"]


def test_the_numeric_class_and_profile_are_labels_only_together() -> None:
    base = {"reproduces": False, "healthy": False, "fingerprint_digest": None, "golden_digest": None,
            "verify_outcome": "drift"}
    features = nfd.feature_lines(**base, numeric_class="c6d2df55e9b4", numeric_profile="portable-v1")
    assert features["envlock.numeric-class"] == "c6d2df55e9b4"
    assert features["envlock.numeric-profile"] == "portable-v1"
    for key, value in features.items():
        assert LABEL_NAME.match(key) and LABEL_VALUE.match(value)
    for partial in ({"numeric_class": "c6d2df55e9b4"}, {"numeric_profile": "default"}, {}):
        assert not {"envlock.numeric-class", "envlock.numeric-profile"} & set(nfd.feature_lines(**base, **partial))
