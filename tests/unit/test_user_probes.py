"""User probes without TensorFlow: the public decorator, module loading, source digests, output checks,
the parent surviving a probe that hangs or crashes its child, and verify's source check."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from envlock import probe
from envlock.cli import app
from envlock.errors import BadInputError, EnvironmentProblem, ProbeModuleError
from envlock.golden import OutputRecord, ProbeRecord, ProbeSource, compute_golden_digest, load_golden, probe_record
from envlock.models import LockdownSettings
from envlock.probes.child import output_records
from envlock.probes.compare import Tolerance, summarize_array
from envlock.probes.registry import all_probes
from envlock.probes.supervisor import probe_infos, run_child
from envlock.probes.user import load_probe_modules, probe_source
from envlock.results import ChildResult, ProbeInfo, ProbeRun, parse_child_result, parse_output
from envlock.runner import CommandResult, Runner
from envlock.verdict import verdict_for
from tests.helpers import REFERENCE_GOLDEN, REPO_ROOT, run_python

# ---------------------------------------------------------------- the public decorator


@pytest.mark.processes("what a fresh interpreter imports")
def test_probe_is_public_and_import_envlock_stays_light() -> None:
    code = ("import sys, envlock; light = 'envlock.probes.registry' not in sys.modules; "
            "from envlock import probe, ProbeContext, ProbeSkipped; "
            "from envlock.probes.registry import probe as registered; "
            "heavy = sorted(m for m in ('numpy', 'pydantic', 'tensorflow') if m in sys.modules); "
            "print(light, probe is registered, heavy)")
    out = run_python(code).stdout.split()
    assert out == ["True", "True", "[]"]


def test_decorator_refuses_unknown_tags_and_groups() -> None:
    with pytest.raises(ValueError, match="unknown tags.*'gpus'"):
        probe("user.bad_tag", tags=["gpus"], group="canary", dtype="float32", description="")
    with pytest.raises(ValueError, match="group must be"):
        probe("user.bad_group", tags=["matmul"], group="flaky", dtype="float32", description="")  # type: ignore[arg-type]


# ---------------------------------------------------------------- modules and their source


def _module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(body, encoding="utf-8")
    return path


def test_a_module_that_fails_to_import_names_itself(tmp_path: Path) -> None:
    broken = _module(tmp_path, "i12_broken_probes", "raise RuntimeError('no model weights here')\n")
    with pytest.raises(ProbeModuleError, match=r"i12_broken_probes.py.*RuntimeError: no model weights here"):
        load_probe_modules([str(broken)])
    assert "i12_broken_probes" not in sys.modules
    with pytest.raises(ProbeModuleError, match="no such file"):
        load_probe_modules([str(tmp_path / "missing.py")])
    with pytest.raises(ProbeModuleError, match="'no_such_pkg_i12.probes' failed to import: ModuleNotFoundError"):
        load_probe_modules(["no_such_pkg_i12.probes"])


def test_source_digest_follows_the_function_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = _module(tmp_path, "i12_src_a", "def fn(ctx):\n    return {'x': 1}\n")
    second = _module(tmp_path, "i12_src_b", "def fn(ctx):\n    return {'x': 2}\n")
    load_probe_modules([str(first), str(second)])
    a = probe_source(sys.modules["i12_src_a"].fn, from_file=True)
    b = probe_source(sys.modules["i12_src_b"].fn, from_file=True)
    assert a["module"] == "i12_src_a" and a["file"] == "i12_src_a.py" and a["distribution"] is None
    assert a["sha256"] and b["sha256"] and a["sha256"] != b["sha256"]
    outside = probe_source(sys.modules["i12_src_a"].fn, from_file=True, cwd=REPO_ROOT)
    assert outside["file"] == "i12_src_a.py"  # outside the working directory: the base name, never a home path
    assert probe_source(len)["sha256"] is None  # no source text: unknown, not a crash


def test_builtin_probes_carry_their_source() -> None:
    fn = all_probes()["matmul.f32"].fn
    source = probe_source(fn, cwd=REPO_ROOT)
    assert source["module"] == "envlock.probes.suite_linalg" and source["file"] == "envlock/probes/suite_linalg.py"
    assert str(source["sha256"]).startswith("ast-v2:")


def _digest_of(module: str) -> str | None:
    return probe_source(sys.modules[module].fn, from_file=True)["sha256"]


def test_the_digest_covers_the_module_and_its_helpers_not_comments(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the probe runs: a changed helper module or module-level constant is a changed probe
    (it used to be blamed on "an unrecorded hardware or firmware difference"); whitespace and
    comments are not (a whitespace-only edit used to count as "source changed", exit 3)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    helper = _module(tmp_path, "i17_helper", "SCALE = 2.0\n\ndef scaled(x):\n    return x * SCALE\n")
    probes = _module(tmp_path, "i17_probes", "import i17_helper\nOFFSET = 1\n\n"
                     "def fn(ctx):\n    return {'x': i17_helper.scaled(OFFSET)}\n")
    load_probe_modules([str(probes)])
    recorded = _digest_of("i17_probes")
    assert recorded is not None and recorded.startswith("ast-v2:")
    # whitespace, blank lines, comments: the same code
    helper.write_text("# helpers\nSCALE   =  2.0   # the scale\n\n\ndef scaled(x):\n\n    return x*SCALE\n")
    probes.write_text("import i17_helper\nOFFSET = 1  # one\n\ndef fn(ctx):  # a probe\n"
                      "    return {'x': i17_helper.scaled(OFFSET)}\n\n\n")
    assert _digest_of("i17_probes") == recorded
    # a constant in the helper module: changed code
    helper.write_text("SCALE = 3.0\n\ndef scaled(x):\n    return x * SCALE\n")
    assert _digest_of("i17_probes") not in (None, recorded)
    helper.write_text("SCALE = 2.0\n\ndef scaled(x):\n    return x * SCALE\n")
    assert _digest_of("i17_probes") == recorded
    # a module-level constant of the probe's own module
    probes.write_text("import i17_helper\nOFFSET = 2\n\ndef fn(ctx):\n    return {'x': i17_helper.scaled(OFFSET)}\n")
    assert _digest_of("i17_probes") not in (None, recorded)


def test_the_digest_follows_relative_imports_within_the_package_only(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "i17pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "maths.py").write_text("def double(x):\n    return 2 * x\n")
    (package / "probes.py").write_text("import json\nimport numpy as np\nfrom .sub import maths\n\n"
                                       "def fn(ctx):\n    return {'x': np.asarray(maths.double(1))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_probe_modules(["i17pkg.probes"])
    fn = sys.modules["i17pkg.probes"].fn
    recorded = probe_source(fn)["sha256"]
    (package / "sub" / "maths.py").write_text("def double(x):\n    return x + x\n")
    assert probe_source(fn)["sha256"] not in (None, recorded)


def test_a_digest_from_before_is_read_as_unknown_and_the_probe_still_compares() -> None:
    """Goldens recorded before hold "sha256:" of the function's text: not comparable with what the
    probe runs now, so read as unknown (compared without a source check), never "changed"."""
    old = _user_record("sha256:" + "a" * 64)
    assert old.source is not None and old.source.sha256 is None
    verdict = verdict_for(old, _child_result("ast-v2:" + "b" * 64), Tolerance(), pytest_golden=False,
                          allow_changed_probes=False)
    assert verdict.status == "identical" and not verdict.reason
    shipped = load_golden(REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu.json")  # recorded with "sha256:" digests
    source = shipped.probes[0].source
    assert source is not None and source.sha256 is None
    assert source.model_dump(mode="json")["sha256"].startswith("sha256:")  # kept as recorded in the file
    assert compute_golden_digest(shipped) == shipped.digest


def test_a_module_path_that_is_no_file_says_what_it_is(tmp_path: Path) -> None:
    """A FIFO, a directory or a symlink loop was "no such file"; a FIFO must not hang the import."""
    fifo = tmp_path / "fifo.py"
    os.mkfifo(fifo)
    (tmp_path / "dir.py").mkdir()
    (tmp_path / "loop.py").symlink_to(tmp_path / "loop.py")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    for name, message in [("fifo.py", "a FIFO (named pipe), not a Python source file"),
                          ("dir.py", "a directory, not a Python source file"),
                          ("loop.py", "a symbolic link loop"),
                          ("dangling.py", "a symbolic link to nothing"),
                          ("missing.py", "no such file")]:
        started = time.monotonic()
        with pytest.raises(ProbeModuleError, match=re.escape(f"probe module {str(tmp_path / name)!r}: {message}")):
            load_probe_modules([str(tmp_path / name)])
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- what a probe may return


@pytest.mark.parametrize(("returned", "message"), [
    ("a string", "probe returned str"),
    (None, "probe returned NoneType"),
    ({}, "no outputs"),
    ({"loss": np.array([1.0, np.nan, np.inf])}, "'loss' has 1 NaN and 1 Inf of 3 values"),
    ({"names": np.array(["a", "b"])}, "'names' has dtype str"),
    ({"ragged": [[1], [1, 2]]}, "'ragged' is not an array"),
    ({3: np.zeros(2)}, "named 3"),
])
def test_unusable_outputs_are_that_probes_error(returned: Any, message: str) -> None:
    records, problem = output_records(returned)
    assert records == [] and problem is not None and message in problem


def test_one_array_or_a_dict_of_arrays_is_fine() -> None:
    records, problem = output_records(np.arange(3, dtype=np.float32))
    assert problem is None and [r["name"] for r in records] == ["output"]
    records, problem = output_records({"b": np.zeros(2), "a": [1, 2]})
    assert problem is None and [r["name"] for r in records] == ["a", "b"]


# ---------------------------------------------------------------- the parent survives its child


class _ScriptedChild(Runner):
    """Plays one scripted child per call: writes its progress lines, then ends as the script says."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script, self.requests = script, []

    def run_watched(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                    watch: Any = None, interval: float = 0.25, **_sandbox: Any) -> CommandResult:
        request = json.loads(Path(argv[-2]).read_text())
        self.requests.append(request)
        step = self.script[len(self.requests) - 1]
        with open(request["progress"], "a") as progress:
            for line in step["lines"]:
                progress.write(json.dumps(line) + "\n")
        if step.get("hang"):
            watch()  # sees the probe start
            time.sleep(0.01)
            if watch() is not None:  # past its time: the real runner kills the child
                return CommandResult(-9, "", "")
        if "result" in step:
            Path(argv[-1]).write_text(json.dumps(step["result"]))
        return CommandResult(step.get("rc", 0), "", step.get("stderr", ""))


