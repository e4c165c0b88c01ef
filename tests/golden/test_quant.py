"""golden.quant: symmetric weight/activation quantization, int4 packing, dequantization."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.golden.quant import (QuantizedWeight, calibrate_activation_scale, dequantize_activation, dequantize_weight,
                          pack_int4, quantize_activation, quantize_weight, unpack_int4)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group_size", [None, 32, 64, 128])
def test_quantize_weight_error_within_half_step(bits, group_size):
    rng = np.random.default_rng(bits * 1000 + (group_size or 0))
    w = rng.normal(0, 0.02, size=(16, 256)).astype(np.float32)
    w[3] = 0.0  # an all-zero row must not produce NaN
    qw = quantize_weight(w, bits=bits, group_size=group_size)
    q_max = (1 << (bits - 1)) - 1
    assert qw.q.dtype == np.int8 and qw.q.shape == w.shape
    assert qw.q.min() >= -q_max and qw.q.max() <= q_max
    assert qw.scale.shape == ((16,) if group_size is None else (16, 256 // group_size))
    # every row/group uses the full range once (symmetric max calibration)
    groups = np.abs(qw.q.astype(int)).reshape(16, -1, group_size or 256).max(axis=2)
    assert (groups[np.arange(16) != 3] == q_max).all()
    deq = dequantize_weight(qw)
    assert deq.dtype == np.float32
    step = qw.scale_per_element()
    assert np.all(np.abs(deq - w) <= step / 2 * (1 + 1e-6) + 1e-12)
    assert np.all(deq[3] == 0)


def test_group_quantization_beats_per_channel_on_outliers():
    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.02, size=(8, 128))
    w[:, 5] = 1.0  # outlier column
    err_ch = np.abs(dequantize_weight(quantize_weight(w, bits=4)) - w).mean()
    err_g = np.abs(dequantize_weight(quantize_weight(w, bits=4, group_size=32)) - w).mean()
    assert err_g < err_ch / 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(w=np.zeros((4, 40)), group_size=32), "multiple of group_size"),
    (dict(w=np.zeros((4, 64)), group_size=16), "group_size must be one of"),
    (dict(w=np.zeros((4, 64)), bits=2), "bits must be one of"),
    (dict(w=np.zeros(64)), "at least 2"),
    (dict(w=np.full((2, 2), np.nan)), "finite"),
])
def test_quantize_weight_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_weight(**kwargs)


def test_quantized_weight_rejects_out_of_range_int4():
    with pytest.raises(ValueError, match=r"q values must be in \[-8, 7\]"):
        QuantizedWeight(q=np.full((2, 2), 8, np.int8), scale=np.ones(2), bits=4)


def test_activation_calibration_and_roundtrip():
    rng = np.random.default_rng(3)
    samples = [rng.normal(0, 1, size=(4, 32)) for _ in range(3)]
    amax = max(np.abs(s).max() for s in samples)
    scale = calibrate_activation_scale(samples)
    assert scale == pytest.approx(amax / 127, rel=1e-12)
    q = quantize_activation(samples[0], scale)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    assert np.abs(dequantize_activation(q, scale) - samples[0]).max() <= scale / 2 * (1 + 1e-6)
    # values beyond the calibrated range saturate at the int8 ends
    assert quantize_activation(np.array([1e9, -1e9]), scale).tolist() == [127, -128]
    assert quantize_activation(np.array([100.0]), 1.0, bits=16).dtype == np.int16
    assert quantize_activation(np.array([100.0, -100.0]), 1.0, bits=4).tolist() == [7, -8]
    assert calibrate_activation_scale(np.zeros(4)) == 1.0


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_activation_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale must be a finite positive"):
        quantize_activation(np.ones(3), scale)
    with pytest.raises(ValueError, match="scale must be a finite positive"):
        dequantize_activation(np.ones(3, np.int8), scale)


def test_pack_int4_nibble_order():
    assert pack_int4(np.array([1, -2], np.int8)).tolist() == [0xE1]
    assert pack_int4(np.array([-8, 7, 3], np.int8)).tolist() == [0x78, 0x03]
    assert unpack_int4(np.array([0xE1, 0x03], np.uint8), 3).tolist() == [1, -2, 3]


@settings(deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=1, max_size=33), st.integers(1, 3))
def test_pack_unpack_roundtrip(values, rows):
    q = np.array([values] * rows, dtype=np.int8)
    packed = pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == (rows, (len(values) + 1) // 2)
    assert np.array_equal(unpack_int4(packed, len(values)), q)


def test_pack_unpack_reject():
    with pytest.raises(ValueError, match=r"q values must be in \[-8, 7\]"):
        pack_int4(np.array([8], np.int8))
    with pytest.raises(ValueError, match="integer dtype"):
        pack_int4(np.array([1.0]))
    with pytest.raises(ValueError, match="packed must be a uint8"):
        unpack_int4(np.array([1], np.int8), 2)
    with pytest.raises(ValueError, match=r"n must be in \[3, 4\]"):
        unpack_int4(np.array([1, 2], np.uint8), 5)
