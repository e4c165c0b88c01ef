"""Integer softmax (I-BERT style exp), one exact division per row, 8-bit probabilities.

Scores x are signed integers of input_bits in {8, 16, 32} with real value x * input_scale; rows are the last axis,
1 <= L <= SOFTMAX_MAX_LEN = 8192. Output q uint8 [..., L] with probability q * SOFTMAX_OUT_SCALE = q / 255
(so a probability of 1.0 is exactly representable; rounding error <= 1/510 = 0.00196).

Host side
---------
``softmax_params(input_scale)``: (M, shift) = quantize_multiplier(input_scale * log2(e) * 2^15), t = 31 + shift.
This folds the I-BERT range reduction by ln 2 into ONE multiplication: exp(-d * s) = 2^-(d * s * log2 e).

Kernel (integers only) -- what the RTL implements, per row
-----------------------------------------------------------
1. m = max over unmasked x_j                         (input_bits signed)
2. d_j = min(m - x_j, 2^31 - 1)                       unsigned 31 bit (>= 0; clamp only matters for 32-bit input)
3. u_j = min((d_j * M + 2^(t-1)) >> t, 2^20 - 1)      unsigned 20 bit: -(x_j - m) * s / ln 2 in Q5.15 (rounded
                                                     half up); product d*M < 2^62
4. n_j = u_j >> 15 (5 bit, 0..31), g_j = u_j & 0x7FFF (Q0.15 in [0, 1)):   exp((x_j - m) s) = 2^-n_j * 2^-g_j
5. 2nd-order polynomial for 2^-g (= exp(p) for p = -g ln 2 in (-ln 2, 0], the I-BERT remainder), Horner form,
   floor (arithmetic) shifts:
       a_j = (EXP_C2 * g_j) >> 15                     EXP_C2 = 5534 (0.16888): product 28 bit, a in [0, 5534)
       b_j = EXP_C1 + a_j                             EXP_C1 = -21861 (-0.66716): signed 16 bit
       P_j = 2^15 + ((g_j * b_j) >> 15)               product signed 31 bit; P in [16440, 32768], unsigned 16 bit
   (coefficients fitted for minimal spread of P / 2^-g: 0.99993 .. 1.00346; a common factor cancels in the
   normalisation, so only the spread, 0.35 %, affects probabilities.)
6. e_j = (((P_j << 8) >> n_j) + 1) >> 1                unsigned 23 bit, Q1.22: P * 2^(7 - n) rounded half up;
                                                     e = 2^22 exactly for the row maximum; masked columns: e = 0
7. S = sum_j e_j                                      unsigned 36 bit (2^22 <= S <= L 2^22 <= 2^35)
8. Rcp = floor(2^54 / S)                              ONE exact division per row; unsigned 33 bit, [2^19, 2^32]
9. q_j = (255 * e_j * Rcp + 2^53) >> 54               e*Rcp <= 2^54 (since e <= S), times 255: < 2^62;
                                                     q in [0, 255], rounded half up
Rows therefore sum to 255 within the rounding of the outputs: |sum q - 255| <= (unmasked L) / 2 + 0.01.

Causal mask: column j of row i (i = index along axis -2, or 0 for 1-D input) is masked -- excluded from the max
and the sum, output 0 -- when j > i + row_offset (row_offset >= 0 = number of earlier tokens, e.g. the KV-cache
length in decode). Column 0 is never masked, so no row is empty.

Error budget: polynomial spread 0.35 % -> at most ~0.25 * 0.0035 = 0.0009 in probability; output rounding 0.00196;
the u quantisation (2^-16 in log2 units) and Rcp truncation (< 2^-19) add < 1e-4. Measured in tests: max abs error
vs the float softmax of the same integer scores <= 0.003 (target 0.005).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_choice, check_int, check_int_array, check_scale
from npuforge.golden.requant import quantize_multiplier
# The integer constants the RTL shares (rtl.vector.softmax): one definition, in the ground floor.
from npuforge.spec.vector_ops import (D_MAX, EXP_C1, EXP_C2, EXP_FRAC_BITS, EXP_OUT_FRAC_BITS, RECIP_BITS,
                                      RECIP_Q15_BITS, SOFTMAX_MAX_LEN, SOFTMAX_OUT_MAX, SOFTMAX_Q15_MAX, U_MAX)

SOFTMAX_OUT_SCALE = 1.0 / SOFTMAX_OUT_MAX
LOG2_E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class SoftmaxParams:
    """Run-time softmax parameters: Q31 multiplier/shift of input_scale * log2(e) * 2^15, and the input width."""

    input_bits: int
    exp_multiplier: int
    exp_shift: int


def softmax_params(input_scale: float, *, input_bits: int = 16) -> SoftmaxParams:
    """Host side: the score scale -> :class:`SoftmaxParams` (``ValueError`` outside the representable range)."""
    check_choice("input_bits", input_bits, (8, 16, 32))
    s = check_scale("input_scale", input_scale)
    real = s * LOG2_E * (1 << EXP_FRAC_BITS)
    try:
        mult, shift = quantize_multiplier(real)
    except ValueError:
        raise ValueError(f"input_scale must be in [{2.0 ** -32 / LOG2_E / 2 ** 15:.3g}, "
                         f"{2.0 ** 30 / LOG2_E / 2 ** 15:.3g}), got {input_scale!r}") from None
    if input_bits == 32 and D_MAX * s * LOG2_E < 32:
        # d is clamped to 31 bits; that clamp must only ever hit differences whose exp is already 0.
        raise ValueError(f"input_scale must be >= {32 / (D_MAX * LOG2_E):.3g} for 32-bit scores "
                         f"(score differences beyond 2^31 must underflow exp), got {input_scale!r}")
    return SoftmaxParams(input_bits=input_bits, exp_multiplier=mult, exp_shift=shift)


def _causal_mask(shape: tuple[int, ...], row_offset: int) -> np.ndarray:
    rows = shape[-2] if len(shape) >= 2 else 1
    i = np.arange(rows)[:, None] + row_offset
    j = np.arange(shape[-1])[None, :]
    mask = j > i
    return np.broadcast_to(mask if len(shape) >= 2 else mask[0], shape)


def exp2_poly(g: np.ndarray) -> np.ndarray:
    """Step 5: P = 2^15 * 2^-(g / 2^15) approximately, for Q0.15 g in [0, 2^15); integers only."""
    a = (EXP_C2 * g) >> EXP_FRAC_BITS
    return (1 << EXP_FRAC_BITS) + ((g * (EXP_C1 + a)) >> EXP_FRAC_BITS)


def _exp_terms(scores, params: SoftmaxParams, causal: bool, row_offset: int, mask) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-7: e (Q1.22, 0 where masked) and the row sums S, int64. ``mask`` (True = masked) joins the causal one."""
    if not isinstance(params, SoftmaxParams):
        raise ValueError(f"params must be a SoftmaxParams, got {type(params).__name__}")
    x = check_int_array("scores", scores, params.input_bits, ndim_min=1)
    length = x.shape[-1]
    if not 1 <= length <= SOFTMAX_MAX_LEN:
        raise ValueError(f"scores row length L must be in [1, {SOFTMAX_MAX_LEN}], got {length}")
    row_offset = check_int("row_offset", row_offset, 0, None)
    if causal:
        masked = _causal_mask(x.shape, row_offset)
    else:
        masked = np.zeros(x.shape, dtype=bool)
    if mask is not None:
        try:
            masked = masked | np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)
        except ValueError:
            raise ValueError(f"mask shape {np.shape(mask)} must broadcast to the scores shape {x.shape}") from None
        if masked.all(axis=-1).any():
            raise ValueError("mask must leave at least one unmasked column in every row")
    row_max = np.where(masked, np.iinfo(np.int64).min, x).max(axis=-1, keepdims=True)
    d = np.minimum(np.where(masked, 0, row_max - x), D_MAX)
    t = 31 + params.exp_shift
    u = np.minimum((d * params.exp_multiplier + (np.int64(1) << (t - 1))) >> t, U_MAX)
    n = u >> EXP_FRAC_BITS
    g = u & ((1 << EXP_FRAC_BITS) - 1)
    p = exp2_poly(g)
    e = (((p << (EXP_OUT_FRAC_BITS - EXP_FRAC_BITS + 1)) >> n) + 1) >> 1
    e = np.where(masked, 0, e)
    return e, e.sum(axis=-1, keepdims=True)


