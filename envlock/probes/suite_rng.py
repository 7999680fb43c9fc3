"""Stable-group probes: RNG streams, tf.data order, Keras weight init, TF elementwise ops.

Our measurements (docs/causes.md) found these never move under hardware, thread or oneDNN changes -- only
under version or seed changes -- which makes them the controls of the suite.
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, probe

N_RNG = 256


@probe("rng.global_seed", tags=["rng"], group="stable", dtype="float32",
       description="tf.random.set_seed + uniform/normal without op seeds (global-seed stream)")
def rng_global_seed(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    tf.random.set_seed(ctx.seed)
    return {"uniform": tf.random.uniform([N_RNG]).numpy(), "normal": tf.random.normal([N_RNG]).numpy()}


@probe("rng.op_seed", tags=["rng"], group="stable", dtype="float32",
       description="op-level seeds: uniform/normal/truncated_normal with seed=")
def rng_op_seed(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    return {
        "uniform": tf.random.uniform([N_RNG], seed=7).numpy(),
        "normal": tf.random.normal([N_RNG], seed=11).numpy(),
        "truncated_normal": tf.random.truncated_normal([N_RNG], seed=13).numpy(),
    }


@probe("rng.generator", tags=["rng"], group="stable", dtype="float32",
       description="tf.random.Generator.from_seed: uniform, normal, and a split generator")
def rng_generator(ctx: ProbeContext) -> dict[str, Any]:
    gen = ctx.tf.random.Generator.from_seed(ctx.seed)
    child = gen.split(1)[0]
    return {
        "uniform": gen.uniform([N_RNG]).numpy(),
        "normal": gen.normal([N_RNG]).numpy(),
        "split_uniform": child.uniform([N_RNG]).numpy(),
    }


@probe("rng.numpy_legacy", tags=["rng", "numpy"], group="stable", dtype="float64",
       description="numpy legacy global RNG: np.random.seed + rand/randn/permutation")
def rng_numpy_legacy(ctx: ProbeContext) -> dict[str, Any]:
    np = ctx.np
    np.random.seed(ctx.seed)
    return {"rand": np.random.rand(N_RNG), "randn": np.random.randn(N_RNG),
            "permutation": np.random.permutation(N_RNG)}


@probe("rng.numpy_default_rng", tags=["rng", "numpy"], group="stable", dtype="float64",
       description="numpy Generator: default_rng(seed).random/standard_normal/integers")
def rng_numpy_default_rng(ctx: ProbeContext) -> dict[str, Any]:
    rng = ctx.np.random.default_rng(ctx.seed)
    return {"random": rng.random(N_RNG), "standard_normal": rng.standard_normal(N_RNG),
            "integers": rng.integers(0, 1 << 30, N_RNG)}


@probe("data.shuffle", tags=["tf.data", "rng"], group="stable", dtype="int64",
       description="tf.data shuffle(seed=) order over two epochs (reshuffled each iteration)")
def data_shuffle(ctx: ProbeContext) -> dict[str, Any]:
    tf, np = ctx.tf, ctx.np
    # batch(1000) after shuffle keeps the order and avoids 1000 Python-level iterations.
    ds = tf.data.Dataset.range(1000).shuffle(1000, seed=ctx.seed, reshuffle_each_iteration=True).batch(1000)
    epochs = [np.concatenate(list(ds.as_numpy_iterator())) for _ in range(2)]
    return {"epoch0": epochs[0], "epoch1": epochs[1]}


@probe("data.parallel_map", tags=["tf.data"], group="stable", dtype="int64",
       description="tf.data map(num_parallel_calls=4, deterministic=True) over a shuffled range: element order")
def data_parallel_map(ctx: ProbeContext) -> dict[str, Any]:
    tf, np = ctx.tf, ctx.np

    # Integer work only: the point is the order parallel map delivers; float or RNG work inside
    # the map would be compiled by XLA auto-jit and make this control move with XLA settings.
    def transform(i: Any) -> Any:
        return (i * 7919 + 13) % 10007

    ds = (tf.data.Dataset.range(2048).shuffle(2048, seed=ctx.seed)
          .map(transform, num_parallel_calls=4, deterministic=True).batch(256))
    return {"values": np.concatenate(list(ds.as_numpy_iterator()))}


@probe("init.keras", tags=["init", "keras", "rng"], group="stable", dtype="float32",
       description="Keras weight initialisation under tf.keras.utils.set_random_seed (Dense, Conv2D, LSTM)")
def init_keras(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    tf.keras.utils.set_random_seed(ctx.seed)
    dense = tf.keras.layers.Dense(32)
    dense.build((None, 16))
    conv = tf.keras.layers.Conv2D(8, 3)
    conv.build((None, 16, 16, 3))
    lstm = tf.keras.layers.LSTM(8)
    lstm.build((None, 5, 4))
    return {"dense_kernel": dense.kernel.numpy(), "conv_kernel": conv.kernel.numpy(),
            "lstm_recurrent": lstm.cell.recurrent_kernel.numpy()}


@probe("elementwise.tf", tags=["elementwise"], group="stable", dtype="float32",
       description="TF exp/log/tanh/sigmoid on 4096 float32 values (eager)")
def elementwise_tf(ctx: ProbeContext) -> dict[str, Any]:
    tf, np = ctx.tf, ctx.np
    x = tf.constant(np.linspace(-8.0, 8.0, 4096, dtype=np.float32))
    return {"exp": tf.exp(x).numpy(), "log": tf.math.log(tf.abs(x) + 1e-3).numpy(),
            "tanh": tf.tanh(x).numpy(), "sigmoid": tf.sigmoid(x).numpy()}


@probe("reduce.rows", tags=["reduction"], group="stable", dtype="float32",
       description="row-wise reduce_sum/reduce_mean of a 512x512 float32 matrix")
def reduce_rows(ctx: ProbeContext) -> dict[str, Any]:
    tf, np = ctx.tf, ctx.np
    x = tf.constant(np.random.default_rng(ctx.seed).standard_normal((512, 512), dtype=np.float32))
    return {"sum": tf.reduce_sum(x, axis=1).numpy(), "mean": tf.reduce_mean(x, axis=1).numpy()}
