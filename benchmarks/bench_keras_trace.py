"""What tracing a Keras model costs (issue 21): recording time, golden size, verify time and explain
time of the MobileNetV2 probe handed to envlock (``ctx.train_step``, traced), against the same model
and step written by hand without envlock's help (untraced), in the same run.

    python benchmarks/bench_keras_trace.py [--rounds 2]

Each figure is one envlock command in a fresh process (TensorFlow's import included, as a user pays
it), the traced and untraced probes interleaved round by round; the median over rounds is printed with
the ratio traced/untraced. Goals: verify of a reproducing machine pays nothing (ratio about 1.0); the
traced golden stays under 2 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACED = ROOT / "examples" / "keras_application_probe.py"
UNTRACED = '''
import numpy as np
import tensorflow as tf
from envlock import probe

@probe("user.mobilenet_v2_untraced", tags=["training", "keras", "conv", "onednn"], group="canary",
       dtype="float32", description="the same MobileNetV2 step, written by hand: outputs only")
def mobilenet_v2_untraced(ctx):
    model = tf.keras.applications.MobileNetV2(input_shape=(64, 64, 3), weights=None, classes=10)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 64, 64, 3)).astype(np.float32), (np.arange(8) % 10).astype(np.int32)
    loss_fn, opt = tf.keras.losses.SparseCategoricalCrossentropy(), tf.keras.optimizers.SGD(learning_rate=0.01)
    with tf.GradientTape() as tape:
        prediction = model(x, training=True)
        loss = loss_fn(y, prediction)
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return {"loss": loss.numpy(), "output": prediction.numpy(),
            "updated_weights": np.concatenate([v.numpy().reshape(-1) for v in model.trainable_variables])}
'''


def _envlock(*args: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "envlock", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=900)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"envlock {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-keras-trace-"))
    (work / "untraced.py").write_text(UNTRACED)
    kinds = {"traced": (str(TRACED), "user.mobilenet_v2_step"),
             "untraced": (str(work / "untraced.py"), "user.mobilenet_v2_untraced")}
    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for kind, (module, name) in kinds.items():
            golden = work / f"{kind}.json"
            golden.unlink(missing_ok=True)
            times.setdefault(("record", kind), []).append(
                _envlock("capture", "--golden", "--probe-module", module, "--probes", name, "--repeat", "1",
                         "-o", str(golden)))
            sizes[kind] = golden.stat().st_size
            times.setdefault(("verify", kind), []).append(_envlock("verify", str(golden), "--probe-module", module))
            times.setdefault(("explain", kind), []).append(
                _envlock("explain", str(golden), "--probe-module", module, "--budget", "600",
                         env={"TF_ENABLE_ONEDNN_OPTS": "0"}))
    print(f"MobileNetV2 64x64x3, 10 classes, one SGD step on 8 images; {args.rounds} rounds, median seconds "
          "per command (a fresh process each, TensorFlow's import included)")
    print(f"{'':10} {'traced':>9} {'untraced':>9} {'ratio':>7}")
    for step in ("record", "verify", "explain"):
        traced, untraced = (statistics.median(times[(step, k)]) for k in ("traced", "untraced"))
        print(f"{step:10} {traced:9.2f} {untraced:9.2f} {traced / untraced:7.2f}x")
    print(f"{'golden':10} {sizes['traced'] / 1e6:8.2f}M {sizes['untraced'] / 1e6:8.2f}M "
          f"{sizes['traced'] / sizes['untraced']:7.1f}x  (goal: traced under 2 MB)")


if __name__ == "__main__":
    main()
