"""A real Keras application as an envlock probe, traced layer by layer without annotating anything.

``keras.applications.MobileNetV2`` (64x64 inputs, 10 classes, random weights: nothing is downloaded),
one SGD step on 8 seeded random images. The probe hands its model to envlock with ``ctx.train_step``:
when a golden is recorded (and when explain localises a drift) envlock records every layer's forward
output, the loss, each gradient (last layer first) and each variable after the update, so explain
names the first layer that differs, not just "the output":

    envlock capture --golden --probe-module examples/keras_application_probe.py \\
        --probes user.mobilenet_v2_step -o mobilenet-golden.json
    TF_ENABLE_ONEDNN_OPTS=0 envlock explain mobilenet-golden.json \\
        --probe-module examples/keras_application_probe.py

``user.small_cnn_step`` is the same on a 3-layer functional CNN (what CI runs: a second, not ten).
A plain ``envlock verify`` compares the outputs only and does not trace (it pays nothing for it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from envlock import ProbeContext, probe

TAGS = ["training", "keras", "matmul", "conv", "onednn", "eigen", "init", "rng"]


def _images(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, size, size, 3)).astype(np.float32), (np.arange(n) % 10).astype(np.int32)


def _step(ctx: ProbeContext, model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    return ctx.train_step(model, x, y, loss=loss, optimizer=tf.keras.optimizers.SGD(learning_rate=0.01))


@probe("user.mobilenet_v2_step", tags=TAGS, group="canary", dtype="float32",
       description="keras.applications.MobileNetV2 (64x64, 10 classes, random init): one SGD step, traced")
def mobilenet_v2_step(ctx: ProbeContext) -> dict[str, Any]:
    model = tf.keras.applications.MobileNetV2(input_shape=(64, 64, 3), weights=None, classes=10)
    x, y = _images(8, 64)
    return _step(ctx, model, x, y)


@probe("user.small_cnn_step", tags=TAGS, group="canary", dtype="float32",
       description="a functional Conv2D-BatchNorm-Dense model: one SGD step, traced")
def small_cnn_step(ctx: ProbeContext) -> dict[str, Any]:
    inputs = tf.keras.Input((16, 16, 3))
    h = tf.keras.layers.Conv2D(8, 3, name="conv")(inputs)
    h = tf.keras.layers.BatchNormalization(name="bn")(h)
    h = tf.keras.layers.ReLU(name="relu")(h)
    h = tf.keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = tf.keras.layers.Dense(10, activation="softmax", name="head")(h)
    x, y = _images(8, 16)
    return _step(ctx, tf.keras.Model(inputs, outputs), x, y)


class _Subclassed(tf.keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = tf.keras.layers.Conv2D(4, 3)
        self.pool = tf.keras.layers.GlobalAveragePooling2D()
        self.head = tf.keras.layers.Dense(10, activation="softmax")

    def call(self, x: Any, training: bool = False) -> Any:
        return self.head(self.pool(self.conv(x)))


@probe("user.subclassed_step", tags=TAGS, group="canary", dtype="float32",
       description="a subclassed model (no functional graph): one SGD step, outputs only, and says why")
def subclassed_step(ctx: ProbeContext) -> dict[str, Any]:
    x, y = _images(8, 16)
    return _step(ctx, _Subclassed(), x, y)
