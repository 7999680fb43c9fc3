"""Your own model as an envlock probe: the seed documents' Keras training example.

Seed doc "Are TensorFlow results reproducible?", Example 1 (``train_model``): dummy data, a
Dense(16, relu) -> Dense(1, sigmoid) model, Adam, a seeded ``tf.data`` shuffle, 2 epochs. The
original returns one weight; here the probe returns every weight and the per-epoch loss, so a
golden pins the whole trained model. And seed doc "Why does TensorFlow prediction output vary
on each training run?", Example 1: fit for 10 epochs, then predict.

Record, verify, and see what moves it:

    envlock capture --golden --probe-module examples/envlock_probes.py -o model-golden.json
    envlock verify model-golden.json --probe-module examples/envlock_probes.py
    TF_ENABLE_ONEDNN_OPTS=0 envlock verify model-golden.json --probe-module examples/envlock_probes.py

The module is imported only in envlock's probe process, so it may import TensorFlow at the top.
Seeding is envlock's job: the probe process applies the golden's lockdown (seed, op determinism,
thread counts) and reseeds Python, numpy and TensorFlow with ``ctx.seed`` before every probe,
which is what the original's ``tf.random.set_seed(seed); np.random.seed(seed)`` did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from envlock import ProbeContext, probe

# Tags: what the result depends on (envlock.tags); verify ranks manifest differences by them.
TRAINING_TAGS = ["training", "keras", "matmul", "onednn", "eigen", "tf.function", "init", "tf.data", "rng"]


@probe("user.seed_doc_train_model", tags=TRAINING_TAGS, group="canary", dtype="float32",
       description="seed doc 002 train_model: Dense(16,relu)->Dense(1,sigmoid), Adam, seeded shuffle, 2 epochs")
def seed_doc_train_model(ctx: ProbeContext) -> dict[str, Any]:
    num_samples, features = 100, 10
    x = np.random.rand(num_samples, features).astype(np.float32)  # np.random is seeded with ctx.seed
    y = np.random.randint(0, 2, num_samples).astype(np.int32)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(features,)),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(num_samples, seed=ctx.seed).batch(32)
    history = model.fit(dataset, epochs=2, verbose=0)
    outputs = {f"weight{i}": w for i, w in enumerate(model.get_weights())}
    outputs["loss"] = np.asarray(history.history["loss"], dtype=np.float32)
    return outputs


@probe("user.seed_doc_fit_predict", tags=TRAINING_TAGS, group="canary", dtype="float32",
       description="seed doc 004: Dense(10,relu)->Dense(1), Adam, MSE, 10 epochs, then predict")
def seed_doc_fit_predict(ctx: ProbeContext) -> dict[str, Any]:
    x = np.random.rand(100, 10)
    y = np.random.rand(100, 1)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(10,)),
        tf.keras.layers.Dense(10, activation="relu"),
        tf.keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=10, verbose=0)
    return {"prediction": model.predict(x, verbose=0), "kernel0": model.get_weights()[0]}
