"""The pytest plugin (envlock.pytest_plugin), driven through pytester as a user's test suite.

The inner suites never read this host: their conftest replaces the plugin's ``envlock_this_machine``
fixture with a recorded machine from tests/data (chosen per run through ENVLOCK_TEST_MANIFEST), so
"record on the AMD Zen 4, run on the Intel AMX" is two runs with another variable. The plugin is
loaded with ``-p`` and entry-point autoloading is off, so these tests hold whether or not the
installed metadata already has the pytest11 entry point (that is tested from pyproject.toml).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import envlock.verify
from envlock.cli import app
from envlock.golden import load_golden
from envlock.pytest_plugin import golden_path_for, probe_test_id
from envlock.verdict import PYTEST_GOLDEN_NOTE, PYTEST_PROBE_REASON
from envlock.verify import verify_golden
from tests.helpers import REPO_ROOT, imported_in_a_fresh_python
from tests.recorded import RECORDED_MACHINES, recorded_manifest

pytest_plugins = ["pytester"]

AMD, INTEL = "amd-epyc-zen4", "intel-xeon-amx"

CONFTEST = """
import os
import pytest
from envlock.models import load_manifest

@pytest.fixture(scope="session")
def envlock_this_machine():
    return lambda: load_manifest(os.environ["ENVLOCK_TEST_MANIFEST"])
"""

# A "training result": a kernel that NUDGE_ULPS moves by round-off, and a bias that never moves.
TEST_MODULE = """
import os
import numpy as np

def weights():
    kernel = np.random.default_rng(0).standard_normal((40, 40)).astype(np.float32)
    for _ in range(int(os.environ.get("NUDGE_ULPS", "0"))):
        kernel[::7] = np.nextafter(kernel[::7], np.float32(np.inf))
    return {"kernel": kernel, "bias": np.linspace(-1, 1, 8, dtype=np.float32)}

def test_fit(envlock_regression):
    envlock_regression.check("weights", weights(), tags=TAGS)
