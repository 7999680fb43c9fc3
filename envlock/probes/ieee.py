"""IEEE-754 references for the hardware-arithmetic probes: what a CPU must give if it computes them with
the operations the standard specifies bit for bit (float32 division and square root), whatever its vendor.

The probes' inputs are rebuilt from the golden's seed with the very functions the probes use
(``suite_hardware.spread_values`` / ``normal_values``), and each output's reference is computed with
numpy's float32 division and sqrt, which are IEEE-754 correctly rounded. An output whose sha256 equals its
reference's is IEEE-exact: it gives the same bits on every conforming CPU, so a golden of it travels. One
that differs was computed with an approximation (Eigen's rcpps/rsqrtps plus a Newton step, XLA's hardware
rsqrt) whose bits the instruction set leaves to the vendor.

Pure: numpy only. explain runs the probes under the portable profile and hands the outputs here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from envlock.probes.compare import canonical_array, sha256_of
from envlock.probes.suite_hardware import normal_values, spread_values


def _reciprocal(seed: int) -> dict[str, np.ndarray]:
    one = np.float32(1)
    x = spread_values(np, seed, 4096, 1, positive=False)
    near = normal_values(np, seed, (4096,), "float32", 1, 0.25) + np.float32(1.5)
    return {"reciprocal": one / x, "reciprocal_1_to_2": one / near}


def _rsqrt(seed: int) -> dict[str, np.ndarray]:
    one = np.float32(1)
    x = spread_values(np, seed, 4096, 2)
    near = np.abs(normal_values(np, seed, (4096,), "float32", 2)) + np.float32(0.5)
    return {"rsqrt": one / np.sqrt(x), "rsqrt_near_one": one / np.sqrt(near)}


def _divide_sqrt(seed: int) -> dict[str, np.ndarray]:
    x, y = spread_values(np, seed, 4096, 3, positive=False), spread_values(np, seed, 4096, 4, positive=False)
    xq, yq = (np.sign(v) * np.sqrt(np.abs(v)) for v in (x, y))
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = xq / yq
    return {"divide": quotient, "sqrt": np.sqrt(np.abs(x)),
            "divide_no_nan": np.where(yq == 0, np.float32(0), quotient).astype(np.float32)}


# Probe -> its outputs' IEEE references from the seed. A probe not here has no closed-form reference
# (softmax, the normalisation layers and their gradients sum in an order IEEE does not fix).
REFERENCES: dict[str, Callable[[int], dict[str, np.ndarray]]] = {
    "hw.reciprocal": _reciprocal,
    "hw.rsqrt": _rsqrt,
    "hw.divide_sqrt": _divide_sqrt,
}


@dataclass(frozen=True)
class IeeeCheck:
    probe: str
    exact: list[str]  # outputs bit-identical to their IEEE reference
    inexact: list[str]  # outputs that differ from it: an approximation the vendor decides

    @property
    def ieee_exact(self) -> bool:
        return not self.inexact and bool(self.exact)


def check_outputs(probe: str, seed: int, output_sha256: Mapping[str, str]) -> IeeeCheck | None:
    """Compare a run's outputs (name -> sha256 of the raw bytes) with the IEEE references; None when the
    probe has none."""
    build = REFERENCES.get(probe)
    if build is None:
        return None
    references = {name: sha256_of(canonical_array(value.astype(np.float32))) for name, value in build(seed).items()}
    exact = sorted(n for n, digest in references.items() if output_sha256.get(n) == digest)
    return IeeeCheck(probe, exact, sorted(set(references) - set(exact)))


def check_run(probe: str, seed: int, outputs: list[Any]) -> IeeeCheck | None:
    """``check_outputs`` for a child's run or a golden's record (items with ``name`` and ``sha256``)."""
    digests = {}
    for output in outputs:
        name = output["name"] if isinstance(output, Mapping) else output.name
        digests[name] = output["sha256"] if isinstance(output, Mapping) else output.sha256
    return check_outputs(probe, seed, digests)
