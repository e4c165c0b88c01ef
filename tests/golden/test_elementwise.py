"""golden.elementwise: residual add with two scales, SwiGLU gate multiply, RoPE with an integer table."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.elementwise import (gate_mul, gate_params, residual_add, residual_params, rope, rope_table)
from npuforge.golden.reference import float_gate_mul, float_residual_add, float_rope, rope_angles

I8 = st.integers(-128, 127)
SCALE = st.floats(min_value=1e-3, max_value=10.0, allow_nan=False)


@settings(deadline=None, max_examples=200)
@given(a=I8, b=I8, sa=SCALE, sb=SCALE, so=SCALE)
def test_residual_add_one_rounding(a, b, sa, sb, so):
    p = residual_params(sa, sb, so)
    got = int(residual_add(np.array([a], np.int8), np.array([b], np.int8), p)[0])
    exact = (a * sa + b * sb) / so
    # 0.5 LSB rounding + the 2^-31 relative multiplier error of both terms
    slack = (abs(a) * sa + abs(b) * sb) / so * 2.0 ** -30 + 1e-9
    if -128 <= exact <= 127:
        assert abs(got - exact) <= 0.5 + slack
    else:
        assert got == (127 if exact > 0 else -128)


def test_residual_add_vs_float_twin_and_int16():
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, size=(4, 64)).astype(np.int8)
    b = rng.integers(-128, 128, size=(4, 64)).astype(np.int8)
    sa, sb, so = 0.02, 0.07, 0.1
    want = float_residual_add(a * sa, b * sb) / so
    got = residual_add(a, b, residual_params(sa, sb, so))
    assert got.dtype == np.int8
    assert np.abs(got - np.clip(want, -128, 127)).max() <= 0.5 + 1e-5
    got16 = residual_add(a.astype(np.int16), b.astype(np.int16), residual_params(sa, sb, so / 100, out_bits=16))
    assert got16.dtype == np.int16
    assert np.abs(got16 - want * 100).max() <= 0.5 + 1e-3
    # exact ties round half up: 1*0.5 + 0*x = 0.5 -> 1, -1*0.5 = -0.5 -> 0
    p = residual_params(0.5, 0.25, 1.0)
    assert residual_add(np.array([1, -1, -3], np.int8), np.array([0, 0, 0], np.int8), p).tolist() == [1, 0, -1]


@settings(deadline=None, max_examples=200)
@given(a=I8, b=I8, sa=SCALE, sb=SCALE, so=SCALE)
def test_gate_mul_one_rounding(a, b, sa, sb, so):
    p = gate_params(sa, sb, so)
    got = int(gate_mul(np.array([a], np.int8), np.array([b], np.int8), p)[0])
    exact = a * b * sa * sb / so
    slack = abs(exact) * 2.0 ** -30 + 1e-9
    if -128 <= exact <= 127:
        assert abs(got - exact) <= 0.5 + slack
    else:
        assert got == (127 if exact > 0 else -128)


def test_gate_mul_vs_float_twin():
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, size=(8, 32)).astype(np.int8)
    b = rng.integers(-128, 128, size=(8, 32)).astype(np.int8)
    want = float_gate_mul(a * 0.03, b * 0.05) / 0.2
    got = gate_mul(a, b, gate_params(0.03, 0.05, 0.2))
    assert np.abs(got - np.clip(want, -128, 127)).max() <= 0.5 + 1e-4
    assert gate_mul(np.array([-128], np.int16), np.array([-128], np.int16), gate_params(1, 1, 1, out_bits=16)).tolist() == [16384]


def test_rope_table_precision_and_shape():
    cos, sin = rope_table(64, 128)
    assert cos.dtype == np.int16 and cos.shape == (128, 32) and sin.shape == (128, 32)
    theta = rope_angles(64, np.arange(128))
    assert np.abs(cos / 2**14 - np.cos(theta)).max() <= 2.0 ** -15
    assert np.abs(sin / 2**14 - np.sin(theta)).max() <= 2.0 ** -15
    assert cos[0].tolist() == [16384] * 32 and sin[0].tolist() == [0] * 32


@pytest.mark.parametrize("head_dim", [2, 64, 128])
def test_rope_matches_float_hf_rotate_half(head_dim):
    rng = np.random.default_rng(head_dim)
    positions = np.array([0, 1, 5, 100, 2047])
    cos, sin = rope_table(head_dim, 2048, base=500000.0 if head_dim == 128 else 10000.0)
    base = 500000.0 if head_dim == 128 else 10000.0
    x = rng.integers(-90, 90, size=(2, 3, positions.size, head_dim)).astype(np.int8)  # |pair| < 128: no saturation
    got = rope(x, positions, cos, sin)
    want = float_rope(x.astype(np.float64), positions, base=base)
    x1, x2 = np.abs(x[..., : head_dim // 2]).astype(float), np.abs(x[..., head_dim // 2:]).astype(float)
    bound = 0.5 + np.concatenate([x1 + x2, x1 + x2], axis=-1) * 2.0 ** -15 + 1e-4
    assert np.all(np.abs(got - want) <= bound)
    # position 0 is the identity
    assert np.array_equal(rope(x[..., :1, :], np.array([0]), cos, sin), x[..., :1, :])


def test_rope_saturates_int8_and_int16_keeps_it():
    cos, sin = rope_table(2, 64, base=1.0)  # head_dim 2: theta = p radians
    x = np.array([[127, -127]], np.int8)
    # the position whose angle is closest to 45 degrees (mod 2 pi) grows |out[0]| = 127 (cos + sin) the most
    pos = int(np.argmax(np.cos(np.arange(64)) + np.sin(np.arange(64))))
    out16 = rope(x, np.array([pos]), cos, sin, out_bits=16)
    want = 127 * (math.cos(pos) + math.sin(pos))
    assert want > 170 and abs(int(out16[0, 0]) - want) <= 0.51
    assert rope(x, np.array([pos]), cos, sin)[0, 0] == 127  # saturated in int8


@pytest.mark.parametrize("call,match", [
    (lambda: residual_params(0.0, 1.0, 1.0), "a_scale must be a finite positive"),
    (lambda: residual_params(1.0, float("nan"), 1.0), "b_scale must be a finite positive"),
    (lambda: gate_params(1.0, 1.0, -2.0), "out_scale must be a finite positive"),
    (lambda: gate_params(1e6, 1e6, 1e-6), r"a_scale \* b_scale / out_scale must be in"),
    (lambda: residual_add(np.zeros(3, np.int8), np.zeros(4, np.int8), residual_params(1, 1, 1)), "same shape"),
    (lambda: residual_add(np.zeros(3), np.zeros(3, np.int8), residual_params(1, 1, 1)), "a must have an integer dtype"),
    (lambda: gate_mul(np.zeros(3, np.int8), np.full(3, 40000, np.int32), gate_params(1, 1, 1)),
     r"b values must be in \[-32768, 32767\]"),
    (lambda: rope_table(63, 10), "head_dim must be even"),
    (lambda: rope_table(64, 0), r"max_positions must be in \[1"),
    (lambda: rope_table(64, 10, frac_bits=15), r"frac_bits must be in \[1, 14\]"),
    (lambda: rope(np.zeros((2, 8), np.int8), np.array([0, 10]), *rope_table(8, 10)), r"positions must be in \[0, 9\]"),
    (lambda: rope(np.zeros((2, 8), np.int8), np.array([0, 1]), *rope_table(6, 10)), "cos must be an int16 table"),
    (lambda: rope(np.zeros((2, 8), np.float32), np.array([0, 1]), *rope_table(8, 10)), "x must have an integer dtype"),
    (lambda: rope(np.zeros((2, 8), np.int8), np.array([0, 1, 2]), *rope_table(8, 10)), "must broadcast"),
])
def test_elementwise_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
