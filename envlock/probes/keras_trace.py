"""Automatic intermediates of a Keras model (issue 21): where inside your own model two machines part.

A probe hands envlock its model through ``ctx.train_step(model, x, y, loss=..., optimizer=...)`` (one
training step) or ``ctx.forward(model, x)`` (one inference call). When the run is traced (a golden is
being recorded, or explain is localising a drift) envlock records, in computation order:

* ``input``, then each layer's forward output (``<layer> output``, op ``<LayerClass>, step 0, forward``);
* ``loss``;
* each trainable variable's gradient, last layer first, which is the order backpropagation computes
  them (``grad <variable path>``, op ``<LayerClass>, step 0, backward``);
* each variable after the optimizer's update (``updated <variable path>``).

A probe may hand over several steps or models: the names of the second traced call on start ``step 1: ``.

The mechanism uses only Keras' public functional API: a sub-model over the same layers whose outputs
are every layer's output (``keras.Model(model.input, [layer.output, ...])``), run under a
``tf.GradientTape``. It shares the model's weights and runs the same operations eagerly, so its final
output is the model's bit for bit (tests/integration/test_keras_trace.py checks it). Keras internals
are not patched. A model without a functional graph (a subclassed model whose ``call`` is Python) has
no layer outputs to ask for: it is run as it is, its outputs are recorded, and the reason is kept in
the golden (``trace_note``) so explain says why it stopped at the outputs.

An untraced run (verify of a machine that reproduces) calls the model itself: it pays nothing for the
tracing. The outputs are the same either way: ``loss``, ``output`` (the prediction) and
``updated_weights`` (every trainable variable after the step, flattened, when they share a dtype).

Runs inside the probe child: TensorFlow and Keras come from ``ctx`` (never imported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

NOT_FUNCTIONAL = ("the model has no functional graph (a subclassed model whose call() is Python code): "
                  "its layers' outputs cannot be asked for without patching Keras, so only its outputs are recorded")


@dataclass(frozen=True)
class LayerPlan:
    """The layers of a functional model in computation order, and the sub-model over their outputs."""

    layers: tuple[Any, ...]  # without InputLayers
    submodel: Any  # outputs: [the model's outputs..., then each layer's output(s)]
    n_model_outputs: int


def plan_layers(keras: Any, model: Any, x_shape: tuple[int, ...] | None = None) -> tuple[LayerPlan | None, str | None]:
    """The sub-model over every layer's output, or why there is none."""
    graph = isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"
    if isinstance(model, keras.Sequential) and not model.built and x_shape is not None:
        model.build((None, *x_shape[1:]))  # a Sequential without an Input builds its graph on the first call
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as exc:
        if not graph:
            return None, NOT_FUNCTIONAL
        return None, (f"Keras gives this {type(model).__name__} no graph of its layers ({type(exc).__name__}: {exc}): "
                      "only its outputs are recorded")
    layers, layer_outputs = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError) as exc:  # a layer called more than once has no single output
            return None, f"layer {layer.name} has no single output ({type(exc).__name__}: {exc}): outputs only"
        layers.append(layer)
        layer_outputs.append(out)
    try:
        submodel = keras.Model(inputs[0] if len(inputs) == 1 else inputs, [*outputs, *layer_outputs])
    except Exception as exc:  # whatever Keras refuses, the probe still runs untraced
        return None, f"Keras could not build the sub-model over the layers' outputs ({type(exc).__name__}: {exc})"
    return LayerPlan(tuple(layers), submodel, len(outputs)), None


def _flat(keras: Any, value: Any) -> list[Any]:
    return list(keras.tree.flatten(value))


def _owners(layers: Sequence[Any], variables: Sequence[Any]) -> list[tuple[Any, list[Any]]]:
    """Each layer with the trainable variables it is the first to hold, in layer order; the rest last."""
    seen: set[int] = set()
    owned: list[tuple[Any, list[Any]]] = []
    for layer in layers:
        mine = [v for v in layer.trainable_variables if id(v) not in seen]
        seen.update(id(v) for v in mine)
        if mine:
            owned.append((layer, mine))
    rest = [v for v in variables if id(v) not in seen]
    if rest:
        owned.append((None, rest))
    return owned