def softmax(scores, params: SoftmaxParams, *, causal: bool = False, row_offset: int = 0, mask=None) -> np.ndarray:
    """Integer softmax over the last axis -> uint8 probabilities in units of SOFTMAX_OUT_SCALE (1/255).

    ``mask`` (optional, bool broadcastable to scores, True = masked, e.g. BERT padding keys) is excluded from the
    max and the sum exactly like a causally masked column; every row must keep one unmasked column.
    """
    e, total = _exp_terms(scores, params, causal, row_offset, mask)
    rcp = np.int64(1 << RECIP_BITS) // total
    q = (SOFTMAX_OUT_MAX * e * rcp + (np.int64(1) << (RECIP_BITS - 1))) >> RECIP_BITS
    return q.astype(np.uint8)


#: Q0.15 probabilities: q / 2^15, largest code 2^15 - 1 (a probability of 1.0 saturates by 2^-15).
SOFTMAX_Q15_SCALE = 1.0 / (1 << 15)


def softmax_q15(scores, params: SoftmaxParams, *, causal: bool = False, row_offset: int = 0,
                mask=None) -> np.ndarray:
    """Integer softmax with 16-bit output: int16 probabilities in Q0.15 (units of SOFTMAX_Q15_SCALE = 2^-15).

    Steps 1-7 as :func:`softmax`, then (one exact division per row):
        Rcp = floor(2^53 / S)                      unsigned 32 bit (S >= 2^22)
        q_j = min((e_j * Rcp + 2^37) >> 38, 2^15 - 1)   e*Rcp <= 2^53; rounded half up
    Rounding error <= 2^-16 per probability (vs 1/510 for the uint8 output); the int16 codes feed a GEMM as signed
    16-bit operands. Rows sum to 2^15 within the output rounding.
    """
    e, total = _exp_terms(scores, params, causal, row_offset, mask)
    rcp = np.int64(1 << RECIP_Q15_BITS) // total
    shift = RECIP_Q15_BITS - 15
    q = (e * rcp + (np.int64(1) << (shift - 1))) >> shift
    return np.minimum(q, SOFTMAX_Q15_MAX).astype(np.int16)


def q15_row_sum_bound(length: int) -> int:
    """The largest sum of one row of :func:`softmax_q15` over ``length`` columns: 2^15 + floor(length / 2).

    Proof. With R = floor(2^53 / S) and S = sum_j e_j (masked columns have e_j = 0), each output is
    q_j = min(floor((e_j R + 2^37) / 2^38), 2^15 - 1) <= (e_j R + 2^37) / 2^38, so
    sum_j q_j <= (S R + L 2^37) / 2^38 <= (2^53 + L 2^37) / 2^38 = 2^15 + L / 2, and the sum is an integer.
    Every q_j >= 0, so any partial sum of p_j v_j over a row is bounded by this sum times max |v|: a P.V GEMM on
    softmax_q15 rows is exact in int32 for any row length the softmax takes (int8 V: (2^15 + 4096) 2^7 < 2^23 at
    L = SOFTMAX_MAX_LEN).
    """
    length = check_int("length", length, 1, SOFTMAX_MAX_LEN)
    return (1 << 15) + length // 2
