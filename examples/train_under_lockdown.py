"""The seed documents' training examples, run under ``envlock.lockdown``.

Adapted from the seed documents (docs/causes.md): "Are TensorFlow results reproducible?" (train_model with a seeded
tf.data shuffle and Adam, with and without op determinism), "Why is TensorFlow training
inconsistent?" (seeded shuffle, seeded Keras init, MirroredStrategy with
HierarchicalCopyAllReduce over two logical CPUs) and "Why does TensorFlow prediction output vary?" (fit + predict).
The originals seed Python, numpy and TF by hand in each function and set TF_DETERMINISTIC_OPS
after TF is imported; here one ``envlock.lockdown()`` call does all of it, fixes thread
counts, and warns about what it cannot lock; functions that train again in the same process
reset the seeds with ``envlock.reseed(seed)``.

Run it twice and compare: the printed digest (and the --out file) is bitwise identical.

    python examples/train_under_lockdown.py --out weights.npz [--golden golden.json --strict]
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np

import envlock
from envlock.errors import EnvlockError
from envlock.locking import reseed


def train_model(tf, seed: int):  # type: ignore[no-untyped-def]
    """Seed doc 002, Example 1/3: dummy data, Dense(16)->Dense(1), Adam, seeded shuffle, 2 epochs."""
    reseed(seed)  # the original: tf.random.set_seed(seed); np.random.seed(seed)
    num_samples, features = 100, 10
    x = np.random.rand(num_samples, features).astype(np.float32)
    y = np.random.randint(0, 2, num_samples).astype(np.int32)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(features,)),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(num_samples, seed=seed).batch(32)
    model.fit(dataset, epochs=2, verbose=0)
    return model.get_weights()


def fit_and_predict(tf, seed: int):  # type: ignore[no-untyped-def]
    """Seed doc 004, Example 1: Dense(10, relu)->Dense(1), Adam, MSE, 10 epochs, then predict."""
    reseed(seed)
    x = np.random.rand(100, 10)
    y = np.random.rand(100, 1)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(10,)),
        tf.keras.layers.Dense(10, activation="relu"),
        tf.keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=10, verbose=0)
    return model.get_weights() + [model.predict(x, verbose=0)]


def shuffle_and_init(tf, seed: int):  # type: ignore[no-untyped-def]
    """Seed doc 000, Examples 1-2: a seeded shuffle order and a seeded Dense(10) initialisation."""
    reseed(seed)
    order = np.array([int(v) for v in tf.data.Dataset.from_tensor_slices(np.arange(100)).shuffle(100, seed=seed)])
    model = tf.keras.Sequential([tf.keras.layers.Dense(10)])
    model.build(input_shape=(None, 1))
    return [order, model.weights[0].numpy()]


def mirrored_fit(tf, seed: int):  # type: ignore[no-untyped-def]
    """Seed doc 000, Example 3: MirroredStrategy with HierarchicalCopyAllReduce, compile + fit.

    On a CPU-only machine the two replicas are two logical CPU devices (configured in main()).
    """
    reseed(seed)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.HierarchicalCopyAllReduce())
    x = np.random.rand(128, 10).astype(np.float32)
    y = np.random.rand(128, 1).astype(np.float32)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input(shape=(10,)), tf.keras.layers.Dense(10), tf.keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=2, verbose=0)
    return model.get_weights()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write every weight/prediction array to this .npz file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--golden", help="refuse to run on a machine that differs critically from this golden")
    parser.add_argument("--strict", action="store_true", help="errors instead of warnings")
    args = parser.parse_args()

    # First call, before TensorFlow is imported: the one place env-level settings still take effect.
    try:
        report = envlock.lockdown(seed=args.seed, golden=args.golden, strict=args.strict)
    except EnvlockError as exc:
        print(f"refusing to train: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"lockdown: seed={report.seed} op_determinism={report.op_determinism} "
          f"threads={report.intra_op_threads}/{report.inter_op_threads} problems={len(report.problems)}")
    import tensorflow as tf

    # Two logical CPUs for the MirroredStrategy example: must happen before any TF op runs.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

    arrays = {}
    for label, fn in (("train_model", train_model), ("fit_and_predict", fit_and_predict),
                      ("shuffle_and_init", shuffle_and_init), ("mirrored_fit", mirrored_fit)):
        for i, value in enumerate(fn(tf, args.seed)):
            arrays[f"{label}.{i}"] = np.asarray(value)
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    if args.out:
        np.savez(args.out, **arrays)
    print(f"weights sha256: {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
