"""Whole Transformer layers: float32 twins and integer twins of identical structure, prefill and decode.

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

Integer twins (same structure, golden operators only; every point has one per-tensor scale)::

    BERT  (x int8)   q,k,v = linear_int(x)                      int8  (W8: int8/channel, W4: int4 grouped)
                     ctx   = attention(q, k, v)                 int8  (int16 scores, uint8 probabilities)
                     r1    = residual_add(linear_int(ctx), x)   int16 residual
                     ln1   = layernorm(r1)                      int8
                     act   = lookup(linear_int(ln1), gelu_table) int8
                     out   = layernorm(residual_add(linear_int(act), ln1))    int8 (r2 int16)
    Llama (x int16 residual stream)
                     n1    = rmsnorm(x)                         int8
                     q,k,v = linear_int(n1); q,k = rope(q,k)    int8 (one scale each side of RoPE)
                     ctx   = attention(q, [cache k, k], [cache v, v], causal)  int8, K/V cache int8
                     r1    = residual_add(x, linear_int(ctx))   int16
                     n2    = rmsnorm(r1)                        int8
                     g     = gate_mul(lookup(linear_int(n2), silu_table), linear_int(n2))  int8
                     out   = residual_add(r1, linear_int(g))    int16

Scales are static (calibrated once), every operator is row-wise except attention, and decode runs the same
attention kernel with row_offset = cache length, so decode of token t after a prefill of t tokens equals a
prefill of t + 1 tokens at the last position bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuforge.golden._checks import check_scale
from npuforge.golden.activations import gelu_table, lookup, silu_table
from npuforge.golden.attention import AttentionParams, KVCache, attention, attention_float, attention_params
from npuforge.golden.checkpoint import BertConfig, LlamaConfig, bert_weight_shapes, llama_weight_shapes
from npuforge.golden.elementwise import (GateParams, ResidualParams, gate_mul, gate_params, residual_add, residual_params,
                                rope, rope_table)
from npuforge.golden.gemm import gemm, max_reduction_length
from npuforge.golden.norms import LayerNormParams, RMSNormParams, layernorm, layernorm_params, rmsnorm, rmsnorm_params
from npuforge.golden.quant import (GROUP_SIZES, QuantizedWeight, calibrate_activation_scale, dequantize_activation,
                          quantize_activation, quantize_weight)
from npuforge.golden.reference import float_gelu, float_layernorm, float_rmsnorm, float_rope, float_silu
from npuforge.golden.requant import quantize_multipliers, requantize

__all__ = [
    "BERT_POINTS",
    "LLAMA_POINTS",
    "bert_layer_float",
    "llama_layer_float",
    "check_weights",
    "QuantLinear",
    "quantize_linear",
    "linear_int",
    "calibrate",
    "QuantBertLayer",
    "quantize_bert_layer",
    "bert_layer_int",
    "run_bert_layer",
    "QuantLlamaLayer",
    "quantize_llama_layer",
    "llama_layer_int",
    "run_llama_layer",
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
    ln1 = float_layernorm(residual1, weights["attention.output.LayerNorm.weight"],
                          weights["attention.output.LayerNorm.bias"], eps=cfg.layer_norm_eps)
    obs("ln1", ln1)
    inter = _linear(ln1, weights, "intermediate.dense")
    obs("inter", inter)
    act = float_gelu(inter)
    obs("gelu", act)
    mlp_out = _linear(act, weights, "output.dense")
    obs("mlp_out", mlp_out)
    residual2 = mlp_out + ln1
    obs("residual2", residual2)
    out = float_layernorm(residual2, weights["output.LayerNorm.weight"], weights["output.LayerNorm.bias"],
                          eps=cfg.layer_norm_eps)
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
    norm1 = float_rmsnorm(x, weights["input_layernorm.weight"], eps=cfg.rms_norm_eps)
    obs("norm1", norm1)
    q = _heads(_linear(norm1, weights, "self_attn.q_proj"), cfg.heads, cfg.head_dim)
    k = _heads(_linear(norm1, weights, "self_attn.k_proj"), cfg.kv_heads, cfg.head_dim)
    v = _heads(_linear(norm1, weights, "self_attn.v_proj"), cfg.kv_heads, cfg.head_dim)
    # The integer twin quantizes q and k once, before RoPE, and RoPE keeps their scale: the calibrated
    # range must cover both sides of the rotation.
    q_rot, k_rot = float_rope(q, positions, base=cfg.rope_theta), float_rope(k, positions, base=cfg.rope_theta)
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
    norm2 = float_rmsnorm(residual1, weights["post_attention_layernorm.weight"], eps=cfg.rms_norm_eps)
    obs("norm2", norm2)
    gate = _linear(norm2, weights, "mlp.gate_proj")
    up = _linear(norm2, weights, "mlp.up_proj")
    obs("gate", gate), obs("up", up)
    act = float_silu(gate)
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


# ---- integer Linear -----------------------------------------------------------------------------

GROUP_MULTIPLIER_BITS = 8
"""Width of the unsigned per-group multiplier m[n, g] in [1, 255] of grouped int4 weights."""


@dataclass(frozen=True, eq=False)
class QuantLinear:
    """An integer Linear layer: int8 activations [S, K] x quantized weight [N, K] -> int8 [S, N].

    Per-channel weights (``group_multiplier is None``)::

        acc[s, n] = gemm(x, q^T)[s, n] + bias[n]                                 int32
        y[s, n]   = requantize(acc, multiplier[n], shift[n])                     int8

    Grouped weights (int4, group of G along K). The scale of group g of row n is
    ``channel_scale[n] * m[n, g]`` with an integer m in [1, 255] (a two-level scale as in Qualcomm's LPBQ),
    so the group partial sums combine in integers before one requant::

        part[g, s, n] = gemm(x[s, gG:(g+1)G], q[n, gG:(g+1)G]^T)                |.| <= G * 2^10, int32
        acc[s, n]     = sum_g m[n, g] * part[g, s, n] + bias[n]                  int32 (K * 2^10 * 255 < 2^31)

    The sum without bias fits int32 for K <= 8224 (checked when quantizing); with the bias the accumulator is
    checked at run time (ValueError, never a silent wrap).

    ``bias`` is the float bias in accumulator units, rint(b / (in_scale * channel_scale[n])).
    """

    weight: QuantizedWeight
    channel_scale: np.ndarray          # float64 [N]: weight scale of the accumulator unit (host side only)
    group_multiplier: np.ndarray | None  # int64 [N, K // G] in [1, 255], or None
    bias: np.ndarray                   # int64 [N], within int32
    multiplier: np.ndarray             # int64 [N], Q31
    shift: np.ndarray                  # int64 [N]

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape


def _grouped_int4_weight(w: np.ndarray, group_size: int) -> tuple[QuantizedWeight, np.ndarray, np.ndarray]:
    """int4 weights whose group scales are channel_scale[n] * m[n, g], m integer in [1, 255]."""
    ideal = quantize_weight(w, bits=4, group_size=group_size).scale  # max|w| / 7 per group
    m_max = (1 << GROUP_MULTIPLIER_BITS) - 1
    channel_scale = ideal.max(axis=1) / m_max
    # Round the multiplier up so every group's range still covers its max |w| (no clipping).
    m = np.clip(np.ceil(ideal / channel_scale[:, None] - 1e-9), 1, m_max).astype(np.int64)
    scale = channel_scale[:, None] * m
    per_elem = np.repeat(scale, group_size, axis=1)
    q = np.clip(np.rint(w.astype(np.float64) / per_elem), -7, 7).astype(np.int8)
    return QuantizedWeight(q=q, scale=scale, bits=4, group_size=group_size), channel_scale, m


def quantize_linear(w, b, in_scale: float, out_scale: float, *, weight_bits: int = 8,
                    group_size: int | None = None) -> QuantLinear:
    """Quantize a float Linear (w [N, K], b [N] or None) for int8 inputs at ``in_scale`` to int8 at ``out_scale``.

    weight_bits 8: per-channel int8. weight_bits 4: per-channel int4, or grouped with ``group_size``.
    """
    if weight_bits not in (8, 4):
        raise ValueError(f"weight_bits must be 8 or 4, got {weight_bits!r}")
    if group_size is not None and weight_bits != 4:
        raise ValueError(f"group_size is only for 4-bit weights, got group_size={group_size} with weight_bits=8")
    in_scale, out_scale = check_scale("in_scale", in_scale), check_scale("out_scale", out_scale)
    w = np.asarray(w, np.float64)
    if w.ndim != 2 or not np.all(np.isfinite(w)):
        raise ValueError(f"w must be a finite 2-D weight [N, K] (out x in), got shape {w.shape}")
    n, k = w.shape
    if b is not None and np.shape(b) != (n,):
        raise ValueError(f"b must have shape ({n},) to match w [N={n}, K], got {np.shape(b)}")
    if group_size is None:
        qw = quantize_weight(w, bits=weight_bits)
        channel_scale, m = qw.scale, None
        k_max = max_reduction_length(8, weight_bits)
    else:
        if group_size not in GROUP_SIZES or k % group_size:
            raise ValueError(f"group_size must be one of {GROUP_SIZES} and divide K={k}, got {group_size!r}")
        qw, channel_scale, m = _grouped_int4_weight(w, group_size)
        k_max = ((1 << 31) - 1) // ((1 << 10) * ((1 << GROUP_MULTIPLIER_BITS) - 1))
    if k > k_max:
        raise ValueError(f"K must be in [1, {k_max}] for an int32 accumulator with these weights, got K={k}")
    acc_unit = in_scale * channel_scale
    bias = np.zeros(n, np.int64) if b is None else np.rint(np.asarray(b, np.float64) / acc_unit).astype(np.int64)
    if np.abs(bias).max(initial=0) > (1 << 30):
        raise ValueError(f"bias in accumulator units must be within [-2^30, 2^30], got {int(np.abs(bias).max())} "
                         f"(in_scale {in_scale:.3g} is too small for this bias)")
    multiplier, shift = quantize_multipliers(acc_unit / out_scale)
    return QuantLinear(weight=qw, channel_scale=channel_scale, group_multiplier=m, bias=bias,
                       multiplier=multiplier, shift=shift)


def linear_int(x: np.ndarray, layer: QuantLinear) -> np.ndarray:
    """int8 x [S, K] -> int8 [S, N] (see QuantLinear for the exact algorithm)."""
    qw = layer.weight
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != qw.shape[1]:
        raise ValueError(f"x must be an int8 array [S, K={qw.shape[1]}], got shape {getattr(x, 'shape', None)}")
    if layer.group_multiplier is None:
        acc = gemm(x, qw.q.T, a_bits=8, b_bits=qw.bits).astype(np.int64)
    else:
        g = qw.group_size
        s, k = x.shape
        xg = x.reshape(s, k // g, g).transpose(1, 0, 2)                  # [groups, S, G]
        wg = qw.q.reshape(qw.q.shape[0], k // g, g).transpose(1, 2, 0)    # [groups, G, N]
        parts = gemm(xg, wg, a_bits=8, b_bits=4).astype(np.int64)        # [groups, S, N]
        acc = np.einsum("gsn,ng->sn", parts, layer.group_multiplier)
    acc = acc + layer.bias
    if acc.size and (acc.min() < -(1 << 31) or acc.max() > (1 << 31) - 1):
        raise ValueError(f"accumulator must stay within int32 [-2^31, 2^31 - 1], got {int(np.abs(acc).max())}")
    return requantize(acc.astype(np.int32), layer.multiplier, layer.shift)


# ---- calibration --------------------------------------------------------------------------------

# Points quantized to 16 bits; all others are int8. Scores feed softmax as int16. The residual stream is int16:
# a layer's update (attention / MLP output) is small next to the hidden state it is added to, so int8 residual
# steps would swamp it (measured: the update's cosine to float drops to ~0 with an int8 Llama residual).
BERT_POINT_BITS = {"scores": 16, "residual1": 16, "residual2": 16}
LLAMA_POINT_BITS = {"scores": 16, "x": 16, "residual1": 16, "out": 16}


def calibrate(run_float, inputs, points, bits: dict) -> dict[str, float]:
    """Per-tensor scales of every quantization point: run ``run_float(x, observe)`` on each calibration
    input and take max |value| / (2^(b-1) - 1) at each point, b = bits.get(point, 8)
    (golden.quant.calibrate_activation_scale)."""
    if not inputs:
        raise ValueError("calibration inputs must hold at least one array, got none")
    peaks: dict[str, list] = {p: [] for p in points}

    def observe(name, array):
        peaks[name].append(np.array([np.abs(array).max(initial=0.0)]))

    for x in inputs:
        run_float(x, observe)
    return {p: calibrate_activation_scale(peaks[p], bits=bits.get(p, 8)) for p in points}


# ---- integer BERT layer -------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class QuantBertLayer:
    """Everything the integer BERT layer needs: int weights, Q31 requant/op parameters, tables, scales."""

    cfg: BertConfig
    weight_bits: int
    group_size: int | None
    scales: dict                 # point -> float scale (host side; input "x" and output "out" used by callers)
    query: QuantLinear
    key: QuantLinear
    value: QuantLinear
    attention: AttentionParams
    attn_output: QuantLinear
    residual1: ResidualParams
    ln1: LayerNormParams
    intermediate: QuantLinear
    gelu: np.ndarray             # int8 [256] table
    output: QuantLinear
    residual2: ResidualParams
    ln2: LayerNormParams


def quantize_bert_layer(weights: dict, cfg: BertConfig, calibration_inputs, *, weight_bits: int = 8,
                        group_size: int | None = None) -> QuantBertLayer:
    """Quantize a float BERT layer (HF weight names) in W8A8 or W4A8, calibrating on float inputs [S, hidden]."""
    check_weights(weights, cfg)
    s = calibrate(lambda x, obs: bert_layer_float(x, weights, cfg, observe=obs), list(calibration_inputs),
                  BERT_POINTS, BERT_POINT_BITS)

    def lin(name, in_point, out_point):
        return quantize_linear(weights[f"{name}.weight"], weights.get(f"{name}.bias"), s[in_point], s[out_point],
                               weight_bits=weight_bits, group_size=group_size)

    return QuantBertLayer(
        cfg=cfg, weight_bits=weight_bits, group_size=group_size, scales=s,
        query=lin("attention.self.query", "x", "q"),
        key=lin("attention.self.key", "x", "k"),
        value=lin("attention.self.value", "x", "v"),
        attention=attention_params(s["q"], s["k"], s["v"], s["ctx"], head_dim=cfg.head_dim, score_scale=s["scores"]),
        attn_output=lin("attention.output.dense", "ctx", "attn_out"),
        residual1=residual_params(s["attn_out"], s["x"], s["residual1"], out_bits=16),
        ln1=layernorm_params(s["residual1"], weights["attention.output.LayerNorm.weight"],
                             weights["attention.output.LayerNorm.bias"], s["ln1"], input_bits=16,
                             eps=cfg.layer_norm_eps),
        intermediate=lin("intermediate.dense", "ln1", "inter"),
        gelu=gelu_table(s["inter"], s["gelu"]),
        output=lin("output.dense", "gelu", "mlp_out"),
        residual2=residual_params(s["mlp_out"], s["ln1"], s["residual2"], out_bits=16),
        ln2=layernorm_params(s["residual2"], weights["output.LayerNorm.weight"], weights["output.LayerNorm.bias"],
                             s["out"], input_bits=16, eps=cfg.layer_norm_eps),
    )


def _check_int_input(x, hidden: int, dtype=np.int8) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != dtype or x.ndim != 2 or x.shape[1] != hidden or not len(x):
        raise ValueError(f"x must be an {np.dtype(dtype)} array [seq >= 1, {hidden}], got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")


def bert_layer_int(x: np.ndarray, layer: QuantBertLayer) -> np.ndarray:
    """Integer BERT encoder layer: int8 x [S, hidden] at scale ``scales['x']`` -> int8 at ``scales['out']``."""
    cfg = layer.cfg
    _check_int_input(x, cfg.hidden)
    q, k, v = (_heads(linear_int(x, lin), cfg.heads, cfg.head_dim) for lin in (layer.query, layer.key, layer.value))
    ctx = _merge(attention(q, k, v, layer.attention))
    attn_out = linear_int(ctx, layer.attn_output)
    residual1 = residual_add(attn_out, x, layer.residual1)
    ln1 = layernorm(residual1, layer.ln1)
    act = lookup(linear_int(ln1, layer.intermediate), layer.gelu)
    mlp_out = linear_int(act, layer.output)
    return layernorm(residual_add(mlp_out, ln1, layer.residual2), layer.ln2)


def run_bert_layer(x, layer: QuantBertLayer) -> np.ndarray:
    """Float in, float out: quantize x at scales['x'], run bert_layer_int, dequantize at scales['out']."""
    x = _check_input(x, layer.cfg.hidden)
    out = bert_layer_int(quantize_activation(x, layer.scales["x"]), layer)
    return dequantize_activation(out, layer.scales["out"])


# ---- integer Llama layer ------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class QuantLlamaLayer:
    """Everything the integer Llama layer needs (see QuantBertLayer); RoPE tables cover ``max_positions``."""

    cfg: LlamaConfig
    weight_bits: int
    group_size: int | None
    scales: dict
    norm1: RMSNormParams
    q_proj: QuantLinear
    k_proj: QuantLinear
    v_proj: QuantLinear
    rope_cos: np.ndarray         # int16 [max_positions, head_dim / 2]
    rope_sin: np.ndarray
    attention: AttentionParams
    o_proj: QuantLinear
    residual1: ResidualParams
    norm2: RMSNormParams
    gate_proj: QuantLinear
    up_proj: QuantLinear
    silu: np.ndarray             # int8 [256] table
    gate: GateParams
    down_proj: QuantLinear
    residual2: ResidualParams

    @property
    def max_positions(self) -> int:
        return self.rope_cos.shape[0]


def quantize_llama_layer(weights: dict, cfg: LlamaConfig, calibration_inputs, *, weight_bits: int = 8,
                         group_size: int | None = None, max_positions: int = 2048) -> QuantLlamaLayer:
    """Quantize a float Llama layer (HF weight names) in W8A8 or W4A8, calibrating on float prefills [S, hidden]."""
    check_weights(weights, cfg)
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1:
        raise ValueError(f"max_positions must be an integer >= 1, got {max_positions!r}")
    s = calibrate(lambda x, obs: llama_layer_float(x, weights, cfg, observe=obs), list(calibration_inputs),
                  LLAMA_POINTS, LLAMA_POINT_BITS)

    def lin(name, in_point, out_point):
        return quantize_linear(weights[f"{name}.weight"], weights.get(f"{name}.bias"), s[in_point], s[out_point],
                               weight_bits=weight_bits, group_size=group_size)

    cos, sin = rope_table(cfg.head_dim, max_positions, base=cfg.rope_theta)
    return QuantLlamaLayer(
        cfg=cfg, weight_bits=weight_bits, group_size=group_size, scales=s,
        norm1=rmsnorm_params(s["x"], weights["input_layernorm.weight"], s["norm1"], input_bits=16,
                             eps=cfg.rms_norm_eps),
        q_proj=lin("self_attn.q_proj", "norm1", "q"),
        k_proj=lin("self_attn.k_proj", "norm1", "k"),
        v_proj=lin("self_attn.v_proj", "norm1", "v"),
        rope_cos=cos, rope_sin=sin,
        attention=attention_params(s["q"], s["k"], s["v"], s["ctx"], head_dim=cfg.head_dim, score_scale=s["scores"]),
        o_proj=lin("self_attn.o_proj", "ctx", "attn_out"),
        residual1=residual_params(s["x"], s["attn_out"], s["residual1"], out_bits=16),
        norm2=rmsnorm_params(s["residual1"], weights["post_attention_layernorm.weight"], s["norm2"], input_bits=16,
                             eps=cfg.rms_norm_eps),
        gate_proj=lin("mlp.gate_proj", "norm2", "gate"),
        up_proj=lin("mlp.up_proj", "norm2", "up"),
        silu=silu_table(s["gate"], s["silu"]),
        gate=gate_params(s["silu"], s["up"], s["gated"]),
        down_proj=lin("mlp.down_proj", "gated", "mlp_out"),
        residual2=residual_params(s["residual1"], s["mlp_out"], s["out"], out_bits=16),
    )


def llama_layer_int(x: np.ndarray, layer: QuantLlamaLayer, *, cache: KVCache | None = None) -> np.ndarray:
    """Integer Llama decoder layer: int16 x [S, hidden] at ``scales['x']`` -> int16 at ``scales['out']``
    (the residual stream is int16; everything inside, K/V cache included, is int8).

    ``cache`` (int8 KVCache) holds K (after RoPE) and V of the previous tokens; the new tokens sit at positions
    cache.length.. and their K/V are appended. Without a cache this is a prefill from position 0.
    """
    cfg = layer.cfg
    _check_int_input(x, cfg.hidden, np.int16)
    if cache is None:
        cache = KVCache(cfg.kv_heads, cfg.head_dim, np.int8)
    _check_cache(cache, cfg, np.int8)
    start = cache.length
    if start + x.shape[0] > layer.max_positions:
        raise ValueError(f"positions must be < max_positions={layer.max_positions}, got up to {start + x.shape[0] - 1}")
    positions = np.arange(start, start + x.shape[0])
    norm1 = rmsnorm(x, layer.norm1)
    q = _heads(linear_int(norm1, layer.q_proj), cfg.heads, cfg.head_dim)
    k = _heads(linear_int(norm1, layer.k_proj), cfg.kv_heads, cfg.head_dim)
    v = _heads(linear_int(norm1, layer.v_proj), cfg.kv_heads, cfg.head_dim)
    q = rope(q, positions, layer.rope_cos, layer.rope_sin)
    k = rope(k, positions, layer.rope_cos, layer.rope_sin)
    cache.append(k, v)
    ctx = _merge(attention(q, cache.k, cache.v, layer.attention, causal=True, row_offset=start))
    residual1 = residual_add(x, linear_int(ctx, layer.o_proj), layer.residual1)
    norm2 = rmsnorm(residual1, layer.norm2)
    act = lookup(linear_int(norm2, layer.gate_proj), layer.silu)
    gated = gate_mul(act, linear_int(norm2, layer.up_proj), layer.gate)
    return residual_add(residual1, linear_int(gated, layer.down_proj), layer.residual2)


def run_llama_layer(x, layer: QuantLlamaLayer, *, cache: KVCache | None = None) -> np.ndarray:
    """Float in, float out around llama_layer_int (quantize at scales['x'], dequantize at scales['out'])."""
    x = _check_input(x, layer.cfg.hidden)
    out = llama_layer_int(quantize_activation(x, layer.scales["x"], bits=16), layer, cache=cache)
    return dequantize_activation(out, layer.scales["out"])
