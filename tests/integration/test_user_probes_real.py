"""User probes with real TensorFlow: the example module records, verifies and drifts with a named cause;
hostile probes fail one by one; an installed package contributes probes through its entry point.

Each capture or verify costs a TF import in a fresh child (and each crashed or timed-out probe one
more), so every test runs a small `--probes` selection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envlock.golden import load_golden
from tests.helpers import REPO_ROOT, env_with, envlock_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]

EXAMPLE = "examples/envlock_probes.py"
EXAMPLE_PROBES = "user.seed_doc_train_model,user.seed_doc_fit_predict,rng.op_seed"


def _verify(golden: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = envlock_cli("verify", str(golden), "--json", *args, env=env, cwd=REPO_ROOT)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def _by_name(report: dict) -> dict[str, dict]:
    return {p["name"]: p for p in report["probes"]}


@pytest.fixture(scope="module")
def example_golden(tensorflow_required: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "model-golden.json"
    proc = envlock_cli("capture", "--golden", "--probe-module", EXAMPLE, "--probes", EXAMPLE_PROBES, "-o", str(path),
                       cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def test_the_example_records_with_its_source(example_golden: Path) -> None:
    golden = load_golden(example_golden)
    records = {p.name: p for p in golden.probes}
    assert [p.name for p in golden.probes] == EXAMPLE_PROBES.split(",")
    user = records["user.seed_doc_train_model"]
    assert user.status == "ok" and user.group == "canary" and "training" in user.tags
    assert {o.name for o in user.outputs} == {"loss", "weight0", "weight1", "weight2", "weight3"}
    assert user.source is not None and user.source.module == "envlock_probes" and user.source.file == EXAMPLE
    assert user.source.sha256 and user.source.distribution is None
    builtin = records["rng.op_seed"].source
    assert builtin is not None and builtin.module == "envlock.probes.suite_rng"


def test_the_example_verifies_and_drifts_with_onednn_named(example_golden: Path) -> None:
    code, report = _verify(example_golden, "--probe-module", EXAMPLE)
    assert code == 0 and {p["status"] for p in report["probes"]} == {"identical"}

    # What moves the example here: oneDNN flipped relative to the golden's effective state (on by
    # default on this Zen 4 and on the Intel AMX machine; off elsewhere, so flip whichever it is).
    flipped = "0" if load_golden(example_golden).manifest.tensorflow.onednn_enabled else "1"
    code, report = _verify(example_golden, "--probe-module", EXAMPLE, "--repeat", "1",
                           env=env_with(TF_ENABLE_ONEDNN_OPTS=flipped))
    probes = _by_name(report)
    assert code == 1 and not report["reproduces"]
    for name in ("user.seed_doc_train_model", "user.seed_doc_fit_predict"):
        assert probes[name]["status"] == "drift" and 0 < probes[name]["max_rel_error"] < 1e-3
        assert probes[name]["causes"][0]["path"] in {"environment.TF_ENABLE_ONEDNN_OPTS", "tensorflow.onednn_enabled"}
    assert probes["rng.op_seed"]["status"] == "identical"


def test_explain_loads_the_user_probes_and_proves_what_moved_them(example_golden: Path) -> None:
    # The drift above, explained: explain runs the user's probe in its candidate children too, and
    # proves the flipped oneDNN setting by restoring it (the golden was recorded without the variable).
    flipped = "0" if load_golden(example_golden).manifest.tensorflow.onednn_enabled else "1"
    proc = envlock_cli("explain", str(example_golden), "--json", "--probe-module", EXAMPLE,
                       "--probes", "user.seed_doc_train_model", env=env_with(TF_ENABLE_ONEDNN_OPTS=flipped),
                       cwd=REPO_ROOT)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (finding,) = json.loads(proc.stdout)["findings"]
    assert finding["probe"] == "user.seed_doc_train_model" and finding["status"] == "fixed", finding
    assert "TF_ENABLE_ONEDNN_OPTS" in finding["fixed_by"]


def test_without_the_module_its_probes_are_skipped_with_the_flag_to_pass(example_golden: Path) -> None:
    code, report = _verify(example_golden, "--probes", "user.seed_doc_train_model,rng.op_seed", "--repeat", "1")
    probes = _by_name(report)
    assert probes["rng.op_seed"]["status"] == "identical"
    assert probes["user.seed_doc_train_model"]["status"] == "skipped"
    assert f"--probe-module {EXAMPLE}" in probes["user.seed_doc_train_model"]["reason"]
    assert any("user probe(s) not compared" in note for note in report["notes"])


def test_unknown_names_and_broken_modules_are_exit_2_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    proc = envlock_cli("capture", "--golden", "--probe-module", EXAMPLE, "--probes", "user.no_such_probe",
                       "-o", str(out), cwd=REPO_ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "user.no_such_probe" in proc.stderr
    broken = tmp_path / "broken_probes.py"
    broken.write_text("import tensorflow as tf\nraise ImportError('weights not downloaded')\n")
    proc = envlock_cli("capture", "--golden", "--probe-module", str(broken), "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "weights not downloaded" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


HOSTILE = '''
import os, signal, time
import numpy as np
from envlock import probe

HOSTILE = os.environ.get("I12_HOSTILE") == "1"


def _fine(ctx):
    return {"x": np.arange(8, dtype=np.float32) * ctx.seed}


@probe("hostile.raises", tags=["training"], group="canary", dtype="float32", description="raises")
def raises(ctx):
    if HOSTILE:
        raise RuntimeError("the user's model is broken")
    return _fine(ctx)


@probe("hostile.segfault", tags=["training"], group="canary", dtype="float32", description="kills its process")
def segfault(ctx):
    if HOSTILE:
        os.kill(os.getpid(), signal.SIGSEGV)
    return _fine(ctx)


@probe("hostile.nan", tags=["training"], group="canary", dtype="float32", description="NaN")
def nan(ctx):
    return {"loss": np.array([0.5, np.nan], dtype=np.float32)} if HOSTILE else _fine(ctx)


@probe("hostile.string", tags=["training"], group="canary", dtype="float32", description="a string")
def string(ctx):
    return "converged" if HOSTILE else _fine(ctx)


@probe("hostile.sleeps", tags=["training"], group="canary", dtype="float32", description="hangs")
def sleeps(ctx):
    if HOSTILE:
        time.sleep(600)
    return _fine(ctx)


@probe("hostile.good", tags=["training"], group="canary", dtype="float32", description="well behaved")
def good(ctx):
    return {"w": ctx.tf.matmul(ctx.tf.ones((4, 4)), ctx.tf.ones((4, 4))).numpy()}
'''

HOSTILE_ERRORS = {
    "hostile.raises": "probe failed: RuntimeError: the user's model is broken",
    "hostile.segfault": "crashed the probe process with SIGSEGV",
    "hostile.nan": "'loss' has 1 NaN and 0 Inf of 2 values",
    "hostile.string": "probe returned str",
    "hostile.sleeps": "timed out after 5 s",
}


def _hostile_module(tmp_path: Path) -> Path:
    path = tmp_path / "hostile_probes.py"
    path.write_text(HOSTILE, encoding="utf-8")
    return path


def test_hostile_probes_fail_one_by_one_when_recording(tensorflow_required: None, tmp_path: Path) -> None:
    module, out = _hostile_module(tmp_path), tmp_path / "g.json"
    proc = envlock_cli("capture", "--golden", "--probe-module", str(module), "--repeat", "1", "--probe-timeout", "5",
                       "-o", str(out), "--probes", ",".join([*HOSTILE_ERRORS, "hostile.good"]),
                       env=env_with(I12_HOSTILE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {p.name: p for p in load_golden(out).probes}
    assert records["hostile.good"].status == "ok"
    for name, message in HOSTILE_ERRORS.items():
        assert records[name].status == "skipped" and message in (records[name].reason or ""), records[name]
        assert f"not recorded: {name}" in proc.stdout


def test_hostile_probes_fail_one_by_one_when_verifying_and_a_changed_probe_is_refused(
        tensorflow_required: None, tmp_path: Path) -> None:
    module, golden = _hostile_module(tmp_path), tmp_path / "g.json"
    proc = envlock_cli("capture", "--golden", "--probe-module", str(module), "--repeat", "1", "-o", str(golden),
                       env=env_with(I12_HOSTILE=None))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.status for p in load_golden(golden).probes if p.name.startswith("hostile.")} == {"ok"}

    code, report = _verify(golden, "--probe-module", str(module), "--probe-timeout", "5",
                           "--probes", ",".join([*HOSTILE_ERRORS, "hostile.good"]), env=env_with(I12_HOSTILE="1"))
    probes = _by_name(report)
    assert code == 1 and report["counts"]["error"] == len(HOSTILE_ERRORS)
    assert probes["hostile.good"]["status"] == "identical"
    for name, message in HOSTILE_ERRORS.items():
        assert probes[name]["status"] == "error" and message in probes[name]["reason"], probes[name]

    # Comments and layout are not code: verify compares as before.
    module.write_text(HOSTILE.replace("def good(ctx):\n", "def good(ctx):  # edited\n\n    # after recording\n"),
                      encoding="utf-8")
    code, report = _verify(golden, "--probe-module", str(module), "--probes", "hostile.good,hostile.raises",
                           env=env_with(I12_HOSTILE=None))
    probes = _by_name(report)
    assert {probes[name]["status"] for name in ("hostile.good", "hostile.raises")} == {"identical"}, probes
    # Edit the module's code after recording: verify refuses to compare its probes, unless told to.
    module.write_text(HOSTILE.replace("def good(ctx):\n", "def good(ctx):\n    _edited = 1\n"), encoding="utf-8")
    code, report = _verify(golden, "--probe-module", str(module), "--probes",  # one built-in, or nothing compares
                           "hostile.good,hostile.raises,rng.global_seed", env=env_with(I12_HOSTILE=None))
    probes = _by_name(report)
    for name in ("hostile.good", "hostile.raises"):  # the digest covers what runs: the whole module
        assert probes[name]["status"] == "skipped"
        assert "the probe's code changed since the golden was recorded" in probes[name]["reason"]
    code, report = _verify(golden, "--probe-module", str(module), "--probes", "hostile.good", "--allow-changed-probes",
                           env=env_with(I12_HOSTILE=None))
    assert code == 0 and _by_name(report)["hostile.good"]["status"] == "identical"


def test_an_installed_package_contributes_probes_through_its_entry_point(
        tensorflow_required: None, tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = site / "i12_model_probes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from envlock import probe\n\n"
        "@probe('pkg.dense', tags=['matmul', 'onednn'], group='canary', dtype='float32', description='a dense layer')\n"
        "def dense(ctx):\n"
        "    x = ctx.tf.random.stateless_normal((64, 32), seed=(ctx.seed, 1))\n"
        "    return {'y': ctx.tf.keras.layers.Dense(8)(x).numpy()}\n")
    dist_info = site / "i12_model_probes-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: i12-model-probes\nVersion: 1.2.3\n")
    (dist_info / "top_level.txt").write_text("i12_model_probes\n")
    (dist_info / "entry_points.txt").write_text("[envlock.probes]\nmodel = i12_model_probes\n")
    env = env_with(PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    golden = tmp_path / "g.json"
    proc = envlock_cli("capture", "--golden", "--probes", "pkg.dense,rng.op_seed", "--repeat", "1", "-o", str(golden),
                       env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    source = load_golden(golden).probe("pkg.dense").source  # type: ignore[union-attr]
    assert source is not None and source.module == "i12_model_probes"
    assert (source.distribution, source.version) == ("i12-model-probes", "1.2.3")
    code, report = _verify(golden, env=env)
    assert code == 0 and [p["status"] for p in report["probes"]] == ["identical", "identical"]
