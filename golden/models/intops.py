"""Integer operators that the whole-model paths need beyond the per-operator golden modules.

Every function is integers only at run time (host helpers that build tables/parameters are marked). Widths:

``exact_matmul(a, b)``  a [..., M, K] x b [K, N] integer -> int64, computed with float64 BLAS, which is exact
    when |a|max * |b|max * K < 2^53 (every product and partial sum is then an integer below 2^53); asserted.
    The NPU computes the same integers in its own order (integer addition is associative).
``requant_wide(acc, M, shift, out_bits)``  golden.requant's kernel y = clamp((acc*M + 2^(t-1)) >> t), t = 31 + shift,
    for WIDE accumulators |acc| < 2^47 (block-scaled GEMMs, 16-bit activations) and out_bits 8, 16 or 32.
    acc*M is up to 78 bits; computed exactly by splitting acc = hi*2^24 + lo (needs t >= 25, i.e. real scale < 64,
    when |acc| >= 2^31; an int32 accumulator takes any t in [1, 62]).
``residual_add_wide(a, b, M, shift, out_bits)``  the residual stream's add: clamp(requant_wide(a, M, shift, out_bits)
    + b) for an int8/int16/int32 a brought to b's scale (M = 2^30, shift = -1 is the identity: a + b saturated) and
    b already in the residual format (int16 / int32), out_bits 16 or 32.
``token_shift(x, bits)``  per-token power-of-two scale: k = max(0, bitlength(max|x_row|) - (bits - 1)),
    x' = clamp((x + 2^(k-1)) >> k) (a leading-zero count and a shifter per row); the GEMM result is shifted back
    left by k before its requant, so the per-token scale costs no multiplier.
``norm_wide(x, params)``  LayerNorm/RMSNorm on a wide (up to int32) residual: the row is first shifted right by
    k = max(0, bitlength(max|x_row|) - 15) (rounded) into int16, then golden.norms' kernel runs with the eps term
    scaled by 4^-k (a 17-entry table), since the norm is invariant to the shift except for eps.
``interp_table`` / ``interp_lookup``  16-bit-input GELU / SiLU: a table of 2^(16-s)+1 int16 outputs at every
    2^s-th input code and linear interpolation: y = T[i] + (((T[i+1] - T[i]) * f + 2^(s-1)) >> s), i = (x + 2^15) >> s,
    f = (x + 2^15) & (2^s - 1); products 17 x s bits.
"""

from __future__ import annotations

import math

import numpy as np

from npuforge.golden._checks import int_range
from npuforge.spec.vector_ops import INTERP_SHIFT as SPEC_INTERP_SHIFT, NORM_EPS_SHIFTS, NORM_WIDE_IN_BITS
from npuforge.golden.norms import (EPS_TERM_MAX, LayerNormParams, RMSNormParams, _affine_out, _bit_length,
                                   _normalize)

EXACT_LIMIT = 2 ** 53
WIDE_ACC_BITS = 47
SPLIT_BITS = 24
INTERP_SHIFT = SPEC_INTERP_SHIFT   # 1024 segments over the int16 input range, 1025-entry table
NORM_IN_BITS = NORM_WIDE_IN_BITS
_OUT = {8: np.int8, 16: np.int16, 32: np.int32}


def exact_matmul(a: np.ndarray, b: np.ndarray, *, a_max: int | None = None, b_max: int | None = None) -> np.ndarray:
    """Exact integer a @ b (int64) through float64 BLAS; ValueError if the 2^53 bound does not hold."""
    k = a.shape[-1]
    a_max = int(np.abs(a).max(initial=0)) if a_max is None else a_max
    b_max = int(np.abs(b).max(initial=0)) if b_max is None else b_max
    if a_max * b_max * k >= EXACT_LIMIT:
        raise ValueError(f"|a|max * |b|max * K must be < 2^53 for an exact GEMM, got {a_max} * {b_max} * {k}")
    b64 = b if b.dtype == np.float64 else b.astype(np.float64)
    return np.matmul(a.astype(np.float64), b64).astype(np.int64)


