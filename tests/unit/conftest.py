"""The unit layer never reads this host nor starts a process: a test that tries gets a loud failure.

Unit tests run on recorded machines (the ``recorded_manifest`` fixture, tests/data/) so that
they pass on any CPU. This guard makes that rule hold without anyone having to remember it:
capturing this machine, or reading a system file through the real ``Runner``, fails the test.
Tests whose point is the live machine live in tests/integration/.

Likewise a unit test starts no process (a CLI child, the probe child, pip, Docker): every way one
can start -- ``subprocess``, ``os.fork``/``posix_spawn``/``system``, ``multiprocessing`` -- fails the
test, as cibuildwheel's unit tests do. A test whose point is a real process (how a child is killed,
what a fresh interpreter imports) says so with ``@pytest.mark.processes("why")``.
"""

from __future__ import annotations

import _posixsubprocess
import errno
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import envlock.capture
from envlock.cli.commands import COMMANDS
from envlock.runner import Runner

# Every command's module, imported before any test: the guard below must see the references they
# hold (a command module first imported inside a test would keep that test's stub for good).
for _entry in COMMANDS.values():
    importlib.import_module(_entry.module)


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


# The calls every process start goes through, and which argument names the program: subprocess.Popen
# (so os.popen and asyncio too) runs _execute_child; multiprocessing's spawn and forkserver call
# fork_exec; its fork context and os.spawn* call os.fork, pty os.forkpty; os.system forks in C.
_PROCESS_STARTS: list[tuple[Any, str, int]] = [
    (subprocess.Popen, "_execute_child", 1), (_posixsubprocess, "fork_exec", 0),
    (os, "posix_spawn", 1), (os, "posix_spawnp", 1), (os, "fork", -1), (os, "forkpty", -1), (os, "system", 0),
]


@pytest.fixture(autouse=True)
def no_process_starts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    marker = request.node.get_closest_marker("processes")
    if marker is not None:
        if not (marker.args and isinstance(marker.args[0], str) and marker.args[0].strip()):
            pytest.fail('@pytest.mark.processes needs the reason: @pytest.mark.processes("why")', pytrace=False)
        yield
        return
    elsewhere: list[str] = []

    def refuse(what: str, argv_at: int) -> Any:
        def start(*args: Any, **_kwargs: Any) -> Any:
            call = f"{what}({_short(args[argv_at]) if 0 <= argv_at < len(args) else ''})"
            if threading.current_thread() is threading.main_thread():
                pytest.fail(_refusal(call), pytrace=False)
            # In another thread (the daemon's verify worker) a failure would end only that thread and
            # leave the test waiting: the start fails as the OS would refuse it, and teardown fails the test.
            elsewhere.append(call)
            raise PermissionError(errno.EPERM, _refusal(call))
        return start

    for owner, name, argv_at in _PROCESS_STARTS:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, refuse(f"{owner.__name__}.{name}", argv_at))
    yield
    if elsewhere:
        pytest.fail(_refusal(elsewhere[0]), pytrace=False)


def _short(argv: Any) -> str:
    text = repr(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _refusal(call: str) -> str:
    return (f"a unit test started a process: {call}. Fake it (FakeRunner, a stub), move the test to "
            'tests/integration/, or say why it needs one: @pytest.mark.processes("why")')
