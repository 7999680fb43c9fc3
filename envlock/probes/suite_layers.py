"""Layer probes: the sources the seed documents (docs/causes.md) name beyond matmul and conv.

Dropout (the RNG inside training), recurrent layers (LSTM, GRU: oneDNN on CPU, cuDNN on GPU),
batch normalisation in training mode, bfloat16 and mixed precision (AMX and AVX512_BF16 CPUs
take different paths), the scatter/segment reductions behind embedding gradients (the classic
GPU-nondeterministic ops), and a deterministic tf.data interleave.

Each probe's group and tags come from measurements under the drift-matrix perturbations
(docs/drift-matrix.md): a probe that never moved under any of them is a stable control.
"""

from __future__ import annotations

import os
from typing import Any

from envlock.probes.probe import ProbeContext, ProbeSkipped, probe


def _require_gpu(ctx: ProbeContext) -> None:
    if not ctx.gpu_available:
        raise ProbeSkipped("no GPU visible to TensorFlow")


# oneDNN ISA ceilings below AVX512_CORE: TF 2.21 decides bfloat16 support from the CPU's flags, so
# with such a cap oneDNN cannot create the bf16 kernel TF asked for and the process dies (SIGSEGV,
# measured here with ONEDNN_MAX_CPU_ISA=AVX2 and SSE41; AVX512_CORE_VNNI runs).
_BF16_CRASHING_CAPS = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})


def _require_bf16_safe() -> None:
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(name, "").strip().upper()
        if cap in _BF16_CRASHING_CAPS and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
            raise ProbeSkipped(f"{name}={cap} makes TensorFlow's bfloat16 oneDNN kernels crash the process")


@probe("rng.dropout", tags=["rng", "keras", "training"], group="stable", dtype="float32",
       description="a seeded Keras Dropout(0.5) in training mode and tf.nn.dropout(rate=0.3, seed=) on ones")
