"""Llama-family decoder (SmolLM2 GGUF): float twin and integer whole-model path with a KV cache.

Float twin: token embedding (dequantized) -> golden.layers.llama_layer_float x L -> RMSNorm -> tied/own LM head,
float32, the Hugging Face LlamaForCausalLM computation (checked: logits equal transformers' model loaded from the
same GGUF to float32 rounding, see gguf_reader).

Integer path (scheme = golden.models.schemes.Scheme), per layer with residual r (int32 at ``s_res``, or int16
per point), x_act the linear inputs (int8 / int16):

    n1 = norm_wide(r)                                     act bits (rmsnorm, eps per pre-shift)
    q, k, v = linear(n1) -> q_bits / kv_bits; q, k = rope(q, k)          (golden.elementwise.rope)
    scores = requant_wide(q . k^T) -> int32 at 2^-16 (1/sqrt(d) folded), softmax u8 / q15, causal, KV cache
    ctx = requant_wide(p . v) -> act bits;  r1 = r + linear(ctx) (residual format)
    n2 = norm_wide(r1); gate, up = linear(n2); a = silu(gate) (int16: interpolated table; int8: 256-entry table)
    r2 = r1 + linear(gate_mul(a, up))
final norm -> LM head (the checkpoint's Q8_0 blocks) -> int32 logits at 2^-16.
Decode runs the same kernels with the cache (row_offset = cached tokens), so decode == longer prefill bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npuforge.golden.activations import lookup, silu_table
from npuforge.golden.attention import KVCache, kv_head_index
from npuforge.golden.checkpoint import LlamaConfig
from npuforge.golden.elementwise import gate_mul, gate_params, rope, rope_table
from npuforge.golden.layers import llama_layer_float
from npuforge.golden.models import gguf_reader as gr
from npuforge.golden.models.intops import (exact_matmul, wide_norm_params, interp_lookup, interp_table, norm_wide,
                                           requant_wide, residual_add_wide, silu_float, IDENTITY_REQUANT)
from npuforge.golden.models.qlinear import (IntLinear, IntWeight, linear_apply, make_linear, weight_from_blocks,
                                            weight_int4, weight_int8)
from npuforge.golden.models.schemes import Scheme, static_scale
from npuforge.golden.norms import rmsnorm_params
from npuforge.golden.reference import float_rmsnorm
from npuforge.golden.requant import quantize_multiplier, quantize_multipliers
from npuforge.golden.softmax import SOFTMAX_OUT_SCALE, SOFTMAX_Q15_SCALE, softmax, softmax_params, softmax_q15

SCORE_SCALE = 2.0 ** -16
LOGIT_SCALE = 2.0 ** -16
RESIDUAL_HEADROOM = 8.0
MAX_POSITIONS = 4096
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")


@dataclass(eq=False)
class LlamaCheckpoint:
    """A loaded Llama-family checkpoint (GGUF file or Hugging Face directory): config, tokenizer, float weights for
    the twin, and (GGUF) the file for the checkpoint's own quantized blocks."""

    name: str
    path: Path
    cfg: LlamaConfig
    context_length: int
    tokenizer: object
    layers: list           # HF-named float32 dicts
    embed: np.ndarray      # float32 [V, H]
    norm: np.ndarray       # float32 [H]
    head: np.ndarray       # float32 [V, H] (the embedding when tied)
    tied: bool
    eos: int | None
    chat_template: str | None
    gguf: gr.GGUFModel | None = None

    def native(self, name: str):
        """The checkpoint's own blocks of a GGUF tensor (by GGUF name), or None for float tensors / HF files."""
        if self.gguf is None or self.gguf.tensor_type(name) not in ("Q4_0", "Q4_1", "Q8_0"):
            return None
        return gr.native_blocks(self.gguf, name)

    def layer_tensor(self, layer: int, hf: str) -> str | None:
        return None if self.gguf is None else gr.layer_tensor_names(self.gguf, layer)[hf]