"""


@pytest.fixture()
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("NUDGE_ULPS", raising=False)
    on_machine(monkeypatch, AMD)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_model="TAGS = None\n" + TEST_MODULE)
    return pytester


def on_machine(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    monkeypatch.setenv("ENVLOCK_TEST_MANIFEST", str(RECORDED_MACHINES[machine]))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # The plugin module is already imported here (so not assertion-rewritten): say that is expected.
    return pytester.runpytest("-p", "envlock.pytest_plugin", "-p", "no:cacheprovider",
                              "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def golden_of(pytester: pytest.Pytester) -> Path:
    return pytester.path / "test_model.golden.json"


def record_then_fail(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *, nudge_ulps: int,
                     machine: str | None = None) -> pytest.RunResult:
    """Record the golden on the AMD machine, then run again with the kernel nudged (on ``machine``): one failure."""
    run(suite).assert_outcomes(passed=1)
    if machine is not None:
        on_machine(monkeypatch, machine)
    monkeypatch.setenv("NUDGE_ULPS", str(nudge_ulps))
    result = run(suite)
    result.assert_outcomes(failed=1)
    return result


def test_first_run_records_a_golden_and_the_next_run_passes(suite: pytest.Pytester) -> None:
    first = run(suite)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*envlock*", f"recorded test_fit::weights in {golden_of(suite)}"])
    golden = load_golden(golden_of(suite))  # a sealed golden: digest checked
    assert golden.recorded_by == "pytest" and golden.repeat == 1
    assert [p.name for p in golden.probes] == ["test_fit::weights"]
    assert [o.name for o in golden.probes[0].outputs] == ["bias", "kernel"]
    assert golden.manifest.digest == recorded_manifest(AMD).digest
    written = golden_of(suite).read_bytes()

    second = run(suite)
    second.assert_outcomes(passed=1)
    assert "recorded" not in second.stdout.str()
    assert golden_of(suite).read_bytes() == written


def test_drift_on_another_machine_fails_with_the_differences_that_explain_it(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = record_then_fail(suite, monkeypatch, nudge_ulps=3, machine=INTEL)
    out = result.stdout.str()
    assert "envlock: test_fit::weights does not reproduce its golden (bitwise): 1 of 2 outputs differ (kernel)" in out
    result.stdout.re_match_lines([r"\s+bias\s+identical$", r"\s+kernel\s+drift\s+3\s+\S+e-0\d\s+\d+/128$"])
    assert "manifest differences that could explain it (tags: all; group: canary)" in out
    # The Zen 4 -> AMX differences, ranked by verify's rules: ISA flags first.
    result.stdout.re_match_lines([r"\s+1\. cpu\.(flags|isa)\.\S+ off -> on.*: the instruction set decides"])
    result.stdout.re_match_lines([r"  \.\.\. and \d+ more: `envlock capture --no-tf -o here.json && envlock diff "])
    assert "re-record them with --envlock-record" in out
    assert "Traceback" not in out and "def check" not in out  # a message, not the plugin's code


def test_drift_on_the_same_machine_blames_the_code_not_the_machine(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = record_then_fail(suite, monkeypatch, nudge_ulps=1)
    result.stdout.fnmatch_lines(
        ["*none: this machine's manifest matches the recording one*suspect the code under test*"])


def test_the_tags_given_decide_which_differences_are_named(suite: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makepyfile(test_model="TAGS = ['rng']\n" + TEST_MODULE)
    out = record_then_fail(suite, monkeypatch, nudge_ulps=1, machine=INTEL).stdout.str()
    assert "(tags: rng; group: canary)" in out
    # An RNG stream does not depend on the instruction set: no ISA flag is blamed for it.
    assert "the instruction set decides" not in out


def test_ulp_tolerance_accepts_round_off_and_bitwise_does_not(suite: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite).assert_outcomes(passed=1)
    monkeypatch.setenv("NUDGE_ULPS", "2")
    run(suite, "--envlock-tolerance", "ulp:2").assert_outcomes(passed=1)
    run(suite, "--envlock-tolerance", "ulp:1").assert_outcomes(failed=1)
    run(suite).assert_outcomes(failed=1)


def test_a_bad_tolerance_is_a_one_line_usage_error(suite: pytest.Pytester) -> None:
    result = run(suite, "--envlock-tolerance", "loose")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: invalid --envlock-tolerance 'loose': use 'bitwise' or 'ulp:N'*"])
    assert not golden_of(suite).exists()


def test_envlock_record_re_records_on_this_machine(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite).assert_outcomes(passed=1)
    before = load_golden(golden_of(suite))
    on_machine(monkeypatch, INTEL)
    monkeypatch.setenv("NUDGE_ULPS", "1")
    run(suite).assert_outcomes(failed=1)

    rerecord = run(suite, "--envlock-record")
    rerecord.assert_outcomes(passed=1)
    rerecord.stdout.fnmatch_lines(["recorded test_fit::weights in *"])
    after = load_golden(golden_of(suite))
    assert after.manifest.digest == recorded_manifest(INTEL).digest
    assert after.probes[0].outputs != before.probes[0].outputs
    run(suite).assert_outcomes(passed=1)  # the nudged values are now the golden's
    monkeypatch.setenv("NUDGE_ULPS", "0")
    run(suite).assert_outcomes(failed=1)


def test_a_new_check_is_added_only_to_a_golden_of_this_machine(suite: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite).assert_outcomes(passed=1)
    suite.makepyfile(test_model="TAGS = None\n" + TEST_MODULE + """
def test_single_array(envlock_regression):
    envlock_regression.check("loss", np.float32(0.25))
""")
    on_machine(monkeypatch, INTEL)
    refused = run(suite)
    refused.assert_outcomes(passed=1, failed=1)
    refused.stdout.fnmatch_lines(["*test_single_array::loss is not in*recorded on another machine*--envlock-record"])

    on_machine(monkeypatch, AMD)
    run(suite).assert_outcomes(passed=2)
    golden = load_golden(golden_of(suite))
    assert [p.name for p in golden.probes] == ["test_fit::weights", "test_single_array::loss"]
    loss = golden.probe("test_single_array::loss")
    # One array is stored as the output "array" (a 0-d value as shape [1]: compare.canonical_array).
    assert loss is not None and [(o.name, o.dtype, o.shape) for o in loss.outputs] == [("array", "float32", [1])]


def test_bad_checks_fail_the_test_with_a_message(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bad="""
import numpy as np
import pytest

def test_unknown_tag(envlock_regression):
    with pytest.raises(ValueError, match="unknown tags"):
        envlock_regression.check("x", np.zeros(3), tags=["gpu", "quantum"])

def test_not_numbers(envlock_regression):
    with pytest.raises(TypeError, match="numeric array"):
        envlock_regression.check("x", {"words": np.array(["a", "b"])})

