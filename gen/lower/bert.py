"""A golden BERT encoder (golden.models.bert.IntBert) lowered to NPU layer programs, layer by layer.

What runs where (one sentence of T tokens per program, no padding: golden.models.bert guarantees a real token's
values are the same bit for bit whether its sentence runs alone or in a padded batch):

* host: tokenizer, the embedding row gather and the sum of the three int16 tables in int32 (``bert.int_embed``;
  a gather of T rows, not a GEMM), and after the last layer the sum over tokens, mean and L2 norm (pooling);
* NPU, program ``embed``: the embedding LayerNorm on the int32 sum (``vec.layernorm`` wide, int16 out);
* NPU, program ``layer{i}`` per encoder layer, every operator of ``bert.int_layer`` in the scheme's formats:

      q  = requant(x @ Wq + bq) int16      k, v = requant(x @ Wk|v + b) int8          (w8a16 MATMULs, VEC_REQUANT.bias)
      per head h (head_dim columns of q, k, v as views), scores and probabilities stacked as rows [heads * T, T]:
        s_h = requant(q_h @ k_h^T) int32 at 2^-16         (MATMUL.b_trans: K as its projection wrote it, out32)
      p  = softmax(s) Q0.15 int16, one instruction over every head's rows   (vec.softmax, int32 scores)
      per head h:  ctx_h = requant(p_h @ v_h) int16        (w8a16 MATMUL into ctx's head columns)
      o  = requant(ctx @ Wo + bo) int32;  r1 = requant(x) + o int32        (vec.residual wide)
      ln1 = LayerNorm(r1) int16;  i = requant(ln1 @ Wi + bi) int16;  g = GELU(i) int16 (vec.act interpolated)
      d  = requant(g @ Wd + bd) int32;    r2 = requant(ln1) + d int32;     x' = LayerNorm(r2) int16

The NPU runs scheme ``w8a16`` (int8 per-channel weights, int16 activations at calibrated per-tensor scales, int32
residual stream, Q0.15 softmax, int8 K/V): every point of that scheme has an instruction; and ``w8a16-kv16`` (the
best MiniLM scheme), the same with int16 K / V: k and v requantize to int16 and Q.K^T / P.V are int16 x int16 GEMMs,
two MATMUL.b16 byte-plane passes per tile into the 48-bit accumulator and VEC_REQUANT.wide (the NPU needs ``kv16``). The others need what the NPU does not have yet:
per-token activation scales (``a8-token``) and int4 weights in BERT's layers.

The down projection's K (1536 in MiniLM) is above w8a16's worst-case int32 bound (511): the layer builder proves a
tighter bound from the weights themselves (largest column sum of |W| x 2^15) and refuses the layer when that does
not fit either.
"""

from __future__ import annotations

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder, LayerProgram, Tensor
from npuforge.gen.isa.ops import SoftmaxBlock, WideResidualParams
from npuforge.gen.lower import require_features
from npuforge.golden.models.bert import SCORE_SCALE, IntBert
from npuforge.golden.models.qlinear import IntLinear
from npuforge.golden.softmax import softmax_params
from npuforge.spec.vector_ops import (ACT_INTERP, NORM_OUT16, NORM_WIDE, RESIDUAL_A_LSB, RESIDUAL_B_LSB,
                                      RESIDUAL_OUT32, RESIDUAL_WIDE, SOFTMAX_Q15, SOFTMAX_SCORE_LSB, ELEM_BITS)

__all__ = ["NPU_SCHEMES", "VECTOR_OPS", "PRECISIONS", "check_model", "with_bert_precisions", "bert_npu_config", "add_embed_norm",
           "add_layer", "bert_programs"]

#: Schemes the NPU executes for BERT (see the module docstring for why the others are not).
NPU_SCHEMES = ("w8a16", "w8a16-kv16")
#: Vector operators and MATMUL modes a BERT program needs.
VECTOR_OPS = ("softmax", "layernorm", "act", "residual")
PRECISIONS = ("int8", "w8a16")
_SCORE_FLAGS = (ELEM_BITS.index(32) << SOFTMAX_SCORE_LSB) | SOFTMAX_Q15
_NORM_FLAGS = NORM_WIDE | NORM_OUT16
_GELU_FLAGS = ACT_INTERP          # slot 0 (GELU), 16-bit interpolated table


