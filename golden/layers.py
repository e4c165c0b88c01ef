"""Whole Transformer layers: float32 twins (this part) and integer twins of identical structure.

Weights are dicts keyed by Hugging Face names relative to the layer prefix (see golden.checkpoint), float
Linear layout [out, in]. Activations are [seq, hidden].

BERT encoder layer (post-LayerNorm)::

    q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv          (split into heads)
    ctx     = softmax(q k^T / sqrt(d)) v                        (golden.attention)
    h       = LayerNorm(ctx Wo^T + bo + x)
    out     = LayerNorm(GELU(h Wi^T + bi) Wo2^T + bo2 + h)

Llama decoder layer (pre-RMSNorm, grouped-query attention, RoPE, SiLU-gated MLP)::

    n1      = RMSNorm(x) * g1
    q, k, v = n1 Wq^T (+bq), n1 Wk^T (+bk), n1 Wv^T (+bv);  q, k = RoPE(q, k, positions)
    h       = x + causal_attention(q, [cache_k, k], [cache_v, v]) Wo^T
    n2      = RMSNorm(h) * g2
    out     = h + (SiLU(n2 Wg^T) * (n2 Wu^T)) Wd^T

Prefill passes a sequence; decode passes one token with the KV cache of the previous tokens (positions
continue from ``cache.length``). Every quantization point of the integer twin has a name (``*_POINTS``);
the float twin reports each point's float value to ``observe(name, array)`` so that calibration can record
max |x| there.
"""

from __future__ import annotations

import math

import numpy as np

from golden.attention import KVCache, attention_float
from golden.checkpoint import BertConfig, LlamaConfig, bert_weight_shapes, llama_weight_shapes

__all__ = [
    "BERT_POINTS",
    "LLAMA_POINTS",
    "bert_layer_float",
    "llama_layer_float",
    "check_weights",
    "rope_float",
]

# Quantization points (activation tensors with a calibrated per-tensor scale), in dataflow order.
BERT_POINTS = ("x", "q", "k", "v", "scores", "ctx", "attn_out", "residual1", "ln1",
               "inter", "gelu", "mlp_out", "residual2", "out")
LLAMA_POINTS = ("x", "norm1", "q", "k", "v", "scores", "ctx", "attn_out", "residual1", "norm2",
                "gate", "up", "silu", "gated", "mlp_out", "out")


def check_weights(weights: dict, cfg) -> None:
    """ValueError naming a missing tensor or a shape that does not match ``cfg``."""
    shapes = bert_weight_shapes(cfg) if isinstance(cfg, BertConfig) else llama_weight_shapes(cfg)
    for name, shape in shapes.items():
        if name not in weights:
            raise ValueError(f"weights have no tensor {name!r}")
        if tuple(np.shape(weights[name])) != shape:
            raise ValueError(f"weight {name!r} has shape {np.shape(weights[name])}, expected {shape}")


def _check_input(x, hidden: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != hidden or x.shape[0] < 1:
        raise ValueError(f"x must have shape [seq >= 1, {hidden}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite (no NaN or inf)")
    return x.astype(np.float32)


def _noop(name, array):
    pass


# ---- float operator twins -----------------------------------------------------------------------

def _linear(x, weights, name):
    y = x @ weights[f"{name}.weight"].T
    bias = weights.get(f"{name}.bias")
    return (y if bias is None else y + bias).astype(np.float32)


def _layernorm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32)


def _rmsnorm(x, gamma, eps):
    return (x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gamma).astype(np.float32)


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x):
    return (0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)).astype(np.float64))).astype(np.float32)


def _silu(x):
    return (x / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def rope_float(x, positions, *, base: float = 10000.0) -> np.ndarray:
    """Hugging Face Llama RoPE (rotate-half: pairs (i, i + d/2)) on x [heads, S, d] at ``positions`` [S]."""
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (np.arange(0, d, 2, dtype=np.float64) / d))
    angles = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(np.float32)


def _heads(x, n, d):
    """[S, n*d] -> [n, S, d]."""
    return x.reshape(x.shape[0], n, d).transpose(1, 0, 2)


def _merge(x):
    """[n, S, d] -> [S, n*d]."""
    return x.transpose(1, 0, 2).reshape(x.shape[1], -1)


# ---- float twins --------------------------------------------------------------------------------

