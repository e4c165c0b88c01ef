"""Requantization int32 -> int8 / int16: Q31 multiplier, one rounding step, zero point, saturation.

Host side (floats allowed)
--------------------------
``quantize_multiplier(real_scale) -> (multiplier, shift)`` writes a positive real scale as

    real_scale ~= multiplier * 2^-(31 + shift),   multiplier in [2^30, 2^31 - 1]  (Q31, 31-bit unsigned),
                                                   total right shift t = 31 + shift in [1, 62].

``multiplier = round(m * 2^31)`` of the mantissa ``m`` in [0.5, 1) of ``real_scale``, so its relative error is at
most 2^-31. Representable scales: 2^-32 <= real_scale < 2^30 (anything else raises ``ValueError``).

Kernel (integers only) -- what the RTL implements
-------------------------------------------------
Per element, with M and t taken per output channel (broadcast along the last axis):

    acc      : signed 32 bit                           (input, GEMM accumulator)
    product  = acc * M                                 signed 63 bit (|acc| <= 2^31, M < 2^31)
    rounded  = (product + 2^(t - 1)) >> t              arithmetic (floor) shift: ONE round-half-up step,
                                                       |rounded| <= 2^31 (fits 33-bit signed)
    y        = clamp(rounded + zero_point, -2^(b-1), 2^(b-1) - 1)   b = out_bits (8 or 16)

Round half up means a tie goes towards +inf (-2.5 -> -2, 2.5 -> 3).

Relation to gemmlowp / TFLite (``requantize_gemmlowp``)
------------------------------------------------------
gemmlowp rounds twice: ``SaturatingRoundingDoublingHighMul`` rounds acc*M/2^31 to the nearest integer, then
``RoundingDivideByPOT`` rounds that divided by 2^shift to the nearest integer (ties away from zero). With x = acc*M/2^t the exact value,
ours is within 1/2 of x, gemmlowp's within 1/2 + 2^-(shift+1) < 1 of x, so the two integers differ by at most 1 LSB
(before saturation; saturation can only shrink the gap). They are equal except near ties.
"""

from __future__ import annotations

import math

import numpy as np

from npuforge.golden._checks import check_choice, check_int, check_int_array, check_scale, int_range

# Q31 multiplier range and the shift window (total right shift 31 + shift in [1, 62]), shared with the RTL.
from npuforge.spec.vector_ops import Q31_MAX, Q31_MIN, SHIFT_MAX, SHIFT_MIN
MIN_REAL_SCALE = 2.0 ** -32
MAX_REAL_SCALE = 2.0 ** 30

_OUT_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """Q31 multiplier and shift with ``real_scale ~= multiplier * 2^-(31 + shift)`` (relative error <= 2^-31)."""
    scale = check_scale("real_scale", real_scale)
    mantissa, exponent = math.frexp(scale)  # scale = mantissa * 2^exponent, mantissa in [0.5, 1)
    multiplier = round(mantissa * (1 << 31))
    if multiplier == 1 << 31:  # mantissa rounded up to 1.0
        multiplier, exponent = 1 << 30, exponent + 1
    shift = -exponent
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise ValueError(f"real_scale must be in [2^-32, 2^30) = [{MIN_REAL_SCALE:.3g}, {MAX_REAL_SCALE:.3g}) "
                         f"to fit a Q31 multiplier with a right shift of 1..62, got {real_scale!r}")
    return multiplier, shift