def _residual_flags(a_bits: int) -> int:
    """vec.residual wide: src (the skip input, a_bits) + src2 (an int32 linear output) -> int32."""
    return (RESIDUAL_WIDE | (ELEM_BITS.index(a_bits) << RESIDUAL_A_LSB) | (ELEM_BITS.index(32) << RESIDUAL_B_LSB)
            | RESIDUAL_OUT32)


def check_model(m: IntBert, cfg: NPUConfig | None = None) -> None:
    """ValueError naming what the NPU lacks for this model: the scheme, a MATMUL mode or a vector operator."""
    if m.scheme.name not in NPU_SCHEMES:
        raise ValueError(f"scheme must be one the NPU runs for BERT ({', '.join(NPU_SCHEMES)}), got "
                         f"{m.scheme.name!r}")
    if cfg is not None:
        require_features(cfg, "BERT", PRECISIONS, VECTOR_OPS)
        if m.scheme.kv_bits == 16 and not cfg.kv16:
            raise ValueError(f"scheme {m.scheme.name} keeps int16 K / V: the NPU must be built with kv16 "
                             f"(MATMUL.b16, int16 x int16 attention)")


def with_bert_precisions(array: ArrayConfig) -> ArrayConfig:
    """``array`` with the MATMUL modes a BERT program needs added to its precisions."""
    return array.with_overrides(precisions=tuple(dict.fromkeys(array.precisions + PRECISIONS)))


def bert_npu_config(rows: int = 8, cols: int = 8, *, kv16: bool = False, **npu_kw) -> NPUConfig:
    """An NPUConfig with the modes and vector operators a BERT program needs (other fields: NPUConfig's);
    ``kv16``: int16 K / V (MATMUL.b16, with the block-scaled 48-bit accumulator it needs) for ``w8a16-kv16``."""
    if kv16:
        npu_kw = {**npu_kw, "kv16": True, "block_scaled": True}
    return NPUConfig(array=ArrayConfig(rows=rows, cols=cols, precisions=PRECISIONS), vector_ops=VECTOR_OPS,
                     **npu_kw)


def _weights(lin: IntLinear) -> np.ndarray:
    """int64 [K, N]: the integer weights W^T (exact: golden keeps them as float64 integers)."""
    return lin.weight.w_t.astype(np.int64)


def _bias(lin: IntLinear, n: int) -> np.ndarray:
    b = np.zeros(n, np.int64) if lin.bias is None else lin.bias
    if np.abs(b).max(initial=0) >= 1 << 31:
        raise ValueError(f"a bias must fit int32 in accumulator units for VEC_REQUANT.bias, got "
                         f"{int(np.abs(b).max())}")
    return b


def _linear(lb: LayerBuilder, name: str, x: Tensor, lin: IntLinear, out: Tensor) -> None:
    w = lb.constant(f"{name}.w", _weights(lin), bits=8)
    lb.gemm(x, w, out, lin.multiplier, lin.shift, bias=_bias(lin, w.cols), name=name)


def add_embed_norm(lb: LayerBuilder, m: IntBert, e: Tensor) -> Tensor:
    """The embedding LayerNorm of the int32 sum ``e`` [T, H] -> x int16 [T, H]."""
    x = lb.buffer("emb.x", e.rows, e.cols, bits=16)
    lb.vector("layernorm", e, x, (m.emb_norm, m.emb_eps), flags=_NORM_FLAGS, name="emb.norm")
    return x


