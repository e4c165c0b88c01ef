"""golden.layers: float twins against independent float64 formulas, and integer twins against them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from golden.attention import KVCache
from golden.checkpoint import BertConfig, LlamaConfig, random_bert_weights, random_hidden_states, random_llama_weights
from golden.layers import BERT_POINTS, LLAMA_POINTS, bert_layer_float, llama_layer_float, rope_float

BERT = BertConfig(hidden=64, heads=4, intermediate=128)
LLAMA = LlamaConfig(hidden=64, heads=4, kv_heads=2, intermediate=96, head_dim=16, rope_theta=10000.0,
                    attention_bias=True)


def _ln64(x, g, b, eps):
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        mu = sum(x[r]) / len(x[r])
        var = sum((v - mu) ** 2 for v in x[r]) / len(x[r])
        out[r] = [(v - mu) / math.sqrt(var + eps) for v in x[r]]
    return out * g + b


def _softmax_rows64(s):
    out = np.empty_like(s)
    for r in range(s.shape[0]):
        m = max(s[r])
        e = [math.exp(v - m) for v in s[r]]
        out[r] = [v / sum(e) for v in e]
    return out


def _bert_reference(x, w, cfg):
    """Straight-line float64 BERT layer, head by head, written from the paper's equations."""
    x = x.astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in w.items()}
    lin = lambda t, n: t @ w[n + ".weight"].T + w[n + ".bias"]  # noqa: E731
    q, k, v = (lin(x, f"attention.self.{p}") for p in ("query", "key", "value"))
    d = cfg.head_dim
    ctx = np.zeros_like(q)
    for h in range(cfg.heads):
        cols = slice(h * d, (h + 1) * d)
        p = _softmax_rows64(q[:, cols] @ k[:, cols].T / math.sqrt(d))
        ctx[:, cols] = p @ v[:, cols]
    h1 = _ln64(lin(ctx, "attention.output.dense") + x, w["attention.output.LayerNorm.weight"],
               w["attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
    inter = lin(h1, "intermediate.dense")
    gelu = np.vectorize(lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))))(inter)
    return _ln64(lin(gelu, "output.dense") + h1, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"],
                 cfg.layer_norm_eps)


