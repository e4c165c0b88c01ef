"""BERT-family sentence encoder (all-MiniLM-L6-v2): float twin and integer whole-model path, padded batches.

Input: a batch of token-id sequences, padded to one length, with a padding mask (True = real token). Padding keys
are excluded from every softmax row (golden.softmax ``mask``) and padding rows from the mean pooling, so every real
token's values are the same bit for bit as when its sentence runs alone.

Float twin (float32, the Hugging Face BertModel + sentence-transformers mean pooling computation; checked against
sentence-transformers' own embeddings of the packaged model, see tests/golden/test_models.py): word + position +
token-type embeddings -> LayerNorm -> L post-LN layers -> mean over real tokens.

Integer path (scheme fields as in golden.models.schemes): the three embedding tables int16 at one scale, summed in
int32, norm_wide (LayerNorm) -> act bits; per layer
    q, k, v = linear(x) + bias; scores int32 at 2^-16; softmax (u8 / q15, padding masked); ctx = p.v -> act bits
    r1 = linear_o(ctx) + x (residual format); ln1 = norm_wide(r1) -> act bits
    g = gelu(linear_i(ln1)) (int16: interpolated table; int8: 256-entry table); r2 = linear_2(g) + ln1;
    x' = norm_wide(r2) -> act bits
pooling: integer sum of the last layer's output over real tokens (int32); the division by the token count and the
L2 normalisation happen on the host after the integer path (cosine similarity is invariant to both).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npuforge.golden.activations import gelu_table, lookup
from npuforge.golden.checkpoint import BertConfig, _TensorSource, load_checkpoint
from npuforge.golden.models.intops import (exact_matmul, wide_norm_params, gelu_float, interp_lookup, interp_table,
                                           norm_wide, requant_wide, residual_add_wide)
from npuforge.golden.models.qlinear import (IntLinear, blocks_q4_1_gptq, linear_apply, make_linear,
                                            weight_from_blocks, weight_int4, weight_int8)
from npuforge.golden.models.schemes import Scheme, static_scale
from npuforge.golden.norms import layernorm_params
from npuforge.golden.reference import float_gelu, float_layernorm
from npuforge.golden.requant import quantize_multiplier
from npuforge.golden.softmax import SOFTMAX_OUT_SCALE, SOFTMAX_Q15_SCALE, softmax, softmax_params, softmax_q15

SCORE_SCALE = 2.0 ** -16
RESIDUAL_HEADROOM = 8.0
PROJ = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "o": "attention.output.dense", "i": "intermediate.dense", "d": "output.dense"}


@dataclass(eq=False)
class BertCheckpoint:
    name: str
    cfg: BertConfig
    tokenizer: object
    layers: tuple
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    emb_gamma: np.ndarray
    emb_beta: np.ndarray
    max_tokens: int


def load_bert(directory, *, name: str | None = None) -> BertCheckpoint:
    """A BERT checkpoint directory (config.json, model.safetensors, tokenizer.json)."""
    from npuforge.golden.models.tokenize import bert_tokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"model directory {str(directory)!r} does not exist")
    ck = load_checkpoint(directory)
    if ck.family != "bert":
        raise ValueError(f"{str(directory)!r} holds a {ck.family} checkpoint; embed needs a BERT encoder")
    src = _TensorSource(directory)
    get = lambda n: src.get(n) if n in src else src.get("bert." + n)  # noqa: E731
    try:
        emb = {k: get(f"embeddings.{k}") for k in ("word_embeddings.weight", "position_embeddings.weight",
                                                  "token_type_embeddings.weight", "LayerNorm.weight",
                                                  "LayerNorm.bias")}
    except KeyError as exc:
        raise ValueError(f"checkpoint {str(directory)!r} has no embedding tensor {exc}") from None
    raw = json.loads((directory / "config.json").read_text())
    max_tokens = int(raw.get("max_position_embeddings", 512))
    st_cfg = directory / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_tokens = min(max_tokens, int(json.loads(st_cfg.read_text()).get("max_seq_length", max_tokens)))
    return BertCheckpoint(name=name or directory.name, cfg=ck.config, tokenizer=bert_tokenizer(directory),
                          layers=ck.layers, word=emb["word_embeddings.weight"],
                          position=emb["position_embeddings.weight"], token_type=emb["token_type_embeddings.weight"],
                          emb_gamma=emb["LayerNorm.weight"], emb_beta=emb["LayerNorm.bias"], max_tokens=max_tokens)


def tokenize(ck: BertCheckpoint, sentences, *, truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [B, S] padded with 0 and the mask [B, S] (True = real token); ValueError on empty text, and on a
    sentence longer than the model's max tokens unless ``truncate`` (calibration) cuts it."""
    seqs = []
    for s in sentences:
        if not s.strip():
            raise ValueError("sentence must not be empty or whitespace only")
        ids = ck.tokenizer.encode(s).ids
        if truncate:
            ids = ids[:ck.max_tokens]
        if len(ids) > ck.max_tokens:
            raise ValueError(f"sentence must be at most {ck.max_tokens} tokens, got {len(ids)} ({s[:40]!r}...)")
        seqs.append(ids)
    length = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), length), np.int64)
    mask = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = s, True
    return ids, mask


