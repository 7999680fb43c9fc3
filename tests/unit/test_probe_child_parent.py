"""The parent side of the probe child: whatever the child leaves behind is a clear failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import ENVIRONMENT, EnvironmentProblem, TensorflowMissing
from envlock.models import LockdownSettings
from envlock.probes.supervisor import run_child
from envlock.results import NOT_RUN, ChildResult
from envlock.runner import CommandResult, Runner


class _ChildLeaves(Runner):
    """Stands in for the child process: writes ``content`` as its result file and 'exits'."""

    def __init__(self, content: str | None, returncode: int = -9, stderr: str = "Killed") -> None:
        self.content, self.returncode, self.stderr = content, returncode, stderr

    def run(self, argv: list[str], *, timeout: float = 10.0, env: dict[str, str] | None = None) -> CommandResult:
        if self.content is not None:
            Path(argv[-1]).write_text(self.content, encoding="utf-8")
        return CommandResult(self.returncode, "", self.stderr)

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: object = None, interval: float = 0.25, **_sandbox: object) -> CommandResult:
        return self.run(argv, timeout=timeout, env=env)


def _run(runner: Runner) -> ChildResult:
    return run_child(probe_names=["matmul.f32"], repeat=1, settings=LockdownSettings(), env={}, runner=runner)


@pytest.mark.parametrize("content", [None, "", '{"ok": true, "runs": {"matmul', "[1, 2]", "not json"])
def test_a_missing_or_cut_short_result_is_an_environment_problem(content: str | None) -> None:
    with pytest.raises(EnvironmentProblem) as info:
        _run(_ChildLeaves(content, stderr="MemoryError: out of memory\n"))
    assert info.value.exit_code == ENVIRONMENT
    assert "exit -9" in str(info.value) and "MemoryError" in str(info.value)


def test_tensorflow_missing_in_the_child_is_reported_as_such() -> None:
    with pytest.raises(TensorflowMissing):
        _run(_ChildLeaves('{"ok": false, "error": "tensorflow_missing", "detail": "No module"}', returncode=3))


def test_a_complete_result_is_returned() -> None:
    assert _run(_ChildLeaves('{"ok": true, "runs": {}}', returncode=0)) == ChildResult(ok=True)


def test_a_partial_result_is_parsed_with_the_defaults_and_a_missing_run_is_not_run() -> None:
    """What a child that got only part of the way leaves: every missing field takes its default."""
    result = _run(_ChildLeaves('{"ok": true, "runs": {"matmul.f32": [{"status": "ok"}]}}', returncode=0))
    assert result.import_seconds is None and result.tf_info is None and result.suite_seconds == 0.0
    assert result.probes == {} and result.order == () and result.restarts == 0
    run = result.first_run("matmul.f32")
    assert run.status == "ok" and run.outputs == () and run.seconds == 0.0
    assert run.intermediates is None and run.onednn_primitives is None and run.trace_note is None
    assert not result.ran("matmul.f64") and result.runs_of("matmul.f64") == (NOT_RUN,)
    assert NOT_RUN.status == "skipped" and NOT_RUN.reason == "not run"