def add_layer(lb: LayerBuilder, m: IntBert, index: int, x: Tensor) -> Tensor:
    """Encoder layer ``index`` on x int16 [T, H] (module docstring) -> its output buffer int16 [T, H]."""
    layer, cfg = m.layers[index], m.ck.cfg
    t, h = x.shape
    heads, d, ffn = cfg.heads, cfg.hidden // cfg.heads, cfg.intermediate
    p = f"l{index}."
    buf = lambda name, cols, bits: lb.buffer(p + name, t, cols, bits=bits)  # noqa: E731
    kv = m.scheme.kv_bits             # 8, or 16 (w8a16-kv16: MATMUL.b16 attention)
    q, k, v = buf("q", h, 16), buf("k", h, kv), buf("v", h, kv)
    for name, lin, out in (("q", layer.q, q), ("k", layer.k, k), ("v", layer.v, v)):
        _linear(lb, p + name, x, lin, out)
    # Every head's scores and probabilities stacked along the rows ([heads * T, T]): one softmax over all heads, and
    # the heads' Q.K^T GEMMs write disjoint views, so a head's loads can start while the previous head computes.
    scores = lb.buffer(p + "scores", heads * t, t, bits=32)
    probs = lb.buffer(p + "probs", heads * t, t, bits=16)
    ctx = buf("ctx", h, 16)
    head_rows = lambda hd: slice(hd * t, (hd + 1) * t)  # noqa: E731
    for hd in range(heads):
        cols = slice(hd * d, (hd + 1) * d)
        lb.gemm(q.view(cols=cols), k.view(cols=cols), scores.view(rows=head_rows(hd)), np.full(t, layer.score_mult),
                np.full(t, layer.score_shift), b_trans=True, name=f"{p}h{hd}.qk")
    lb.vector("softmax", scores, probs, SoftmaxBlock(softmax_params(SCORE_SCALE, input_bits=32)),
              flags=_SCORE_FLAGS, name=p + "softmax")
    for hd in range(heads):
        cols = slice(hd * d, (hd + 1) * d)
        lb.gemm(probs.view(rows=head_rows(hd)), v.view(cols=cols), ctx.view(cols=cols), np.full(d, layer.ctx_mult),
                np.full(d, layer.ctx_shift), name=f"{p}h{hd}.pv")
    o, r1, ln1 = buf("o", h, 32), buf("r1", h, 32), buf("ln1", h, 16)
    _linear(lb, p + "o", ctx, layer.o, o)
    lb.vector("residual", x, r1, WideResidualParams(*layer.x_to_r1), src2=o, flags=_residual_flags(16),
              name=p + "res1")
    lb.vector("layernorm", r1, ln1, (layer.ln1, layer.eps1), flags=_NORM_FLAGS, name=p + "ln1")
    inter, g = buf("inter", ffn, 16), buf("gelu", ffn, 16)
    _linear(lb, p + "i", ln1, layer.inter, inter)
    lb.vector("act", inter, g, layer.gelu, flags=_GELU_FLAGS, name=p + "gelu")
    dn, r2, out = buf("down", h, 32), buf("r2", h, 32), buf("out", h, 16)
    _linear(lb, p + "d", g, layer.down, dn)
    lb.vector("residual", ln1, r2, WideResidualParams(*layer.ln1_to_r2), src2=dn, flags=_residual_flags(16),
              name=p + "res2")
    lb.vector("layernorm", r2, out, (layer.ln2, layer.eps2), flags=_NORM_FLAGS, name=p + "ln2")
    return out


def bert_programs(cfg: NPUConfig, m: IntBert, *, e: np.ndarray | None = None, x: np.ndarray | None = None,
                  layers: range | None = None) -> tuple[LayerProgram, str]:
    """Programs over one image: ``embed`` (when the int32 embedding sum ``e`` [T, H] is given) then ``layer{i}``
    for each index of ``layers`` (default all), or starting from a layer input ``x`` int16 [T, H]. Returns the
    built program and the name of the last output buffer."""
    check_model(m, cfg)
    if (e is None) == (x is None):
        raise ValueError("give exactly one of e (the embedding sum) and x (a layer input)")
    layers = range(len(m.layers)) if layers is None else layers
    n_layers = len(m.layers)
    if not layers or layers.start < 0 or layers.stop > n_layers or layers.step != 1:
        raise ValueError(f"layers must be a non-empty range within [0, {n_layers}), got {layers}")
    h = m.ck.cfg.hidden
    src = e if e is not None else x
    src = np.asarray(src)
    if src.ndim != 2 or src.shape[1] != h or src.shape[0] < 1:
        raise ValueError(f"the input must be [T, {h}] (T >= 1 tokens), got {src.shape}")
    lb = LayerBuilder(cfg)
    if e is not None:
        lb.program("embed")
        cur = add_embed_norm(lb, m, lb.constant("emb.sum", src, bits=32))
    else:
        cur = lb.constant("x", src, bits=16)
    for i in layers:
        lb.program(f"layer{i}")
        cur = add_layer(lb, m, i, cur)
    return lb.build(), cur.root