def quantize_multipliers(real_scales) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel version of :func:`quantize_multiplier`: int64 arrays (multiplier, shift) of the input shape."""
    scales = np.asarray(real_scales, dtype=np.float64)
    pairs = [quantize_multiplier(s) for s in scales.ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int64).reshape(scales.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(scales.shape)
    return mult, shift


def _check_mult_shift(acc_shape, multiplier, shift) -> tuple[np.ndarray, np.ndarray]:
    mult = np.asarray(multiplier)
    sh = np.asarray(shift)
    for name, arr, lo, hi in (("multiplier", mult, Q31_MIN, Q31_MAX), ("shift", sh, SHIFT_MIN, SHIFT_MAX)):
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer (or integer array), got dtype {arr.dtype}")
        if arr.ndim > 1:
            raise ValueError(f"{name} must be a scalar or a per-channel vector [N], got shape {arr.shape}")
        if arr.ndim == 1 and (len(acc_shape) == 0 or arr.shape[0] != acc_shape[-1]):
            raise ValueError(f"{name} per-channel length must equal acc's last axis "
                             f"({acc_shape[-1] if acc_shape else 'scalar acc'}), got {arr.shape[0]}")
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            bad = int(arr.min()) if int(arr.min()) < lo else int(arr.max())
            raise ValueError(f"{name} must be in [{lo}, {hi}], got {bad}")
    return mult.astype(np.int64), sh.astype(np.int64)


def requantize(acc, multiplier, shift, *, zero_point: int = 0, out_bits: int = 8) -> np.ndarray:
    """int32 accumulators -> int8/int16/int32: ``clamp(((acc*M + 2^(t-1)) >> t) + zero_point)`` with t = 31 + shift.

    ``acc``: integer array with values in the int32 range. ``multiplier``/``shift``: scalars or per-channel
    vectors along the last axis (from :func:`quantize_multiplier`). Returns int8 (out_bits=8), int16 (16) or int32
    (32: the int32 scores / residual formats of golden.models, saturated to int32 like the narrower widths).
    """
    check_choice("out_bits", out_bits, (8, 16, 32))
    acc64 = check_int_array("acc", acc, 32)
    lo, hi = int_range(out_bits)
    zp = check_int("zero_point", zero_point, lo, hi)
    mult, sh = _check_mult_shift(acc64.shape, multiplier, shift)
    total = sh + 31
    # acc*M < 2^62 and the rounding term < 2^61, so int64 never overflows.
    rounded = (acc64 * mult + (np.int64(1) << (total - 1))) >> total
    return np.clip(rounded + zp, lo, hi).astype(_OUT_DTYPES[out_bits])


def requantize_biased(acc, bias, multiplier, shift, *, zero_point: int = 0, out_bits: int = 8) -> np.ndarray:
    """:func:`requantize` of ``acc + bias`` computed in 33 bits (no wrap, no saturation before the multiply).

    ``acc``: int32 values [..., N]; ``bias``: int32 per channel [N] (a Linear's bias in accumulator units). Where
    ``acc + bias`` fits int32 (``golden.layers.linear_int`` refuses anything else) this is exactly
    ``requantize(acc + bias, ...)``; beyond, the sum keeps its 33rd bit: |acc + bias| <= 2^32, so
    ``(acc + bias) * M`` < 2^63 and the single rounding is taken as ``((p >> (t - 1)) + 1) >> 1`` (equal to
    ``(p + 2^(t-1)) >> t``, without the 64-bit overflow of the rounding constant). ``out_bits`` 8, 16 or 32.
    """
    check_choice("out_bits", out_bits, (8, 16, 32))
    acc64 = check_int_array("acc", acc, 32)
    b = check_int_array("bias", bias, 32)
    if b.ndim != 1 or acc64.ndim < 1 or b.shape[0] != acc64.shape[-1]:
        raise ValueError(f"bias must be a per-channel vector [N={acc64.shape[-1] if acc64.ndim else '?'}], "
                         f"got shape {b.shape}")
    lo, hi = int_range(out_bits)
    zp = check_int("zero_point", zero_point, lo, hi)
    mult, sh = _check_mult_shift(acc64.shape, multiplier, shift)
    total = sh + 31
    product = (acc64 + b) * mult
    rounded = ((product >> (total - 1)) + 1) >> 1
    return np.clip(rounded + zp, lo, hi).astype(_OUT_DTYPES[out_bits])


def _saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64 (C truncating division)."""
    overflow = (a == -(1 << 31)) & (b == -(1 << 31))
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    num = ab + nudge
    # C integer division truncates toward zero; NumPy // floors, so fix the sign.
    high = np.where(num >= 0, num >> 31, -((-num) >> 31))
    return np.where(overflow, np.int64((1 << 31) - 1), high)


def _rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize_gemmlowp(acc, multiplier, shift, *, zero_point: int = 0, out_bits: int = 8) -> np.ndarray:
    """TFLite/gemmlowp ``MultiplyByQuantizedMultiplier`` + zero point + saturation (double rounding).

    For ``shift < 0`` gemmlowp first shifts acc left by -shift; that must fit int32, otherwise ``ValueError``.
    Only for comparison with :func:`requantize` (differs by at most 1 LSB); the NPU implements ``requantize``.
    """
    check_choice("out_bits", out_bits, (8, 16))
    acc64 = check_int_array("acc", acc, 32)
    lo, hi = int_range(out_bits)
    zp = check_int("zero_point", zero_point, lo, hi)
    mult, sh = _check_mult_shift(acc64.shape, multiplier, shift)
    left = np.maximum(-sh, 0)
    right = np.maximum(sh, 0)
    shifted = acc64 << left
    if shifted.size and (shifted.min() < -(1 << 31) or shifted.max() > (1 << 31) - 1):
        raise ValueError("acc << -shift must stay in the int32 range for the gemmlowp reference "
                         f"(range [-2^31, 2^31 - 1]), got {int(np.abs(shifted).max())}")
    high = _saturating_rounding_doubling_high_mul(shifted, np.broadcast_to(mult, shifted.shape))
    rounded = _rounding_divide_by_pot(high, np.broadcast_to(right, shifted.shape))
    return np.clip(rounded + zp, lo, hi).astype(_OUT_DTYPES[out_bits])

