"""The probe tag vocabulary, shared by the probe registry (what a probe depends on) and
envlock.diff (what a manifest difference can affect), so verify can match the two."""

from __future__ import annotations

PROBE_TAGS: tuple[str, ...] = (
    "rng", "tf.data", "init", "matmul", "blas", "numpy", "onednn", "eigen", "reduction", "conv", "elementwise",
    "xla", "tf.function", "eager", "training", "distribute", "threads", "gpu", "keras",
    "approx",  # the CPU's approximate reciprocal/rsqrt instructions (Eigen fast math), not specified across vendors
    "bf16",  # bfloat16 kernels oneDNN picks by instruction set (AMX tiles vs AVX512_BF16 vs emulation)
)

# What a computation of unknown make depends on (the pytest plugin's default): everything but what
# only a reduced-precision dtype selects, so a float32 check is never blamed on the AMX bf16 kernels.
DEFAULT_TAGS: tuple[str, ...] = tuple(t for t in PROBE_TAGS if t != "bf16")
