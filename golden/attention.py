"""Multi-head / grouped-query attention: integer kernel, float twin, and a KV cache.

Layout: q [heads, S, head_dim], k and v [kv_heads, T, head_dim] (T keys: the KV cache plus the new tokens).
Head h reads KV head ``h // (heads // kv_heads)`` (Hugging Face ``repeat_kv``), so kv_heads == heads is
plain multi-head attention and kv_heads < heads is grouped-query attention (GQA).

Integer algorithm, per head (all widths exact, see the operator modules for their internals):

1. ``scores = gemm(q_h, k_h^T)``: int8 x int8 -> int32 [S, T] (golden.gemm, K = head_dim).
2. ``scores16 = requantize(scores, M_s, shift_s, out_bits=16)``: the 1/sqrt(head_dim) scaling is folded
   into the Q31 multiplier, real scale q_scale * k_scale / sqrt(head_dim) / score_scale (golden.requant).
3. ``p = softmax(scores16, causal=..., row_offset=...)``: uint8 probabilities of scale
   ``SOFTMAX_OUT_SCALE`` (golden.softmax). Causal: key j is masked for query row i when
   j > i + row_offset, where row_offset = number of cached keys before the first query.
4. ``ctx = gemm(p, v_h)``: probabilities x int8 V -> int32 [S, head_dim], K = T keys.
5. ``out = requantize(ctx, M_o, shift_o)`` -> int8, real scale SOFTMAX_OUT_SCALE * v_scale / out_scale.

Decode appends the new token's int8 K and V to a ``KVCache`` and runs the same kernel with S = 1 and
row_offset = tokens already cached, so decode of token t equals row t of a causal prefill bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_int, check_int_array, check_scale
from npuforge.golden.gemm import gemm
from npuforge.golden.reference import float_softmax
from npuforge.golden.requant import quantize_multiplier, requantize
from npuforge.golden.softmax import SOFTMAX_OUT_SCALE, SoftmaxParams, softmax, softmax_params

__all__ = ["AttentionParams", "attention_params", "attention", "KVCache", "attention_float", "kv_head_index"]

SCORE_BITS = 16
"""Width of the requantized scores fed to softmax."""


def kv_head_index(heads: int, kv_heads: int) -> np.ndarray:
    """KV head read by each query head (Hugging Face repeat_kv order): h // (heads // kv_heads)."""
    if heads < 1 or kv_heads < 1 or heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a positive multiple of kv_heads ({kv_heads})")
    return np.arange(heads) // (heads // kv_heads)


def _check_qkv(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"q, k, v must be 3-D [heads, seq, head_dim], got shapes {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {k.shape} and {v.shape}")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"q head_dim {q.shape[2]} != k head_dim {k.shape[2]}")
    kv_head_index(q.shape[0], k.shape[0])


def _check_mask(q_len: int, k_len: int, causal: bool, row_offset: int) -> None:
    if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)) or row_offset < 0:
        raise ValueError(f"row_offset must be an integer >= 0, got {row_offset!r}")
    if causal and row_offset + q_len > k_len:
        raise ValueError(f"causal attention needs row_offset + queries <= keys, got {row_offset} + {q_len} > {k_len}")


@dataclass(frozen=True)
class AttentionParams:
    """Run-time integer parameters of attention (what the hardware loads into its registers)."""

    head_dim: int
    score_multiplier: int  # Q31, int32 q.k -> int16 scores, 1/sqrt(head_dim) folded in
    score_shift: int
    softmax: SoftmaxParams
    out_multiplier: int    # Q31, int32 p.v -> int8 context
    out_shift: int


def attention_params(q_scale: float, k_scale: float, v_scale: float, out_scale: float, *, head_dim: int,
                     score_scale: float) -> AttentionParams:
    """Host side: scales of int8 q, k, v, the int8 output, and the int16 scores -> AttentionParams.

    ``score_scale`` is the real value of one LSB of the int16 scores q.k / sqrt(head_dim) (calibrate it as
    max |scores| / 32767).
    """
    for name, value in (("q_scale", q_scale), ("k_scale", k_scale), ("v_scale", v_scale),
                        ("out_scale", out_scale), ("score_scale", score_scale)):
        check_scale(name, value)
    head_dim = check_int("head_dim", head_dim, 1, 1 << 16)
    score_m, score_s = quantize_multiplier(q_scale * k_scale / math.sqrt(head_dim) / score_scale)
    out_m, out_s = quantize_multiplier(SOFTMAX_OUT_SCALE * v_scale / out_scale)
    return AttentionParams(head_dim=head_dim, score_multiplier=score_m, score_shift=score_s,
                           softmax=softmax_params(score_scale, input_bits=SCORE_BITS),
                           out_multiplier=out_m, out_shift=out_s)


