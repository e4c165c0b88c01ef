"""A golden Llama decoder (golden.models.llama.IntLlama) lowered to NPU programs: prefill and KV-cache decode.

What runs where (golden.models.llama.int_forward is the spec; every buffer the NPU writes equals it bit for bit):

* host: tokenizer; the embedding row lookup and its per-token requant into the int32 residual stream (a gather of
  T rows: ``host_embedding``); the argmax over the logits (greedy decoding) and the next token's lookup;
* NPU, one program per layer and phase (``prefill.l{i}``, ``step{s}.l{i}``), then ``prefill.head`` /
  ``step{s}.head``, all over one image in which each layer's KV cache lives (K and V, int8 [positions, KV * d]):

      n1 = RMSNorm(r) int16 (vec.rmsnorm wide)          q = requant(n1 @ Wq) int16, k, v = requant(n1 @ Wk|v) int8
      q  = RoPE(q) int16, rows per (token, head)         k = RoPE(k) int8 -> the K cache rows of these positions
      v  -> the V cache rows directly (the MATMUL's output view)
      per head h (GQA: K/V head h // (H / KV)), over the cache's L = start + T positions:
        s_h = requant(q_h @ K^T) int32 at 2^-16 (MATMUL.b_trans)   p_h = softmax(s_h) Q0.15, causal from ``start``
        ctx_h = requant(p_h @ V) int16 into ctx's head columns
      r1 = requant(r) + requant(ctx @ Wo) int32 (vec.residual wide)    n2 = RMSNorm(r1) int16
      a  = SiLU(requant(n2 @ Wg)) int16 (vec.act interpolated)      u = requant(n2 @ Wu) int16
      g  = requant(a * u) int16 (vec.gate)       r' = requant(r1) + requant(g @ Wd) int32
      (-pt schemes: g = a * u int32 exactly (vec.gate flags 5); g', k = token_shift(g, 16) int16 and one byte k_r per
       token (vec.rmsnorm flags 7); d = requant_wide(g' @ Wd, M, shift - k) (VEC_REQUANT.row_shift), i.e.
       golden linear_apply(a * u, Wd, token_bits=16))
  head program: RMSNorm of the last row -> logits = requant(n @ W_head) int32 at 2^-16.

A decode step is the same kernels on one token at position ``start`` = the cache length, so decode equals a longer
prefill bit for bit (the golden model's own property, kept because every operator is exact).

Schemes: ``w8a16`` and ``w4a16`` (int16 linear inputs, int8 K/V, int32 residual, Q0.15 softmax) and their ``-pt``
forms (``w8a16-pt``, ``w4a16-pt``: the SwiGLU product scaled per token into int16 before the down projection). A weight the
golden model holds as per-channel integers (a Hugging Face checkpoint's float weights quantized by the scheme)
runs on the MATMUL modes as BERT's do; a GGUF checkpoint's own blocks (Q4_1 linears, the Q8_0 LM head: W = D_b s
+ O_b) run exactly on the block-scaled MATMUL (spec.block_scale: w4a16 / w8a16 with MATMUL.blocks, a 48-bit result
read by VEC_REQUANT.wide), which ``check_model`` names when the NPU lacks it.

int16 K/V (``w8a16-kv16``, ``w4a16-kv16``, ``w4a16-kv16-pt``; docs/quantization.md item 8): the K and V projections
requantize to int16, RoPE rotates k int16 -> int16 into the int16 cache rows, and Q.K^T / P.V are int16 x int16
GEMMs: per tile two MATMUL.b16 passes (the cache's high bytes x 256, then its low bytes, accumulating) into the
48-bit accumulator and VEC_REQUANT.wide, i.e. golden ``requant_wide(q . k^T)`` / ``requant_wide(p . v)`` exactly.
The NPU needs ``kv16`` (NPUConfig.kv16: the ISA simulator executes MATMUL.b16, the RTL builds it).
"""

