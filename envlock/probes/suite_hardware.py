"""Hardware-arithmetic probes: operations whose bits depend on the CPU model itself.

Two mechanisms, both outside any setting a user can change (docs/causes.md, "Across
machines"):

* Eigen's fast math computes reciprocal and rsqrt with the CPU's approximate instructions
  (``rcp14``/``rsqrt14`` and friends) plus a Newton step; the approximations are not specified
  bit for bit across vendors. Division, sqrt and the normalisation inside softmax, layer norm
  and batch norm (forward and gradient) go through them or through their neighbours.
* Eigen's tensor contraction picks its blocking (and whether to shard by K) from the cache
  sizes it reads from CPUID. float64 and int32 matmuls never go through oneDNN, so odd shapes
  whose K is larger than one block show Eigen's own blocking, whatever oneDNN does.

Inputs are small and fixed: each probe costs a few milliseconds, so the group adds little to
the suite. Values span many binades (including subnormal-adjacent and large magnitudes), where
a one-step Newton refinement of an approximation is least likely to round the same way.
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, probe

# Tags: "approx" = the CPU's approximate reciprocal/rsqrt instructions (Eigen fast math).
_APPROX = ["approx", "elementwise"]  # not "eigen": no contraction, so no cache blocking


def spread_values(np: Any, seed: int, n: int, stream: int, *, positive: bool = True) -> Any:
    """``n`` float32 values with log-uniform magnitudes in [1e-30, 1e30] (signs mixed unless positive).

    Public, with ``normal_values``: envlock.probes.ieee rebuilds the probes' inputs from the seed to compute
    their IEEE-754 references."""
    rng = np.random.default_rng((seed, 1000 + stream))
    values = 10.0 ** rng.uniform(-30.0, 30.0, n)
    if not positive:
        values *= rng.choice([-1.0, 1.0], n)
    return values.astype("float32")


def normal_values(np: Any, seed: int, shape: tuple[int, ...], dtype: str, stream: int, scale: float = 1.0) -> Any:
    rng = np.random.default_rng((seed, 1100 + stream))
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _spread(ctx: ProbeContext, n: int, stream: int, *, positive: bool = True) -> Any:
    return ctx.cached(f"hw:spread:{n}:{stream}:{positive}",
                      lambda: spread_values(ctx.np, ctx.seed, n, stream, positive=positive))


def _normal(ctx: ProbeContext, shape: tuple[int, ...], dtype: str, stream: int, scale: float = 1.0) -> Any:
    return ctx.cached(f"hw:normal:{shape}:{dtype}:{stream}:{scale}",
                      lambda: normal_values(ctx.np, ctx.seed, shape, dtype, stream, scale))


@probe("hw.reciprocal", tags=_APPROX, group="hardware", dtype="float32",
       description="tf.math.reciprocal of 4096 float32 values over 60 binades (Eigen: approximate rcp + Newton)")
def hw_reciprocal(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = _spread(ctx, 4096, 1, positive=False)
    return {"reciprocal": tf.math.reciprocal(x).numpy(), "reciprocal_1_to_2": tf.math.reciprocal(
        _normal(ctx, (4096,), "float32", 1, 0.25) + 1.5).numpy()}


@probe("hw.rsqrt", tags=_APPROX, group="hardware", dtype="float32",
       description="tf.math.rsqrt of 4096 positive float32 values (Eigen: approximate rsqrt + Newton)")
def hw_rsqrt(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = _spread(ctx, 4096, 2)
    return {"rsqrt": tf.math.rsqrt(x).numpy(), "rsqrt_near_one": tf.math.rsqrt(
        ctx.np.abs(_normal(ctx, (4096,), "float32", 2)) + 0.5).numpy()}


@probe("hw.divide_sqrt", tags=_APPROX, group="hardware", dtype="float32",
       description="float32 x / y, tf.sqrt and tf.math.divide_no_nan on 4096 values over 60 binades")
def hw_divide_sqrt(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    np = ctx.np
    x, y = _spread(ctx, 4096, 3, positive=False), _spread(ctx, 4096, 4, positive=False)
    # Quotients of values within 1e-15..1e15 stay finite (1e-30..1e30): a full 1e-30..1e30 pair overflows
    # to Inf, and an Inf output can show no drift (outputs must be finite).
    xq, yq = (np.sign(v) * np.sqrt(np.abs(v)) for v in (x, y))
    return {"divide": (tf.constant(xq) / tf.constant(yq)).numpy(), "sqrt": tf.sqrt(np.abs(x)).numpy(),
            "divide_no_nan": tf.math.divide_no_nan(xq, yq).numpy()}


@probe("hw.softmax_grad", tags=_APPROX, group="hardware", dtype="float32",
       description="log_softmax and an Eigen-path softmax (exp * reciprocal of the row sum) of 64x127 logits, "
                   "forward and gradient")
def hw_softmax_grad(ctx: ProbeContext) -> dict[str, Any]:
    # tf.nn.softmax is a oneDNN kernel when oneDNN is on (the canary elementwise.softmax measures it);
    # measured: log_softmax and this spelled-out normalisation stay on Eigen whatever oneDNN does.
    tf = ctx.tf
    logits = tf.constant(_normal(ctx, (64, 127), "float32", 5, 3.0))
    weights = tf.constant(_normal(ctx, (64, 127), "float32", 6))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        shifted = tf.exp(logits - tf.reduce_max(logits, axis=1, keepdims=True))
        soft = shifted * tf.math.reciprocal(tf.reduce_sum(shifted, axis=1, keepdims=True))
        log_soft = tf.nn.log_softmax(logits)
        loss_soft = tf.reduce_sum(soft * weights)
        loss_log = tf.reduce_sum(log_soft * weights)
    return {"softmax": soft.numpy(), "log_softmax": log_soft.numpy(),
            "softmax_grad": tape.gradient(loss_soft, logits).numpy(),
            "log_softmax_grad": tape.gradient(loss_log, logits).numpy()}


@probe("hw.layernorm_grad", tags=[*_APPROX, "keras"], group="hardware", dtype="float32",
       description="Keras LayerNormalization over 32x96, forward and input/gamma/beta gradients (rsqrt)")
def hw_layernorm_grad(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = tf.constant(_normal(ctx, (32, 96), "float32", 7, 2.0) + 0.5)
    layer = ctx.cached("hw:layernorm", lambda: tf.keras.layers.LayerNormalization(epsilon=1e-3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant(_normal(ctx, (32, 96), "float32", 8)))
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    return {"output": y.numpy(), "grad_input": grads[0].numpy(), "grad_gamma": grads[1].numpy(),
            "grad_beta": grads[2].numpy()}


@probe("hw.batchnorm_grad", tags=[*_APPROX, "reduction"], group="hardware", dtype="float32",
       description="tf.nn.batch_normalization (training statistics) over 64x48, forward and gradients (rsqrt)")
def hw_batchnorm_grad(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    x = tf.constant(_normal(ctx, (64, 48), "float32", 9, 1.5) + 0.25)
    gamma = tf.constant(_normal(ctx, (48,), "float32", 10) + 1.0)
    beta = tf.constant(_normal(ctx, (48,), "float32", 11))
    upstream = tf.constant(_normal(ctx, (64, 48), "float32", 12))
    with tf.GradientTape() as tape:
        tape.watch([x, gamma, beta])
        mean, variance = tf.nn.moments(x, axes=[0])
        y = tf.nn.batch_normalization(x, mean, variance, beta, gamma, variance_epsilon=1e-3)
        loss = tf.reduce_sum(y * upstream)
    grad_x, grad_gamma, grad_beta = tape.gradient(loss, [x, gamma, beta])
    return {"output": y.numpy(), "grad_input": grad_x.numpy(), "grad_gamma": grad_gamma.numpy(),
            "grad_beta": grad_beta.numpy()}


@probe("hw.eigen_contraction", tags=["matmul", "eigen"], group="hardware", dtype="float64",
       description="float64 matmul 97x1531 @ 1531x61 and int32 67x1027 @ 1027x45 (Eigen's own contraction, "
                   "never oneDNN; blocking from the CPU's cache sizes)")
def hw_eigen_contraction(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    a, b = _normal(ctx, (97, 1531), "float64", 13), _normal(ctx, (1531, 61), "float64", 14)
    ia = (_normal(ctx, (67, 1027), "float64", 15) * 1000).astype("int32")
    ib = (_normal(ctx, (1027, 45), "float64", 16) * 1000).astype("int32")
    return {"product_f64": tf.linalg.matmul(a, b).numpy(), "product_i32": tf.linalg.matmul(ia, ib).numpy()}
