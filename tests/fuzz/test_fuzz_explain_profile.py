"""explain's inputs and a golden's numerics profile, fuzzed (issues 17 and 19).

explain reads the same golden as verify but applies more of it (its environment to candidate children,
its profile): every mutation must be one line and exit 2, or get as far as the probes. A golden's
``profile`` record, mutated and resealed (anyone can recompute the digest), is never trusted: an
unknown name or version, other settings, a wrong type are exit 2 before anything is applied.
"""

from __future__ import annotations

import copy
import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import (
    CHEAP_PROBE,
    HOSTILE_VALUES,
    FuzzInput,
    any_file,
    cheap_probe_skipped,
    dump,
    examples,
    invoke,
    reseal,
)
from tests.helpers import REPO_ROOT

PORTABLE_GOLDEN = json.loads((REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu-portable.json").read_text())
_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="envlock-fuzz-explain-") as tmp:
        yield Path(tmp)


def _write(workdir: Path, content: bytes) -> Path:
    directory = workdir / f"ex{next(_counter)}"
    directory.mkdir()
    path = directory / "golden.json"
    path.write_bytes(content)
    return path


@examples(60)
@given(content=any_file)
def test_explain_up_to_the_probes(workdir: Path, content: Any) -> None:
    path = _write(workdir, content.content)
    invoke(["explain", str(path), "--probes", CHEAP_PROBE, "--json", "--budget", "5",
            "--report", str(path.parent / "report.json"), "--emit-env", str(path.parent / "env.sh")])


profile_values = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.text(max_size=40),
    st.integers(),
    st.none(),
    st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=4),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def profile_mutations(draw: st.DrawFn) -> FuzzInput:
    data = copy.deepcopy(PORTABLE_GOLDEN)
    profile = data["profile"]
    key = draw(st.sampled_from(["name", "version", "environment", "extra", "whole"]))
    if key == "whole":
        data["profile"] = draw(profile_values)
    elif key == "extra":
        profile[draw(st.text(min_size=1, max_size=20))] = draw(profile_values)
    elif key == "environment" and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(profile["environment"])))
        profile["environment"][name] = draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=80)))
    else:
        profile[key] = draw(profile_values)
    cheap_probe_skipped(data)
    return FuzzInput(f"profile {key} -> {str(data.get('profile'))[:80]!r}", dump(reseal(data)))


@examples(80)
@given(content=profile_mutations())
def test_a_mutated_profile_is_one_line_and_never_applied(workdir: Path, content: FuzzInput) -> None:
    path = _write(workdir, content.content)
    code, _, stderr = invoke(["verify", str(path), "--probes", CHEAP_PROBE, "--json"])
    try:
        profile = json.loads(content.content).get("profile")
        changed = profile is not None and profile != PORTABLE_GOLDEN["profile"]  # None: a golden without one
    except (RecursionError, ValueError):  # nested past what json parses: envlock must refuse it too
        changed = True
    if changed:
        assert code == 2, (code, stderr)
        assert stderr.count("\n") <= 1
