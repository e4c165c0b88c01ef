"""Llama-family GGUF files: config, float weights (for the float twin) and the checkpoint's own blocks (integer path).

Read with ``gguf.GGUFReader``; float weights with ``gguf.quants.dequantize``. Supported tensor types: F32, F16,
Q8_0, Q4_0, Q4_1 (anything else is a ``ValueError`` naming the tensor and type).

Block layouts (ggml, blocks of 32 along a row, i.e. along K of a Linear [N, K]):

    Q8_0  d f16, q int8[32]                 w = d * q
    Q4_0  d f16, 16 bytes of nibbles        w = d * (q - 8),  q in [0, 15]
    Q4_1  d f16, m f16, 16 bytes of nibbles w = d * q + m,    q in [0, 15]
    nibbles: element j < 16 is the low nibble of byte j, element j + 16 its high nibble.

Q/K row order: llama.cpp's converter permutes the rows of ``attn_q`` / ``attn_k`` within each head,
``w.reshape(heads, 2, d/2, K).swapaxes(1, 2)``, so that its RoPE can rotate adjacent pairs (2i, 2i+1). The Hugging
Face rotation used here pairs (i, i + d/2), so :func:`unpermute_qk` applies the inverse. Check used: the float twin's
logits on real text match Hugging Face transformers' LlamaForCausalLM loaded from the same GGUF file (which undoes the
permutation itself) to within float32 rounding (tests/golden/test_models.py has the inverse-permutation round trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from npuforge.golden.checkpoint import LlamaConfig

BLOCK = 32
SUPPORTED_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")
ARCHITECTURES = ("llama",)

#: GGUF per-layer tensor name -> Hugging Face name (relative to model.layers.{i}.)
LAYER_NAMES = {
    "attn_q": "self_attn.q_proj.weight", "attn_k": "self_attn.k_proj.weight", "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight", "ffn_gate": "mlp.gate_proj.weight", "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight", "attn_norm": "input_layernorm.weight",
    "ffn_norm": "post_attention_layernorm.weight",
}


@dataclass(frozen=True, eq=False)
class NativeBlocks:
    """A checkpoint tensor in its own block format: w[n, k] = d[n, k // 32] * codes[n, k] + m[n, k // 32].

    ``codes`` int8 [N, K] (Q4_0 codes are q - 8 in [-8, 7]; Q4_1 codes q in [0, 15]; Q8_0 int8), ``d`` and ``m``
    float64 [N, K // 32] holding the f16 block scale and minimum exactly (m is all zero for Q8_0 / Q4_0).
    """

    kind: str
    codes: np.ndarray
    d: np.ndarray
    m: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    def dequantize(self) -> np.ndarray:
        rep = lambda a: np.repeat(a, BLOCK, axis=1)  # noqa: E731
        return (rep(self.d) * self.codes + rep(self.m)).astype(np.float32)


@dataclass(frozen=True)
class GGUFModel:
    """Config, tokenizer metadata and tensors of a Llama-family GGUF file (tensors decoded on demand)."""

    path: Path
    config: LlamaConfig
    vocab_size: int
    context_length: int
    metadata: dict
    tensors: dict   # GGUF name -> gguf ReaderTensor

    def tensor_type(self, name: str) -> str:
        return self.tensors[name].tensor_type.name


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def read_gguf(path) -> GGUFModel:
    """Open a GGUF file; ``ValueError`` (one line) for a missing/corrupt file, another architecture or tensor type."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GGUF file {str(path)!r} does not exist")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct errors/IndexError on corrupt files
        raise ValueError(f"{str(path)!r} is not a readable GGUF file ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]})") from None
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; allowed: {', '.join(ARCHITECTURES)}")
    g = lambda key, default=None: _field(reader, f"{arch}.{key}", default)  # noqa: E731
    try:
        heads = int(g("attention.head_count"))
        hidden = int(g("embedding_length"))
        cfg = LlamaConfig(
            hidden=hidden, heads=heads, kv_heads=int(g("attention.head_count_kv", heads)),
            intermediate=int(g("feed_forward_length")), head_dim=int(g("rope.dimension_count", hidden // heads)),
            rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(g("rope.freq_base", 10000.0)), attention_bias=False,
            num_layers=int(g("block_count")))
    except TypeError:
        raise ValueError(f"GGUF file {str(path)!r} lacks llama.* shape metadata") from None
    if g("rope.scaling.type") not in (None, "none"):
        raise ValueError(f"GGUF rope scaling {g('rope.scaling.type')!r} is not supported; allowed: none")
    tensors = {t.name: t for t in reader.tensors}
    for t in reader.tensors:
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise ValueError(f"GGUF tensor {t.name!r} has type {t.tensor_type.name}; supported: "
                             f"{', '.join(SUPPORTED_TYPES)}")
    if "token_embd.weight" not in tensors:
        raise ValueError(f"GGUF file {str(path)!r} has no token_embd.weight")
    meta = {k: _field(reader, k) for k in reader.fields if k.startswith("tokenizer.ggml.")
            and k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")}
    meta["tokens"] = _field(reader, "tokenizer.ggml.tokens")
    meta["merges"] = _field(reader, "tokenizer.ggml.merges")
    meta["token_type"] = _field(reader, "tokenizer.ggml.token_type")
    meta["chat_template"] = _field(reader, "tokenizer.chat_template")
    vocab = int(g("vocab_size", tensors["token_embd.weight"].shape[-1]))
    return GGUFModel(path=path, config=cfg, vocab_size=vocab, context_length=int(g("context_length", 2048)),
                     metadata=meta, tensors=tensors)


def unpermute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K row permutation: rows (2i, 2i+1) of each head go back to (i, i + d/2)."""
    n = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(heads, n // heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter permutation (convert_hf_to_gguf.py ``LlamaModel.permute``), for writing test files."""
    n = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(heads, 2, n // heads // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def _qk_heads(model: GGUFModel, gguf_name: str) -> int | None:
    if gguf_name.endswith("attn_q.weight"):
        return model.config.heads
    if gguf_name.endswith("attn_k.weight"):
        return model.config.kv_heads
    return None


def float_tensor(model: GGUFModel, name: str) -> np.ndarray:
    """A tensor dequantized to float32 in Hugging Face layout ([out, in]; Q/K rows unpermuted)."""
    from gguf.quants import dequantize

    t = model.tensors[name]
    w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
    heads = _qk_heads(model, name)
    return unpermute_qk(w, heads) if heads else w


def native_blocks(model: GGUFModel, name: str) -> NativeBlocks:
    """A quantized tensor's own blocks (Q8_0, Q4_0, Q4_1), Q/K rows unpermuted; ValueError for float tensors."""
    t = model.tensors[name]
    kind = t.tensor_type.name
    raw = np.ascontiguousarray(t.data, dtype=np.uint8)
    n = raw.shape[0]
    if kind == "Q8_0":
        blk = raw.reshape(n, -1, 34)
        d = blk[..., :2].copy().view(np.float16)[..., 0].astype(np.float64)
        codes = blk[..., 2:].copy().view(np.int8).reshape(n, -1)
        m = np.zeros_like(d)
    elif kind in ("Q4_0", "Q4_1"):
        size, off = (18, 2) if kind == "Q4_0" else (20, 4)
        blk = raw.reshape(n, -1, size)
        d = blk[..., :2].copy().view(np.float16)[..., 0].astype(np.float64)
        m = blk[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64) if kind == "Q4_1" else np.zeros_like(d)
        qs = blk[..., off:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=-1).astype(np.int8)  # element j<16 low nibble, j+16 high
        codes = (q - 8 if kind == "Q4_0" else q).reshape(n, -1)
    else:
        raise ValueError(f"tensor {name!r} has type {kind}, which has no integer blocks (need Q8_0, Q4_0 or Q4_1)")
    heads = _qk_heads(model, name)
    if heads:
        codes, d, m = unpermute_qk(codes, heads), unpermute_qk(d, heads), unpermute_qk(m, heads)
    return NativeBlocks(kind=kind, codes=codes, d=d, m=m)


def layer_tensor_names(model: GGUFModel, index: int) -> dict[str, str]:
    """Hugging Face name -> GGUF name for layer ``index`` (ValueError if one is missing)."""
    out = {}
    for short, hf in LAYER_NAMES.items():
        name = f"blk.{index}.{short}.weight"
        if name not in model.tensors:
            raise ValueError(f"GGUF file {str(model.path)!r} has no tensor {name!r}")
        out[hf] = name
    return out


def head_tensor_name(model: GGUFModel) -> str:
    """The LM head: ``output.weight``, or the tied token embedding."""
    return "output.weight" if "output.weight" in model.tensors else "token_embd.weight"
