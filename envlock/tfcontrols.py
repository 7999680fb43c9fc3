"""The TensorFlow controls envlock applies: seeds, op determinism, thread counts.

In the base layer (standard library only, TensorFlow passed in) because two sides share it: the
probe child, which must stay light, and ``envlock.lockdown()`` in a user's own process. Probes
then run under exactly the controls a user's job gets.
"""

from __future__ import annotations

import os
from typing import Any

from envlock.protocol import AppliedControls


def default_thread_count() -> int:
    """The CPUs this process may run on: what TF would pick by default, made explicit."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def apply_tf_controls(tf: Any, *, seed: int, op_determinism: bool, intra_op_threads: int | None,
                      inter_op_threads: int | None) -> AppliedControls:
    """Seeds, op determinism and thread counts on an imported TF; returns what is in force.

    Shared by the probe child and ``lockdown()`` so probes run exactly as users' jobs do.
    """
    problems: list[str] = []
    threading = tf.config.threading
    for label, wanted, setter, getter in (
        ("intra-op", intra_op_threads, threading.set_intra_op_parallelism_threads,
         threading.get_intra_op_parallelism_threads),
        ("inter-op", inter_op_threads, threading.set_inter_op_parallelism_threads,
         threading.get_inter_op_parallelism_threads),
    ):
        if wanted is None or getter() == wanted:
            continue
        try:
            setter(wanted)
        except RuntimeError:
            problems.append(
                f"TF {label} threads could not be set to {wanted}: TensorFlow's runtime is already "
                f"initialised (call envlock.lockdown() before running any TF op)"
            )
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(seed)  # python random, numpy, TF and Keras' global generator
    return {
        "seed": seed,
        "op_determinism": op_determinism,
        "intra_op_threads": threading.get_intra_op_parallelism_threads() or None,
        "inter_op_threads": threading.get_inter_op_parallelism_threads() or None,
        "problems": problems,
    }
