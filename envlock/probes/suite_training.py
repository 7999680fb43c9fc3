"""Training probes: a short Keras fit and a MirroredStrategy step over two logical CPUs.

They integrate everything (init, tf.data order, matmul, Adam, tf.function), so they are the
probes a user's own result most resembles. The child process splits the CPU into two logical
devices before TF initialises them, which is what makes MirroredStrategy run on a CPU box.
"""

from __future__ import annotations

from typing import Any

from envlock.probes.probe import ProbeContext, ProbeSkipped, probe

N_SAMPLES, N_FEATURES = 256, 10


def _data(ctx: ProbeContext) -> tuple[Any, Any]:
    rng = ctx.np.random.default_rng((ctx.seed, 200))
    x = rng.random((N_SAMPLES, N_FEATURES)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > N_FEATURES / 2).astype("float32")
    return x, y


def _named_variables(model: Any) -> list[tuple[str, Any]]:
    # "Dense[0]/kernel": by layer position, not Keras's auto names (dense_2, sequential_1), which
    # count the models built before in the process and so depend on which probes ran first.
    named = []
    for index, layer in enumerate(model.layers):
        for variable in layer.trainable_variables:
            base = str(getattr(variable, "path", None) or variable.name).rsplit("/", 1)[-1].split(":")[0]
            named.append((f"{type(layer).__name__}[{index}]/{base}", variable))
    return named


def _record_weights(ctx: ProbeContext, model: Any, step: str, op: str) -> None:
    for name, variable in _named_variables(model):
        ctx.record(f"{step}: {name}", variable, op=op)


def _model(tf: Any) -> Any:
    return tf.keras.Sequential([
        tf.keras.Input(shape=(N_FEATURES,)),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])


@probe("training.keras_fit", tags=["training", "keras", "matmul", "onednn", "eigen", "tf.function", "init",
                                   "tf.data", "rng"],
       group="canary", dtype="float32",
       description="Keras Dense(16)->Dense(1), Adam, 3 epochs on seeded synthetic data: final weights and losses")
def training_keras_fit(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    tf.keras.utils.set_random_seed(ctx.seed)
    x, y = _data(ctx)
    model = _model(tf)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(N_SAMPLES, seed=ctx.seed).batch(32)
    _record_weights(ctx, model, "initial", "initializer")
    position = {"epoch": 0}

    class RecordSteps(tf.keras.callbacks.Callback):  # type: ignore[name-defined]
        # Each step's weights, so explain can name the first step and variable that differ.
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            position["epoch"] = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            _record_weights(ctx, model, f"epoch {position['epoch']} step {batch}", "Adam update (train step)")

    history = model.fit(ds, epochs=3, verbose=0, callbacks=[RecordSteps()])
    out: dict[str, Any] = {f"weight{i}": w for i, w in enumerate(model.get_weights())}
    out["loss"] = ctx.np.asarray(history.history["loss"], dtype="float32")
    return out


@probe("distribute.mirrored_step", tags=["distribute", "training", "matmul", "onednn", "eigen", "tf.function",
                                         "init", "rng"],
       group="canary", dtype="float32",
       description="MirroredStrategy over two logical CPU devices, HierarchicalCopyAllReduce, 3 SGD steps")
def distribute_mirrored_step(ctx: ProbeContext) -> dict[str, Any]:
    tf = ctx.tf
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        raise ProbeSkipped("fewer than two logical CPU devices were configured")
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.HierarchicalCopyAllReduce())
    tf.keras.utils.set_random_seed(ctx.seed)
    x, y = _data(ctx)
    with strategy.scope():
        model = _model(tf)
        optimizer = tf.keras.optimizers.SGD(0.1)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(64))

    def replica_step(features: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            per_example = tf.keras.losses.binary_crossentropy(labels, model(features, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=64)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(batch: Any) -> Any:
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    _record_weights(ctx, model, "initial", "initializer")
    losses = []
    for index, batch in zip(range(3), dataset, strict=False):
        losses.append(step(batch).numpy())
        ctx.record(f"step {index}: loss", losses[-1], op="binary_crossentropy, all-reduced (forward)")
        _record_weights(ctx, model, f"step {index}", "SGD update (replica gradients, all-reduce)")
    out: dict[str, Any] = {f"weight{i}": w for i, w in enumerate(model.get_weights())}
    out["loss"] = ctx.np.asarray(losses, dtype="float32")
    return out
