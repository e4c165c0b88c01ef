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

from dataclasses import dataclass

import numpy as np

__all__ = ["KVCache", "attention_float", "kv_head_index"]


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
    if causal:
        rows = np.arange(q.shape[1])[:, None] + row_offset
        scores = np.where(np.arange(k.shape[1])[None, :] > rows, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
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