def attention(q, k, v, params: AttentionParams, *, causal: bool = False, row_offset: int = 0) -> np.ndarray:
    """Integer attention: int8 q [heads, S, d], k and v [kv_heads, T, d] -> int8 context [heads, S, d].

    Steps 1-5 of the module docstring. The uint8 probabilities p in [0, 255] exceed the signed 8-bit GEMM
    operand, so step 4 runs with a zero point of 128, exactly:
    ``p . v = (p - 128) . v + 128 * sum_t v[t]`` (the column sum is a GEMM of ones with v).
    """
    if not isinstance(params, AttentionParams):
        raise ValueError(f"params must be an AttentionParams, got {type(params).__name__}")
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not isinstance(a, np.ndarray) or a.dtype != np.int8:
            raise ValueError(f"{name} must be an int8 array [heads, seq, head_dim], got "
                             f"{getattr(a, 'dtype', type(a).__name__)}")
    _check_qkv(q, k, v)
    if q.shape[2] != params.head_dim:
        raise ValueError(f"q head_dim must be {params.head_dim} (from params), got {q.shape[2]}")
    _check_mask(q.shape[1], k.shape[1], causal, row_offset)
    kv = kv_head_index(q.shape[0], k.shape[0])
    k_h, v_h = k[kv], v[kv]                                                   # [heads, T, d]
    scores = gemm(q, k_h.transpose(0, 2, 1))                                  # int32 [heads, S, T]
    scores16 = requantize(scores, params.score_multiplier, params.score_shift, out_bits=SCORE_BITS)
    p = softmax(scores16, params.softmax, causal=causal, row_offset=row_offset)
    p = check_int_array("softmax output", p, 8, signed=False)
    p_centered = (p - 128).astype(np.int8)
    ones = np.ones((q.shape[0], 1, k.shape[1]), np.int8)
    ctx = gemm(p_centered, v_h).astype(np.int64) + (gemm(ones, v_h).astype(np.int64) << 7)
    # |ctx| <= 255 * 128 * T (in practice ~ 128 * 2^8: the probabilities sum to about 1).
    return requantize(ctx, params.out_multiplier, params.out_shift)


def attention_float(q, k, v, *, causal: bool = False, row_offset: int = 0, observe=None) -> np.ndarray:
    """Float32 twin: softmax(q k^T / sqrt(head_dim) [+ causal mask]) v per head -> [heads, S, head_dim].

    ``observe(name, array)``, if given, sees the scaled scores ("scores") for calibration.
    """
    q, k, v = (np.asarray(a, np.float32) for a in (q, k, v))
    _check_qkv(q, k, v)
    _check_mask(q.shape[1], k.shape[1], causal, row_offset)
    kv = kv_head_index(q.shape[0], k.shape[0])
    scores = np.einsum("hsd,htd->hst", q, k[kv]) / np.float32(np.sqrt(q.shape[2]))
    if observe is not None:
        observe("scores", scores)
    p = float_softmax(scores, causal=causal, row_offset=row_offset)
    return np.einsum("hst,htd->hsd", p, v[kv]).astype(np.float32)


@dataclass
class KVCache:
    """Keys and values of past tokens, [kv_heads, length, head_dim], appended to by each step.

    ``dtype`` is int8 for the integer layers (K after RoPE and V, at their calibrated scales) and float32
    for the float twins. Mutable on purpose: decode steps append in place.
    """

    kv_heads: int
    head_dim: int
    dtype: type = np.int8

    def __post_init__(self):
        if self.kv_heads < 1 or self.head_dim < 1:
            raise ValueError(f"kv_heads and head_dim must be >= 1, got {self.kv_heads}, {self.head_dim}")
        self.k = np.zeros((self.kv_heads, 0, self.head_dim), self.dtype)
        self.v = np.zeros((self.kv_heads, 0, self.head_dim), self.dtype)

    @property
    def length(self) -> int:
        return self.k.shape[1]

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        """Append new keys/values [kv_heads, new, head_dim] of this cache's dtype."""
        shape = (self.kv_heads, None, self.head_dim)
        for name, a in (("k", k), ("v", v)):
            if a.dtype != self.dtype:
                raise ValueError(f"{name} must have dtype {np.dtype(self.dtype)}, got {a.dtype}")
            if a.ndim != 3 or a.shape[0] != shape[0] or a.shape[2] != shape[2]:
                raise ValueError(f"{name} must have shape [{self.kv_heads}, new, {self.head_dim}], got {a.shape}")
        if k.shape != v.shape:
            raise ValueError(f"k and v must have the same shape, got {k.shape} and {v.shape}")
        self.k = np.concatenate([self.k, k], axis=1)
        self.v = np.concatenate([self.v, v], axis=1)
