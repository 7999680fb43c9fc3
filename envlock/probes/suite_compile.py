"""The same small network forward+backward pass run three ways: eager, tf.function, XLA.

Comparing the three tells apart what moves with graph rewriting (Grappler, auto-jit via
TF_XLA_FLAGS) from what moves with XLA's own code generation (XLA_FLAGS).
"""

from __future__ import annotations

from typing import Any

from envlock.probes.registry import ProbeContext, probe


def _inputs(ctx: ProbeContext) -> tuple[Any, Any, Any]:
    def build() -> tuple[Any, Any, Any]:
        rng = ctx.np.random.default_rng((ctx.seed, 100))
        tf = ctx.tf
        x = tf.constant(rng.standard_normal((128, 256)).astype("float32"))
        w1 = tf.constant((rng.standard_normal((256, 256)) / 16).astype("float32"))
        w2 = tf.constant((rng.standard_normal((256, 64)) / 16).astype("float32"))
        return x, w1, w2

    inputs: tuple[Any, Any, Any] = ctx.cached("compile:inputs", build)
    return inputs


def _network(tf: Any, x: Any, w1: Any, w2: Any) -> tuple[Any, Any]:
    # matmul + tanh + softmax + a gradient: the op mix of a small dense model.
    with tf.GradientTape() as tape:
        tape.watch(w1)
        hidden = tf.tanh(tf.matmul(x, w1))
        probs = tf.nn.softmax(tf.matmul(hidden, w2))
        loss = tf.reduce_mean(-tf.math.log(probs[:, 0] + 1e-6))
    return probs, tape.gradient(loss, w1)


def _run(ctx: ProbeContext, mode: str) -> dict[str, Any]:
    tf = ctx.tf
    if mode == "eager":
        fn = _network
    else:
        jit = mode == "xla"
        fn = ctx.cached(f"compile:{mode}", lambda: tf.function(_network, jit_compile=jit))
    probs, grad = fn(tf, *_inputs(ctx))
    return {"probs": probs.numpy(), "grad_w1": grad.numpy()}


@probe("compile.eager", tags=["matmul", "elementwise", "eager", "onednn", "eigen"], group="canary",
       dtype="float32", description="dense forward+gradient, eager")
def compile_eager(ctx: ProbeContext) -> dict[str, Any]:
    return _run(ctx, "eager")


@probe("compile.function", tags=["matmul", "elementwise", "tf.function", "onednn", "eigen"], group="canary",
       dtype="float32", description="the same computation under tf.function (graph; XLA auto-jit applies here)")
def compile_function(ctx: ProbeContext) -> dict[str, Any]:
    return _run(ctx, "function")


@probe("compile.xla", tags=["matmul", "elementwise", "xla", "tf.function"], group="canary", dtype="float32",
       description="the same computation under tf.function(jit_compile=True) (XLA CPU code generation)")
def compile_xla(ctx: ProbeContext) -> dict[str, Any]:
    return _run(ctx, "xla")
