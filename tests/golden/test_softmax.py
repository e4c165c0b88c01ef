"""golden.softmax: integer I-BERT-style softmax vs the float softmax, row sums, causal mask, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.reference import float_softmax
from npuforge.golden.softmax import (EXP_C1, EXP_C2, SOFTMAX_MAX_LEN, SOFTMAX_OUT_SCALE, exp2_poly, softmax,
                            softmax_params)


def _quantize16(x):
    s = float(np.abs(x).max()) / 32767 or 1.0
    return np.clip(np.rint(x / s), -32768, 32767).astype(np.int16), s


def test_exp2_polynomial_spread():
    """The only approximation: P(g) / 2^-g must stay within a 0.35 % band (a common factor cancels)."""
    g = np.arange(1 << 15, dtype=np.int64)
    p = exp2_poly(g)
    ratio = p / 2.0 ** 15 / 2.0 ** (-g / 2.0 ** 15)
    assert int(p[0]) == 1 << 15 and p.max() == 1 << 15 and p.min() > 1 << 14
    assert ratio.max() / ratio.min() < 1.0036
    # decreasing like 2^-g up to the 1-LSB wiggle of the truncating shifts (slope ~0.35 LSB per step of g)
    assert np.all(np.diff(p) <= 1) and np.all(p[::64][1:] < p[::64][:-1])
    assert (EXP_C1, EXP_C2) == (round(-0.66716 * 2**15), round(0.16888 * 2**15))


@pytest.mark.parametrize("length", [1, 2, 7, 64, 1024, SOFTMAX_MAX_LEN])
@pytest.mark.parametrize("spread", [0.5, 3.0, 12.0])
def test_softmax_16bit_max_error_below_target(length, spread):
    """Target from the issue: max abs error <= 0.005 in probability for 16-bit scores (measured vs float softmax
    of the same scores)."""
    rng = np.random.default_rng(length * 31 + int(spread * 10))
    rows = max(1, 2048 // length)
    x = rng.normal(0, spread, size=(rows, length))
    x[:, rng.integers(0, length)] += 2 * spread  # a peaked row, as in attention
    q, s = _quantize16(x)
    got = softmax(q, softmax_params(s)).astype(np.float64) * SOFTMAX_OUT_SCALE
    want = float_softmax(q.astype(np.float64) * s)
    assert np.abs(got - want).max() <= 0.005
    assert np.abs(got - want).max() <= 0.003  # what the module docstring promises


def test_softmax_adversarial_two_element_rows():
    """Two-element rows sweep every difference d: the polynomial error is largest near p = 1/2."""
    s = 8.0 / 32767
    d = np.arange(0, 32768, 7, dtype=np.int64)
    q = np.stack([np.zeros_like(d), -d], axis=-1).astype(np.int16)
    got = softmax(q, softmax_params(s)).astype(np.float64) / 255
    want = float_softmax(q.astype(np.float64) * s)
    assert np.abs(got - want).max() <= 0.003


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 300), scale_exp=st.integers(-14, -2),
       bits=st.sampled_from([8, 16, 32]))
def test_rows_sum_to_one_within_output_rounding(seed, length, scale_exp, bits):
    rng = np.random.default_rng(seed)
    hi = 1 << (bits - 1)
    q = rng.integers(-hi, hi, size=(3, length), dtype=np.int64)
    q[1] >>= bits // 2  # a flatter row
    s = 2.0 ** scale_exp if bits != 8 else 2.0 ** (scale_exp + 8)
    if bits == 32:
        s = max(s, 1e-8)
    p = softmax(q.astype({8: np.int8, 16: np.int16, 32: np.int32}[bits]), softmax_params(s, input_bits=bits))
    assert p.dtype == np.uint8
    sums = p.astype(np.int64).sum(axis=-1)
    assert np.all(np.abs(sums - 255) <= length / 2 + 0.01)
    want = float_softmax(q.astype(np.float64) * s)
    assert np.abs(p / 255.0 - want).max() <= 0.005


def test_known_rows():
    p = softmax_params(0.01)
    assert softmax(np.array([[0, -32768]], np.int16), p).tolist() == [[255, 0]]
    assert softmax(np.array([[5, 5, 5, 5]], np.int16), p).tolist() == [[64, 64, 64, 64]]
    assert softmax(np.array([7], np.int16), p).tolist() == [255]
    # 32-bit scores with huge differences: exp underflows to exactly 0, no overflow
    p32 = softmax_params(1e-3, input_bits=32)
    row = np.array([[2**31 - 1, -2**31, 0]], np.int32)
    assert softmax(row, p32).tolist() == [[255, 0, 0]]


def test_causal_mask_and_row_offset():
    rng = np.random.default_rng(9)
    q = rng.integers(-3000, 3000, size=(2, 5, 8)).astype(np.int16)
    s = 1e-3
    params = softmax_params(s)
    for offset in (0, 3):
        got = softmax(q, params, causal=True, row_offset=offset)
        i = np.arange(5)[:, None] + offset
        j = np.arange(8)[None, :]
        masked = np.broadcast_to(j > i, q.shape)
        assert np.all(got[masked] == 0)
        want = float_softmax(q.astype(np.float64) * s, causal=True, row_offset=offset)
        assert np.abs(got / 255.0 - want).max() <= 0.003
        # masked scores do not influence the result: overwrite them with the int16 max
        q2 = np.where(masked, np.int16(32767), q).astype(np.int16)
        assert np.array_equal(softmax(q2, params, causal=True, row_offset=offset), got)
    # decode: one query row against a cache of 8 keys, offset 7 -> nothing masked
    assert np.array_equal(softmax(q[:, -1:, :], params, causal=True, row_offset=7), softmax(q[:, -1:, :], params))
    # first row of a prefill sees only column 0
    assert softmax(q[:1, :1, :], params, causal=True)[0, 0].tolist() == [255] + [0] * 7


@pytest.mark.parametrize("call,match", [
    (lambda: softmax_params(0.0), "input_scale must be a finite positive"),
    (lambda: softmax_params(float("nan")), "input_scale must be a finite positive"),
    (lambda: softmax_params(1e6), "input_scale must be in"),
    (lambda: softmax_params(1e-12, input_bits=32), "input_scale must be >="),
    (lambda: softmax_params(0.1, input_bits=12), "input_bits must be one of"),
    (lambda: softmax(np.zeros((2, 3), np.float32), softmax_params(0.1)), "scores must have an integer dtype"),
    (lambda: softmax(np.full((1, 3), 40000, np.int32), softmax_params(0.1)), r"scores values must be in \[-32768"),
    (lambda: softmax(np.zeros((1, SOFTMAX_MAX_LEN + 1), np.int16), softmax_params(0.1)), r"L must be in \[1, 8192\]"),
    (lambda: softmax(np.zeros((1, 0), np.int16), softmax_params(0.1)), r"L must be in \[1, 8192\]"),
    (lambda: softmax(np.zeros((1, 3), np.int16), softmax_params(0.1), causal=True, row_offset=-1), "row_offset"),
    (lambda: softmax(np.zeros((1, 3), np.int16), 0.1), "params must be a SoftmaxParams"),
])
def test_softmax_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_out_scale_constant():
    assert math.isclose(SOFTMAX_OUT_SCALE, 1 / 255)