def _setup(order: list[str]) -> dict[str, Any]:
    return {"event": "setup", "order": order, "tf_info": {"version": "2.21.0"}, "import_seconds": 3.0,
            "probes": {n: {"name": n, "tags": ["matmul"], "group": "canary"} for n in order}, "unknown": []}


OK_RUN = {"status": "ok", "outputs": []}


def _ran(name: str, repeat: int = 0) -> list[dict[str, Any]]:
    return [{"event": "start", "probe": name, "repeat": repeat},
            {"event": "run", "probe": name, "repeat": repeat, "run": OK_RUN}]


def _run(runner: Runner, probe_timeout: float = 120) -> ChildResult:
    return run_child(probe_names=None, repeat=1, settings=LockdownSettings(), env={}, runner=runner,
                     probe_modules=["mine.py"], probe_timeout=probe_timeout)


def test_a_crash_is_that_probes_error_and_the_rest_run_in_a_fresh_child() -> None:
    order = ["a", "crashes", "b", "hangs", "c"]
    runner = _ScriptedChild([
        {"lines": [_setup(order), *_ran("a"), {"event": "start", "probe": "crashes", "repeat": 0}], "rc": -11},
        {"lines": [_setup(order[2:]), *_ran("b"), {"event": "start", "probe": "hangs", "repeat": 0}], "hang": True},
        {"lines": [_setup(["c"]), *_ran("c")],
         "result": {"ok": True, "runs": {"c": [OK_RUN]}, "probes": {}, "suite_seconds": 0.1}},
    ])
    result = _run(runner, probe_timeout=0.001)
    crashed, hung = result.first_run("crashes"), result.first_run("hangs")
    assert crashed.status == "error" and "crashed the probe process with SIGSEGV" in (crashed.reason or "")
    assert hung.status == "error" and "timed out after 0.001 s" in (hung.reason or "")
    assert {n: r[0].status for n, r in result.runs.items() if n in "abc"} == {"a": "ok", "b": "ok", "c": "ok"}
    assert [r["probes"] for r in runner.requests] == [None, ["b", "hangs", "c"], ["c"]]
    assert [r["collect_tf_info"] for r in runner.requests] == [True, False, False]
    assert all(r["probe_modules"] == ["mine.py"] for r in runner.requests)
    # The first child's fingerprint and the whole suite's order survive the restarts.
    assert result.tf_info == {"version": "2.21.0"} and list(result.order) == order and result.restarts == 2
    assert [p.name for p in probe_infos(result, None)] == order


