"""golden.activations: GELU/SiLU int8 tables (the rounded float function), lookup, I-BERT i-GELU."""

import math

import numpy as np
import pytest

from npuforge.golden.activations import gelu_table, i_gelu, i_gelu_kernel, i_gelu_params, lookup, silu_table
from npuforge.golden.reference import erf, float_gelu, float_silu

SCALES = [(6 / 127, 6 / 127), (4 / 127, 0.02), (0.1, 0.05), (0.01, 0.001)]


def _gelu_exact(v):
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _silu_exact(v):
    return v / (1 + math.exp(-v))


@pytest.mark.parametrize("in_scale,out_scale", SCALES)
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_table_is_the_rounded_float_function(name, in_scale, out_scale):
    table = (gelu_table if name == "gelu" else silu_table)(in_scale, out_scale)
    fn = _gelu_exact if name == "gelu" else _silu_exact
    assert table.dtype == np.int8 and table.shape == (256,)
    for i in range(256):
        exact = fn((i - 128) * in_scale) / out_scale
        if -128 <= exact <= 127:
            assert abs(int(table[i]) - exact) <= 0.5 + 1e-9, (i, int(table[i]), exact)
        else:  # saturated entries: the float value is beyond the int8 range on that side
            assert int(table[i]) == (127 if exact > 127 else -128)


def test_lookup_indexes_by_x_plus_128():
    table = gelu_table(6 / 127, 6 / 127)
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    got = lookup(x, table)
    assert got.dtype == np.int8 and got.shape == x.shape
    assert np.array_equal(got.ravel(), table)
    # against the float twins (in float32) on the grid: same rounding except at exact ties
    ref = np.rint(float_gelu(x * (6 / 127)) / (6 / 127))
    assert np.abs(got - np.clip(ref, -128, 127)).max() <= 1
    silu = lookup(x, silu_table(8 / 127, 8 / 127))
    assert np.abs(silu * (8 / 127) - float_silu(x * (8 / 127))).max() <= 0.5 * 8 / 127 + 1e-6


def test_vectorised_erf_precision():
    v = np.linspace(-6, 6, 2001)
    assert max(abs(float(erf(t)) - math.erf(t)) for t in v) <= 1.3e-7


# bound: 0.02 from the erf polynomial; a coarse input step (0.1) adds the floor() of q_b and q_c
@pytest.mark.parametrize("bits,in_scale,bound", [(16, 10 / 32767, 0.02), (16, 4 / 32767, 0.02), (8, 6 / 127, 0.02),
                                                 (8, 0.1, 0.035)])
def test_i_gelu_error_bound(bits, in_scale, bound):
    x = np.arange(-(1 << (bits - 1)), 1 << (bits - 1)).astype(np.int16 if bits == 16 else np.int8)
    q, out_scale = i_gelu(x, in_scale, input_bits=bits)
    assert q.dtype == np.int64 and out_scale > 0
    err = np.abs(q * out_scale - float_gelu(x * in_scale))
    assert err.max() <= bound
    # the integer form matches I-BERT's real-valued polynomial closely (only the floor of constants differs)
    z = x * in_scale / math.sqrt(2)
    l_poly = np.sign(z) * (-0.2888 * (np.minimum(np.abs(z), 1.769) - 1.769) ** 2 + 1)
    assert np.abs(q * out_scale - x * in_scale * (1 + l_poly) / 2).max() <= 2 * in_scale + 1e-3


def test_i_gelu_kernel_reuses_params_and_rejects_bad_input():
    p = i_gelu_params(0.01)
    assert np.array_equal(i_gelu_kernel(np.array([0, 5, -5], np.int16), p), i_gelu(np.array([0, 5, -5], np.int16), 0.01)[0])
    with pytest.raises(ValueError, match="in_scale must be a finite positive"):
        i_gelu_params(-1.0)
    with pytest.raises(ValueError, match="fit 62 bits"):
        i_gelu_params(1e-9)
    with pytest.raises(ValueError, match=r"x values must be in \[-128, 127\]"):
        i_gelu(np.array([200], np.int16), 0.1, input_bits=8)
    with pytest.raises(ValueError, match="x must have an integer dtype"):
        i_gelu(np.array([0.5]), 0.1)
    with pytest.raises(ValueError, match="params must be an IGeluParams"):
        i_gelu_kernel(np.array([1], np.int16), 0.1)


@pytest.mark.parametrize("call,match", [
    (lambda: gelu_table(0.0, 1.0), "in_scale must be a finite positive"),
    (lambda: silu_table(1.0, float("nan")), "out_scale must be a finite positive"),
    (lambda: lookup(np.array([1.0]), gelu_table(0.1, 0.1)), "x must have an integer dtype"),
    (lambda: lookup(np.array([128], np.int16), gelu_table(0.1, 0.1)), r"x values must be in \[-128, 127\]"),
    (lambda: lookup(np.array([1], np.int8), np.zeros(255, np.int8)), r"table must be an int8 array of shape \(256,\)"),
])
def test_tables_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
