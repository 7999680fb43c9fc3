"""How probe outputs are recorded and compared: raw-byte hashes, samples, ULP and scale errors.

An output is recorded as its dtype, shape, the sha256 of its raw little-endian bytes, a
sample of its values (all of them when small, otherwise a fixed strided sample) stored
exactly as base64 bytes, and summary statistics of the whole array.

Tolerance policy ``ulp:N``: an element is within tolerance when it differs from the golden by
at most N units in the last place *of itself* or by at most N ULPs *of the output's scale*
(its largest magnitude), whichever is more lenient. The second clause matters: a matmul of
random data has many near-zero elements whose harmless round-off is 1e5-1e6 ULPs of their
own tiny value but a fraction of an ULP of the output's scale. ``bitwise`` accepts nothing
but identical bytes.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from envlock.errors import BadInputError
from envlock.protocol import OutputStats, OutputSummary

FULL_LIMIT = 256  # outputs up to this many elements are stored whole
SAMPLE_SIZE = 128  # larger outputs: this many elements at a fixed stride
UNSAMPLED_NOTE = "raw bytes differ outside the sampled elements; size not measured"


def canonical_array(value: Any) -> np.ndarray:
    """A C-contiguous little-endian array (so hashes do not depend on the host's byte order)."""
    arr = np.ascontiguousarray(np.asarray(value))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def sha256_of(arr: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(arr.tobytes()).hexdigest()


def sample_stride(size: int) -> int:
    return 1 if size <= FULL_LIMIT else size // SAMPLE_SIZE


def summarize_array(name: str, value: Any) -> OutputSummary:
    """The record of one output (the protocol's OutputSummary; ``envlock.golden.OutputRecord`` validates it)."""
    arr = canonical_array(value)
    flat = arr.reshape(-1)
    stride = sample_stride(flat.size)
    sample = flat[::stride][: (flat.size if stride == 1 else SAMPLE_SIZE)]
    return {
        "name": name,
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "sha256": sha256_of(arr),
        "sample_stride": stride,
        "sample_b64": base64.b64encode(np.ascontiguousarray(sample).tobytes()).decode("ascii"),
        "stats": _stats(flat),
    }


def _stats(flat: np.ndarray) -> OutputStats | None:
    if flat.size == 0 or flat.dtype.kind not in "fiu":
        return None
    as_f64 = flat.astype(np.float64)
    if not np.all(np.isfinite(as_f64)):
        return None
    return {"min": float(as_f64.min()), "max": float(as_f64.max()), "mean": float(as_f64.mean()),
            "abs_max": float(np.abs(as_f64).max())}


def decode_sample(dtype: str, sample_b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(sample_b64), dtype=np.dtype(dtype).newbyteorder("<"))


# ---------------------------------------------------------------- tolerance policy


@dataclass(frozen=True)
class Tolerance:
    """``bitwise`` (max_ulp == 0) or ``ulp:N``."""

    max_ulp: int = 0

    @property
    def label(self) -> str:
        return "bitwise" if self.max_ulp == 0 else f"ulp:{self.max_ulp}"

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        text = text.strip().lower()
        if text == "bitwise":
            return cls(0)
        if text.startswith("ulp:"):
            try:
                n = int(text[4:])
            except ValueError:
                n = -1
            if n >= 0:
                return cls(n)
        raise BadInputError(f"invalid --tolerance {text!r}: use 'bitwise' or 'ulp:N' with N a whole number >= 0")


# ---------------------------------------------------------------- ULP and scale errors


def _ordered_ints(values: np.ndarray) -> list[int]:
    """Map floats to integers whose differences count representable values (ULPs).

    Positive floats keep their bit pattern; negative ones are mirrored below zero, so +0 and
    -0 both map to 0 and neighbouring floats map to neighbouring integers across zero.
    """
    sign = 1 << (values.dtype.itemsize * 8 - 1)
    bits = values.view(f"<u{values.dtype.itemsize}").tolist()
    return [b if b < sign else sign - b for b in bits]


def ulp_distances(golden: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Per-element ULP distance (float64 array; inf where exactly one side is NaN)."""
    if golden.dtype.kind != "f":
        return np.abs(golden.astype(np.float64) - current.astype(np.float64))
    g_ints, c_ints = _ordered_ints(golden), _ordered_ints(current)
    dist = np.array([abs(a - b) for a, b in zip(g_ints, c_ints, strict=True)], dtype=np.float64)
    g_nan, c_nan = np.isnan(golden), np.isnan(current)
    dist[g_nan & c_nan] = 0.0
    dist[g_nan ^ c_nan] = math.inf
    return dist


@dataclass(frozen=True)
class OutputComparison:
    identical: bool  # raw bytes identical (sha256)
    within_tolerance: bool
    max_ulp: float | None
    max_rel_error: float | None  # max|diff| / max|golden| (the output's scale)
    mismatched: int | None  # differing elements in the compared sample
    compared: int  # how many elements the sample held
    note: str | None = None


def compare_output(golden: Mapping[str, Any], current: Mapping[str, Any], tolerance: Tolerance) -> OutputComparison:
    """Compare two output records (dicts with the ``summarize_array`` keys)."""
    if golden["dtype"] != current["dtype"] or list(golden["shape"]) != list(current["shape"]):
        return OutputComparison(False, False, None, None, None, 0,
                                f"dtype/shape changed: {golden['dtype']}{tuple(golden['shape'])} -> "
                                f"{current['dtype']}{tuple(current['shape'])}")
    if golden["sha256"] == current["sha256"]:
        return OutputComparison(True, True, 0.0, 0.0, 0, 0)
    g = decode_sample(golden["dtype"], golden["sample_b64"])
    c = decode_sample(current["dtype"], current["sample_b64"])
    if g.size != c.size or golden.get("sample_stride") != current.get("sample_stride"):
        return OutputComparison(False, False, None, None, None, 0, "samples were taken differently")
    scale = _scale(golden, g)
    if g.dtype.kind not in "fiu":
        mismatched = int(np.count_nonzero(g != c))
        return OutputComparison(False, False, None, None, mismatched, int(g.size))
    ulps = ulp_distances(g, c)
    diff = np.abs(g.astype(np.float64) - c.astype(np.float64))
    mismatched = int(np.count_nonzero(ulps))
    max_ulp = float(ulps.max()) if ulps.size else 0.0
    max_rel = float(diff.max() / scale) if diff.size and scale > 0 else (0.0 if not diff.size else math.inf)
    within = _within(g, ulps, diff, scale, tolerance)
    if mismatched == 0:
        # The bytes differ but the sample does not: the size of the difference is not known (never "0 ULP");
        # judge tolerance by the whole-array statistics.
        within = within and _stats_within(golden, current, g.dtype, tolerance)
        return OutputComparison(False, within, None, None, None, int(g.size), UNSAMPLED_NOTE)
    return OutputComparison(False, within, max_ulp, max_rel, mismatched, int(g.size))


def _scale(record: Mapping[str, Any], sample: np.ndarray) -> float:
    stats = record.get("stats") or {}
    if stats.get("abs_max") is not None:
        return float(stats["abs_max"])
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    return float(np.abs(finite.astype(np.float64)).max()) if finite.size else 0.0


def _within(g: np.ndarray, ulps: np.ndarray, diff: np.ndarray, scale: float, tolerance: Tolerance) -> bool:
    if tolerance.max_ulp == 0:
        return False
    if g.dtype.kind != "f":
        return False  # integers (indices, orders) have no round-off: any change is drift
    scale_ulp = float(np.spacing(g.dtype.type(scale))) if scale > 0 else 0.0
    ok = (ulps <= tolerance.max_ulp) | (diff <= tolerance.max_ulp * scale_ulp)
    return bool(np.all(ok))


def _stats_within(golden: Mapping[str, Any], current: Mapping[str, Any], dtype: np.dtype, tolerance: Tolerance) -> bool:
    if tolerance.max_ulp == 0 or dtype.kind != "f":
        return False
    gs, cs = golden.get("stats"), current.get("stats")
    if not gs or not cs:
        return False
    allowed = tolerance.max_ulp * float(np.spacing(dtype.type(gs["abs_max"]))) * 4
    return all(abs(gs[k] - cs[k]) <= allowed for k in ("min", "max", "abs_max"))
