"""golden.attention: integer attention vs the float twin, GQA, causal prefill == decode, KV cache, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npuforge.golden.attention import KVCache, attention, attention_float, attention_params, kv_head_index
from npuforge.golden.gemm import gemm
from npuforge.golden.quant import dequantize_activation, quantize_activation
from npuforge.golden.requant import requantize
from npuforge.golden.softmax import softmax


def _case(rng, heads=4, kv_heads=2, s=6, t=6, d=16, sharp=2.0):
    """Float q, k, v with peaked attention (sharp scales q.k), their int8 versions and params."""
    q = rng.normal(0, sharp, (heads, s, d))
    k = rng.normal(0, 1.0, (kv_heads, t, d))
    v = rng.normal(0, 1.0, (kv_heads, t, d))
    scales = {n: np.abs(a).max() / 127 for n, a in (("q", q), ("k", k), ("v", v))}
    ref = attention_float(q, k, v, causal=s == t)
    scores = np.einsum("hsd,htd->hst", q, k[kv_head_index(heads, kv_heads)]) / math.sqrt(d)
    out_scale = np.abs(ref).max() / 127
    params = attention_params(scales["q"], scales["k"], scales["v"], out_scale, head_dim=d,
                              score_scale=np.abs(scores).max() / 32767)
    qi, ki, vi = (quantize_activation(a, scales[n]) for n, a in (("q", q), ("k", k), ("v", v)))
    return qi, ki, vi, params, ref, out_scale, scales


def test_close_to_float():
    rng = np.random.default_rng(0)
    qi, ki, vi, params, ref, out_scale, scales = _case(rng, s=32, t=32, d=64)
    out = attention(qi, ki, vi, params, causal=True)
    assert out.dtype == np.int8 and out.shape == ref.shape
    got = dequantize_activation(out, out_scale).astype(np.float64)
    # The kernel's own error (int16 scores, integer softmax, 8-bit probabilities, output rounding), against the
    # float attention of the same int8 q, k, v.
    same_inputs = attention_float(dequantize_activation(qi, scales["q"]), dequantize_activation(ki, scales["k"]),
                                  dequantize_activation(vi, scales["v"]), causal=True)
    err = np.abs(got - same_inputs)
    assert err.max() < 2 * out_scale and err.mean() < 0.3 * out_scale
    # Including the int8 quantization of q, k, v.
    cos = float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref))
    assert cos > 0.999


def test_equals_direct_integer_pipeline():
    """The zero-point form of p.v equals a plain int64 matmul of the uint8 probabilities with V."""
    rng = np.random.default_rng(1)
    qi, ki, vi, params = _case(rng, heads=2, kv_heads=1, s=5, t=9, d=8, sharp=0.3)[:4]
    out = attention(qi, ki, vi, params, causal=True, row_offset=4)
    kv = kv_head_index(2, 1)
    scores = requantize(gemm(qi, ki[kv].transpose(0, 2, 1)), params.score_multiplier, params.score_shift,
                        out_bits=16)
    p = softmax(scores, params.softmax, causal=True, row_offset=4)
    ctx = p.astype(np.int64) @ vi[kv].astype(np.int64)
    np.testing.assert_array_equal(out, requantize(ctx, params.out_multiplier, params.out_shift))


def test_gqa_equals_mha_with_repeated_kv():
    rng = np.random.default_rng(2)
    qi, ki, vi, params = _case(rng, heads=6, kv_heads=2)[:4]
    gqa = attention(qi, ki, vi, params, causal=True)
    # HF repeat_kv: query heads 0-2 read KV head 0, heads 3-5 read KV head 1.
    mha = attention(qi, np.repeat(ki, 3, axis=0), np.repeat(vi, 3, axis=0), params, causal=True)
    np.testing.assert_array_equal(gqa, mha)
    assert not np.array_equal(gqa, attention(qi, np.tile(ki, (3, 1, 1)), np.tile(vi, (3, 1, 1)), params,
                                             causal=True))


def test_causal_mask_hides_future_keys():
    rng = np.random.default_rng(3)
    qi, ki, vi, params = _case(rng, s=5, t=5)[:4]
    base = attention(qi, ki, vi, params, causal=True)
    k2, v2 = ki.copy(), vi.copy()
    k2[:, 4], v2[:, 4] = 127, -128  # only the last query may see key 4
    changed = attention(qi, k2, v2, params, causal=True)
    np.testing.assert_array_equal(changed[:, :4], base[:, :4])
    assert not np.array_equal(changed[:, 4], base[:, 4])


def test_decode_with_cache_equals_prefill_rows():
    rng = np.random.default_rng(4)
    qi, ki, vi, params = _case(rng, s=8, t=8)[:4]
    prefill = attention(qi, ki, vi, params, causal=True)
    cache = KVCache(kv_heads=2, head_dim=16)
    cache.append(ki[:, :3], vi[:, :3])
    for t in range(3, 8):
        cache.append(ki[:, t:t + 1], vi[:, t:t + 1])
        step = attention(qi[:, t:t + 1], cache.k, cache.v, params, causal=True, row_offset=t)
        np.testing.assert_array_equal(step, prefill[:, t:t + 1])
        # The newest token sees every cached key: no mask needed.
        np.testing.assert_array_equal(attention(qi[:, t:t + 1], cache.k, cache.v, params), step)
    assert cache.length == 8


def test_params_fold_score_scaling():
    p = attention_params(0.02, 0.03, 0.05, 0.01, head_dim=64, score_scale=1e-4)
    real = p.score_multiplier * 2.0 ** -(31 + p.score_shift)
    assert real == pytest.approx(0.02 * 0.03 / 8 / 1e-4, rel=1e-9)


def test_bad_input():
    rng = np.random.default_rng(5)
    qi, ki, vi, params = _case(rng)[:4]
    with pytest.raises(ValueError, match="q must be an int8 array"):
        attention(qi.astype(np.float32), ki, vi, params)
    with pytest.raises(ValueError, match=r"heads \(4\) must be a positive multiple of kv_heads \(3\)"):
        attention(qi, np.concatenate([ki, ki[:1]]), np.concatenate([vi, vi[:1]]), params)
    with pytest.raises(ValueError, match=r"row_offset \+ queries <= keys, got 1 \+ 6 > 6"):
        attention(qi, ki, vi, params, causal=True, row_offset=1)
    with pytest.raises(ValueError, match="row_offset must be an integer >= 0, got -1"):
        attention(qi, ki, vi, params, row_offset=-1)
    with pytest.raises(ValueError, match="q head_dim must be 8"):
        attention(qi, ki, vi, attention_params(0.1, 0.1, 0.1, 0.1, head_dim=8, score_scale=0.01))
    with pytest.raises(ValueError, match="score_scale must be a finite positive number"):
        attention_params(0.1, 0.1, 0.1, 0.1, head_dim=8, score_scale=float("nan"))
    cache = KVCache(kv_heads=2, head_dim=16)
    with pytest.raises(ValueError, match="k must have dtype int8, got float64"):
        cache.append(np.zeros((2, 1, 16)), np.zeros((2, 1, 16), np.int8))
    with pytest.raises(ValueError, match=r"v must have shape \[2, new, 16\], got \(1, 1, 16\)"):
        cache.append(np.zeros((2, 1, 16), np.int8), np.zeros((1, 1, 16), np.int8))