def requant_wide(acc: np.ndarray, multiplier, shift, *, out_bits: int = 16) -> np.ndarray:
    """clamp((acc*M + 2^(t-1)) >> t) for |acc| < 2^47, M Q31 in [2^30, 2^31), t = 31 + shift in [25, 62].

    multiplier / shift broadcast against acc (per output channel along the last axis, or per row [S, 1]).
    """
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(multiplier, dtype=np.int64)
    t = np.asarray(shift, dtype=np.int64) + 31
    peak = int(np.abs(acc).max(initial=0))
    if peak >= 1 << WIDE_ACC_BITS:
        raise ValueError(f"wide accumulator must be within +-2^{WIDE_ACC_BITS}, got {peak}")
    if t.size and (int(t.min()) < 1 or int(t.max()) > 62):
        bad = int(t.min()) if int(t.min()) < 1 else int(t.max())
        raise ValueError(f"requant total shift must be in [1, 62], got {bad}")
    if peak <= 1 << 31:
        # an int32 accumulator (-2^31 included): |acc*M| < 2^62, golden.requant's kernel as it is
        y = (acc * mult + (np.int64(1) << (t - 1))) >> t
    else:
        if int(t.min()) < SPLIT_BITS + 1:
            raise ValueError(f"requant of a wide accumulator needs a total shift >= 25 (real scale < 64), "
                             f"got {int(t.min())}")
        hi = acc >> SPLIT_BITS
        lo = acc & ((1 << SPLIT_BITS) - 1)
        y = (hi * mult + (np.int64(1) << (t - SPLIT_BITS - 1)) + ((lo * mult) >> SPLIT_BITS)) >> (t - SPLIT_BITS)
    lo_b, hi_b = int_range(out_bits)
    return np.clip(y, lo_b, hi_b).astype(_OUT[out_bits])


#: (multiplier, shift) of requant_wide that leaves its input unchanged: (a * 2^30 + 2^29) >> 30 = a.
IDENTITY_REQUANT = (1 << 30, -1)


def residual_add_wide(a: np.ndarray, b: np.ndarray, multiplier: int, shift: int, *, out_bits: int) -> np.ndarray:
    """clamp(requant_wide(a, multiplier, shift, out_bits) + b, out_bits): int16 (out_bits 16) or int32 (32)."""
    if out_bits not in (16, 32):
        raise ValueError(f"out_bits must be 16 or 32, got {out_bits!r}")
    y = requant_wide(a, multiplier, shift, out_bits=out_bits)
    return np.clip(y.astype(np.int64) + np.asarray(b, dtype=np.int64), *int_range(out_bits)).astype(_OUT[out_bits])