def load_llama(path, *, name: str | None = None) -> LlamaCheckpoint:
    """A GGUF file (float twin weights dequantized with gguf.quants, Q/K rows unpermuted) or a Hugging Face
    Llama/Qwen2/Mistral directory (config.json, model.safetensors, tokenizer.json)."""
    path = Path(path)
    if path.is_dir():
        return _load_hf(path, name)
    from npuforge.golden.models.tokenize import gguf_tokenizer

    model = gr.read_gguf(path)
    tok = gguf_tokenizer(model.metadata)
    layers = []
    for i in range(model.config.num_layers):
        names = gr.layer_tensor_names(model, i)
        layers.append({hf: gr.float_tensor(model, g) for hf, g in names.items()})
    embed = gr.float_tensor(model, "token_embd.weight")
    if "output_norm.weight" not in model.tensors:
        raise ValueError(f"GGUF file {str(model.path)!r} has no output_norm.weight")
    head_name = gr.head_tensor_name(model)
    tied = head_name == "token_embd.weight"
    eos = model.metadata.get("tokenizer.ggml.eos_token_id")
    return LlamaCheckpoint(name=name or model.path.name, path=path, cfg=model.config,
                           context_length=min(model.context_length, MAX_POSITIONS), tokenizer=tok, layers=layers,
                           embed=embed, norm=gr.float_tensor(model, "output_norm.weight"),
                           head=embed if tied else gr.float_tensor(model, head_name), tied=tied,
                           eos=None if eos is None else int(eos), chat_template=model.metadata.get("chat_template"),
                           gguf=model)


def _load_hf(directory: Path, name: str | None) -> LlamaCheckpoint:
    from npuforge.golden.checkpoint import _TensorSource, load_checkpoint
    from npuforge.golden.models.tokenize import json_tokenizer

    ck = load_checkpoint(directory)
    if ck.family != "llama":
        raise ValueError(f"{str(directory)!r} holds a {ck.family} checkpoint; generate needs a Llama-family decoder")
    src = _TensorSource(directory)

    def get(*names):
        for n in names:
            if n in src:
                return src.get(n)
        raise ValueError(f"checkpoint {str(directory)!r} has no tensor {names[0]!r}")

    raw = json.loads((directory / "config.json").read_text())
    embed = get("model.embed_tokens.weight", "embed_tokens.weight")
    tied = "lm_head.weight" not in src
    eos = raw.get("eos_token_id")
    tcfg = directory / "tokenizer_config.json"
    template = json.loads(tcfg.read_text()).get("chat_template") if tcfg.is_file() else None
    return LlamaCheckpoint(name=name or directory.name, path=directory, cfg=ck.config,
                           context_length=min(int(raw.get("max_position_embeddings", 2048)), MAX_POSITIONS),
                           tokenizer=json_tokenizer(directory), layers=list(ck.layers), embed=embed,
                           norm=get("model.norm.weight", "norm.weight"),
                           head=embed if tied else get("lm_head.weight"), tied=tied,
                           eos=eos[0] if isinstance(eos, list) else eos, chat_template=template)


# ---- float twin ---------------------------------------------------------------------------------

def float_forward(ck: LlamaCheckpoint, ids, caches: list | None = None, observe=None) -> np.ndarray:
    """Float32 logits [S, V] for token ids at positions caches[0].length.. (caches: float32 KVCache per layer)."""
    ids = np.asarray(ids, dtype=np.int64)
    x = ck.embed[ids]
    if caches is None:
        caches = [KVCache(ck.cfg.kv_heads, ck.cfg.head_dim, np.float32) for _ in ck.layers]
    for i, w in enumerate(ck.layers):
        obs = None if observe is None else (lambda name, a, i=i: observe(i, name, a))
        x = llama_layer_float(x, w, ck.cfg, cache=caches[i], observe=obs)
    n = float_rmsnorm(x, ck.norm, eps=ck.cfg.rms_norm_eps)
    if observe is not None:
        observe(len(ck.layers), "final", n)
    return (n @ ck.head.T).astype(np.float32)


