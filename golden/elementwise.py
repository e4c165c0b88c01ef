"""Elementwise operators: residual add (two scales), SwiGLU gate multiply, RoPE with an integer cos/sin table.

Inputs are int8 (or int16) arrays; every kernel rounds ONCE (half up, arithmetic shift) and saturates to out_bits.

Residual add: out = (a * a_scale + b * b_scale) / out_scale
    Host: Ma = round(a_scale / out_scale * 2^T), Mb = round(b_scale / out_scale * 2^T) with one shared T chosen
    by ``quantize_multiplier`` of the larger ratio, so max(Ma, Mb) is in [2^30, 2^31 - 1] and T in [1, 62]
    (the smaller multiplier has the same absolute precision 2^-T, so it may be < 2^30, or even 0 when its ratio
    is below 2^-(T+1)).
    Kernel:  y = clamp((a * Ma + b * Mb + 2^(T-1)) >> T)
             products 16b x 31b -> signed 47 bit (int8 inputs: 39 bit); sum signed 48 bit.
    Error: <= 0.5 LSB + (|a| + |b|) * 2^-31 relative multiplier error (< 0.5001 LSB for int8 inputs).

Gate multiply (SwiGLU: silu(gate) * up): out = a * b * a_scale * b_scale / out_scale
    Kernel:  p = a * b                signed 15 bit (int8 inputs) / 31 bit (int16)
             y = requantize(p, M, shift, out_bits)      (golden.requant, Q31, one rounding)

RoPE (Hugging Face Llama rotate-half convention, pairs (i, i + h) with h = head_dim / 2):
    theta[p, i] = p * base^(-2i / head_dim)
    Table: cos[p, i] = rint(cos(theta[p, i]) * 2^F), sin likewise, int16, F = ``frac_bits`` (default 14, at most
    14 so that 1.0 = 2^14 fits int16): Q1.14, absolute precision 2^-15 = 3.1e-5.
    Kernel:  out[i]     = clamp((x[i] * c - x[i+h] * s + 2^(F-1)) >> F)
             out[i + h] = clamp((x[i+h] * c + x[i] * s + 2^(F-1)) >> F)
             products 8b x 16b -> signed 23 bit, sum 24 bit (int16 x: 31 / 32 bit).
    The output has the input's scale. Error vs the exact rotation: <= 0.5 LSB + (|x[i]| + |x[i+h]|) * 2^-15
    (< 0.508 LSB for int8). A rotated pair can exceed the int8 range by up to sqrt 2 (e.g. (127, 127) at
    45 degrees): it saturates; use out_bits=16 to keep it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_choice, check_int, check_int_array, check_scale, int_range
from npuforge.golden.requant import quantize_multiplier, requantize

# RoPE table precision (default, accepted window) and length, shared with rtl.vector.rope: spec.vector_ops.
from npuforge.spec.vector_ops import ROPE_FRAC_BITS, ROPE_FRAC_BITS_MAX, ROPE_FRAC_BITS_MIN, ROPE_MAX_POSITIONS


def _out(y: np.ndarray, out_bits: int) -> np.ndarray:
    lo, hi = int_range(out_bits)
    return np.clip(y, lo, hi).astype(np.int8 if out_bits == 8 else np.int16)


@dataclass(frozen=True)
class ResidualParams:
    """Residual add: y = clamp((a*a_multiplier + b*b_multiplier + 2^(shift-1)) >> shift) (total right shift)."""

    a_multiplier: int
    b_multiplier: int
    shift: int
    out_bits: int = 8


def residual_params(a_scale: float, b_scale: float, out_scale: float, *, out_bits: int = 8) -> ResidualParams:
    """Host side: two input scales and the output scale -> integer multipliers with one shared shift."""
    check_choice("out_bits", out_bits, (8, 16))
    sa = check_scale("a_scale", a_scale)
    sb = check_scale("b_scale", b_scale)
    so = check_scale("out_scale", out_scale)
    ra, rb = sa / so, sb / so
    try:
        _, shift = quantize_multiplier(max(ra, rb))
    except ValueError:
        raise ValueError(f"max(a_scale, b_scale) / out_scale must be in [2^-32, 2^30), got {max(ra, rb)!r}") from None
    total = 31 + shift
    # the larger ratio gives exactly quantize_multiplier's Q31 multiplier; the smaller shares its shift.
    ma, mb = round(ra * 2.0 ** total), round(rb * 2.0 ** total)
    return ResidualParams(a_multiplier=ma, b_multiplier=mb, shift=total, out_bits=out_bits)


def _check_pair(a, b):
    a64 = check_int_array("a", a, 16)
    b64 = check_int_array("b", b, 16)
    if a64.shape != b64.shape:
        raise ValueError(f"a and b must have the same shape, got {a64.shape} and {b64.shape}")
    return a64, b64


def residual_add(a, b, params: ResidualParams) -> np.ndarray:
    """Integer residual add of two int8/int16 tensors with different scales -> int8 (or int16) at out_scale."""
    if not isinstance(params, ResidualParams):
        raise ValueError(f"params must be a ResidualParams, got {type(params).__name__}")
    a64, b64 = _check_pair(a, b)
    t = params.shift
    y = (a64 * params.a_multiplier + b64 * params.b_multiplier + (np.int64(1) << (t - 1))) >> t
    return _out(y, params.out_bits)


@dataclass(frozen=True)
class GateParams:
    """Gate multiply: y = requantize(a*b, multiplier, shift, out_bits)."""

    multiplier: int
    shift: int
    out_bits: int = 8


def gate_params(a_scale: float, b_scale: float, out_scale: float, *, out_bits: int = 8) -> GateParams:
    """Host side: (a_scale * b_scale / out_scale) as a Q31 multiplier and shift."""
    check_choice("out_bits", out_bits, (8, 16))
    sa = check_scale("a_scale", a_scale)
    sb = check_scale("b_scale", b_scale)
    so = check_scale("out_scale", out_scale)
    try:
        mult, shift = quantize_multiplier(sa * sb / so)
    except ValueError:
        raise ValueError(f"a_scale * b_scale / out_scale must be in [2^-32, 2^30), got {sa * sb / so!r}") from None
    return GateParams(multiplier=mult, shift=shift, out_bits=out_bits)


def gate_mul(a, b, params: GateParams) -> np.ndarray:
    """Elementwise a * b (SwiGLU: silu(gate) * up) requantized to int8 (or int16) at out_scale."""
    if not isinstance(params, GateParams):
        raise ValueError(f"params must be a GateParams, got {type(params).__name__}")
    a64, b64 = _check_pair(a, b)
    return requantize(a64 * b64, params.multiplier, params.shift, out_bits=params.out_bits)


def rope_table(head_dim: int, max_positions: int, *, base: float = 10000.0,
               frac_bits: int = ROPE_FRAC_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Integer cos/sin tables, int16 [max_positions, head_dim // 2] in Q1.frac_bits (default Q1.14)."""
    head_dim = check_int("head_dim", head_dim, 2, 1 << 16)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (rotate-half pairs), got {head_dim}")
    max_positions = check_int("max_positions", max_positions, 1, ROPE_MAX_POSITIONS)
    frac_bits = check_int("frac_bits", frac_bits, ROPE_FRAC_BITS_MIN, ROPE_FRAC_BITS_MAX)
    base = check_scale("base", base)
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    theta = np.arange(max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    one = float(1 << frac_bits)
    return np.rint(np.cos(theta) * one).astype(np.int16), np.rint(np.sin(theta) * one).astype(np.int16)


def rope(x, positions, cos, sin, *, frac_bits: int = ROPE_FRAC_BITS, out_bits: int = 8) -> np.ndarray:
    """Rotate x [..., head_dim] (int8/int16) at the given positions (broadcast to x.shape[:-1]) -> same scale."""
    check_choice("out_bits", out_bits, (8, 16))
    frac_bits = check_int("frac_bits", frac_bits, ROPE_FRAC_BITS_MIN, ROPE_FRAC_BITS_MAX)
    x64 = check_int_array("x", x, 16, ndim_min=1)
    head_dim = x64.shape[-1]
    if head_dim % 2:
        raise ValueError(f"x's last axis (head_dim) must be even, got {head_dim}")
    half = head_dim // 2
    for name, table in (("cos", cos), ("sin", sin)):
        if not isinstance(table, np.ndarray) or table.dtype != np.int16 or table.ndim != 2 or table.shape[1] != half:
            raise ValueError(f"{name} must be an int16 table [P, head_dim // 2 = {half}] from rope_table, got "
                             f"{getattr(table, 'dtype', type(table).__name__)} {getattr(table, 'shape', '')}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {cos.shape} and {sin.shape}")
    pos = check_int_array("positions", np.asarray(positions) if not isinstance(positions, np.ndarray) else positions,
                          32)
    if pos.size and (int(pos.min()) < 0 or int(pos.max()) >= cos.shape[0]):
        bad = int(pos.min()) if int(pos.min()) < 0 else int(pos.max())
        raise ValueError(f"positions must be in [0, {cos.shape[0] - 1}] (the table's max_positions - 1), got {bad}")
    try:
        pos = np.broadcast_to(pos, x64.shape[:-1])
    except ValueError:
        raise ValueError(f"positions shape {pos.shape} must broadcast to x.shape[:-1] = {x64.shape[:-1]}") from None
    c = cos.astype(np.int64)[pos]
    s = sin.astype(np.int64)[pos]
    x1, x2 = x64[..., :half], x64[..., half:]
    rnd = np.int64(1) << (frac_bits - 1)
    first = (x1 * c - x2 * s + rnd) >> frac_bits
    second = (x2 * c + x1 * s + rnd) >> frac_bits
    return _out(np.concatenate([first, second], axis=-1), out_bits)
