"""golden.norms: exact isqrt/reciprocal, integer LayerNorm/RMSNorm vs float twins."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.norms import (NORM_FRAC_BITS, NORM_MAX_D, isqrt, layernorm, layernorm_normalized, layernorm_params,
                          reciprocal, rmsnorm, rmsnorm_normalized, rmsnorm_params)
from npuforge.golden.quant import calibrate_activation_scale, quantize_activation
from npuforge.golden.reference import (float_layernorm, float_layernorm_normalized, float_rmsnorm,
                              float_rmsnorm_normalized)

ONE = 1 << NORM_FRAC_BITS


# ------------------------------------------------------------------ isqrt / reciprocal

@settings(deadline=None)
@given(st.integers(0, (1 << 63) - 1))
def test_isqrt_exact_random(n):
    assert isqrt(n) == math.isqrt(n)


def test_isqrt_boundaries_vectorised():
    ks = np.array([1, 2, 3, 15, 16, 255, 65535, 2**20 + 7, 2**30, 2**31 - 1, 3037000499], dtype=np.int64)
    squares = ks * ks
    n = np.concatenate([squares - 1, squares, squares + 1,
                        np.array([0, 1, 2, 3, 2**62 - 1, 2**62, 2**63 - 1], dtype=np.int64)])
    got = isqrt(n)
    assert got.dtype == np.int64
    assert got.tolist() == [math.isqrt(int(v)) for v in n]
    assert isqrt(2**62 - 1) == 2**31 - 1 and isqrt(2**63 - 1) == 3037000499


def test_isqrt_random_array():
    rng = np.random.default_rng(5)
    n = rng.integers(0, 2**63 - 1, size=2000, dtype=np.int64) >> rng.integers(0, 63, size=2000)
    assert isqrt(n).tolist() == [math.isqrt(int(v)) for v in n]


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5])
def test_isqrt_rejects(bad):
    with pytest.raises(ValueError, match="n must"):
        isqrt(bad)
    with pytest.raises(ValueError, match="n must"):
        isqrt(np.array([-1], dtype=np.int64))


@settings(deadline=None)
@given(st.integers(1, (1 << 63) - 1), st.integers(0, 62))
def test_reciprocal_exact(d, f):
    assert reciprocal(d, f) == (1 << f) // d
    assert int(reciprocal(np.array([d], dtype=np.int64), f)[0]) == (1 << f) // d


def test_reciprocal_rejects():
    with pytest.raises(ValueError, match=r"d must be in \[1"):
        reciprocal(0, 10)
    with pytest.raises(ValueError, match=r"frac_bits must be in \[0, 62\]"):
        reciprocal(3, 63)


# ------------------------------------------------------------------ accuracy vs float twins

def _gauss_rows(rng, rows, d, bits, outlier=False):
    x = rng.normal(0.3, 1.7, size=(rows, d))
    if outlier:
        x[:, 7] = 40.0  # one large channel, as in real LLM activations
    scale = calibrate_activation_scale(x, bits=bits)
    return x, quantize_activation(x, scale, bits=bits), scale


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("d", [1, 3, 64, 768, NORM_MAX_D])
def test_normalized_value_matches_float_on_same_integers(bits, d):
    """Kernel precision: y (Q.16) vs float (x - mean)/sqrt(var + eps) of the very same integer inputs."""
    rng = np.random.default_rng(bits * 10007 + d)
    rows = 4 if d == NORM_MAX_D else 16
    _, q, s = _gauss_rows(rng, rows, d, bits, outlier=d > 8)
    for eps in (1e-5, 0.0):
        p = layernorm_params(s, np.ones(d), np.zeros(d), 0.05, input_bits=bits, eps=eps)
        y = layernorm_normalized(q, p) / ONE
        want = float_layernorm_normalized(q.astype(np.float64) * s, eps=eps)
        assert np.abs(y - want).max() <= 1e-5
        pr = rmsnorm_params(s, np.ones(d), 0.05, input_bits=bits, eps=eps)
        yr = rmsnorm_normalized(q, pr) / ONE
        wantr = float_rmsnorm_normalized(q.astype(np.float64) * s, eps=eps)
        assert np.abs(yr - wantr).max() <= 1e-5


@pytest.mark.parametrize("bits,target", [(16, 1e-3), (8, 2e-2)])
def test_normalized_error_targets_vs_float_input(bits, target):
    """End to end in normalized units: quantize float x to `bits`, normalize in integers, compare with the
    float norm of the unquantized x. Targets from the issue: 1e-3 (16-bit), 2e-2 (8-bit).

    For int8 this error is almost all input quantization (0.5 LSB / std in LSB, ~0.016 for max-calibrated
    Gaussian rows with std ~ 32 LSB), not the kernel (7.6e-6, see the test above); with more samples per tensor
    the max grows, std in LSB shrinks and the error rises (2.2e-2 at 16 x 8192 samples)."""
    rng = np.random.default_rng(bits)
    for d in (768, 4096):
        x, q, s = _gauss_rows(rng, 8, d, bits)
        p = layernorm_params(s, np.ones(d), np.zeros(d), 0.05, input_bits=bits, eps=1e-5)
        err_ln = np.abs(layernorm_normalized(q, p) / ONE - float_layernorm_normalized(x, eps=1e-5)).max()
        pr = rmsnorm_params(s, np.ones(d), 0.05, input_bits=bits, eps=1e-6)
        err_rms = np.abs(rmsnorm_normalized(q, pr) / ONE - float_rmsnorm_normalized(x, eps=1e-6)).max()
        assert err_ln <= target and err_rms <= target, (d, err_ln, err_rms)


@pytest.mark.parametrize("bits", [8, 16])
def test_layernorm_rmsnorm_outputs_within_half_lsb_plus_margin(bits):
    """Final int8 output vs the float LayerNorm/RMSNorm of the same integer inputs, in output LSB."""
    rng = np.random.default_rng(100 + bits)
    d = 512
    _, q, s = _gauss_rows(rng, 16, d, bits, outlier=True)
    gamma = rng.normal(1.0, 0.3, size=d)
    gamma[:4] = [0.0, -0.7, 1e-4, 2.5]
    beta = rng.normal(0.0, 0.2, size=d)
    out_scale = 6.0 / 127
    x_real = q.astype(np.float64) * s
    p = layernorm_params(s, gamma, beta, out_scale, input_bits=bits, eps=1e-12)
    got = layernorm(q, p)
    assert got.dtype == np.int8
    want = np.asarray(float_layernorm(x_real, gamma, beta, eps=1e-12), np.float64) / out_scale
    assert np.abs(got - np.clip(want, -128, 127)).max() <= 0.5 + 0.01
    pr = rmsnorm_params(s, gamma, out_scale, input_bits=bits, eps=1e-6)
    got_r = rmsnorm(q, pr)
    want_r = np.asarray(float_rmsnorm(x_real, gamma, eps=1e-6), np.float64) / out_scale
    assert np.abs(got_r - np.clip(want_r, -128, 127)).max() <= 0.5 + 0.01
    # int16 outputs at a 64x finer scale: the same bound in their own LSB
    p16 = layernorm_params(s, gamma, beta, out_scale / 64, input_bits=bits, eps=1e-12, out_bits=16)
    got16 = layernorm(q, p16)
    assert got16.dtype == np.int16
    # plus the Q.16 rounding of the normalized value, amplified by |gamma| / out_scale: 2^-17 * max|G| per unit
    y_rounding = 2.0 ** -(NORM_FRAC_BITS + 1) * np.abs(gamma).max() / (out_scale / 64)
    assert np.abs(got16 - np.clip(want * 64, -32768, 32767)).max() <= 0.5 + 0.01 + y_rounding


def test_edge_rows():
    d = 16
    p = layernorm_params(1.0, np.ones(d), np.full(d, 0.5), 0.25, input_bits=8, eps=0.0)
    # constant row with eps = 0: no spread -> normalized 0 -> output = beta / out_scale = 2
    assert layernorm(np.full((1, d), -128, np.int8), p).tolist() == [[2] * d]
    # extreme two-valued row: normalized values are exactly +-1
    row = np.array([[-128, 127] * (d // 2)], dtype=np.int8)
    assert layernorm_normalized(row, p).tolist() == [[-ONE, ONE] * (d // 2)]
    # one outlier among zeros: (D - 1) / sqrt(D - 1) = sqrt(D - 1) for the outlier
    row = np.zeros((1, d), np.int16)
    row[0, 3] = -32768
    pd = layernorm_params(1.0, np.ones(d), np.zeros(d), 1.0, input_bits=16, eps=0.0)
    y = layernorm_normalized(row, pd)
    assert int(y[0, 3]) == -round(math.sqrt(d - 1) * ONE)
    pr = rmsnorm_params(1.0, np.ones(d), 1.0, input_bits=16, eps=0.0)
    assert int(rmsnorm_normalized(row, pr)[0, 3]) == -round(math.sqrt(d) * ONE)
    assert rmsnorm(np.zeros((2, d), np.int8), rmsnorm_params(1.0, np.ones(d), 1.0, eps=0.0)).tolist() == [[0] * d] * 2


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 300), bits=st.sampled_from([8, 16]))
def test_norms_random_rows_precision(seed, d, bits):
    rng = np.random.default_rng(seed)
    hi = 1 << (bits - 1)
    q = rng.integers(-hi, hi, size=(3, d)).astype(np.int16 if bits == 16 else np.int8)
    q[1] = np.clip(q[1] >> rng.integers(0, bits), -hi, hi - 1)  # rows of small spread too
    p = layernorm_params(0.01, np.ones(d), np.zeros(d), 0.05, input_bits=bits, eps=1e-9)
    y = layernorm_normalized(q, p) / ONE
    assert np.abs(y - float_layernorm_normalized(q * 0.01, eps=1e-9)).max() <= 1e-5


@pytest.mark.parametrize("call,match", [
    (lambda: layernorm_params(0.0, np.ones(4), np.zeros(4), 1.0), "in_scale must be a finite positive"),
    (lambda: layernorm_params(1.0, np.ones(4), np.zeros(4), float("nan")), "out_scale must be a finite positive"),
    (lambda: layernorm_params(1.0, np.ones(4), np.zeros(3), 1.0), "beta must have the shape"),
    (lambda: layernorm_params(1.0, np.ones(NORM_MAX_D + 1), np.zeros(NORM_MAX_D + 1), 1.0), r"D in \[1, 8192\]"),
    (lambda: layernorm_params(1.0, np.ones(4), np.zeros(4), 1.0, input_bits=32), "input_bits must be one of"),
    (lambda: layernorm_params(1.0, np.ones(4), np.zeros(4), 1.0, eps=-1.0), "eps must be"),
    (lambda: rmsnorm_params(1e-9, np.ones(4), 1.0, eps=1.0), "in_scale"),
    (lambda: rmsnorm_params(1.0, np.array([np.nan]), 1.0), "gamma must contain only finite"),
    (lambda: layernorm(np.zeros((2, 4), np.float32), layernorm_params(1.0, np.ones(4), np.zeros(4), 1.0)),
     "x must have an integer dtype"),
    (lambda: layernorm(np.zeros((2, 5), np.int8), layernorm_params(1.0, np.ones(4), np.zeros(4), 1.0)),
     "last axis must be D=4"),
    (lambda: rmsnorm(np.full((2, 4), 300, np.int16), rmsnorm_params(1.0, np.ones(4), 1.0)),
     r"x values must be in \[-128, 127\]"),
    (lambda: rmsnorm(np.zeros((2, 4), np.int8), layernorm_params(1.0, np.ones(4), np.zeros(4), 1.0)),
     "params must be a RMSNormParams"),
])
def test_norms_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("bits", [8, 16])
def test_worst_case_widths_do_not_overflow(bits):
    """Largest variance / mean square at D = 8192 with a large eps term: the int64 datapath must stay exact."""
    d = NORM_MAX_D
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    rows = np.stack([np.tile([lo, hi], d // 2), np.full(d, lo), np.full(d, hi),
                     np.where(np.arange(d) == 0, lo, hi)]).astype(np.int16 if bits == 16 else np.int8)
    s = 1.0 / (1 << (bits - 1))
    for eps in (0.0, 1e-5, 0.5):
        p = layernorm_params(s, np.ones(d), np.zeros(d), 0.05, input_bits=bits, eps=eps)
        assert p.var_frac_bits == {8: 20, 16: 4}[bits]
        y = layernorm_normalized(rows, p) / ONE
        assert np.abs(y - float_layernorm_normalized(rows * s, eps=eps)).max() <= 1e-5
        pr = rmsnorm_params(s, np.ones(d), 0.05, input_bits=bits, eps=eps)
        yr = rmsnorm_normalized(rows, pr) / ONE
        assert np.abs(yr - float_rmsnorm_normalized(rows * s, eps=eps)).max() <= 1e-5
