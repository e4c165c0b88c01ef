"""Integer LayerNorm and RMSNorm: integer mean/sum of squares, exact Newton isqrt, one exact division per row.

Both norms run the same integer kernel over the last axis (length D, 1 <= D <= NORM_MAX_D = 8192) of x, whose
values are signed b-bit integers, b = input_bits in {8, 16} (int8/int16 arrays; int32 arrays with values in range
are accepted too). Widths below are for the worst case b = 16, D = 8192.

Kernel (integers only) -- what the RTL implements, per row
----------------------------------------------------------
1. s1 = sum x_i                          signed 29 bit   (|s1| <= D * 2^15 = 2^28)
   s2 = sum x_i^2                        unsigned 44 bit (<= D * 2^30 = 2^43)
2. centred values and variance, scaled by D so that no division by D is needed:
     LayerNorm: c_i = D*x_i - s1  = D (x_i - mean)        signed 30 bit (|c_i| <= D (2^16 - 1) < 2^29)
                V   = D*s2 - s1^2 = D^2 var                unsigned 57 bit (<= 2^56)
     RMSNorm:   c_i = D*x_i       = D x_i                  signed 29 bit
                V   = D*s2        = D^2 mean(x^2)          unsigned 57 bit
   V_e = (V << f) + E  with two per-layer constants: f = ``var_frac_bits`` (even, 4..28) and
   E = ``eps_term`` = round(D^2 eps / in_scale^2 * 2^f) (E < 2^61). So V_e = 2^f D^2 (var + eps) in integer units;
   the f fraction bits keep the rounding of eps negligible even for near-constant rows. f is the largest even
   number <= 28 with D^2 2^(2b-2) 2^f <= 2^60 (the largest V, shifted, stays <= 2^60), so V_e < 2^62.
   (f = 4 for b = 16, D = 8192; f = 28 for int8 inputs with D <= 2^9.)
3. normalise for precision: k = (62 - bitlength(max(V_e, 1))) // 2 (0..30), N = V_e << 2k in [2^60, 2^62).
   (A leading-zero count; even shift so the square root shifts by exactly k.)
4. S = isqrt(N) = floor(sqrt(N))         unsigned 31 bit, S in [2^30, 2^31) (exact: any floor-sqrt circuit,
                                          e.g. Newton with a divider or digit-by-digit, gives the same S)
5. Rcp = floor(2^61 / S)                 unsigned 32 bit, Rcp in (2^30, 2^31]: ONE exact division per row,
                                          so 1/std is known to ~30 significant bits.
6. y_i = (c_i * Rcp + 2^(h-1)) >> h,  h = 61 - NORM_FRAC_BITS - f/2 - k = 45 - f/2 - k in [1, 45]
                                          product < 2^60 (signed 61 bit); y_i is the normalised value
                                          (x_i - mean) / sqrt(var + eps) (LayerNorm) or x_i / sqrt(mean(x^2) + eps)
                                          (RMSNorm) in Q.16 (NORM_FRAC_BITS = 16), |y_i| <= sqrt(D) * 2^16 < 2^23
                                          (signed 24 bit), rounded half up.
   If V_e = 0 (constant row and eps = 0) the row has no spread: y_i = 0 (Rcp is taken as 0, no division).
7. gamma/beta and the output requant in ONE rounding step:
     out_i = clamp((y_i * G_i + B_i + 2^(T-1)) >> T, -2^(o-1), 2^(o-1) - 1),   T = NORM_FRAC_BITS + gamma_shift
   o = out_bits (8 or 16); gamma width g = o + 8 (16 or 24 bit), beta width o + 40 (48 or 56 bit):
   G_i = round(gamma_i / out_scale * 2^gamma_shift)     signed g bit (|G_i| <= 2^(g-1) - 1)
   B_i = round(beta_i  / out_scale * 2^T)               signed o+40 bit (RMSNorm: B_i = 0)
   product y*G: signed 39 (o=8) / 47 (o=16) bit; sum with B: signed 49 / 57 bit.
   gamma_shift (per layer, in [-15, 16]) is the largest shift keeping every |G_i| <= 2^(g-1) - 1, capped at 16.
   The rounding of G_i costs at most |y| * 2^-(gamma_shift+1) output LSB: < 0.001 LSB when gamma_shift = 16
   (|y| < 91), otherwise at most 2^-(g-1) of the largest channel's |gamma * y| / out_scale, i.e. < 0.01 LSB of a
   full-scale output.

Error budget (measured in tests): normalised value y within 1e-5 of the float value computed from the same
integer inputs; the int8 output within 0.5 LSB + 0.01 LSB of the float LayerNorm/RMSNorm output; an int16 output
additionally carries the Q.16 rounding of y amplified by gamma: + 2^-17 * max|gamma| / out_scale LSB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_choice, check_float_array, check_int, check_int_array, check_scale, int_range

# The integer constants and limits the RTL shares (rtl.vector.norm): one definition, in the ground floor.
from npuforge.spec.vector_ops import (EPS_TERM_MAX, GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, NORM_FRAC_BITS, NORM_MAX_D,
                                      NORM_RECIP_FRAC_BITS as RECIP_FRAC_BITS, VAR_FRAC_BITS_MAX)

ISQRT_MAX = (1 << 63) - 1


# ---------------------------------------------------------------------------------------------------------------
# Exact integer primitives
# ---------------------------------------------------------------------------------------------------------------

def isqrt(n):
    """floor(sqrt(n)) exactly, by integer Newton iteration, for 0 <= n <= 2^63 - 1.

    Accepts a Python/NumPy integer (returns a Python int) or an integer array (returns int64). Start value
    x0 = 2^ceil(bits/2) >= sqrt(n); iterate x <- (x + n // x) // 2 while it decreases. From any start >= floor(sqrt n)
    the iteration decreases monotonically and stops exactly at floor(sqrt(n)).
    """
    scalar = not isinstance(n, np.ndarray)
    if scalar:
        n = check_int("n", n, 0, ISQRT_MAX)
        arr = np.array(n, dtype=np.int64)
    else:
        if n.dtype.kind not in "iu":
            raise ValueError(f"n must have an integer dtype, got dtype {n.dtype}")
        if n.size and (int(n.min()) < 0 or int(n.max()) > ISQRT_MAX):
            bad = int(n.min()) if int(n.min()) < 0 else int(n.max())
            raise ValueError(f"n must be in [0, 2^63 - 1], got {bad}")
        arr = n.astype(np.int64)
    # bit length via float exponent: may overestimate by one for n near 2^63, which only raises x0 (still >= sqrt).
    _, exp = np.frexp(arr.astype(np.float64))
    x = np.left_shift(np.int64(1), ((exp + 1) // 2).astype(np.int64))
    while True:
        y = (x + arr // np.maximum(x, 1)) >> 1
        smaller = y < x
        if not smaller.any():
            break
        x = np.where(smaller, y, x)
    return int(x) if scalar else x


def reciprocal(d, frac_bits: int):
    """floor(2^frac_bits / d) exactly, for 1 <= d <= 2^63 - 1 and 0 <= frac_bits <= 62 (int or int64 array)."""
    frac_bits = check_int("frac_bits", frac_bits, 0, 62)
    if not isinstance(d, np.ndarray):
        d = check_int("d", d, 1, ISQRT_MAX)
        return (1 << frac_bits) // d
    if d.dtype.kind not in "iu":
        raise ValueError(f"d must have an integer dtype, got dtype {d.dtype}")
    if d.size and (int(d.min()) < 1 or int(d.max()) > ISQRT_MAX):
        raise ValueError(f"d must be in [1, 2^63 - 1], got {int(d.min()) if int(d.min()) < 1 else int(d.max())}")
    return np.int64(1 << frac_bits) // d.astype(np.int64)


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values (0 -> 0)."""
    out = np.zeros(v.shape, dtype=np.int64)
    rem = v.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = rem >= (np.int64(1) << step)
        out += np.where(big, step, 0)
        rem = np.where(big, rem >> step, rem)
    return out + (rem > 0)


def _normalize(c: np.ndarray, v_e: np.ndarray, var_frac_bits: int) -> np.ndarray:
    """Steps 3-6: y = round(c / sqrt(V_e / 2^f) * 2^16) via leading-zero shift, isqrt and one reciprocal per row."""
    # V_e = 0 (constant row, eps = 0) is treated as 1 for the shift so h stays >= 1; its Rcp is 0 anyway.
    k = (62 - _bit_length(np.maximum(v_e, 1))) // 2
    n = v_e << (2 * k)
    s = isqrt(n)
    nonzero = v_e > 0
    rcp = np.where(nonzero, np.int64(1 << RECIP_FRAC_BITS) // np.maximum(s, 1), 0)
    h = (RECIP_FRAC_BITS - NORM_FRAC_BITS - var_frac_bits // 2 - k)[..., None]
    return (c * rcp[..., None] + (np.int64(1) << (h - 1))) >> h


# ---------------------------------------------------------------------------------------------------------------
# Parameters (host side)
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerNormParams:
    """Integer LayerNorm parameters (plain ints). ``beta_q`` is all zeros for RMSNorm."""

    dim: int
    input_bits: int
    var_frac_bits: int
    eps_term: int
    gamma_q: tuple[int, ...]
    gamma_shift: int
    beta_q: tuple[int, ...]
    out_bits: int = 8


@dataclass(frozen=True)
class RMSNormParams:
    """Integer RMSNorm parameters (plain ints)."""

    dim: int
    input_bits: int
    var_frac_bits: int
    eps_term: int
    gamma_q: tuple[int, ...]
    gamma_shift: int
    out_bits: int = 8


def _common_params(in_scale, gamma, out_scale, input_bits, eps, out_bits):
    check_choice("input_bits", input_bits, (8, 16))
    check_choice("out_bits", out_bits, (8, 16))
    s_in = check_scale("in_scale", in_scale)
    s_out = check_scale("out_scale", out_scale)
    g = check_float_array("gamma", gamma, ndim_min=1)
    if g.ndim != 1 or not 1 <= g.shape[0] <= NORM_MAX_D:
        raise ValueError(f"gamma must be a vector of length D in [1, {NORM_MAX_D}], got shape {g.shape}")
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    d = g.shape[0]
    v_max = d * d * (1 << (2 * input_bits - 2))  # bound of D*s2 - s1^2 and of D*s2
    frac = VAR_FRAC_BITS_MAX
    while v_max << frac > 1 << 60:
        frac -= 2
    eps_term = round(d * d * eps / (s_in * s_in) * 2.0 ** frac)
    if eps_term > EPS_TERM_MAX:
        raise ValueError(f"D^2 * eps / in_scale^2 * 2^{frac} must be <= 2^61 - 1, got {eps_term:.3g} "
                         f"(eps={eps!r}, in_scale={s_in!r}, D={d})")
    ratio = g / s_out
    g_max = float(np.abs(ratio).max())
    gamma_max = (1 << (out_bits + 7)) - 1
    if round(g_max * 2.0 ** GAMMA_SHIFT_MIN) > gamma_max:
        raise ValueError(f"max |gamma| / out_scale must be <= {gamma_max * 2 ** -GAMMA_SHIFT_MIN}, got {g_max:.6g}")
    shift = GAMMA_SHIFT_MAX
    while shift > GAMMA_SHIFT_MIN and round(g_max * 2.0 ** shift) > gamma_max:
        shift -= 1
    gamma_q = tuple(int(v) for v in np.rint(ratio * 2.0 ** shift))
    return d, frac, eps_term, gamma_q, shift, s_out


def layernorm_params(in_scale: float, gamma, beta, out_scale: float, *, input_bits: int = 8,
                     eps: float = 1e-5, out_bits: int = 8) -> LayerNormParams:
    """Host side: float gamma/beta [D], input/output scales -> integer LayerNorm parameters."""
    d, frac, eps_term, gamma_q, shift, s_out = _common_params(in_scale, gamma, out_scale, input_bits, eps, out_bits)
    b = check_float_array("beta", beta)
    if b.shape != (d,):
        raise ValueError(f"beta must have the shape of gamma ({d},), got {b.shape}")
    total = NORM_FRAC_BITS + shift
    b_scaled = b / s_out * 2.0 ** total
    limit = 2.0 ** (out_bits + 39)
    if np.abs(b_scaled).max() >= limit:
        raise ValueError(f"|beta| / out_scale must be < {limit * 2.0 ** -total:.6g} ({out_bits + 40}-bit beta term), "
                         f"got {float(np.abs(b / s_out).max()):.6g}")
    beta_q = tuple(int(v) for v in np.rint(b_scaled))
    return LayerNormParams(dim=d, input_bits=input_bits, var_frac_bits=frac, eps_term=eps_term, gamma_q=gamma_q, gamma_shift=shift,
                           beta_q=beta_q, out_bits=out_bits)


def rmsnorm_params(in_scale: float, gamma, out_scale: float, *, input_bits: int = 8, eps: float = 1e-6,
                   out_bits: int = 8) -> RMSNormParams:
    """Host side: float gamma [D], input/output scales -> integer RMSNorm parameters."""
    d, frac, eps_term, gamma_q, shift, _ = _common_params(in_scale, gamma, out_scale, input_bits, eps, out_bits)
    return RMSNormParams(dim=d, input_bits=input_bits, var_frac_bits=frac, eps_term=eps_term, gamma_q=gamma_q, gamma_shift=shift,
                         out_bits=out_bits)


# ---------------------------------------------------------------------------------------------------------------
# Kernels (integers only)
# ---------------------------------------------------------------------------------------------------------------

def _check_x(x, params) -> np.ndarray:
    x64 = check_int_array("x", x, params.input_bits, ndim_min=1)
    if x64.shape[-1] != params.dim:
        raise ValueError(f"x's last axis must be D={params.dim} (the length of gamma), got shape {x64.shape}")
    return x64


def _check_params(params, cls):
    if not isinstance(params, cls):
        raise ValueError(f"params must be a {cls.__name__}, got {type(params).__name__}")


def layernorm_normalized(x, params: LayerNormParams) -> np.ndarray:
    """Steps 1-6 of LayerNorm: (x - mean) / sqrt(var + eps) in Q.16 (int64 array, shape of x)."""
    _check_params(params, LayerNormParams)
    x64 = _check_x(x, params)
    d = params.dim
    s1 = x64.sum(axis=-1)
    s2 = (x64 * x64).sum(axis=-1)
    c = d * x64 - s1[..., None]
    v_e = ((d * s2 - s1 * s1) << params.var_frac_bits) + params.eps_term
    return _normalize(c, v_e, params.var_frac_bits)


def rmsnorm_normalized(x, params: RMSNormParams) -> np.ndarray:
    """Steps 1-6 of RMSNorm: x / sqrt(mean(x^2) + eps) in Q.16 (int64 array, shape of x)."""
    _check_params(params, RMSNormParams)
    x64 = _check_x(x, params)
    d = params.dim
    s2 = (x64 * x64).sum(axis=-1)
    return _normalize(d * x64, ((d * s2) << params.var_frac_bits) + params.eps_term, params.var_frac_bits)


def _affine_out(y: np.ndarray, gamma_q, beta_q, gamma_shift: int, out_bits: int) -> np.ndarray:
    """Step 7: one rounding of y*G + B by 2^T, then saturation."""
    total = NORM_FRAC_BITS + gamma_shift
    g = np.array(gamma_q, dtype=np.int64)
    b = np.array(beta_q, dtype=np.int64)
    out = (y * g + b + (np.int64(1) << (total - 1))) >> total
    lo, hi = int_range(out_bits)
    return np.clip(out, lo, hi).astype(np.int8 if out_bits == 8 else np.int16)


def layernorm(x, params: LayerNormParams) -> np.ndarray:
    """Integer LayerNorm over the last axis -> int8 (or int16 when ``params.out_bits == 16``) at out_scale."""
    y = layernorm_normalized(x, params)
    return _affine_out(y, params.gamma_q, params.beta_q, params.gamma_shift, params.out_bits)


def rmsnorm(x, params: RMSNormParams) -> np.ndarray:
    """Integer RMSNorm over the last axis -> int8 (or int16 when ``params.out_bits == 16``) at out_scale."""
    y = rmsnorm_normalized(x, params)
    return _affine_out(y, params.gamma_q, (0,) * params.dim, params.gamma_shift, params.out_bits)