# ---- integer model ------------------------------------------------------------------------------

@dataclass(eq=False)
class IntLlamaLayer:
    norm1: object
    eps1: np.ndarray
    q: IntLinear
    k: IntLinear
    v: IntLinear
    score_mult: int
    score_shift: int
    ctx_mult: int
    ctx_shift: int
    o: IntLinear
    norm2: object
    eps2: np.ndarray
    gate: IntLinear
    up: IntLinear
    silu: np.ndarray
    gate_mul: object
    down: IntLinear
    res_in: float           # residual scales (equal for int32 residual)
    res_mid: float
    res_out: float
    mid_from_in: tuple      # (multiplier, shift) converting r to the residual1 scale, or None
    out_from_mid: tuple


@dataclass(eq=False)
class IntLlama:
    ck: LlamaCheckpoint
    scheme: Scheme
    scales: list
    embed_codes: np.ndarray     # int8 [V, H] (Q8_0 codes) or int
    embed_d: np.ndarray         # int64 [V, H // 32] 16-bit block multipliers
    embed_mult: np.ndarray      # int64 [V] Q31 of unit[v] / s_res
    embed_shift: np.ndarray
    layers: list
    final_norm: object
    final_eps: np.ndarray
    head: IntLinear
    rope_cos: np.ndarray
    rope_sin: np.ndarray
    weight_formats: dict = field(default_factory=dict)

    @property
    def weight_bytes_per_token(self) -> float:
        """Bytes of weights read per decoded token: every layer linear and the LM head (embedding row ignored)."""
        total = sum(getattr(l, n).weight.storage_bytes for l in self.layers
                    for n in ("q", "k", "v", "o", "gate", "up", "down"))
        return total + self.head.weight.storage_bytes


def calibrate_llama(ck: LlamaCheckpoint, sequences) -> list[dict]:
    """Max |value| per layer and point over calibration token sequences (float twin)."""
    peaks = [dict() for _ in range(len(ck.layers) + 1)]

    def observe(i, name, a):
        peaks[i][name] = max(peaks[i].get(name, 0.0), float(np.abs(a).max(initial=0.0)))

    for ids in sequences:
        float_forward(ck, ids, observe=observe)
    return peaks


def _weight(ck: LlamaCheckpoint, scheme: Scheme, layer: int, hf: str) -> IntWeight:
    """The checkpoint's own blocks when it has them (never re-rounded), else int8 per channel / int4 groups (RTN)."""
    name = ck.layer_tensor(layer, f"{hf}.weight")
    nb = None if name is None else ck.native(name)
    if nb is not None:
        return weight_from_blocks(nb)
    w = ck.layers[layer][f"{hf}.weight"]
    return weight_int8(w) if scheme.weights == "int8" else weight_int4(w)


