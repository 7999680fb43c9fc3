"""What the portable profile costs a training job: steady-state step time and first-step (compile) time,
under the profile against TensorFlow's default, measured in the same run.

Each (model, configuration) runs in a fresh process (the profile's variables are read when TensorFlow
starts), the configurations interleaved round by round so drift in the machine's load hits both alike.
A run builds the model, times its first training step (tracing and, under the profile, XLA
compilation), then ``--steps`` more steps; the steady-state figure is the median step after a warm-up.

    python benchmarks/bench_portable.py [--rounds 3] [--steps 60]

Models: the two example probes' models (examples/envlock_probes.py: Dense(16)->Dense(1) with Adam and
binary cross-entropy, Dense(10)->Dense(1) with MSE), and a layer-norm model (Dense -> LayerNormalization
-> Dense with softmax cross-entropy), whose normalisation and softmax are where the default path uses
the CPU's approximate reciprocal/rsqrt. Goal (issue 19): steady state at most 1.25x the default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from envlock.profiles import latest  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
import envlock

envlock.lockdown(seed=7)
name, steps = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
if name == "seed_doc_train_model":
    x = rng.random((256, 10), dtype=np.float32); y = rng.integers(0, 2, (256, 1)).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.Input((10,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    loss, opt = tf.keras.losses.BinaryCrossentropy(), tf.keras.optimizers.Adam()
elif name == "seed_doc_fit_predict":
    x = rng.random((256, 10), dtype=np.float32); y = rng.random((256, 1), dtype=np.float32)
    model = tf.keras.Sequential([tf.keras.Input((10,)), tf.keras.layers.Dense(10, activation="relu"),
                                 tf.keras.layers.Dense(1)])
    loss, opt = tf.keras.losses.MeanSquaredError(), tf.keras.optimizers.Adam()
else:  # layer_norm
    x = rng.standard_normal((256, 128), dtype=np.float32); y = rng.integers(0, 10, (256,))
    model = tf.keras.Sequential([tf.keras.Input((128,)), tf.keras.layers.Dense(256, activation="gelu"),
                                 tf.keras.layers.LayerNormalization(), tf.keras.layers.Dense(10)])
    loss, opt = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), tf.keras.optimizers.Adam()
x, y = tf.constant(x), tf.constant(y)

@tf.function
def step():
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=True))
    opt.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
    return value

t0 = time.perf_counter(); step().numpy(); first = time.perf_counter() - t0
times = []
for _ in range(steps):
    t0 = time.perf_counter(); step().numpy(); times.append(time.perf_counter() - t0)
print(json.dumps({"first": first, "steps": times[5:]}))
"""

MODELS = ("seed_doc_train_model", "seed_doc_fit_predict", "layer_norm")


def run(model: str, env: dict[str, str], steps: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, model, str(steps)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{model}: {proc.stderr.strip()[-800:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"first": data["first"], "steady": statistics.median(data["steps"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    profile = latest("portable")
    base = {k: v for k, v in os.environ.items() if k not in profile.environment}
    configs = {"default": base, profile.label: {**base, **profile.environment}}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for model in MODELS:
            for label, env in configs.items():
                results.setdefault((model, label), []).append(run(model, env, args.steps))
    print(f"{'model':22} {'config':12} {'first step':>11} {'steady step':>12} {'first x':>8} {'steady x':>9}")
    for model in MODELS:
        ref = results[(model, "default")]
        ref_first = statistics.median(r["first"] for r in ref)
        ref_steady = statistics.median(r["steady"] for r in ref)
        for label in configs:
            rows = results[(model, label)]
            first = statistics.median(r["first"] for r in rows)
            steady = statistics.median(r["steady"] for r in rows)
            print(f"{model:22} {label:12} {first * 1000:9.1f}ms {steady * 1000:10.3f}ms "
                  f"{first / ref_first:7.2f}x {steady / ref_steady:8.2f}x")
    print(f"goal: steady state at most 1.25x the default ({args.rounds} rounds, median of {args.steps - 5} steps each)")


if __name__ == "__main__":
    main()