def _split(x, heads):
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(0, 2, 1, 3)


def _join(x):
    b, n, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, n * d)


# ---- float twin ---------------------------------------------------------------------------------

def float_forward(ck: BertCheckpoint, ids, mask, observe=None) -> np.ndarray:
    """Mean-pooled float32 sentence embeddings [B, H] (not normalised). observe(layer, point, real-token values)."""
    cfg = ck.cfg
    obs = (lambda i, n, a: observe(i, n, a[mask])) if observe else (lambda i, n, a: None)
    e = ck.word[ids] + ck.position[np.arange(ids.shape[1])][None] + ck.token_type[0]
    obs(0, "emb_sum", e)
    x = float_layernorm(e, ck.emb_gamma, ck.emb_beta, eps=cfg.layer_norm_eps)
    key_mask = ~mask[:, None, None, :]
    for i, w in enumerate(ck.layers):
        lin = lambda a, p: (a @ w[f"{PROJ[p]}.weight"].T + w[f"{PROJ[p]}.bias"]).astype(np.float32)  # noqa: E731
        obs(i, "x", x)
        q, k, v = lin(x, "q"), lin(x, "k"), lin(x, "v")
        obs(i, "q", q), obs(i, "k", k), obs(i, "v", v)
        scores = (_split(q, cfg.heads) @ _split(k, cfg.heads).transpose(0, 1, 3, 2)) / np.float32(
            math.sqrt(cfg.head_dim))
        z = np.where(key_mask, np.float32(-np.inf), scores)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        p = z / z.sum(axis=-1, keepdims=True)
        ctx = _join(p @ _split(v, cfg.heads)).astype(np.float32)
        obs(i, "ctx", ctx)
        r1 = lin(ctx, "o") + x
        obs(i, "residual1", r1)
        ln1 = float_layernorm(r1, w["attention.output.LayerNorm.weight"], w["attention.output.LayerNorm.bias"],
                              eps=cfg.layer_norm_eps)
        obs(i, "ln1", ln1)
        inter = lin(ln1, "i")
        obs(i, "inter", inter)
        g = float_gelu(inter)
        obs(i, "gelu", g)
        r2 = lin(g, "d") + ln1
        obs(i, "residual2", r2)
        x = float_layernorm(r2, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"], eps=cfg.layer_norm_eps)
    obs(len(ck.layers), "x", x)
    m = mask[..., None].astype(np.float32)
    return ((x * m).sum(axis=1) / m.sum(axis=1)).astype(np.float32)


def calibrate_bert(ck: BertCheckpoint, sentences) -> list[dict]:
    """Max |value| per layer and point, each sentence run alone (no padding)."""
    peaks = [dict() for _ in range(len(ck.layers) + 1)]

    def observe(i, name, a):
        peaks[i][name] = max(peaks[i].get(name, 0.0), float(np.abs(a).max(initial=0.0)))

    for s in sentences:
        ids, mask = tokenize(ck, [s], truncate=True)
        float_forward(ck, ids, mask, observe=observe)
    return peaks


LINEAR_INPUTS = {"q": "x", "k": "x", "v": "x", "o": "ctx", "i": "ln1", "d": "gelu"}


def calibrate_hessians(ck: BertCheckpoint, sentences) -> dict:
    """Sum of x^T x at every linear input (layer, point) over the calibration sentences (for GPTQ int4)."""
    hess: dict = {}
    wanted = set(LINEAR_INPUTS.values())

    def observe(i, name, a):
        if name in wanted and i < len(ck.layers):
            x = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
            hess[(i, name)] = hess.get((i, name), 0.0) + x.T @ x

    for s in sentences:
        ids, mask = tokenize(ck, [s], truncate=True)
        float_forward(ck, ids, mask, observe=observe)
    return hess


def gptq_blocks(ck: BertCheckpoint, hessians: dict) -> dict:
    """Host: GPTQ int4 blocks (Q4_1 layout) of every linear, {(layer, key): NativeBlocks}."""
    return {(i, key): blocks_q4_1_gptq(w[f"{PROJ[key]}.weight"], hessians[(i, point)])
            for i, w in enumerate(ck.layers) for key, point in LINEAR_INPUTS.items()}


# ---- integer path -------------------------------------------------------------------------------

@dataclass(eq=False)
class IntBertLayer:
    q: IntLinear
    k: IntLinear
    v: IntLinear
    score_mult: int
    score_shift: int
    ctx_mult: int
    ctx_shift: int
    o: IntLinear
    x_to_r1: tuple
    ln1: object
    eps1: np.ndarray
    inter: IntLinear
    gelu: np.ndarray
    down: IntLinear
    ln1_to_r2: tuple
    ln2: object
    eps2: np.ndarray


@dataclass(eq=False)
class IntBert:
    ck: BertCheckpoint
    scheme: Scheme
    scales: list
    emb_tables: tuple          # int16 word, position, token-type at emb_scale
    emb_norm: object
    emb_eps: np.ndarray
    layers: list
    out_scale: float
    weight_formats: dict = field(default_factory=dict)

    @property
    def weight_bytes_per_token(self) -> float:
        return sum(getattr(l, n).weight.storage_bytes for l in self.layers for n in ("q", "k", "v", "o", "inter",
                                                                                    "down"))


def quantize_bert(ck: BertCheckpoint, scheme: Scheme, peaks: list[dict], int4_blocks: dict | None = None) -> IntBert:
    """Host: integer parameters for ``scheme`` from calibration peaks (calibrate_bert). int4 weights come from
    ``int4_blocks`` ({(layer, key): NativeBlocks}, e.g. GPTQ by gptq_blocks) when given, else round-to-nearest."""
    cfg, act, h, rb = ck.cfg, scheme.act_bits, scheme.headroom, scheme.residual_bits
    res = (lambda peak: peak * RESIDUAL_HEADROOM / ((1 << 31) - 1)) if rb == 32 else \
        (lambda peak: static_scale(peak, 16, h))
    make_w = weight_int8 if scheme.weights == "int8" else weight_int4
    tables = (ck.word, ck.position, ck.token_type)
    s_e = max(float(np.abs(t).max()) for t in tables) / 32767
    emb_tables = tuple(np.rint(t / s_e).astype(np.int16) for t in tables)
    s_x = static_scale(peaks[0]["x"], act, h)
    emb_norm, emb_eps = wide_norm_params(layernorm_params, s_e, ck.emb_gamma, ck.emb_beta, s_x,
                                         eps=cfg.layer_norm_eps, out_bits=act)
    layers, scales = [], []
    p_unit = SOFTMAX_Q15_SCALE if scheme.softmax == "q15" else SOFTMAX_OUT_SCALE
    for i, w in enumerate(ck.layers):
        p = peaks[i]
        s = {"x": s_x, "q": static_scale(p["q"], scheme.q_bits, h), "k": static_scale(p["k"], scheme.kv_bits, h),
             "v": static_scale(p["v"], scheme.kv_bits, h), "ctx": static_scale(p["ctx"], act, h),
             "residual1": res(p["residual1"]), "ln1": static_scale(p["ln1"], act, h),
             "inter": static_scale(p["inter"], act, h), "gelu": static_scale(p["gelu"], act, h),
             "residual2": res(p["residual2"]), "out": static_scale(peaks[i + 1]["x"], act, h)}
        scales.append(s)
        def lin(key, s_in, s_out, bits, w=w, i=i):
            weight = w[f"{PROJ[key]}.weight"]
            if scheme.weights == "int4" and int4_blocks is not None:
                iw = weight_from_blocks(int4_blocks[(i, key)], fmt="int4-g32")
            else:
                iw = make_w(weight)
            return make_linear(iw, w[f"{PROJ[key]}.bias"], s_in, s_out, bits)

        ln1, eps1 = wide_norm_params(layernorm_params, s["residual1"], w["attention.output.LayerNorm.weight"],
                                     w["attention.output.LayerNorm.bias"], s["ln1"], eps=cfg.layer_norm_eps,
                                     out_bits=act)
        ln2, eps2 = wide_norm_params(layernorm_params, s["residual2"], w["output.LayerNorm.weight"],
                                     w["output.LayerNorm.bias"], s["out"], eps=cfg.layer_norm_eps, out_bits=act)
        sm, ss = quantize_multiplier(s["q"] * s["k"] / math.sqrt(cfg.head_dim) / SCORE_SCALE)
        cm, cs = quantize_multiplier(p_unit * s["v"] / s["ctx"])
        gelu = interp_table(gelu_float, s["inter"], s["gelu"]) if act == 16 else gelu_table(s["inter"], s["gelu"])
        layers.append(IntBertLayer(
            q=lin("q", s["x"], s["q"], scheme.q_bits), k=lin("k", s["x"], s["k"], scheme.kv_bits),
            v=lin("v", s["x"], s["v"], scheme.kv_bits), score_mult=sm, score_shift=ss, ctx_mult=cm, ctx_shift=cs,
            o=lin("o", s["ctx"], s["residual1"], rb), x_to_r1=quantize_multiplier(s["x"] / s["residual1"]),
            ln1=ln1, eps1=eps1, inter=lin("i", s["ln1"], s["inter"], act), gelu=gelu,
            down=lin("d", s["gelu"], s["residual2"], rb), ln1_to_r2=quantize_multiplier(s["ln1"] / s["residual2"]),
            ln2=ln2, eps2=eps2))
        s_x = s["out"]
    fmt = layers[0].q.weight.fmt
    return IntBert(ck=ck, scheme=scheme, scales=scales, emb_tables=emb_tables, emb_norm=emb_norm,
                   emb_eps=emb_eps, layers=layers, out_scale=s_x, weight_formats={"linear": fmt})


def _add(a, conv, b, bits):
    return residual_add_wide(a, b, conv[0], conv[1], out_bits=bits)


def int_embed(m: IntBert, ids) -> np.ndarray:
    """The embedding sum: int32 [B, S, H] of the three int16 tables at one scale (a row gather and two adds)."""
    word, pos, ttype = m.emb_tables
    return word[ids].astype(np.int32) + pos[np.arange(ids.shape[1])][None].astype(np.int32) + \
        ttype[0].astype(np.int32)


def int_layer(m: IntBert, index: int, x: np.ndarray, key_mask: np.ndarray | None = None) -> np.ndarray:
    """Encoder layer ``index`` on the integer path: x [..., S, H] (act bits) -> the next layer's input (act bits).
    ``key_mask`` [..., 1, 1, S] (True = padding key) masks softmax columns; None: every key is real."""
    cfg, sc, layer = m.ck.cfg, m.scheme, m.layers[index]
    rb, tb = sc.residual_bits, sc.token_bits
    params = softmax_params(SCORE_SCALE, input_bits=32)
    fn = softmax_q15 if sc.softmax == "q15" else softmax
    q, k, v = (_split(linear_apply(x, lin, token_bits=tb), cfg.heads) for lin in (layer.q, layer.k, layer.v))
    acc = exact_matmul(q, np.swapaxes(k, -1, -2))
    p = fn(requant_wide(acc, layer.score_mult, layer.score_shift, out_bits=32), params, mask=key_mask)
    ctx = requant_wide(exact_matmul(p, v), layer.ctx_mult, layer.ctx_shift, out_bits=sc.act_bits)
    r1 = _add(x, layer.x_to_r1, linear_apply(_join(ctx), layer.o, token_bits=tb), rb)
    ln1 = norm_wide(r1, layer.ln1, layer.eps1)
    inter = linear_apply(ln1, layer.inter, token_bits=tb)
    g = interp_lookup(inter, layer.gelu) if sc.act_bits == 16 else lookup(inter, layer.gelu)
    r2 = _add(ln1, layer.ln1_to_r2, linear_apply(g, layer.down, token_bits=tb), rb)
    return norm_wide(r2, layer.ln2, layer.eps2)


def int_layer_input(m: IntBert, ids, layer: int, key_mask: np.ndarray | None = None) -> np.ndarray:
    """The input of encoder layer ``layer`` (0 .. L; L: the last layer's output) on the integer path, act bits."""
    x = norm_wide(int_embed(m, ids), m.emb_norm, m.emb_eps)
    for index in range(layer):
        x = int_layer(m, index, x, key_mask)
    return x


def int_forward(m: IntBert, ids, mask, *, trace=None) -> np.ndarray:
    """Integer path: int64 [B, H] sums of the last layer's output over real tokens (units m.out_scale).

    ``trace(layer, output)``, if given, sees each layer's output at real tokens in real units (host side).
    """
    x = norm_wide(int_embed(m, ids), m.emb_norm, m.emb_eps)
    key_mask = ~mask[:, None, None, :]
    for index in range(len(m.layers)):
        x = int_layer(m, index, x, key_mask)
        if trace is not None:
            trace(index, x[mask].astype(np.float64) * m.scales[index]["out"])
    return (x.astype(np.int64) * mask[..., None]).sum(axis=1)


def pooled(m: IntBert, sums: np.ndarray, mask) -> np.ndarray:
    """Host side, after the integer path: mean pooling in real units, float32 [B, H]."""
    return (sums * m.out_scale / mask.sum(axis=1, keepdims=True)).astype(np.float32)
