"""The same small network forward+backward pass run three ways: eager, tf.function, XLA.

Comparing the three tells apart what moves with graph rewriting (Grappler, auto-jit via
TF_XLA_FLAGS) from what moves with XLA's own code generation (XLA_FLAGS).
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, probe


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


def _network_outputs(tf: Any, x: Any, w1: Any, w2: Any) -> tuple[Any, Any]:
    # XLA's fusion decisions depend on which values leave the cluster: compile.xla keeps the
    # original two outputs so its bits stay those of the goldens already recorded.
    with tf.GradientTape() as tape:
        tape.watch(w1)
        hidden = tf.tanh(tf.matmul(x, w1))
        probs = tf.nn.softmax(tf.matmul(hidden, w2))
        loss = tf.reduce_mean(-tf.math.log(probs[:, 0] + 1e-6))
    return probs, tape.gradient(loss, w1)


def _network(tf: Any, x: Any, w1: Any, w2: Any) -> tuple[Any, Any, list[Any]]:
    # matmul + tanh + softmax + a gradient: the op mix of a small dense model. The intermediates
    # (forward values, then the gradient at each of them, in backward order) come back too, so
    # explain can name the first operation that differs; asking the tape for them computes the
    # same backward ops as asking for grad_w1 alone.
    with tf.GradientTape() as tape:
        tape.watch(w1)
        pre = tf.matmul(x, w1)
        hidden = tf.tanh(pre)
        logits = tf.matmul(hidden, w2)
        probs = tf.nn.softmax(logits)
        picked = probs[:, 0] + 1e-6
        loss = tf.reduce_mean(-tf.math.log(picked))
    grads = tape.gradient(loss, [picked, probs, logits, hidden, pre, w1])
    return probs, grads[-1], [pre, hidden, logits, probs, loss, *grads]


# (name, op that produced it), in computation order, after the inputs x, w1, w2.
_INTERMEDIATES = (
    ("matmul1", "MatMul"), ("hidden", "Tanh"), ("logits", "MatMul"), ("probs", "Softmax"),
    ("loss", "Mean(-Log)"), ("grad_picked", "Reciprocal (LogGrad)"), ("grad_probs", "StridedSliceGrad"),
    ("grad_logits", "SoftmaxGrad"), ("grad_hidden", "MatMul (gradient)"), ("grad_matmul1", "TanhGrad"),
    ("grad_w1", "MatMul (gradient)"),
)


def _run(ctx: ProbeContext, mode: str) -> dict[str, Any]:
    tf = ctx.tf
    inputs = _inputs(ctx)
    if mode == "xla":
        xla = ctx.cached("compile:xla", lambda: tf.function(_network_outputs, jit_compile=True))
        probs, grad = xla(tf, *inputs)
        return {"probs": probs.numpy(), "grad_w1": grad.numpy()}
    fn = _network if mode == "eager" else ctx.cached(f"compile:{mode}", lambda: tf.function(_network))
    probs, grad, intermediates = fn(tf, *inputs)
    for name, value in zip(("x", "w1", "w2"), inputs, strict=True):
        ctx.record(name, value, op="input")
    for (name, op), value in zip(_INTERMEDIATES, intermediates, strict=True):
        ctx.record(name, value, op=op)
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