def bit_length(v: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values (0 -> 0): golden.norms' leading-zero count."""
    return _bit_length(np.asarray(v, dtype=np.int64))


def _shift_round(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(x + 2^(k-1)) >> k per row (k >= 0; k = 0 leaves x)."""
    half = np.where(k > 0, np.int64(1) << np.maximum(k - 1, 0), 0)
    return (x + half) >> k


def token_shift(x: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-token power-of-two scale: (x' int8/int16 [S, K], k int64 [S, 1]) with x ~= x' * 2^k."""
    x64 = x.astype(np.int64)
    k = np.maximum(bit_length(np.abs(x64).max(axis=-1, keepdims=True)) - (bits - 1), 0)
    lo, hi = int_range(bits)
    return np.clip(_shift_round(x64, k), lo, hi).astype(_OUT[bits]), k


def eps_table(eps_term: int, base_shift: int = 0, max_shift: int = NORM_EPS_SHIFTS - 1) -> np.ndarray:
    """Host: the eps term of a row pre-shifted by k = 0..max_shift, from ``eps_term`` computed at shift base_shift:
    round(eps_term * 4^(base_shift - k)), saturated at 2^61 - 1 (a row that small is all eps: its output is ~0)."""
    out = []
    for k in range(max_shift + 1):
        if k >= base_shift:
            out.append((eps_term + ((1 << (2 * (k - base_shift))) >> 1)) >> (2 * (k - base_shift)))
        else:
            out.append(min(eps_term << (2 * (base_shift - k)), EPS_TERM_MAX))
    return np.array(out, dtype=np.int64)


def wide_norm_params(build, in_scale: float, *args, **kwargs):
    """Host: (params, eps table) of a norm_wide whose int32 input has real scale ``in_scale``.

    ``build`` is golden.norms.layernorm_params or rmsnorm_params (called with input_bits=16). The params are built
    for the int16 row at in_scale * 2^b, the smallest b in 0, 4, .. 32 whose eps term fits 61 bits; norm_wide's
    per-row shift k then uses the eps term scaled by 4^(b - k).
    """
    for base in range(0, 33, 4):
        try:
            params = build(in_scale * 2.0 ** base, *args, input_bits=NORM_IN_BITS, **kwargs)
        except ValueError as exc:
            if "2^61" in str(exc):
                continue
            raise
        return params, eps_table(params.eps_term, base)
    raise ValueError(f"in_scale {in_scale!r} is too small for the norm's eps term")


def norm_wide(x: np.ndarray, params, eps_by_shift: np.ndarray) -> np.ndarray:
    """LayerNorm (LayerNormParams) or RMSNorm (RMSNormParams, built with input_bits=16) of an int16/int32 row."""
    x64 = x.astype(np.int64)
    k = np.maximum(bit_length(np.abs(x64).max(axis=-1, keepdims=True)) - (NORM_IN_BITS - 1), 0)
    xs = np.clip(_shift_round(x64, k), *int_range(NORM_IN_BITS))
    d = params.dim
    s2 = (xs * xs).sum(axis=-1)
    f = params.var_frac_bits
    eps_k = eps_by_shift[k[..., 0]]
    if isinstance(params, LayerNormParams):
        s1 = xs.sum(axis=-1)
        c = d * xs - s1[..., None]
        v_e = ((d * s2 - s1 * s1) << f) + eps_k
        y = _normalize(c, v_e, f)
        return _affine_out(y, params.gamma_q, params.beta_q, params.gamma_shift, params.out_bits)
    if not isinstance(params, RMSNormParams):
        raise ValueError(f"params must be LayerNormParams or RMSNormParams, got {type(params).__name__}")
    y = _normalize(d * xs, ((d * s2) << f) + eps_k, f)
    return _affine_out(y, params.gamma_q, (0,) * d, params.gamma_shift, params.out_bits)


def interp_table(fn, in_scale: float, out_scale: float, *, shift: int = INTERP_SHIFT) -> np.ndarray:
    """Host: int32 [2^(16-shift) + 1], entry j = clamp(rint(fn((j * 2^shift - 2^15) * in_scale) / out_scale))."""
    xs = (np.arange((1 << (16 - shift)) + 1, dtype=np.float64) * (1 << shift) - (1 << 15)) * in_scale
    return np.clip(np.rint(fn(xs) / out_scale), *int_range(16)).astype(np.int32)


def interp_lookup(x: np.ndarray, table: np.ndarray, *, shift: int = INTERP_SHIFT) -> np.ndarray:
    """int16 x -> int16 y by the interpolated table (see module docstring)."""
    u = x.astype(np.int64) + (1 << 15)
    i = u >> shift
    f = u & ((1 << shift) - 1)
    t = table.astype(np.int64)
    y = t[i] + (((t[i + 1] - t[i]) * f + (1 << (shift - 1))) >> shift)
    return np.clip(y, *int_range(16)).astype(np.int16)


def gelu_float(x: np.ndarray) -> np.ndarray:
    """Host: exact GELU in float64 (math.erf), for tables."""
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def silu_float(x: np.ndarray) -> np.ndarray:
    """Host: SiLU in float64 without overflow, for tables."""
    return x * np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))