from __future__ import annotations

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder, LayerProgram, Tensor
from npuforge.gen.isa.ops import SoftmaxBlock, WideResidualParams
from npuforge.gen.lower import require_features
from npuforge.golden.attention import kv_head_index
from npuforge.golden.models.intops import IDENTITY_REQUANT, requant_wide
from npuforge.golden.models.llama import SCORE_SCALE, IntLlama
from npuforge.golden.models.qlinear import IntLinear
from npuforge.golden.softmax import softmax_params
from npuforge.spec.vector_ops import (ACT_INTERP, ELEM_BITS, NORM_OUT16, NORM_WIDE, RESIDUAL_A_LSB, RESIDUAL_B_LSB,
                                      RESIDUAL_OUT32, RESIDUAL_WIDE, SOFTMAX_CAUSAL, SOFTMAX_Q15, SOFTMAX_SCORE_LSB,
                                      GATE_PRODUCT_FLAGS, gate_flags, rope_flags)

__all__ = ["NPU_SCHEMES", "VECTOR_OPS", "PRECISIONS", "check_model", "block_modes", "llama_npu_config", "host_embedding",
           "LlamaPlan", "llama_programs"]

#: Schemes the NPU executes for Llama (module docstring).
NPU_SCHEMES = ("w8a16", "w4a16", "w8a16-pt", "w4a16-pt", "w8a16-kv16", "w4a16-kv16", "w4a16-kv16-pt")
#: Vector operators and MATMUL modes a Llama program needs.
VECTOR_OPS = ("softmax", "rmsnorm", "act", "residual", "gate", "rope")
PRECISIONS = ("int8", "w8a16")
#: Positions per vec.rope instruction: its parameter block (16 + 2 * head_dim bytes per position: 32 KiB at
#: SmolLM2's head_dim 64) must be one DMA row (<= 65,535 bytes) and leave the scratchpad room for the rows.
ROPE_POSITIONS = 256
_SCORE_FLAGS = (ELEM_BITS.index(32) << SOFTMAX_SCORE_LSB) | SOFTMAX_Q15 | SOFTMAX_CAUSAL
_NORM_FLAGS = NORM_WIDE | NORM_OUT16
_SILU_FLAGS = ACT_INTERP | 1          # slot 1 (SiLU), 16-bit interpolated table
_RESIDUAL_FLAGS = (RESIDUAL_WIDE | (ELEM_BITS.index(32) << RESIDUAL_A_LSB) | (ELEM_BITS.index(32) << RESIDUAL_B_LSB)
                   | RESIDUAL_OUT32)
_GATE16 = gate_flags(16, 16)          # vec.gate: int16 operands and output


def _linears(m: IntLlama) -> list[IntLinear]:
    return [lin for layer in m.layers for lin in (layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up,
                                                  layer.down)] + [m.head]


def block_modes(m: IntLlama) -> tuple[str, ...]:
    """The MATMUL modes the model's block weights need (w4a16 for 4-bit codes, w8a16 for Q8_0), in mode order."""
    bits = {lin.weight.blocks.bits for lin in _linears(m) if lin.weight.blocks is not None}
    return tuple(mode for mode, b in (("w8a16", 8), ("w4a16", 4)) if b in bits)


