"""Integer Linear layers of the whole-model paths: weights as integers times a per-row unit, exact GEMM, wide requant.

A weight [N, K] becomes ``w[n, k] ~= W[n, k] * unit[n]`` with an integer matrix W and a power-of-two (or per-channel)
unit, whatever the storage format:

    int8 per channel   W = q (int8), unit = scale[n]                                 (golden.quant, symmetric)
    Q8_0 blocks        W = D_b * q,              q int8                               (checkpoint's own blocks)
    Q4_0 / Q4_1 blocks W = D_b * s + O_b,        s = code - 8 in [-8, 7] (signed int4)
    D_b = rint(d_b * 2^E_n), O_b = rint((m_b + 8 d_b) * 2^E_n): the f16 block scale d and minimum m as signed
    16-bit integer multipliers with one power-of-two exponent E_n per row (largest with every |D|, |O| <= 2^15 - 1);
    unit[n] = 2^-E_n. The 4-bit codes are used exactly as stored (never re-rounded); D and O are exact whenever the
    block's f16 value lies within 2^4 of the row's largest (11-bit mantissa + 4 bits of spread < 16 bits), else
    rounded to 16 bits relative to the row maximum (``max_rel_err`` records the largest relative change).

The NPU computes, per block b of 32 along K: P_b = sum x*s (int16 x int4 MAC, |P_b| < 2^23) and S_b = sum x (once
per token, shared by all rows), then acc = sum_b D_b*P_b + O_b*S_b (|acc| < 2^47: a 48-bit accumulator). The golden
model computes the same integer as x @ W^T in float64 (exact below 2^53, asserted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.golden.models.gguf_reader import BLOCK, NativeBlocks
from npuforge.golden.models.intops import exact_matmul, requant_wide, token_shift
from npuforge.golden.quant import quantize_weight
from npuforge.golden.requant import quantize_multipliers

MULT_BITS = 16
#: storage bits per weight of each format (scales included): bytes per token = sum over linears of N*K*bits/8
BITS_PER_WEIGHT = {"Q4_1": 5.0, "Q4_0": 4.5, "Q8_0": 8.5, "int8": 8.0 + 16 / 384, "int4-g32": 5.0}


@dataclass(frozen=True, eq=False)
class BlockInts:
    """The integers of a block weight: ``W[n, k] = d[n, k // 32] * s[n, k] + o[n, k // 32]``; ``s`` int8 [N, K]
    (signed int4 codes in [-8, 7] when ``bits`` is 4, Q8_0's int8 q when 8), ``d``, ``o`` int64 [N, K / 32] within
    signed 16 bit: what the NPU's block-scaled MATMUL reads (spec.block_scale)."""

    s: np.ndarray
    d: np.ndarray
    o: np.ndarray
    bits: int


@dataclass(frozen=True, eq=False)
class IntWeight:
    """``w ~= W * unit[:, None]``: ``w_t`` float64 [K, N] holding the integers W^T, ``unit`` float64 [N];
    ``blocks`` the block form of W when it came from blocks (``weight_from_blocks``), else None."""

    w_t: np.ndarray
    w_max: int
    unit: np.ndarray
    fmt: str
    max_rel_err: float = 0.0
    blocks: BlockInts | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.w_t.shape[1], self.w_t.shape[0]

    @property
    def storage_bytes(self) -> float:
        n, k = self.shape
        return n * k * BITS_PER_WEIGHT[self.fmt] / 8

    def dequantize(self) -> np.ndarray:
        return (self.w_t.T * self.unit[:, None]).astype(np.float32)


def weight_from_blocks(nb: NativeBlocks, *, fmt: str | None = None) -> IntWeight:
    """The checkpoint's own blocks as integers (see the module docstring)."""
    if nb.kind == "Q4_1":
        signed, offset = nb.codes.astype(np.int64) - 8, nb.m + 8 * nb.d
    else:
        signed, offset = nb.codes.astype(np.int64), np.zeros_like(nb.d)
    amax = np.maximum(np.abs(nb.d), np.abs(offset)).max(axis=1)
    amax = np.where(amax > 0, amax, 1.0)
    exp = np.floor(np.log2(((1 << (MULT_BITS - 1)) - 1) / amax)).astype(np.int64)
    scale = np.ldexp(1.0, exp)[:, None]
    d_int, o_int = np.rint(nb.d * scale), np.rint(offset * scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(np.concatenate([d_int - nb.d * scale, o_int - offset * scale])) / \
            np.abs(np.concatenate([nb.d * scale, offset * scale]))
    rel = float(np.nanmax(np.where(np.isfinite(rel), rel, 0.0), initial=0.0))
    w = np.repeat(d_int, BLOCK, axis=1) * signed + np.repeat(o_int, BLOCK, axis=1)
    ints = BlockInts(s=signed.astype(np.int8), d=d_int.astype(np.int64), o=o_int.astype(np.int64),
                     bits=8 if nb.kind == "Q8_0" else 4)
    return IntWeight(w_t=np.ascontiguousarray(w.T), w_max=int(np.abs(w).max(initial=0)),
                     unit=np.ldexp(1.0, -exp), fmt=fmt or nb.kind, max_rel_err=rel, blocks=ints)


def weight_int8(w: np.ndarray) -> IntWeight:
    """Symmetric per-output-channel int8 (golden.quant.quantize_weight) of a float weight [N, K]."""
    qw = quantize_weight(w, bits=8)
    return IntWeight(w_t=np.ascontiguousarray(qw.q.T.astype(np.float64)), w_max=127, unit=qw.scale, fmt="int8")


def blocks_q4_1(w: np.ndarray) -> NativeBlocks:
    """Asymmetric int4 in Q4_1 form (groups of 32 along K, f16 scale d and minimum m, round to nearest)."""
    w = np.asarray(w, np.float64)
    n, k = w.shape
    g = w.reshape(n, k // BLOCK, BLOCK)
    lo, hi = g.min(axis=2), g.max(axis=2)
    d = ((hi - lo) / 15).astype(np.float16).astype(np.float64)
    m = lo.astype(np.float16).astype(np.float64)
    safe = np.where(d > 0, d, 1.0)[..., None]
    q = np.clip(np.rint((g - m[..., None]) / safe), 0, 15).astype(np.int8).reshape(n, k)
    return NativeBlocks(kind="Q4_1", codes=q, d=d, m=m)


def weight_int4(w: np.ndarray) -> IntWeight:
    """Asymmetric int4 groups of 32 (Q4_1 layout) of a float weight, as integers."""
    return weight_from_blocks(blocks_q4_1(w), fmt="int4-g32")


@dataclass(frozen=True, eq=False)
class IntLinear:
    """y = requant(x @ W^T (<< per-token k) + bias) at out_scale; every field integer except the host scales."""

    weight: IntWeight
    bias: np.ndarray | None     # int64 [N] in accumulator units (in_scale * unit[n])
    multiplier: np.ndarray      # int64 [N] Q31
    shift: np.ndarray           # int64 [N]
    out_bits: int
    in_scale: float
    out_scale: float


def make_linear(weight: IntWeight, bias, in_scale: float, out_scale: float, out_bits: int) -> IntLinear:
    """Host: requant multipliers of (in_scale * unit[n] / out_scale) and the bias in accumulator units."""
    acc_unit = in_scale * weight.unit
    b = None if bias is None else np.rint(np.asarray(bias, np.float64) / acc_unit).astype(np.int64)
    if b is not None and np.abs(b).max(initial=0) >= 1 << 46:
        raise ValueError(f"bias in accumulator units must be < 2^46, got {int(np.abs(b).max())}")
    mult, shift = quantize_multipliers(acc_unit / out_scale)
    return IntLinear(weight=weight, bias=b, multiplier=mult, shift=shift, out_bits=out_bits, in_scale=in_scale,
                     out_scale=out_scale)


def linear_apply(x: np.ndarray, lin: IntLinear, *, token_bits: int | None = None) -> np.ndarray:
    """int x [S, K] -> int [S, N]. ``token_bits`` (8 or 16): x is first scaled per token by a power of two
    (token_shift) into that width; the unit of x stays ``lin.in_scale``, so the accumulator is worth acc * 2^k: with a
    bias it is shifted left by k before the bias and the requant, without one the requant's right shift is reduced
    by k instead (the same integer, no wider accumulator)."""
    if token_bits is None:
        acc = exact_matmul(x, lin.weight.w_t, b_max=lin.weight.w_max)
        if lin.bias is not None:
            acc = acc + lin.bias
        return requant_wide(acc, lin.multiplier, lin.shift, out_bits=lin.out_bits)
    xs, k = token_shift(x, token_bits)
    acc = exact_matmul(xs, lin.weight.w_t, b_max=lin.weight.w_max)
    if lin.bias is not None:
        return requant_wide((acc << k) + lin.bias, lin.multiplier, lin.shift, out_bits=lin.out_bits)
    return requant_wide(acc, lin.multiplier, lin.shift - k, out_bits=lin.out_bits)


def blocks_q4_1_gptq(w: np.ndarray, hessian: np.ndarray, *, damp: float = 0.01) -> NativeBlocks:
    """Q4_1-layout int4 (groups of 32, f16 scale and minimum) by GPTQ (Frantar et al. 2022), host side.

    ``hessian`` = sum of x^T x over calibration inputs [K, K]. Each group's (d, m) comes from its float weights
    (min/max, "static groups"); columns are then rounded in order of decreasing Hessian diagonal ("act order"), each
    column's rounding error spread over the not-yet-rounded columns through the Cholesky factor of the inverse
    Hessian (damped by ``damp`` x its mean diagonal). The result is an ordinary Q4_1 tensor: the NPU runs it exactly
    like a checkpoint's own blocks. Measured on MiniLM: round-to-nearest 0.970, GPTQ in order 0.978, GPTQ act order
    0.985 (minimum sentence cosine, w4a16-kv16).
    """
    W = np.array(w, dtype=np.float64)
    n, k = W.shape
    H = np.array(hessian, dtype=np.float64)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    groups = W.reshape(n, k // BLOCK, BLOCK)
    lo, hi = groups.min(axis=2), groups.max(axis=2)
    d = ((hi - lo) / 15).astype(np.float16).astype(np.float64)
    m = lo.astype(np.float16).astype(np.float64)
    safe = np.where(d > 0, d, 1.0)
    order = np.argsort(-np.diag(H), kind="stable")
    Wp = W[:, order]
    Hp = H[order][:, order] + damp * np.mean(np.diag(H)) * np.eye(k)
    hinv = np.linalg.cholesky(np.linalg.inv(Hp)).T          # upper triangular
    codes = np.zeros((n, k), np.int8)
    for jj, j in enumerate(order):
        g = j // BLOCK
        q = np.clip(np.rint((Wp[:, jj] - m[:, g]) / safe[:, g]), 0, 15)
        err = (Wp[:, jj] - (d[:, g] * q + m[:, g])) / hinv[jj, jj]
        Wp[:, jj + 1:] -= np.outer(err, hinv[jj, jj + 1:])
        codes[:, j] = q
    return NativeBlocks(kind="Q4_1", codes=codes, d=d, m=m)


def weight_int4_gptq(w: np.ndarray, hessian: np.ndarray) -> IntWeight:
    """GPTQ int4 groups of 32 (Q4_1 layout) as integers."""
    return weight_from_blocks(blocks_q4_1_gptq(w, hessian), fmt="int4-g32")