def bert_layer_float(x, weights: dict, cfg: BertConfig, *, observe=None) -> np.ndarray:
    """Float32 BERT encoder layer on x [S, hidden] -> [S, hidden]; ``observe`` sees every BERT_POINTS value."""
    check_weights(weights, cfg)
    x = _check_input(x, cfg.hidden)
    obs = observe or _noop
    obs("x", x)
    q, k, v = (_linear(x, weights, f"attention.self.{p}") for p in ("query", "key", "value"))
    obs("q", q), obs("k", k), obs("v", v)
    ctx = _merge(attention_float(*(_heads(t, cfg.heads, cfg.head_dim) for t in (q, k, v)), observe=obs))
    obs("ctx", ctx)
    attn_out = _linear(ctx, weights, "attention.output.dense")
    obs("attn_out", attn_out)
    residual1 = attn_out + x
    obs("residual1", residual1)
    ln1 = _layernorm(residual1, weights["attention.output.LayerNorm.weight"],
                     weights["attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
    obs("ln1", ln1)
    inter = _linear(ln1, weights, "intermediate.dense")
    obs("inter", inter)
    act = _gelu(inter)
    obs("gelu", act)
    mlp_out = _linear(act, weights, "output.dense")
    obs("mlp_out", mlp_out)
    residual2 = mlp_out + ln1
    obs("residual2", residual2)
    out = _layernorm(residual2, weights["output.LayerNorm.weight"], weights["output.LayerNorm.bias"],
                     cfg.layer_norm_eps)
    obs("out", out)
    return out


def llama_layer_float(x, weights: dict, cfg: LlamaConfig, *, cache: KVCache | None = None,
                      observe=None) -> np.ndarray:
    """Float32 Llama decoder layer on x [S, hidden] -> [S, hidden].

    With ``cache`` (float32 KVCache) the tokens are at positions cache.length.. and their K/V are appended
    (decode: S = 1); without, this is a prefill from position 0.
    """
    check_weights(weights, cfg)
    x = _check_input(x, cfg.hidden)
    obs = observe or _noop
    if cache is None:
        cache = KVCache(cfg.kv_heads, cfg.head_dim, np.float32)
    _check_cache(cache, cfg, np.float32)
    start = cache.length
    positions = np.arange(start, start + x.shape[0])
    obs("x", x)
    norm1 = _rmsnorm(x, weights["input_layernorm.weight"], cfg.rms_norm_eps)
    obs("norm1", norm1)
    q = _heads(_linear(norm1, weights, "self_attn.q_proj"), cfg.heads, cfg.head_dim)
    k = _heads(_linear(norm1, weights, "self_attn.k_proj"), cfg.kv_heads, cfg.head_dim)
    v = _heads(_linear(norm1, weights, "self_attn.v_proj"), cfg.kv_heads, cfg.head_dim)
    # The integer twin quantizes q and k once, before RoPE, and RoPE keeps their scale: the calibrated
    # range must cover both sides of the rotation.
    q_rot, k_rot = rope_float(q, positions, base=cfg.rope_theta), rope_float(k, positions, base=cfg.rope_theta)
    obs("q", np.concatenate([q.ravel(), q_rot.ravel()]))
    obs("k", np.concatenate([k.ravel(), k_rot.ravel()]))
    obs("v", v)
    cache.append(k_rot, v)
    ctx = _merge(attention_float(q_rot, cache.k, cache.v, causal=True, row_offset=start, observe=obs))
    obs("ctx", ctx)
    attn_out = _linear(ctx, weights, "self_attn.o_proj")
    obs("attn_out", attn_out)
    residual1 = x + attn_out
    obs("residual1", residual1)
    norm2 = _rmsnorm(residual1, weights["post_attention_layernorm.weight"], cfg.rms_norm_eps)
    obs("norm2", norm2)
    gate = _linear(norm2, weights, "mlp.gate_proj")
    up = _linear(norm2, weights, "mlp.up_proj")
    obs("gate", gate), obs("up", up)
    act = _silu(gate)
    obs("silu", act)
    gated = act * up
    obs("gated", gated)
    mlp_out = _linear(gated, weights, "mlp.down_proj")
    obs("mlp_out", mlp_out)
    out = residual1 + mlp_out
    obs("out", out)
    return out


def _check_cache(cache, cfg: LlamaConfig, dtype) -> None:
    if not isinstance(cache, KVCache):
        raise ValueError(f"cache must be a golden.attention.KVCache, got {type(cache).__name__}")
    if (cache.kv_heads, cache.head_dim) != (cfg.kv_heads, cfg.head_dim) or np.dtype(cache.dtype) != np.dtype(dtype):
        raise ValueError(
            f"cache must hold {np.dtype(dtype)} [{cfg.kv_heads}, T, {cfg.head_dim}], got "
            f"{np.dtype(cache.dtype)} [{cache.kv_heads}, T, {cache.head_dim}]")