def check_model(m: IntLlama, cfg: NPUConfig | None = None) -> None:
    """ValueError naming what the NPU lacks for this model: the scheme, the weight format, a mode or an operator."""
    if m.scheme.name not in NPU_SCHEMES:
        raise ValueError(f"scheme must be one the NPU runs for Llama ({', '.join(NPU_SCHEMES)}), got "
                         f"{m.scheme.name!r}")
    odd = sorted({lin.weight.fmt for lin in _linears(m) if lin.weight.blocks is None and lin.weight.fmt != "int8"})
    if odd:
        raise ValueError(f"weights must be per-channel int8 or a checkpoint's own blocks, got {', '.join(odd)}")
    if cfg is not None:
        if m.scheme.kv_bits == 16 and not cfg.kv16:
            raise ValueError(f"scheme {m.scheme.name} keeps an int16 KV cache: the NPU must be built with kv16 "
                             f"(MATMUL.b16, int16 x int16 attention)")
        modes = block_modes(m)
        require_features(cfg, "Llama", tuple(dict.fromkeys(PRECISIONS + modes)), VECTOR_OPS)
        if modes and not cfg.block_scaled:
            blocks = sorted({lin.weight.fmt for lin in _linears(m) if lin.weight.blocks is not None})
            raise ValueError(f"the checkpoint's weights are {', '.join(blocks)} blocks (W = D_b s + O_b): the NPU "
                             f"must be built with the block-scaled MATMUL (block_scaled, --block-scaled), or run "
                             f"them requantized to int8 per channel (generate --requantize)")


def llama_npu_config(rows: int = 8, cols: int = 8, *, block_scaled: bool = False, kv16: bool = False,
                     **npu_kw) -> NPUConfig:
    """An NPUConfig with the modes and vector operators a Llama program needs (other fields: NPUConfig's);
    ``block_scaled``: also the block-scaled MATMUL and the w4a16 mode a GGUF checkpoint's own blocks need;
    ``kv16``: the int16 KV cache (MATMUL.b16; implies ``block_scaled``, its 48-bit accumulator)."""
    block_scaled = block_scaled or kv16
    precisions = PRECISIONS + (("w4a16",) if block_scaled else ())
    return NPUConfig(array=ArrayConfig(rows=rows, cols=cols, precisions=precisions), vector_ops=VECTOR_OPS,
                     block_scaled=block_scaled, kv16=kv16, **npu_kw)


def host_embedding(m: IntLlama, ids) -> np.ndarray:
    """Host: the token rows of the embedding requantized per token into the int32 residual stream [T, H]."""
    ids = np.asarray(ids, dtype=np.int64)
    return requant_wide(m.embed_codes[ids], m.embed_mult[ids, None], m.embed_shift[ids, None],
                        out_bits=m.scheme.residual_bits).astype(np.int64)


