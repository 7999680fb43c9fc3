"""Explain inside your own model (issue 21), for real: a Keras model handed to ``ctx.train_step`` is
traced when a golden is recorded, verify does not trace and still reproduces it bit for bit, a oneDNN
flip is localised to a layer (not an output), and the pytest plugin's ``check_model`` names that layer.

What holds on both vendors only: that a layer (or gradient) is named, with the layers before it
identical; which layer oneDNN's kernels move first depends on the CPU's instruction set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envlock.golden import load_golden
from tests.helpers import REPO_ROOT, env_with, envlock_cli

pytestmark = [pytest.mark.tf, pytest.mark.slow]

EXAMPLE = str(REPO_ROOT / "examples" / "keras_application_probe.py")
PROBES = "user.small_cnn_step,user.subclassed_step"


@pytest.fixture(scope="module")
def traced_golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    golden = tmp_path_factory.mktemp("keras") / "golden.json"
    proc = envlock_cli("capture", "--golden", "--probe-module", EXAMPLE, "--probes", PROBES, "-o", str(golden))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return golden


def test_a_golden_holds_the_traced_layers_and_verify_reproduces_it_without_tracing(traced_golden: Path) -> None:
    golden = load_golden(traced_golden)
    cnn = golden.probe("user.small_cnn_step")
    assert cnn is not None and cnn.intermediates is not None
    names = [i.name for i in cnn.intermediates]
    assert names[:6] == ["input", "conv output", "bn output", "relu output", "pool output", "head output"]
    assert names[6] == "loss" and names[7].startswith("grad head/") and names[-1] == "updated head/bias"
    sub = golden.probe("user.subclassed_step")
    assert sub is not None and sub.intermediates == [] and "no functional graph" in (sub.trace_note or "")
    # verify runs the model itself (no sub-model, no hashing of the layers): the same bits
    proc = envlock_cli("verify", str(traced_golden), "--probe-module", EXAMPLE, "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert {p["name"]: p["status"] for p in report["probes"]} == dict.fromkeys(PROBES.split(","), "identical")
    assert report["numeric_class"] == report["golden_numeric_class"] == golden.numeric_class


def test_a_onednn_flip_is_localised_to_a_layer_not_an_output(traced_golden: Path) -> None:
    proc = envlock_cli("explain", str(traced_golden), "--probe-module", EXAMPLE, "--probes", "user.small_cnn_step",
                       "--json", "--budget", "240", env=env_with(TF_ENABLE_ONEDNN_OPTS="0"))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    [finding] = report["findings"]
    loc = finding["localisation"]
    assert loc["method"] == "intermediates", loc
    first = loc["first_difference"]
    assert first.endswith(" output") or first.startswith("grad "), first  # a layer or a gradient ...
    assert first not in ("output", "loss", "updated_weights", "input")  # ... never just an output
    assert loc["identical_before"][0] == "input"  # the data is the same; the model moved
    assert ", step 0, " in loc["op"]
    assert finding["status"] == "fixed" and "TF_ENABLE_ONEDNN_OPTS" in json.dumps(finding)


PLUGIN_TEST = """
import numpy as np
import tensorflow as tf

def _model():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((16, 16, 3))
    h = tf.keras.layers.Conv2D(8, 3, name="conv")(inputs)
    h = tf.keras.layers.BatchNormalization(name="bn")(h)
    h = tf.keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax", name="head")(h))

def test_step(envlock_regression):
    x = np.random.default_rng(0).standard_normal((8, 16, 16, 3)).astype(np.float32)
    y = np.arange(8) % 10
    envlock_regression.check_model("step", _model(), x, y, loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                                   optimizer=tf.keras.optimizers.SGD(0.01), tags=["keras", "onednn", "conv"])
"""


def test_the_pytest_plugin_checks_a_model_and_names_the_layer_that_differs(tmp_path: Path) -> None:
    (tmp_path / "test_model.py").write_text(PLUGIN_TEST)
    argv = [sys.executable, "-m", "pytest", "-p", "envlock.pytest_plugin", "-p", "no:cacheprovider", "-q"]

    def run(**env: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
                              env=env_with(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env))

    first = run()
    assert first.returncode == 0, first.stdout[-3000:]
    golden = load_golden(tmp_path / "test_model.golden.json")
    [record] = golden.probes
    assert record.intermediates and record.intermediates[1].name == "conv output"
    again = run()
    assert again.returncode == 0, again.stdout[-3000:]
    flipped = run(TF_ENABLE_ONEDNN_OPTS="0")
    assert flipped.returncode == 1, flipped.stdout[-3000:]
    line = next(x for x in flipped.stdout.splitlines() if "inside the model:" in x)
    assert "first difference: " in line and ", step 0, " in line, line
    assert os.path.exists(tmp_path / "test_model.golden.json")


TWO_STEPS = """
import json, numpy as np, tensorflow as tf
from envlock.probes.registry import ProbeContext

def model():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((6,))
    h = tf.keras.layers.Dense(4, name="hidden")(inputs)
    h = tf.keras.layers.LayerNormalization(name="norm")(h)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax", name="head")(h))

x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32); y = np.arange(5) % 3
loss = tf.keras.losses.SparseCategoricalCrossentropy()
result = {}
for traced in (True, False):
    ctx = ProbeContext(tf=tf, np=np, seed=0, trace=traced)
    m = model(); opt = tf.keras.optimizers.SGD(0.1)
    first = ctx.train_step(m, x, y, loss=loss, optimizer=opt)
    second = ctx.train_step(m, x, y, loss=loss, optimizer=opt)
    both = {**first, **{"2" + k: v for k, v in second.items()}}
    result[traced] = {"names": [n for n, _, _ in ctx.intermediates], "ops": [o for _, _, o in ctx.intermediates],
                      "outputs": {k: np.asarray(v).tobytes().hex() for k, v in both.items()}}
print(json.dumps(result))
"""


def test_two_traced_steps_keep_apart_and_tracing_changes_no_bit() -> None:
    proc = subprocess.run([sys.executable, "-c", TWO_STEPS], capture_output=True, text=True, timeout=300,
                          check=False, env=env_with(PYTHONPATH=str(REPO_ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    traced, plain = result["true"], result["false"]
    assert plain["names"] == []  # untraced: nothing recorded
    assert traced["outputs"] == plain["outputs"]  # the sub-model computes the model's bits, both steps
    names = traced["names"]
    assert len(names) == len(set(names)) == 2 * (1 + 3 + 1 + 6 + 6)
    assert names[:5] == ["input", "hidden output", "norm output", "head output", "loss"]
    assert names[17:19] == ["step 1: input", "step 1: hidden output"] and traced["ops"][18].endswith("step 1, forward")