def quantize_llama(ck: LlamaCheckpoint, scheme: Scheme, peaks: list[dict]) -> IntLlama:
    """Host: integer parameters of the whole model for ``scheme`` from calibration peaks (calibrate_llama)."""
    cfg = ck.cfg
    act, h = scheme.act_bits, scheme.headroom
    if scheme.residual_bits == 32:
        top = max(max(p.get(n, 0.0) for n in ("x", "residual1", "out")) for p in peaks[:-1])
        s_fixed = top * RESIDUAL_HEADROOM / ((1 << 31) - 1)
        res = lambda i, point: s_fixed  # noqa: E731
    else:
        res = lambda i, point: static_scale(peaks[i][point], 16, h)  # noqa: E731
    layers, scales = [], []
    for i, w in enumerate(ck.layers):
        p = peaks[i]
        s = {"x": res(i, "x"), "residual1": res(i, "residual1"), "out": res(i, "out"),
             "norm1": static_scale(p["norm1"], act, h), "q": static_scale(p["q"], scheme.q_bits, h),
             "k": static_scale(p["k"], scheme.kv_bits, h), "v": static_scale(p["v"], scheme.kv_bits, h),
             "ctx": static_scale(p["ctx"], act, h), "norm2": static_scale(p["norm2"], act, h),
             "gate": static_scale(p["gate"], act, h), "up": static_scale(p["up"], act, h),
             "silu": static_scale(p["silu"], act, h), "gated": static_scale(p["gated"], act, h)}
        scales.append(s)
        wt = {hf: _weight(ck, scheme, i, hf) for hf in PROJ}
        rb = scheme.residual_bits
        n1, eps1 = wide_norm_params(rmsnorm_params, s["x"], w["input_layernorm.weight"], s["norm1"],
                                    eps=cfg.rms_norm_eps, out_bits=act)
        n2, eps2 = wide_norm_params(rmsnorm_params, s["residual1"], w["post_attention_layernorm.weight"], s["norm2"],
                                    eps=cfg.rms_norm_eps, out_bits=act)
        score_m, score_s = quantize_multiplier(s["q"] * s["k"] / math.sqrt(cfg.head_dim) / SCORE_SCALE)
        p_unit = SOFTMAX_Q15_SCALE if scheme.softmax == "q15" else SOFTMAX_OUT_SCALE
        ctx_m, ctx_s = quantize_multiplier(p_unit * s["v"] / s["ctx"])
        silu = (interp_table(silu_float, s["gate"], s["silu"]) if act == 16 else silu_table(s["gate"], s["silu"]))
        conv = lambda a, b: None if a == b else quantize_multiplier(a / b)  # noqa: E731
        layers.append(IntLlamaLayer(
            norm1=n1, eps1=eps1,
            q=make_linear(wt["self_attn.q_proj"], w.get("self_attn.q_proj.bias"), s["norm1"], s["q"], scheme.q_bits),
            k=make_linear(wt["self_attn.k_proj"], w.get("self_attn.k_proj.bias"), s["norm1"], s["k"], scheme.kv_bits),
            v=make_linear(wt["self_attn.v_proj"], w.get("self_attn.v_proj.bias"), s["norm1"], s["v"], scheme.kv_bits),
            score_mult=score_m, score_shift=score_s, ctx_mult=ctx_m, ctx_shift=ctx_s,
            o=make_linear(wt["self_attn.o_proj"], None, s["ctx"], s["residual1"], rb),
            norm2=n2, eps2=eps2,
            gate=make_linear(wt["mlp.gate_proj"], None, s["norm2"], s["gate"], act),
            up=make_linear(wt["mlp.up_proj"], None, s["norm2"], s["up"], act),
            silu=silu, gate_mul=gate_params(s["silu"], s["up"], s["gated"], out_bits=act),
            down=make_linear(wt["mlp.down_proj"], None, s["silu"] * s["up"] if scheme.swiglu_token else s["gated"],
                             s["out"], rb),
            res_in=s["x"], res_mid=s["residual1"], res_out=s["out"],
            mid_from_in=conv(s["x"], s["residual1"]), out_from_mid=conv(s["residual1"], s["out"])))
    # token embedding: the checkpoint's Q8_0 (or other) blocks, looked up and requantized into the residual format
    emb_native = ck.native("token_embd.weight")
    emb = weight_from_blocks(emb_native) if emb_native is not None else weight_int8(ck.embed)
    codes = emb.w_t.T.astype(np.int64)
    s_res0 = layers[0].res_in
    em, es = quantize_multipliers(emb.unit / s_res0)
    s_final = static_scale(peaks[-1]["final"], act, h)
    fn, final_eps = wide_norm_params(rmsnorm_params, layers[-1].res_out, ck.norm, s_final, eps=cfg.rms_norm_eps,
                                     out_bits=act)
    if ck.tied:
        head_w = emb
    else:
        head_native = ck.native("output.weight")
        head_w = weight_from_blocks(head_native) if head_native is not None else weight_int8(ck.head)
    cos, sin = rope_table(cfg.head_dim, ck.context_length, base=cfg.rope_theta)
    formats = {"linear": layers[0].q.weight.fmt, "head": head_w.fmt}
    return IntLlama(ck=ck, scheme=scheme, scales=scales, embed_codes=codes, embed_d=None, embed_mult=em,
                    embed_shift=es, layers=layers, final_norm=fn, final_eps=final_eps,
                    head=make_linear(head_w, None, s_final, LOGIT_SCALE, 32), rope_cos=cos, rope_sin=sin,
                    weight_formats=formats)