def test_a_child_that_dies_outside_any_probe_is_an_environment_problem() -> None:
    runner = _ScriptedChild([{"lines": [_setup(["a"]), *_ran("a")], "rc": -9, "stderr": "Killed\n"}])
    with pytest.raises(EnvironmentProblem, match="exit -9.*Killed"):
        _run(runner)


def test_the_child_reporting_bad_probe_names_is_bad_input() -> None:
    result = {"ok": False, "error": "bad_input", "detail": "unknown probe(s): user.nope"}
    with pytest.raises(BadInputError, match="user.nope"):
        _run(_ScriptedChild([{"lines": [], "result": result, "rc": 2}]))


# ---------------------------------------------------------------- golden compatibility and verify


def test_goldens_without_source_keep_their_digest_and_shape() -> None:
    golden = load_golden(REFERENCE_GOLDEN)
    assert all(p.source is None for p in golden.probes)
    assert compute_golden_digest(golden) == golden.digest
    assert "source" not in golden.probes[0].model_dump(mode="json")


def _user_record(sha: str = "ast-v2:" + "a" * 64) -> ProbeRecord:
    values = np.arange(6, dtype=np.float32)
    return ProbeRecord(name="user.model", tags=["training"], group="canary", status="ok",
                       outputs=[OutputRecord.model_validate(summarize_array("w", values))],
                       source=ProbeSource(module="mypkg.envlock_probes", distribution="mypkg", version="1.0",
                                          file="mypkg/envlock_probes.py", sha256=sha))