def _llama_reference(x, w, cfg):
    """Float64 Llama layer over a whole sequence, head by head, with explicit RoPE angles and causal mask."""
    x = x.astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in w.items()}
    lin = lambda t, n: t @ w[n + ".weight"].T + w.get(n + ".bias", 0.0)  # noqa: E731
    rms = lambda t, g: t / np.sqrt((t * t).mean(axis=1, keepdims=True) + cfg.rms_norm_eps) * g  # noqa: E731
    d, s = cfg.head_dim, x.shape[0]
    n1 = rms(x, w["input_layernorm.weight"])
    q, k, v = (lin(n1, f"self_attn.{p}_proj") for p in "qkv")

    def rot(t, pos):  # one head vector at one position, pairs (i, i + d/2)
        out = t.copy()
        for i in range(d // 2):
            a = pos * cfg.rope_theta ** (-2 * i / d)
            out[i] = t[i] * math.cos(a) - t[i + d // 2] * math.sin(a)
            out[i + d // 2] = t[i + d // 2] * math.cos(a) + t[i] * math.sin(a)
        return out

    ctx = np.zeros_like(q)
    group = cfg.heads // cfg.kv_heads
    for h in range(cfg.heads):
        qc, kc = slice(h * d, (h + 1) * d), slice((h // group) * d, (h // group + 1) * d)
        qh = np.array([rot(q[t, qc], t) for t in range(s)])
        kh = np.array([rot(k[t, kc], t) for t in range(s)])
        scores = qh @ kh.T / math.sqrt(d)
        scores[np.triu_indices(s, 1)] = -np.inf
        ctx[:, qc] = _softmax_rows64(scores) @ v[:, kc]
    h1 = x + lin(ctx, "self_attn.o_proj")
    n2 = rms(h1, w["post_attention_layernorm.weight"])
    g, u = lin(n2, "mlp.gate_proj"), lin(n2, "mlp.up_proj")
    return h1 + lin(g / (1 + np.exp(-g)) * u, "mlp.down_proj")


def test_bert_float_matches_reference():
    rng = np.random.default_rng(0)
    w = random_bert_weights(BERT, rng)
    x = random_hidden_states(rng, 8, BERT.hidden)
    np.testing.assert_allclose(bert_layer_float(x, w, BERT), _bert_reference(x, w, BERT), atol=2e-4)


def test_llama_float_matches_reference():
    rng = np.random.default_rng(1)
    w = random_llama_weights(LLAMA, rng)
    # Larger q/k weights make attention far from uniform, so position and masking errors would show.
    for name in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
        w[name] = w[name] * 10
    x = random_hidden_states(rng, 7, LLAMA.hidden)
    np.testing.assert_allclose(llama_layer_float(x, w, LLAMA), _llama_reference(x, w, LLAMA), atol=2e-4)


def test_llama_float_decode_continues_prefill():
    rng = np.random.default_rng(2)
    w = random_llama_weights(LLAMA, rng)
    x = random_hidden_states(rng, 6, LLAMA.hidden)
    full = llama_layer_float(x, w, LLAMA)
    cache = KVCache(LLAMA.kv_heads, LLAMA.head_dim, np.float32)
    first = llama_layer_float(x[:4], w, LLAMA, cache=cache)
    steps = [llama_layer_float(x[t:t + 1], w, LLAMA, cache=cache) for t in (4, 5)]
    assert cache.length == 6
    np.testing.assert_allclose(np.concatenate([first, *steps]), full, atol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_weights():
    rng = np.random.default_rng(3)
    w = random_llama_weights(LLAMA, rng)
    mha_cfg = LlamaConfig(**{**LLAMA.__dict__, "kv_heads": LLAMA.heads})
    group, d = LLAMA.heads // LLAMA.kv_heads, LLAMA.head_dim
    mha = dict(w)
    for p in ("k_proj", "v_proj"):
        for suffix in ("weight", "bias"):
            t = w[f"self_attn.{p}.{suffix}"]
            heads = t.reshape(LLAMA.kv_heads, d, *t.shape[1:])
            mha[f"self_attn.{p}.{suffix}"] = np.repeat(heads, group, axis=0).reshape(LLAMA.heads * d, *t.shape[1:])
    x = random_hidden_states(rng, 5, LLAMA.hidden)
    np.testing.assert_allclose(llama_layer_float(x, w, LLAMA), llama_layer_float(x, mha, mha_cfg), atol=1e-5)


def test_rope_float_relative_positions():
    """RoPE makes q.k depend only on the position difference, and is the identity at position 0."""
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(1, 1, 16)), rng.normal(size=(1, 1, 16))
    dot = lambda m, n: float((rope_float(q, [m]) * rope_float(k, [n])).sum())  # noqa: E731
    assert dot(7, 3) == pytest.approx(dot(104, 100), abs=1e-5)
    assert dot(7, 3) != pytest.approx(dot(7, 4), abs=1e-3)
    np.testing.assert_allclose(rope_float(q, [0]), q, atol=1e-7)


def test_observe_sees_every_point():
    rng = np.random.default_rng(5)
    seen = []
    bert_layer_float(random_hidden_states(rng, 4, BERT.hidden), random_bert_weights(BERT, rng), BERT,
                     observe=lambda name, a: seen.append(name))
    assert tuple(seen) == BERT_POINTS
    seen.clear()
    llama_layer_float(random_hidden_states(rng, 4, LLAMA.hidden), random_llama_weights(LLAMA, rng), LLAMA,
                      observe=lambda name, a: seen.append(name))
    assert tuple(seen) == LLAMA_POINTS


def test_float_bad_input():
    rng = np.random.default_rng(6)
    w = random_bert_weights(BERT, rng)
    with pytest.raises(ValueError, match=r"x must have shape \[seq >= 1, 64\], got \(4, 32\)"):
        bert_layer_float(np.zeros((4, 32)), w, BERT)
    with pytest.raises(ValueError, match="x must be finite"):
        bert_layer_float(np.full((2, 64), np.nan), w, BERT)
    del w["output.dense.bias"]
    with pytest.raises(ValueError, match="weights have no tensor 'output.dense.bias'"):
        bert_layer_float(np.zeros((2, 64)), w, BERT)
    lw = random_llama_weights(LLAMA, rng)
    with pytest.raises(ValueError, match=r"cache must hold float32 \[2, T, 16\]"):
        llama_layer_float(np.zeros((1, 64)), lw, LLAMA, cache=KVCache(2, 16, np.int8))