class _Lowering:
    """Adds a Llama model's operators to one LayerBuilder: weights once, a KV cache per layer, phases on demand."""

    def __init__(self, lb: LayerBuilder, m: IntLlama, positions: int, host_cache: bool = False):
        self.lb, self.m, self.cfg = lb, m, m.ck.cfg
        c = self.cfg
        kvd = c.kv_heads * c.head_dim
        self.kv_bits = kv = m.scheme.kv_bits             # 8, or 16 (*-kv16: MATMUL.b16 attention)
        cache = lb.input if host_cache else lb.buffer     # host_cache: the host writes the cached positions
        self.k_cache = [cache(f"l{i}.k_cache", positions, kvd, bits=kv) for i in range(len(m.layers))]
        self.v_cache = [cache(f"l{i}.v_cache", positions, kvd, bits=kv) for i in range(len(m.layers))]
        self._weights: dict[str, Tensor] = {}

    def _w(self, name: str, lin: IntLinear) -> Tensor:
        """The weight's B operand [K, N], placed once: a checkpoint's own blocks (MATMUL.blocks) or int8 per
        channel."""
        if name not in self._weights:
            if lin.weight.blocks is not None:
                self._weights[name] = self.lb.block_weight(name, lin.weight)
            else:
                self._weights[name] = self.lb.constant(name, lin.weight.w_t.astype(np.int64), bits=8)
        return self._weights[name]

    def linear(self, name: str, wname: str, x: Tensor, lin: IntLinear, out: Tensor) -> None:
        # LayerBuilder.gemm refuses a bias outside int32 (VEC_REQUANT.bias)
        self.lb.gemm(x, self._w(wname, lin), out, lin.multiplier, lin.shift, bias=lin.bias, name=name)

    def layer(self, ph: str, index: int, r: Tensor, start: int) -> Tensor:
        """Layer ``index`` of phase ``ph`` on the residual r int32 [T, H] at positions start.. -> r' int32 [T, H]."""
        lb, m, c = self.lb, self.m, self.cfg
        L = m.layers[index]
        t, h = r.shape
        heads, kvh, d = c.heads, c.kv_heads, c.head_dim
        end = start + t
        p, w = f"{ph}.l{index}.", f"l{index}."
        buf = lambda name, cols, bits: lb.buffer(p + name, t, cols, bits=bits)  # noqa: E731
        n1 = buf("n1", h, 16)
        lb.vector("rmsnorm", r, n1, (L.norm1, L.eps1), flags=_NORM_FLAGS, name=p + "norm1")
        kv = self.kv_bits
        q_lin, q, k_lin = buf("q_lin", heads * d, 16), buf("q", heads * d, 16), buf("k_lin", kvh * d, kv)
        kc, vc = self.k_cache[index], self.v_cache[index]
        self.linear(p + "q", w + "q.w", n1, L.q, q_lin)
        self.linear(p + "k", w + "k.w", n1, L.k, k_lin)
        self.linear(p + "v", w + "v.w", n1, L.v, vc.view(rows=slice(start, end)))
        # RoPE rows are (token, head) pairs of head_dim elements (heads interleaved by the flags). Each parameter
        # block holds only its own positions (row 0 = its first position), so imm is 0; a long prefill takes
        # ROPE_POSITIONS positions per instruction, so every block stays one DMA row and a fixed scratchpad share.
        for c0 in range(0, t, ROPE_POSITIONS):
            c1 = min(t, c0 + ROPE_POSITIONS)
            tok = slice(c0, c1)
            sfx = "" if (c0, c1) == (0, t) else f".{c0}"
            table = (m.rope_cos[start + c0:start + c1], m.rope_sin[start + c0:start + c1])
            lb.vector("rope", q_lin.view(rows=tok).reshape((c1 - c0) * heads, d),
                      q.view(rows=tok).reshape((c1 - c0) * heads, d), table,
                      flags=rope_flags(heads, 16, 16), imm=0, name=p + "rope_q" + sfx)
            lb.vector("rope", k_lin.view(rows=tok).reshape((c1 - c0) * kvh, d),
                      kc.view(rows=slice(start + c0, start + c1)).reshape((c1 - c0) * kvh, d), table,
                      flags=rope_flags(kvh, kv, kv), imm=0, name=p + "rope_k" + sfx)
        n = end                                  # positions attended: the whole cache so far
        scores = lb.buffer(p + "scores", heads * t, n, bits=32)
        probs = lb.buffer(p + "probs", heads * t, n, bits=16)
        ctx = buf("ctx", heads * d, 16)
        # Attention per unit: (name, q rows, score / probability rows, ctx view, KV head). Decode: one token's q is
        # one row per head (q as [heads, d]) and a KV head's query heads are adjacent rows, so each KV head's K^T and
        # V are loaded once for its whole group (GQA), not once per query head. Prefill: one unit per head (its q
        # columns are not adjacent rows).
        if t == 1:
            group = heads // kvh
            q_rows, ctx_rows = q.reshape(heads, d), ctx.reshape(heads, d)
            units = [(f"g{g}", q_rows.view(rows=hs), hs, ctx_rows.view(rows=hs), g)
                     for g, hs in ((g, slice(g * group, (g + 1) * group)) for g in range(kvh))]
        else:
            kv_of = kv_head_index(heads, kvh)
            units = [(f"h{hd}", q.view(cols=slice(hd * d, (hd + 1) * d)), slice(hd * t, (hd + 1) * t),
                      ctx.view(cols=slice(hd * d, (hd + 1) * d)), int(kv_of[hd])) for hd in range(heads)]
        for u, qa, rows, _, g in units:
            lb.gemm(qa, kc.view(rows=slice(0, n), cols=slice(g * d, (g + 1) * d)), scores.view(rows=rows),
                    np.full(n, L.score_mult), np.full(n, L.score_shift), b_trans=True, name=f"{p}{u}.qk")
        block = SoftmaxBlock(softmax_params(SCORE_SCALE, input_bits=32))
        if t == 1:
            # One token at position start sees every cached position: the causal mask keeps all n columns of every
            # head's row, so one instruction covers all heads.
            lb.vector("softmax", scores, probs, block, flags=_SCORE_FLAGS, imm=start, name=p + "softmax")
        else:
            for u, _, rows, _, _ in units:
                lb.vector("softmax", scores.view(rows=rows), probs.view(rows=rows), block,
                          flags=_SCORE_FLAGS, imm=start, name=f"{p}{u}.softmax")
        for u, _, rows, out, g in units:
            lb.gemm(probs.view(rows=rows), vc.view(rows=slice(0, n), cols=slice(g * d, (g + 1) * d)), out,
                    np.full(d, L.ctx_mult), np.full(d, L.ctx_shift), name=f"{p}{u}.pv")
        o, r1, n2 = buf("o", h, 32), buf("r1", h, 32), buf("n2", h, 16)
        self.linear(p + "o", w + "o.w", ctx, L.o, o)
        lb.vector("residual", r, r1, WideResidualParams(*(L.mid_from_in or IDENTITY_REQUANT)), src2=o,
                  flags=_RESIDUAL_FLAGS, name=p + "res1")
        lb.vector("rmsnorm", r1, n2, (L.norm2, L.eps2), flags=_NORM_FLAGS, name=p + "norm2")
        ffn = c.intermediate
        gate, act, up = buf("gate", ffn, 16), buf("silu", ffn, 16), buf("up", ffn, 16)
        self.linear(p + "gate", w + "gate.w", n2, L.gate, gate)
        lb.vector("act", gate, act, L.silu, flags=_SILU_FLAGS, name=p + "silu")
        self.linear(p + "up", w + "up.w", n2, L.up, up)
        dn, out = buf("down", h, 32), buf("out", h, 32)
        if m.scheme.swiglu_token:
            self.swiglu_token(p, w, act, up, L.down, dn)
        else:
            g = buf("g", ffn, 16)
            lb.vector("gate", act, g, L.gate_mul, src2=up, flags=_GATE16, name=p + "gate_mul")
            self.linear(p + "down", w + "down.w", g, L.down, dn)
        lb.vector("residual", r1, out, WideResidualParams(*(L.out_from_mid or IDENTITY_REQUANT)), src2=dn,
                  flags=_RESIDUAL_FLAGS, name=p + "res2")
        return out

    def swiglu_token(self, p: str, w: str, act: Tensor, up: Tensor, down: IntLinear, dn: Tensor) -> None:
        """The -pt down projection: the exact product a * u (int32), its per-token power-of-two scale into int16 and
        the k_r bytes, then the GEMM whose requant subtracts k_r from its shifts (no bias: Llama has none)."""
        lb = self.lb
        t, ffn = act.shape
        if down.bias is not None:
            raise ValueError("the -pt down projection takes no bias (VEC_REQUANT.row_shift reads k_r at bias_addr)")
        prod, scaled = lb.buffer(p + "g32", t, ffn, bits=32), lb.buffer(p + "g16", t, ffn, bits=16)
        shifts = lb.buffer(p + "g_shift", t, 1, bits=8)
        lb.vector("gate", act, prod, None, src2=up, flags=GATE_PRODUCT_FLAGS, name=p + "gate_mul")
        lb.token_scale(prod, scaled, shifts, name=p + "token_scale")
        lb.gemm(scaled, self._w(w + "down.w", down), dn, down.multiplier, down.shift, row_shift=shifts,
                name=p + "down")

    def head(self, ph: str, r: Tensor) -> Tensor:
        """The final RMSNorm of r's last row and the LM head -> logits int32 [1, V] (units LOGIT_SCALE)."""
        lb, m = self.lb, self.m
        last = r.view(rows=slice(r.rows - 1, r.rows))
        n = lb.buffer(f"{ph}.final_norm", 1, r.cols, bits=16)
        lb.vector("rmsnorm", last, n, (m.final_norm, m.final_eps), flags=_NORM_FLAGS, name=f"{ph}.final_norm")
        logits = lb.buffer(f"{ph}.logits", 1, m.head.weight.shape[0], bits=32)
        self.linear(f"{ph}.lm_head", "head.w", n, m.head, logits)
        return logits