def test_same_name_twice(envlock_regression):
    envlock_regression.check("x", np.zeros(3))
    with pytest.raises(ValueError, match="used twice"):
        envlock_regression.check("x", np.ones(3))
""")
    run(suite, "test_bad.py").assert_outcomes(passed=3)


def test_an_edited_golden_fails_with_one_line(suite: pytest.Pytester) -> None:
    run(suite).assert_outcomes(passed=1)
    data = json.loads(golden_of(suite).read_text())
    data["probes"][0]["group"] = "stable"
    golden_of(suite).write_text(json.dumps(data))
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["envlock: error: *test_model.golden.json: integrity digest does not match*"])


def test_the_recorded_golden_is_read_by_envlock_diff(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    run(suite).assert_outcomes(passed=1)
    amd_golden = tmp_path / "amd.golden.json"
    amd_golden.write_bytes(golden_of(suite).read_bytes())
    on_machine(monkeypatch, INTEL)
    run(suite, "--envlock-record").assert_outcomes(passed=1)

    same = CliRunner().invoke(app, ["diff", str(amd_golden), str(amd_golden)])
    assert same.exit_code == 0, same.output
    moved = CliRunner().invoke(app, ["diff", str(amd_golden), str(golden_of(suite)), "--json"])
    assert moved.exit_code == 1, moved.output
    assert "cpu.isa.amx_tile" in {d["path"] for d in json.loads(moved.stdout)["differences"]}


@pytest.mark.parametrize("machine", [AMD, INTEL])
def test_verify_compares_the_manifest_and_says_it_cannot_rerun_tests(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    run(suite).assert_outcomes(passed=1)  # recorded on the AMD machine
    here = recorded_manifest(machine)
    monkeypatch.setattr(envlock.verify, "capture_manifest", lambda **_kwargs: here)

    report = verify_golden(golden_of(suite))
    assert [(v.name, v.status, v.reason) for v in report.probes] == [
        ("test_fit::weights", "skipped", PYTEST_PROBE_REASON)]
    # verify reads it, but proves nothing about the tests' numbers: never "reproduces" (exit 3).
    assert PYTEST_GOLDEN_NOTE in report.notes and report.exit_code == 3 and not report.reproduces
    paths = {d.path for d in report.differences}
    # Like with like: no "TensorFlow was not captured" difference of verify's own making.
    assert not any(p.startswith("tensorflow.") for p in paths)
    assert bool(paths) == (machine != AMD)

    cli = CliRunner().invoke(app, ["verify", str(golden_of(suite))])
    assert cli.exit_code == 3, cli.output
    assert "NOTHING VERIFIED" in cli.stdout and "REPRODUCES" not in cli.stdout
    assert "recorded by the envlock pytest plugin" in cli.stdout


@pytest.mark.processes("what a fresh interpreter imports")
def test_the_plugin_never_imports_tensorflow(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_light="""
import sys
import numpy as np

def test_check_stays_light(envlock_regression):
    envlock_regression.check("x", np.arange(5.0))
    assert "tensorflow" not in sys.modules
""")
    # In a pytest process of its own: this one may hold TensorFlow from the tests before it.
    suite.runpytest_subprocess("-p", "envlock.pytest_plugin", "-p", "no:cacheprovider",
                               "test_light.py").assert_outcomes(passed=1)
    # And importing the plugin (every pytest session does) loads neither pydantic nor numpy.
    assert imported_in_a_fresh_python("import envlock.pytest_plugin", ["tensorflow", "pydantic", "numpy"]) == []


def test_pyproject_declares_the_pytest11_entry_point() -> None:
    import tomllib  # lazy: Python 3.11+ (what CI runs); envlock itself supports 3.10

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"envlock": "envlock.pytest_plugin"}


def test_names() -> None:
    assert golden_path_for(Path("tests/test_model.py")) == Path("tests/test_model.golden.json")
    assert probe_test_id("tests/test_m.py::TestA::test_b[x::y]") == "TestA::test_b[x::y]"


def test_goldens_without_the_new_field_keep_their_bytes_and_digest() -> None:
    for shipped in sorted((REPO_ROOT / "goldens").glob("*.json")):
        golden = load_golden(shipped)  # digest checked
        assert golden.recorded_by is None
        assert "recorded_by" not in golden.model_dump(mode="json")
