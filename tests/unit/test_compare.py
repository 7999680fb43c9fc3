"""ULP distance, sampling, hashing and the tolerance policy (numpy only, no TF)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envlock.errors import BadInputError
from envlock.probes.compare import (
    FULL_LIMIT,
    SAMPLE_SIZE,
    Tolerance,
    compare_output,
    decode_sample,
    summarize_array,
    ulp_distances,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adjacent_floats_are_one_ulp_apart(dtype: type) -> None:
    x = np.array([1.0, -3.5, 1e-30, 12345.678], dtype=dtype)
    up = np.nextafter(x, np.array(np.inf, dtype=dtype))
    assert ulp_distances(x, up).tolist() == [1.0] * 4
    assert ulp_distances(x, np.nextafter(up, np.array(np.inf, dtype=dtype))).tolist() == [2.0] * 4


def test_ulp_distance_across_zero_and_signed_zero() -> None:
    tiny = np.array([np.finfo(np.float32).smallest_subnormal], dtype=np.float32)
    assert ulp_distances(-tiny, tiny)[0] == 2.0
    assert ulp_distances(np.array([0.0], np.float32), np.array([-0.0], np.float32))[0] == 0.0


def test_nan_handling() -> None:
    a = np.array([np.nan, np.nan, 1.0], dtype=np.float32)
    b = np.array([np.nan, 1.0, 1.0], dtype=np.float32)
    dist = ulp_distances(a, b)
    assert dist[0] == 0.0 and math.isinf(dist[1]) and dist[2] == 0.0


def test_small_output_is_stored_whole_and_exactly() -> None:
    values = np.random.default_rng(0).standard_normal(FULL_LIMIT).astype(np.float32)
    record = summarize_array("x", values)
    assert record["sample_stride"] == 1
    assert np.array_equal(decode_sample(record["dtype"], record["sample_b64"]), values)
    assert record["stats"]["abs_max"] == pytest.approx(float(np.abs(values).max()))


def test_large_output_is_sampled_at_a_fixed_stride() -> None:
    values = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    record = summarize_array("x", values)
    sample = decode_sample(record["dtype"], record["sample_b64"])
    assert sample.size == SAMPLE_SIZE
    assert np.array_equal(sample, values.reshape(-1)[:: record["sample_stride"]][:SAMPLE_SIZE])
    assert record["shape"] == [100, 100] and record["stats"]["max"] == 9999.0


def test_hash_sees_one_flipped_bit_and_ignores_byte_order() -> None:
    values = np.linspace(0, 1, 1000, dtype=np.float32)
    flipped = values.copy()
    flipped.view(np.uint32)[777] ^= 1
    assert summarize_array("x", values)["sha256"] != summarize_array("x", flipped)["sha256"]
    assert summarize_array("x", values)["sha256"] == summarize_array("x", values.astype(">f4"))["sha256"]


def test_tolerance_parsing() -> None:
    assert Tolerance.parse("bitwise").max_ulp == 0
    assert Tolerance.parse("ULP:4") == Tolerance(4)
    assert Tolerance(4).label == "ulp:4"
    for bad in ("ulp:", "ulp:-1", "ulp:x", "loose", "ulp:1.5"):
        with pytest.raises(BadInputError):
            Tolerance.parse(bad)


def _pair(golden: np.ndarray, current: np.ndarray) -> tuple[dict, dict]:
    return summarize_array("out", golden), summarize_array("out", current)


def test_identical_outputs() -> None:
    g = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    result = compare_output(*_pair(g, g.copy()), Tolerance())
    assert result.identical and result.within_tolerance and result.max_ulp == 0


def test_one_ulp_is_drift_bitwise_and_within_ulp_1() -> None:
    g = np.random.default_rng(2).standard_normal(100).astype(np.float32)
    c = g.copy()
    c[[3, 50]] = np.nextafter(c[[3, 50]], np.float32(np.inf))
    bitwise = compare_output(*_pair(g, c), Tolerance())
    assert not bitwise.identical and not bitwise.within_tolerance
    assert bitwise.max_ulp == 1.0 and bitwise.mismatched == 2 and bitwise.compared == 100
    assert compare_output(*_pair(g, c), Tolerance(1)).within_tolerance


def test_near_zero_elements_are_judged_by_the_output_scale() -> None:
    # A harmless round-off on a near-zero element is a huge ULP count of its own value.
    g = np.array([100.0, 1e-6, -50.0], dtype=np.float32)
    c = g.copy()
    c[1] = 2e-6
    result = compare_output(*_pair(g, c), Tolerance(2))
    assert result.max_ulp > 1e6
    assert result.max_rel_error == pytest.approx(1e-8, rel=1e-3)
    assert result.within_tolerance  # 1e-6 is well under 2 ULPs of 100 (7.6e-6 each)
    c[1] = 1e-4  # 1e-4 is ~13 ULPs of 100: drift
    assert not compare_output(*_pair(g, c), Tolerance(2)).within_tolerance


def test_integer_outputs_have_no_tolerance() -> None:
    g = np.arange(50, dtype=np.int64)
    c = g.copy()
    c[[0, 1]] = c[[1, 0]]
    result = compare_output(*_pair(g, c), Tolerance(1000))
    assert not result.within_tolerance and result.mismatched == 2


def test_shape_change_is_drift_with_a_note() -> None:
    g = np.zeros((4, 4), dtype=np.float32)
    result = compare_output(*_pair(g, np.zeros((2, 8), dtype=np.float32)), Tolerance(10))
    assert not result.within_tolerance and "shape" in (result.note or "")


def test_difference_outside_the_sample_is_still_drift() -> None:
    g = np.random.default_rng(3).standard_normal(10_000).astype(np.float32)
    c = g.copy()
    stride = summarize_array("out", g)["sample_stride"]
    c[stride + 1] += 1.0  # not a sampled index
    result = compare_output(*_pair(g, c), Tolerance())
    assert not result.identical and not result.within_tolerance
    # The size is not known: never "0 ULP, 0 differing".
    assert result.mismatched is None and result.max_ulp is None and result.max_rel_error is None
    assert result.note == "raw bytes differ outside the sampled elements; size not measured"