class LlamaPlan:
    """Built programs of one generation: ``prefill.l{i}`` .. ``prefill.head`` for a prompt of ``prompt_len`` tokens,
    then ``step{s}.l{i}`` .. ``step{s}.head`` for s = 1 .. ``steps`` (one token each). The host writes ``x.prefill``
    [T, H] and ``x.step{s}`` [1, H] (``host_embedding``) before a phase runs and reads ``{phase}.logits``."""

    def __init__(self, prog: LayerProgram, m: IntLlama, prompt_len: int, steps: int):
        self.prog, self.m, self.prompt_len, self.steps = prog, m, prompt_len, steps

    @staticmethod
    def phases(steps: int) -> list[str]:
        return ["prefill"] + [f"step{s}" for s in range(1, steps + 1)]

    def programs_of(self, phase: str) -> list[str]:
        return [n for n in self.prog.programs if n.startswith(phase + ".")]

    def logits(self, memory, phase: str) -> np.ndarray:
        return self.prog.read(memory, f"{phase}.logits").view("<i4").astype(np.int64)


def llama_programs(cfg: NPUConfig, m: IntLlama, prompt_len: int, steps: int = 0,
                   layers: range | None = None, *, prefill: bool = True) -> LlamaPlan:
    """Programs for a prompt of ``prompt_len`` tokens and ``steps`` decode steps (see :class:`LlamaPlan`);
    ``layers`` (default all) limits the layers (then no head program: the last layer's output is the phase's
    result). ``prefill=False``: no prefill phase; the KV caches ``l{i}.k_cache`` / ``l{i}.v_cache`` [prompt_len +
    steps, KV * head_dim] are host inputs whose first ``prompt_len`` rows the host fills (e.g. with the golden
    model's K/V of a context) before the decode steps run."""
    check_model(m, cfg)
    n_layers = len(m.layers)
    layers = range(n_layers) if layers is None else layers
    if not layers or layers.start < 0 or layers.stop > n_layers or layers.step != 1:
        raise ValueError(f"layers must be a non-empty range within [0, {n_layers}), got {layers}")
    if prompt_len < 1 or steps < (0 if prefill else 1):
        raise ValueError(f"prompt_len must be >= 1 and steps >= {0 if prefill else 1}, got {prompt_len} and {steps}")
    positions = prompt_len + steps
    if positions > m.rope_cos.shape[0]:
        raise ValueError(f"prompt_len + steps must be <= {m.rope_cos.shape[0]} positions (context), got {positions}")
    lb = LayerBuilder(cfg)
    low = _Lowering(lb, m, positions, host_cache=not prefill)
    h = m.ck.cfg.hidden
    for s, phase in enumerate(LlamaPlan.phases(steps)):
        if s == 0 and not prefill:
            continue
        t, start = (prompt_len, 0) if s == 0 else (1, prompt_len + s - 1)
        r = lb.input(f"x.{phase}", t, h, bits=32)
        for i in layers:
            lb.program(f"{phase}.l{i}")
            r = low.layer(phase, i, r, start)
        if layers.stop == n_layers and layers.start == 0:
            lb.program(f"{phase}.head")
            low.head(phase, r)
    return LlamaPlan(lb.build(), m, prompt_len, steps)
