"""golden.requant: Q31 multiplier, single round-half-up, saturation; <= 1 LSB from gemmlowp's double rounding."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.requant import quantize_multiplier, requantize, requantize_gemmlowp

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
SCALES = st.floats(min_value=2.0 ** -31, max_value=2.0 ** 29, allow_nan=False, allow_infinity=False)


def _exact_reference(acc: int, m: int, shift: int, zp: int, bits: int) -> int:
    """Independent reference in Python big integers/Fractions: round half up of acc*M/2^t, + zp, clamp."""
    x = Fraction(acc * m, 1 << (31 + shift))
    rounded = (x + Fraction(1, 2)).__floor__()
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(rounded + zp, lo), hi)


@settings(deadline=None)
@given(SCALES)
def test_quantize_multiplier_range_and_precision(scale):
    m, shift = quantize_multiplier(scale)
    assert (1 << 30) <= m <= (1 << 31) - 1
    assert 1 <= 31 + shift <= 62
    approx = Fraction(m, 1 << (31 + shift))
    assert abs(approx - Fraction(scale)) <= Fraction(scale) * Fraction(1, 1 << 30)


def test_quantize_multiplier_known_values():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, -1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    # mantissa rounding up to 1.0 carries into the exponent
    assert quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, -1)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 2.0 ** 31, 2.0 ** -40, "x"])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(ValueError, match="real_scale"):
        quantize_multiplier(bad)


@settings(deadline=None, max_examples=300)
@given(acc=INT32, scale=SCALES, zp=st.integers(-128, 127))
def test_requantize_matches_exact_rational_reference(acc, scale, zp):
    m, shift = quantize_multiplier(scale)
    got = requantize(np.array([acc], dtype=np.int32), m, shift, zero_point=zp)
    assert got.dtype == np.int8
    assert int(got[0]) == _exact_reference(acc, m, shift, zp, 8)


def test_requantize_ties_round_half_up_and_saturate():
    m, shift = quantize_multiplier(0.5)  # divide by 2 exactly
    acc = np.array([-5, -3, -1, 1, 3, 5, 1000, -1000], dtype=np.int32)
    assert requantize(acc, m, shift).tolist() == [-2, -1, 0, 1, 2, 3, 127, -128]
    assert requantize(acc, m, shift, out_bits=16).tolist() == [-2, -1, 0, 1, 2, 3, 500, -500]
    assert requantize(acc, m, shift, zero_point=10).tolist() == [8, 9, 10, 11, 12, 13, 127, -128]


@settings(deadline=None)
@given(scale=SCALES, zp=st.integers(-128, 127),
       accs=st.lists(INT32, min_size=2, max_size=50))
def test_requantize_in_range_monotonic(scale, zp, accs):
    m, shift = quantize_multiplier(scale)
    acc = np.sort(np.array(accs, dtype=np.int32))
    for bits, dtype in ((8, np.int8), (16, np.int16)):
        zp_b = zp
        y = requantize(acc, m, shift, zero_point=zp_b, out_bits=bits)
        assert y.dtype == dtype
        assert np.all(np.diff(y.astype(np.int64)) >= 0)  # monotonic non-decreasing
        assert y.min() >= -(1 << (bits - 1)) and y.max() <= (1 << (bits - 1)) - 1


def test_requantize_saturates_at_extremes():
    m, shift = quantize_multiplier(1.0)
    acc = np.array([-(1 << 31), (1 << 31) - 1, 128, -129], dtype=np.int32)
    assert requantize(acc, m, shift).tolist() == [-128, 127, 127, -128]
    assert requantize(acc, m, shift, out_bits=16).tolist() == [-32768, 32767, 128, -129]


def test_requantize_per_channel_broadcasts_last_axis():
    scales = np.array([0.5, 0.25, 2.0 ** -10])
    pairs = [quantize_multiplier(s) for s in scales]
    mult = np.array([p[0] for p in pairs])
    shift = np.array([p[1] for p in pairs])
    acc = np.array([[100, 100, 100 * 1024], [-7, -7, -1536]], dtype=np.int32)
    assert requantize(acc, mult, shift).tolist() == [[50, 25, 100], [-3, -2, -1]]


@settings(deadline=None, max_examples=400)
@given(acc=INT32, scale=st.floats(min_value=2.0 ** -31, max_value=0.999, allow_nan=False), zp=st.integers(-128, 127))
def test_at_most_one_lsb_from_gemmlowp(acc, scale, zp):
    m, shift = quantize_multiplier(scale)
    a = np.array([acc], dtype=np.int32)
    ours = int(requantize(a, m, shift, zero_point=zp, out_bits=16)[0])
    theirs = int(requantize_gemmlowp(a, m, shift, zero_point=zp, out_bits=16)[0])
    assert abs(ours - theirs) <= 1


def test_gemmlowp_differs_on_negative_ties_and_double_rounding():
    # A negative tie: ours rounds half up (-2.5 -> -2), gemmlowp's RoundingDivideByPOT half away from zero (-> -3).
    m, shift = quantize_multiplier(0.25)
    a = np.array([-10], dtype=np.int32)
    assert int(requantize(a, m, shift)[0]) == -2 and int(requantize_gemmlowp(a, m, shift)[0]) == -3
    # Double rounding away from ties: random accumulators agree except in rare near-tie cases.
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 31), (1 << 31) - 1, size=200_000, dtype=np.int64).astype(np.int32)
    m, shift = quantize_multiplier(0.3217)
    diff = requantize(acc, m, shift, out_bits=16).astype(np.int64) - requantize_gemmlowp(
        acc, m, shift, out_bits=16).astype(np.int64)
    assert np.abs(diff).max() <= 1
    assert (diff == 0).mean() > 0.99


def test_gemmlowp_left_shift_path():
    m, shift = quantize_multiplier(3.0)  # shift < 0: left shift by 2 in gemmlowp
    acc = np.array([-1000, 0, 7, 1000], dtype=np.int32)
    assert requantize_gemmlowp(acc, m, shift, out_bits=16).tolist() == [-3000, 0, 21, 3000]
    assert requantize(acc, m, shift, out_bits=16).tolist() == [-3000, 0, 21, 3000]
    with pytest.raises(ValueError, match="int32"):
        requantize_gemmlowp(np.array([1 << 30], dtype=np.int32), m, shift)


@pytest.mark.parametrize("kwargs,match", [
    (dict(acc=np.array([1.0]), multiplier=1 << 30, shift=0), "acc.*integer dtype"),
    (dict(acc=np.array([1 << 31], dtype=np.int64), multiplier=1 << 30, shift=0), r"acc.*\[-2147483648, 2147483647\]"),
    (dict(acc=np.array([1], dtype=np.int32), multiplier=1 << 29, shift=0), r"multiplier.*\[1073741824"),
    (dict(acc=np.array([1], dtype=np.int32), multiplier=1 << 30, shift=32), r"shift.*\[-30, 31\]"),
    (dict(acc=np.array([1], dtype=np.int32), multiplier=1 << 30, shift=0, zero_point=200), r"zero_point.*\[-128, 127\]"),
    (dict(acc=np.array([1], dtype=np.int32), multiplier=1 << 30, shift=0, out_bits=4), "out_bits"),
    (dict(acc=np.zeros((2, 3), dtype=np.int32), multiplier=np.full(2, 1 << 30), shift=0), "multiplier.*last axis"),
])
def test_requantize_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        requantize(**kwargs)