def _heads(x, n, d):
    return x.reshape(x.shape[0], n, d).transpose(1, 0, 2)


def _merge(x):
    return x.transpose(1, 0, 2).reshape(x.shape[1], -1)


def new_caches(m: IntLlama) -> list:
    dtype = np.int8 if m.scheme.kv_bits == 8 else np.int16
    return [KVCache(m.ck.cfg.kv_heads, m.ck.cfg.head_dim, dtype) for _ in m.layers]


def _attention(q, kc, vc, layer: IntLlamaLayer, scheme: Scheme, start: int) -> np.ndarray:
    """q [H, S, d] against the cache [KV, T, d]: int32 scores, softmax, p.v -> ctx at act bits [H, S, d]."""
    kv = kv_head_index(q.shape[0], kc.shape[0])
    acc = exact_matmul(q, kc[kv].transpose(0, 2, 1))
    scores = requant_wide(acc, layer.score_mult, layer.score_shift, out_bits=32)
    params = softmax_params(SCORE_SCALE, input_bits=32)
    fn = softmax_q15 if scheme.softmax == "q15" else softmax
    p = fn(scores, params, causal=True, row_offset=start)
    ctx = exact_matmul(p, vc[kv])
    return requant_wide(ctx, layer.ctx_mult, layer.ctx_shift, out_bits=scheme.act_bits)


def _add(a, b, conv_a, bits):
    """Residual add in the residual format; a is first brought to b's scale when the scales differ."""
    return residual_add_wide(a, b, *(IDENTITY_REQUANT if conv_a is None else conv_a), out_bits=bits)


def int_layer(m: IntLlama, index: int, r: np.ndarray, cache, start: int) -> np.ndarray:
    """Decoder layer ``index`` on the residual r [S, H] of the tokens at positions start.. (appends their K/V to
    ``cache``, which must hold ``start`` positions) -> the next residual [S, H]."""
    cfg, sc, layer = m.ck.cfg, m.scheme, m.layers[index]
    if cache.length != start:
        raise ValueError(f"the cache must hold the {start} positions before the tokens, got {cache.length}")
    tb, rb = sc.token_bits, sc.residual_bits
    positions = np.arange(start, start + r.shape[0])
    n1 = norm_wide(r, layer.norm1, layer.eps1)
    q = _heads(linear_apply(n1, layer.q, token_bits=tb), cfg.heads, cfg.head_dim)
    k = _heads(linear_apply(n1, layer.k, token_bits=tb), cfg.kv_heads, cfg.head_dim)
    v = _heads(linear_apply(n1, layer.v, token_bits=tb), cfg.kv_heads, cfg.head_dim)
    q = rope(q, positions, m.rope_cos, m.rope_sin, out_bits=sc.q_bits)
    k = rope(k, positions, m.rope_cos, m.rope_sin, out_bits=sc.kv_bits)
    cache.append(k, v)
    ctx = _merge(_attention(q, cache.k, cache.v, layer, sc, start))
    r1 = _add(r, linear_apply(ctx, layer.o, token_bits=tb), layer.mid_from_in, rb)
    n2 = norm_wide(r1, layer.norm2, layer.eps2)
    gate = linear_apply(n2, layer.gate, token_bits=tb)
    a = interp_lookup(gate, layer.silu) if sc.act_bits == 16 else lookup(gate, layer.silu)
    up = linear_apply(n2, layer.up, token_bits=tb)
    if sc.swiglu_token:
        # the exact product (31 bit) goes per token into the linear-input width, then the down projection
        bits = 16 if sc.linear_input == "a16" else 8
        return _add(r1, linear_apply(a.astype(np.int64) * up, layer.down, token_bits=bits), layer.out_from_mid, rb)
    g = gate_mul(a, up, layer.gate_mul)
    return _add(r1, linear_apply(g, layer.down, token_bits=tb), layer.out_from_mid, rb)


