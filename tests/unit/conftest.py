"""The unit layer never reads this host: a test that tries gets a loud failure.

Unit tests run on recorded machines (the ``recorded_manifest`` fixture, tests/data/) so that
they pass on any CPU. This guard makes that rule hold without anyone having to remember it:
capturing this machine, or reading a system file through the real ``Runner``, fails the test.
Tests whose point is the live machine live in tests/integration/.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import envlock.capture
from envlock.runner import Runner


def _host_read(what: str) -> Any:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        pytest.fail(f"a unit test read this host ({what}): use a recorded machine from tests/data "
                    "(the recorded_manifest fixture, FakeRunner) or move the test to tests/integration/",
                    pytrace=False)
    return refuse


@pytest.fixture(autouse=True)
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Every envlock module that imported capture_manifest holds its own reference: refuse them all.
    original = envlock.capture.capture_manifest
    for name, module in list(sys.modules.items()):
        if (name == "envlock" or name.startswith("envlock.")) and getattr(module, "capture_manifest", None) is original:
            monkeypatch.setattr(module, "capture_manifest", _host_read("capture_manifest"))
    for method in ("read_text", "exists", "listdir"):
        # FakeRunner overrides each of these, so only the real runner is refused.
        monkeypatch.setattr(Runner, method, _host_read(f"Runner.{method}"))
    yield
