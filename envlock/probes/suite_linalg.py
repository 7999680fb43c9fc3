"""Canary probes: matmul, big reductions, conv2d, softmax and numpy's BLAS/SIMD paths.

These are what moves between machines: kernel choice (Eigen vs oneDNN, ISA level) and the
number of threads a reduction is split over. Inputs come from numpy's ``default_rng`` so a
probe's inputs never depend on the TF RNG (a TF RNG change shows up in the rng probes only).
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, probe


def _normal(ctx: ProbeContext, shape: tuple[int, ...], dtype: str, stream: int) -> Any:
    key = f"input:{shape}:{dtype}:{stream}"
    rng_seed = (ctx.seed, stream)
    return ctx.cached(key, lambda: ctx.np.random.default_rng(rng_seed).standard_normal(shape).astype(dtype))


@probe("matmul.f32", tags=["matmul", "eigen", "onednn", "threads"], group="canary", dtype="float32",
       description="tf.matmul of two 1000x1000 float32 matrices (Eigen contraction / oneDNN)")
def matmul_f32(ctx: ProbeContext) -> dict[str, Any]:
    a, b = _normal(ctx, (1000, 1000), "float32", 1), _normal(ctx, (1000, 1000), "float32", 2)
    return {"product": ctx.tf.linalg.matmul(a, b).numpy()}


@probe("matmul.f64", tags=["matmul", "eigen", "threads"], group="canary", dtype="float64",
       description="tf.matmul of two 1000x1000 float64 matrices (Eigen; oneDNN is float32-only)")
def matmul_f64(ctx: ProbeContext) -> dict[str, Any]:
    a, b = _normal(ctx, (1000, 1000), "float64", 1), _normal(ctx, (1000, 1000), "float64", 2)
    return {"product": ctx.tf.linalg.matmul(a, b).numpy()}


@probe("matmul.odd_shapes", tags=["matmul", "eigen", "onednn", "threads"], group="canary", dtype="float32",
       description="float32 matmul 333x517 @ 517x129 and a matvec (edge tiles of the GEMM kernels)")
def matmul_odd(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    a, b = _normal(ctx, (333, 517), "float32", 3), _normal(ctx, (517, 129), "float32", 4)
    v = _normal(ctx, (517, 1), "float32", 5)
    return {"product": tf.linalg.matmul(a, b).numpy(), "matvec": tf.linalg.matmul(a, v).numpy()}


@probe("reduce.sum_large", tags=["reduction", "threads", "eigen"], group="canary", dtype="float32",
       description="reduce_sum over 10M float32 values (split across intra-op threads)")
def reduce_sum_large(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = ctx.cached("input:sum_large", lambda: tf.constant(_normal(ctx, (10_000_000,), "float32", 6)))
    return {"total": tf.reduce_sum(x).numpy(), "column_sums": tf.reduce_sum(tf.reshape(x, [10_000, 1000]), 0).numpy()}


@probe("conv2d.forward", tags=["conv", "eigen", "onednn"], group="canary", dtype="float32",
       description="conv2d forward, 8x32x32x16 input, 3x3x16x32 filter, SAME padding")
def conv2d_forward(ctx: ProbeContext) -> dict[str, Any]:
    x, w = _normal(ctx, (8, 32, 32, 16), "float32", 7), _normal(ctx, (3, 3, 16, 32), "float32", 8)
    return {"output": ctx.tf.nn.conv2d(x, w, strides=1, padding="SAME").numpy()}


@probe("conv2d.grad", tags=["conv", "eigen", "onednn", "threads"], group="canary", dtype="float32",
       description="conv2d input and filter gradients (filter gradient is a threaded reduction)")
def conv2d_grad(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = tf.constant(_normal(ctx, (8, 32, 32, 16), "float32", 7))
    w = tf.constant(_normal(ctx, (3, 3, 16, 32), "float32", 8))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        loss = tf.reduce_sum(tf.square(tf.nn.conv2d(x, w, strides=1, padding="SAME")))
    grad_x, grad_w = tape.gradient(loss, [x, w])
    return {"grad_input": grad_x.numpy(), "grad_filter": grad_w.numpy()}


@probe("elementwise.softmax", tags=["elementwise", "onednn"], group="canary", dtype="float32",
       description="tf.nn.softmax over 256x1000 logits (a oneDNN kernel when oneDNN is on)")
def elementwise_softmax(ctx: ProbeContext) -> dict[str, Any]:
    logits = _normal(ctx, (256, 1000), "float32", 9) * 4
    return {"softmax": ctx.tf.nn.softmax(logits).numpy()}


@probe("numpy.matmul", tags=["matmul", "blas", "numpy", "threads"], group="canary", dtype="float32",
       description="numpy float32 and float64 matmul 500x500 (OpenBLAS; its threads follow CPU affinity)")
def numpy_matmul(ctx: ProbeContext) -> dict[str, Any]:
    a32, b32 = _normal(ctx, (500, 500), "float32", 10), _normal(ctx, (500, 500), "float32", 11)
    a64, b64 = _normal(ctx, (500, 500), "float64", 10), _normal(ctx, (500, 500), "float64", 11)
    return {"f32": a32 @ b32, "f64": a64 @ b64}


@probe("numpy.elementwise", tags=["elementwise", "numpy"], group="canary", dtype="float32",
       description="numpy float32 exp/log/tanh (SIMD-dispatched by CPU; moves 2-3 ULP across ISAs)")
def numpy_elementwise(ctx: ProbeContext) -> dict[str, Any]:
    np = ctx.np
    x = np.linspace(-8.0, 8.0, 4096, dtype=np.float32)
    return {"exp": np.exp(x), "log": np.log(np.abs(x) + np.float32(1e-3)), "tanh": np.tanh(x),
            "sum": np.asarray(_normal(ctx, (1_000_000,), "float32", 12).sum(), dtype=np.float32)}