def _embed(m: IntLlama, ids, caches: list | None) -> tuple[np.ndarray, list, int]:
    """(the tokens' residual rows at the embedding, the caches, the first position), the length checked."""
    ids = np.asarray(ids, dtype=np.int64)
    if caches is None:
        caches = new_caches(m)
    start = caches[0].length
    if start + len(ids) > m.rope_cos.shape[0]:
        raise ValueError(f"sequence length must be <= {m.rope_cos.shape[0]} tokens (context), got "
                         f"{start + len(ids)}")
    r = requant_wide(m.embed_codes[ids], m.embed_mult[ids, None], m.embed_shift[ids, None],
                     out_bits=m.scheme.residual_bits)
    return r, caches, start


def int_layer_input(m: IntLlama, ids, layer: int, caches: list | None = None) -> np.ndarray:
    """The residual int [S, H] entering decoder layer ``layer`` (0 .. layers) for ids at positions
    caches[0].length.. (appends K/V to the caches of the layers before it)."""
    if not 0 <= layer <= len(m.layers):
        raise ValueError(f"layer must be in [0, {len(m.layers)}], got {layer}")
    r, caches, start = _embed(m, ids, caches)
    for index in range(layer):
        r = int_layer(m, index, r, caches[index], start)
    return r


def int_forward(m: IntLlama, ids, caches: list | None = None, *, last_only: bool = False, trace=None) -> np.ndarray:
    """Integer logits int32 [S, V] (units LOGIT_SCALE) for ids at positions caches[0].length.. (appends K/V).

    ``trace(layer, residual)``, if given, sees each layer's output residual in real units (host side, for reports).
    """
    r, caches, start = _embed(m, ids, caches)
    for index, cache in enumerate(caches):
        r = int_layer(m, index, r, cache, start)
        if trace is not None:
            trace(index, r.astype(np.float64) * m.layers[index].res_out)
    if last_only:
        r = r[-1:]
    n = norm_wide(r, m.final_norm, m.final_eps)
    return linear_apply(n, m.head, token_bits=m.scheme.token_bits)


# ---- generation ---------------------------------------------------------------------------------

def generate_int(m: IntLlama, prompt_ids, tokens: int, *, eos: int | None = None) -> list[int]:
    """Greedy continuation on the integer path: prefill the prompt, then one decode step per token (KV cache)."""
    caches = new_caches(m)
    logits = int_forward(m, prompt_ids, caches, last_only=True)
    out = []
    for _ in range(tokens):
        nxt = int(np.argmax(logits[-1]))
        out.append(nxt)
        if nxt == eos or len(prompt_ids) + len(out) >= m.rope_cos.shape[0]:
            break
        logits = int_forward(m, [nxt], caches)
    return out


def generate_float(ck: LlamaCheckpoint, prompt_ids, tokens: int, *, eos: int | None = None) -> list[int]:
    """Greedy continuation on the float twin (float32 KV cache)."""
    caches = [KVCache(ck.cfg.kv_heads, ck.cfg.head_dim, np.float32) for _ in ck.layers]
    logits = float_forward(ck, prompt_ids, caches)
    out = []
    for _ in range(tokens):
        nxt = int(np.argmax(logits[-1]))
        out.append(nxt)
        if nxt == eos or len(prompt_ids) + len(out) >= ck.context_length:
            break
        logits = float_forward(ck, [nxt], caches)
    return out


def eos_id(ck: LlamaCheckpoint) -> int | None:
    return ck.eos