def rng_dropout(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    tf.keras.utils.set_random_seed(ctx.seed)
    ones = tf.ones([64, 32])
    layer = tf.keras.layers.Dropout(0.5, seed=ctx.seed)
    return {"keras_dropout": layer(ones, training=True).numpy(),
            "nn_dropout": tf.nn.dropout(ones, rate=0.3, seed=5).numpy()}


def _sequence(ctx: ProbeContext, salt: int) -> Any:
    return ctx.np.random.default_rng((ctx.seed, salt)).standard_normal((8, 12, 6)).astype("float32")


def _recurrent(ctx: ProbeContext, layer_class: Any, salt: int, device: str | None = None) -> dict[str, Any]:
    """Forward output and the gradients of a squared loss for a seeded recurrent layer."""
    tf = ctx.tf
    tf.keras.utils.set_random_seed(ctx.seed)
    x = tf.constant(_sequence(ctx, salt))
    with tf.device(device or "/CPU:0"):
        layer = layer_class(16, return_sequences=True)
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = tf.reduce_sum(tf.square(out))
        kernel, recurrent = layer.cell.kernel, layer.cell.recurrent_kernel
        grad_kernel, grad_recurrent = tape.gradient(loss, [kernel, recurrent])
    return {"output": out.numpy(), "grad_kernel": grad_kernel.numpy(), "grad_recurrent": grad_recurrent.numpy()}


@probe("layers.lstm", tags=["keras", "matmul", "onednn", "eigen", "elementwise"], group="canary", dtype="float32",
       description="Keras LSTM(16) over a seeded 8x12x6 sequence: outputs and kernel/recurrent gradients")
def layers_lstm(ctx: ProbeContext) -> dict[str, Any]:
    return _recurrent(ctx, ctx.tf.keras.layers.LSTM, 400)


@probe("layers.gru", tags=["keras", "matmul", "onednn", "eigen", "elementwise"], group="canary", dtype="float32",
       description="Keras GRU(16) over a seeded 8x12x6 sequence: outputs and kernel/recurrent gradients")
def layers_gru(ctx: ProbeContext) -> dict[str, Any]:
    return _recurrent(ctx, ctx.tf.keras.layers.GRU, 401)


@probe("layers.batchnorm_train", tags=["keras", "training", "reduction", "elementwise"], group="stable",
       dtype="float32",
       description="BatchNormalization in training mode, 3 batches: outputs, moving statistics, input gradient")
def layers_batchnorm_train(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    tf.keras.utils.set_random_seed(ctx.seed)
    rng = ctx.np.random.default_rng((ctx.seed, 402))
    layer = tf.keras.layers.BatchNormalization(momentum=0.9)
    for _ in range(2):
        layer(tf.constant(rng.standard_normal((256, 32)).astype("float32") * 3 + 1), training=True)
    x = tf.constant(rng.standard_normal((256, 32)).astype("float32") * 3 + 1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
        loss = tf.reduce_sum(out * tf.range(32, dtype=tf.float32))
    return {"output": out.numpy(), "moving_mean": layer.moving_mean.numpy(),
            "moving_variance": layer.moving_variance.numpy(), "grad_input": tape.gradient(loss, x).numpy()}


@probe("mixed.bf16_matmul", tags=["matmul", "onednn", "eigen"], group="canary", dtype="bfloat16",
       description="bfloat16 256x256 matmul (AMX vs AVX512_BF16 vs emulation), returned as float32")
def mixed_bf16_matmul(ctx: ProbeContext) -> dict[str, Any]:
    _require_bf16_safe()
    tf = ctx.tf
    rng = ctx.np.random.default_rng((ctx.seed, 403))
    a, b = (tf.cast(rng.standard_normal((256, 256)).astype("float32"), tf.bfloat16) for _ in range(2))
    return {"product": tf.cast(tf.linalg.matmul(a, b), tf.float32).numpy()}


def _policy_step(ctx: ProbeContext, policy: str, device: str) -> dict[str, Any]:
    """Three Adam steps of a small Dense model under a Keras mixed-precision policy."""
    tf = ctx.tf
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        tf.keras.utils.set_random_seed(ctx.seed)
        rng = ctx.np.random.default_rng((ctx.seed, 404))
        x = rng.standard_normal((128, 32)).astype("float32")
        y = rng.standard_normal((128, 1)).astype("float32")
        with tf.device(device):
            model = tf.keras.Sequential([tf.keras.Input(shape=(32,)), tf.keras.layers.Dense(64, activation="relu"),
                                         tf.keras.layers.Dense(1, dtype="float32")])
            model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
            losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
        out: dict[str, Any] = {f"weight{i}": w for i, w in enumerate(model.get_weights())}
        out["loss"] = ctx.np.asarray(losses, dtype="float32")
        return out
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


@probe("mixed.keras_bf16_step", tags=["training", "keras", "matmul", "onednn", "eigen", "tf.function"],
       group="canary", dtype="bfloat16",
       description="Keras mixed_bfloat16 policy: 3 Adam steps of Dense(64)->Dense(1); weights and losses")
def mixed_keras_bf16_step(ctx: ProbeContext) -> dict[str, Any]:
    _require_bf16_safe()
    return _policy_step(ctx, "mixed_bfloat16", "/CPU:0")


def _scatter_inputs(ctx: ProbeContext, salt: int) -> tuple[Any, Any, Any]:
    rng = ctx.np.random.default_rng((ctx.seed, salt))
    ids = rng.integers(0, 50, 2000).astype("int32")  # many repeats: the sums collide
    values = rng.standard_normal((2000, 8)).astype("float32")
    updates = rng.standard_normal((500, 8)).astype("float32")
    return ids, values, updates


def _scatter(ctx: ProbeContext, device: str) -> dict[str, Any]:
    """Embedding-lookup gradients, unsorted_segment_sum and tensor_scatter_nd_add with duplicate indices."""
    tf = ctx.tf
    ids, values, updates = _scatter_inputs(ctx, 405)
    with tf.device(device):
        table = tf.Variable(tf.random.stateless_normal([50, 8], seed=[ctx.seed, 1]))
        with tf.GradientTape() as tape:
            looked_up = tf.nn.embedding_lookup(table, ids)
            loss = tf.reduce_sum(looked_up * values)
        grad = tf.convert_to_tensor(tape.gradient(loss, table))
        segment = tf.math.unsorted_segment_sum(values, ids, num_segments=50)
        scattered = tf.tensor_scatter_nd_add(tf.zeros([50, 8]), ids[:500, None], updates)
    return {"embedding_grad": grad.numpy(), "unsorted_segment_sum": segment.numpy(),
            "tensor_scatter_nd_add": scattered.numpy()}


@probe("scatter.embedding_segment", tags=["reduction"], group="stable", dtype="float32",
       description="embedding-lookup gradient, unsorted_segment_sum, tensor_scatter_nd_add (duplicate ids) on CPU")
def scatter_embedding_segment(ctx: ProbeContext) -> dict[str, Any]:
    return _scatter(ctx, "/CPU:0")


@probe("data.interleave", tags=["tf.data"], group="stable", dtype="int64",
       description="tf.data interleave(cycle_length=4, num_parallel_calls=4, deterministic=True): element order")
def data_interleave(ctx: ProbeContext) -> dict[str, Any]:
    tf, np = ctx.tf, ctx.np

    def block(i: Any) -> Any:
        return tf.data.Dataset.range(i * 1000, i * 1000 + 64).shuffle(64, seed=ctx.seed)

    ds = (tf.data.Dataset.range(16).interleave(block, cycle_length=4, block_length=3, num_parallel_calls=4,
                                               deterministic=True).batch(256))
    return {"values": np.concatenate(list(ds.as_numpy_iterator()))}


# ---- GPU variants: skipped (with the reason) without a GPU ----------------------------------


@probe("gpu.rnn", tags=["gpu", "keras", "matmul"], group="canary", dtype="float32", needs_gpu=True,
       description="Keras LSTM(16) and GRU(16) on /GPU:0 (cuDNN kernels): outputs and gradients")
def gpu_rnn(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    lstm = _recurrent(ctx, ctx.tf.keras.layers.LSTM, 400, "/GPU:0")
    gru = _recurrent(ctx, ctx.tf.keras.layers.GRU, 401, "/GPU:0")
    return {**{f"lstm_{k}": v for k, v in lstm.items()}, **{f"gru_{k}": v for k, v in gru.items()}}


@probe("gpu.mixed_float16", tags=["gpu", "training", "keras", "matmul"], group="canary", dtype="float16",
       needs_gpu=True, description="Keras mixed_float16 policy on /GPU:0: 3 Adam steps (tensor cores, loss scaling)")
def gpu_mixed_float16(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    return _policy_step(ctx, "mixed_float16", "/GPU:0")


@probe("gpu.scatter", tags=["gpu", "reduction"], group="canary", dtype="float32", needs_gpu=True,
       description="embedding gradient, unsorted_segment_sum, tensor_scatter_nd_add on /GPU:0 (atomics)")
def gpu_scatter(ctx: ProbeContext) -> dict[str, Any]:
    _require_gpu(ctx)
    return _scatter(ctx, "/GPU:0")
