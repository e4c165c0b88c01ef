"""golden.layers: float twins against independent float64 formulas, and integer twins against them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npuforge.golden.attention import KVCache
from npuforge.golden.checkpoint import BertConfig, LlamaConfig, random_bert_weights, random_hidden_states, random_llama_weights
from npuforge.golden.layers import BERT_POINTS, LLAMA_POINTS, bert_layer_float, llama_layer_float
from npuforge.golden.reference import float_rope

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


def test_float_rope_relative_positions():
    """RoPE makes q.k depend only on the position difference, and is the identity at position 0."""
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(1, 1, 16)), rng.normal(size=(1, 1, 16))
    dot = lambda m, n: float((float_rope(q, [m]) * float_rope(k, [n])).sum())  # noqa: E731
    assert dot(7, 3) == pytest.approx(dot(104, 100), abs=1e-5)
    assert dot(7, 3) != pytest.approx(dot(7, 4), abs=1e-3)
    np.testing.assert_allclose(float_rope(q, [0]), q, atol=1e-7)


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


# ---- integer twins ------------------------------------------------------------------------------

from npuforge.golden.layers import (  # noqa: E402
    bert_layer_int,
    linear_int,
    llama_layer_int,
    quantize_bert_layer,
    quantize_linear,
    quantize_llama_layer,
    run_bert_layer,
    run_llama_layer,
)
from npuforge.golden.quant import dequantize_activation, quantize_activation  # noqa: E402
from npuforge.golden.requant import requantize  # noqa: E402

BERT_Q = BertConfig(hidden=128, heads=4, intermediate=256)
LLAMA_Q = LlamaConfig(hidden=128, heads=4, kv_heads=2, intermediate=256, head_dim=32, attention_bias=True)


def _cos(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def bert_case():
    rng = np.random.default_rng(10)
    w = random_bert_weights(BERT_Q, rng)
    calib = [random_hidden_states(rng, 16, BERT_Q.hidden) for _ in range(3)]
    return w, calib, random_hidden_states(rng, 16, BERT_Q.hidden)


@pytest.fixture(scope="module")
def llama_case():
    rng = np.random.default_rng(11)
    w = random_llama_weights(LLAMA_Q, rng)
    calib = [random_hidden_states(rng, 12, LLAMA_Q.hidden) for _ in range(3)]
    return w, calib, random_hidden_states(rng, 12, LLAMA_Q.hidden)


@pytest.mark.parametrize("bits, group, min_cos", [(8, None, 0.99), (4, 32, 0.95)])
def test_bert_int_close_to_float(bert_case, bits, group, min_cos):
    w, calib, x = bert_case
    layer = quantize_bert_layer(w, BERT_Q, calib, weight_bits=bits, group_size=group)
    got = run_bert_layer(x, layer)
    assert _cos(got, bert_layer_float(x, w, BERT_Q)) >= min_cos
    # Against the float layer on the very input the integer layer sees (x on its int8 grid).
    xd = dequantize_activation(quantize_activation(x, layer.scales["x"]), layer.scales["x"])
    assert _cos(run_bert_layer(xd, layer), bert_layer_float(xd, w, BERT_Q)) >= min_cos
    # The integer entry point is what run_bert_layer wraps.
    np.testing.assert_array_equal(bert_layer_int(quantize_activation(x, layer.scales["x"]), layer),
                                  np.rint(got / layer.scales["out"]).astype(np.int8))


@pytest.mark.parametrize("bits, group, min_cos", [(8, None, 0.99), (4, 32, 0.95)])
def test_llama_int_close_to_float(llama_case, bits, group, min_cos):
    w, calib, x = llama_case
    layer = quantize_llama_layer(w, LLAMA_Q, calib, weight_bits=bits, group_size=group, max_positions=64)
    assert _cos(run_llama_layer(x, layer), llama_layer_float(x, w, LLAMA_Q)) >= min_cos
    # On the input the integer layer sees (x on its int16 grid; the evaluation input may exceed the calibrated
    # range and clip), the update out - x of the attention + MLP branches alone must match too: the int16
    # residual stream keeps it.
    xd = dequantize_activation(quantize_activation(x, layer.scales["x"], bits=16), layer.scales["x"])
    got, want = run_llama_layer(xd, layer), llama_layer_float(xd, w, LLAMA_Q)
    assert _cos(got, want) >= min_cos
    assert _cos(got - xd, want - xd) >= min_cos - 0.02


@pytest.mark.parametrize("bits, group", [(8, None), (4, 32), (4, None)])
def test_llama_decode_equals_prefill_bit_for_bit(llama_case, bits, group):
    """Decode of token t after a prefill of t tokens == prefill of t+1 tokens at the last position."""
    w, calib, x = llama_case
    layer = quantize_llama_layer(w, LLAMA_Q, calib, weight_bits=bits, group_size=group, max_positions=64)
    xq = quantize_activation(x, layer.scales["x"], bits=16)
    full = llama_layer_int(xq, layer)
    for t in (1, 5, 11):
        cache = KVCache(LLAMA_Q.kv_heads, LLAMA_Q.head_dim)
        llama_layer_int(xq[:t], layer, cache=cache)
        step = llama_layer_int(xq[t:t + 1], layer, cache=cache)
        np.testing.assert_array_equal(step, llama_layer_int(xq[:t + 1], layer)[-1:])
        np.testing.assert_array_equal(step, full[t:t + 1])
        assert cache.length == t + 1
    # Chunked prefill (4 + 8 tokens) too, and the cache holds what a single prefill would.
    cache = KVCache(LLAMA_Q.kv_heads, LLAMA_Q.head_dim)
    chunks = [llama_layer_int(xq[:4], layer, cache=cache), llama_layer_int(xq[4:], layer, cache=cache)]
    np.testing.assert_array_equal(np.concatenate(chunks), full)


def test_grouped_linear_equals_int64_formula():
    """QuantLinear grouped: sum_k x q m[n, k // G] + bias, one requant -- checked with a plain int64 sum."""
    rng = np.random.default_rng(12)
    w = rng.normal(0, 0.02, (24, 256))
    w[:, 7] *= 6
    b = rng.normal(0, 0.02, 24)
    layer = quantize_linear(w, b, 0.05, 0.02, weight_bits=4, group_size=64)
    qw, m = layer.weight, layer.group_multiplier
    assert qw.q.min() >= -7 and qw.q.max() <= 7 and m.min() >= 1 and m.max() <= 255
    assert (m == 255).any(axis=1).all()  # the largest group of each row uses the full multiplier
    # Group scales never clip: every weight is within half a step of its quantized value.
    assert np.all(np.abs(w - qw.q * np.repeat(qw.scale, 64, axis=1)) <= np.repeat(qw.scale, 64, axis=1) / 2 + 1e-12)
    x = rng.integers(-128, 128, (5, 256)).astype(np.int8)
    acc = (x.astype(np.int64)[:, None, :] * (qw.q.astype(np.int64) * np.repeat(m, 64, axis=1))[None]).sum(-1)
    want = requantize(acc + layer.bias, layer.multiplier, layer.shift)
    np.testing.assert_array_equal(linear_int(x, layer), want)
    with pytest.raises(ValueError, match=r"x must be an int8 array \[S, K=256\], got shape \(5, 128\)"):
        linear_int(x[:, :128], layer)
    # And it approximates the float product.
    got = linear_int(x, layer) * 0.02
    ref = (x * 0.05) @ w.T + b
    assert _cos(got, ref) > 0.97  # int4 weights: ~1/14 relative step per weight


def test_integer_layer_bad_input(llama_case, bert_case):
    w, calib, x = llama_case
    layer = quantize_llama_layer(w, LLAMA_Q, calib[:1], max_positions=16)
    with pytest.raises(ValueError, match=r"x must be an int16 array \[seq >= 1, 128\], got float32"):
        llama_layer_int(x, layer)
    xq = quantize_activation(x, layer.scales["x"], bits=16)
    cache = KVCache(LLAMA_Q.kv_heads, LLAMA_Q.head_dim)
    llama_layer_int(xq, layer, cache=cache)
    with pytest.raises(ValueError, match="positions must be < max_positions=16, got up to 23"):
        llama_layer_int(xq, layer, cache=cache)
    with pytest.raises(ValueError, match="cache must hold int8"):
        llama_layer_int(xq, layer, cache=KVCache(LLAMA_Q.kv_heads, LLAMA_Q.head_dim, np.float32))
    with pytest.raises(ValueError, match="group_size is only for 4-bit weights"):
        quantize_llama_layer(w, LLAMA_Q, calib[:1], weight_bits=8, group_size=32)
    with pytest.raises(ValueError, match="calibration inputs must hold at least one array"):
        quantize_bert_layer(bert_case[0], BERT_Q, [])
    with pytest.raises(ValueError, match=r"K must be in \[1, 8224\]"):
        quantize_linear(np.ones((2, 8320)), None, 1.0, 1.0, weight_bits=4, group_size=128)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        quantize_linear(np.ones((2, 64)), np.ones(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="in_scale must be a finite positive number"):
        quantize_linear(np.ones((2, 64)), None, 0.0, 1.0)
    with pytest.raises(ValueError, match="weight_bits must be 8 or 4, got 2"):
        quantize_linear(np.ones((2, 64)), None, 1.0, 1.0, weight_bits=2)