class _Recorder:
    """``ctx.record`` for one traced call: its step number prefixes the names after the first call of a
    probe (``step 1: conv output``); ``ctx.record`` keeps at most MAX_INTERMEDIATES per probe and says so."""

    def __init__(self, ctx: Any, step: int) -> None:
        self._ctx, self.step = ctx, step

    def __call__(self, name: str, value: Any, op: str) -> None:
        self._ctx.record(name if self.step == 0 else f"step {self.step}: {name}", value, op=op)


def _record_forward(rec: _Recorder, keras: Any, x: Any, plan: LayerPlan, outs: Sequence[Any], phase: str) -> None:
    rec("input", x if not isinstance(x, (list, tuple, dict)) else _flat(keras, x)[0], f"input, step {rec.step}")
    flat_layer_outs = outs[plan.n_model_outputs:]
    for layer, out in zip(plan.layers, flat_layer_outs, strict=True):
        parts = _flat(keras, out)
        for i, part in enumerate(parts):
            suffix = "" if len(parts) == 1 else f"[{i}]"
            rec(f"{layer.name} output{suffix}", part, f"{type(layer).__name__}, step {rec.step}, {phase}")


def _outputs(np: Any, loss: Any, prediction: Any, variables: Sequence[Any]) -> dict[str, Any]:
    result = {"output": np.asarray(prediction)}
    if loss is not None:
        result["loss"] = np.asarray(loss)
    dtypes = {v.dtype for v in variables}
    if variables and len(dtypes) == 1:
        result["updated_weights"] = np.concatenate([np.asarray(v).reshape(-1) for v in variables])
    return result


def train_step(ctx: Any, model: Any, x: Any, y: Any, *, loss: Callable[[Any, Any], Any], optimizer: Any,
               traced: bool, step: int = 0) -> tuple[dict[str, Any], str | None]:
    """One training step of ``model`` on (x, y): its outputs, and why it was not traced (None if it was)."""
    tf, np = ctx.tf, ctx.np
    keras = tf.keras
    plan, why = plan_layers(keras, model, _shape(x)) if traced else (None, None)
    rec = _Recorder(ctx, step)
    with tf.GradientTape() as tape:
        if plan is not None:
            outs = _flat(keras, plan.submodel(x, training=True))
            prediction = outs[0]
        else:
            prediction = _flat(keras, model(x, training=True))[0]
        loss_value = loss(y, prediction)
        variables = list(model.trainable_variables)  # after the call: a model builds its weights on the first one
        if model.losses:  # regularisation terms, as model.fit adds them
            loss_value = loss_value + tf.add_n(model.losses)
    grads = tape.gradient(loss_value, variables)
    if plan is not None:
        _record_forward(rec, keras, x, plan, outs, "forward")
        rec("loss", loss_value, f"{getattr(loss, '__name__', type(loss).__name__)}, step {rec.step}")
        by_id = {id(v): g for v, g in zip(variables, grads, strict=True)}
        for layer, owned in reversed(_owners(plan.layers, variables)):
            kind = type(layer).__name__ if layer is not None else "model"
            for v in reversed(owned):
                if by_id[id(v)] is not None:
                    rec(f"grad {v.path}", by_id[id(v)], f"{kind}, step {rec.step}, backward")
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables, strict=True) if g is not None])
    if plan is not None:
        opt = type(optimizer).__name__
        for layer, owned in _owners(plan.layers, variables):
            for v in owned:
                owner = type(layer).__name__ if layer is not None else "model"
                rec(f"updated {v.path}", v, f"{opt} update of {owner}, step {rec.step}")
    return _outputs(np, loss_value, prediction, variables), why


def forward(ctx: Any, model: Any, x: Any, *, traced: bool, step: int = 0) -> tuple[dict[str, Any], str | None]:
    """One inference call of ``model`` on x: its outputs, and why it was not traced (None if it was)."""
    keras = ctx.tf.keras
    plan, why = plan_layers(keras, model, _shape(x)) if traced else (None, None)
    rec = _Recorder(ctx, step)
    if plan is not None:
        outs = _flat(keras, plan.submodel(x, training=False))
        _record_forward(rec, keras, x, plan, outs, "inference")
        prediction = outs[0]
    else:
        prediction = _flat(keras, model(x, training=False))[0]
    return {"output": ctx.np.asarray(prediction)}, why


def _shape(x: Any) -> tuple[int, ...] | None:
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else None
