"""GPU probes: the same computations on /GPU:0, and how far GPU results are from the CPU's.

Skipped (with the reason) when TensorFlow sees no GPU.
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, ProbeSkipped, probe


def _require_gpu(ctx: ProbeContext) -> None:
    if not ctx.gpu_available:
        raise ProbeSkipped("no GPU visible to TensorFlow")


def _inputs(ctx: ProbeContext) -> tuple[Any, Any]:
    rng = ctx.np.random.default_rng((ctx.seed, 300))
    return rng.standard_normal((1000, 1000)).astype("float32"), rng.standard_normal((1000, 1000)).astype("float32")


@probe("gpu.matmul", tags=["gpu", "matmul"], group="canary", dtype="float32", needs_gpu=True,
       description="float32 1000x1000 matmul on /GPU:0 (cuBLAS; TF32 policy matters)")
def gpu_matmul(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    tf = ctx.tf
    a, b = _inputs(ctx)
    with tf.device("/GPU:0"):
        return {"product": tf.linalg.matmul(a, b).numpy()}


@probe("gpu.conv2d", tags=["gpu", "conv"], group="canary", dtype="float32", needs_gpu=True,
       description="conv2d forward and filter gradient on /GPU:0 (cuDNN algorithm choice)")
def gpu_conv2d(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    tf = ctx.tf
    rng = ctx.np.random.default_rng((ctx.seed, 301))
    x = rng.standard_normal((8, 32, 32, 16)).astype("float32")
    w = tf.constant(rng.standard_normal((3, 3, 16, 32)).astype("float32"))
    with tf.device("/GPU:0"), tf.GradientTape() as tape:
        tape.watch(w)
        out = tf.nn.conv2d(x, w, strides=1, padding="SAME")
        loss = tf.reduce_sum(tf.square(out))
    return {"output": out.numpy(), "grad_filter": tape.gradient(loss, w).numpy()}


@probe("gpu.cpu_vs_gpu", tags=["gpu", "matmul"], group="canary", dtype="float32", needs_gpu=True,
       description="max |GPU - CPU| / max |CPU| for the float32 matmul (how far the GPU is from the CPU)")
def gpu_cpu_vs_gpu(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    tf, np = ctx.tf, ctx.np
    a, b = _inputs(ctx)
    with tf.device("/CPU:0"):
        cpu = tf.linalg.matmul(a, b).numpy()
    with tf.device("/GPU:0"):
        gpu = tf.linalg.matmul(a, b).numpy()
    return {"relative_difference": np.asarray(np.abs(gpu - cpu).max() / np.abs(cpu).max(), dtype=np.float32)}