def _child_result(sha: str) -> ChildResult:
    run = {"status": "ok", "outputs": [summarize_array("w", np.arange(6, dtype=np.float32))]}
    return parse_child_result({"runs": {"user.model": [run]}, "probes": {"user.model": {"source": {"sha256": sha}}}})


def test_a_probe_whose_source_changed_is_not_compared_unless_allowed() -> None:
    changed = "ast-v2:" + "b" * 64
    verdict = verdict_for(_user_record(), _child_result(changed), Tolerance(), pytest_golden=False,
                       allow_changed_probes=False)
    assert verdict.status == "skipped" and verdict.reason is not None
    assert ("the probe's code changed since the golden was recorded (sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb)"
            in verdict.reason)
    assert "--allow-changed-probes" in verdict.reason
    allowed = verdict_for(_user_record(), _child_result(changed), Tolerance(), pytest_golden=False,
                       allow_changed_probes=True)
    assert allowed.status == "identical" and "compared anyway" in (allowed.reason or "")
    same = verdict_for(_user_record(), _child_result("ast-v2:" + "a" * 64), Tolerance(), pytest_golden=False,
                    allow_changed_probes=False)
    assert same.status == "identical"


def test_a_user_probe_not_loaded_here_says_how_to_load_it() -> None:
    verdict = verdict_for(_user_record(), ChildResult(), Tolerance(), pytest_golden=False, allow_changed_probes=False)
    assert verdict.status == "skipped" and verdict.reason is not None
    assert "mypkg.envlock_probes (distribution mypkg 1.0) is not loaded here" in verdict.reason
    assert "--probe-module mypkg/envlock_probes.py" in verdict.reason


def test_probe_record_keeps_the_source_the_child_reported() -> None:
    info = ProbeInfo(name="user.model", tags=("training",), group="canary",
                     source={"module": "m", "distribution": None, "version": None, "file": "m.py",
                             "sha256": "ast-v2:" + "c" * 64})
    record = probe_record(info, [ProbeRun(status="ok", outputs=(parse_output(summarize_array("w", np.zeros(2))),))])
    assert record.source is not None and record.source.module == "m" and record.source.file == "m.py"
    failed = probe_record(info, [ProbeRun(status="error", reason="probe failed: RuntimeError: boom")])
    assert failed.status == "skipped" and "boom" in (failed.reason or "")


@pytest.mark.parametrize("args", [["capture", "--probe-module", "x.py"], ["capture", "--no-tf", "--probe-module", "x"]])
def test_probe_module_without_golden_is_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--probe-module only makes sense with --golden" in result.output


def test_a_source_with_control_characters_is_refused() -> None:
    with pytest.raises(ValidationError, match="printable"):
        ProbeSource(module="evil\x1b[2J")
