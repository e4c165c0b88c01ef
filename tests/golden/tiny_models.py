"""Tiny model files the model tests write themselves: a Llama GGUF (gguf.GGUFWriter, Q4_1/Q8_0/F32 tensors,
GPT-2 BPE metadata, Q/K rows permuted as llama.cpp's converter does) and a BERT checkpoint directory (safetensors
with embeddings, config.json, a WordLevel tokenizer.json). Nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np

from npuforge.golden.checkpoint import BertConfig, LlamaConfig, bert_weight_shapes, config_to_dict, random_bert_weights
from npuforge.golden.models.gguf_reader import LAYER_NAMES, permute_qk

LLAMA = LlamaConfig(hidden=64, heads=4, kv_heads=2, intermediate=96, head_dim=16, rms_norm_eps=1e-5,
                    rope_theta=10000.0, num_layers=2)
BERT = BertConfig(hidden=32, heads=4, intermediate=64, layer_norm_eps=1e-12, num_layers=2)
CONTEXT = 64
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MERGES = ("t h", "th e", "Ġ c", "Ġc a", "Ġca t", "Ġ th", "Ġth e")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (written out here so the test does not use the code under test)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_vocab() -> list[str]:
    tokens = list(SPECIAL) + [bytes_to_unicode()[b] for b in range(256)]
    for merge in MERGES:
        tokens.append(merge.replace(" ", ""))
    return tokens


def llama_float_weights(seed: int = 0) -> dict:
    """HF-layout float weights of the tiny Llama: {name: array}, names 'layers.i.<hf>' plus embed/norm."""
    rng = np.random.default_rng(seed)
    c = LLAMA
    shapes = {"self_attn.q_proj.weight": (c.heads * c.head_dim, c.hidden),
              "self_attn.k_proj.weight": (c.kv_heads * c.head_dim, c.hidden),
              "self_attn.v_proj.weight": (c.kv_heads * c.head_dim, c.hidden),
              "self_attn.o_proj.weight": (c.hidden, c.heads * c.head_dim),
              "mlp.gate_proj.weight": (c.intermediate, c.hidden), "mlp.up_proj.weight": (c.intermediate, c.hidden),
              "mlp.down_proj.weight": (c.hidden, c.intermediate)}
    out = {"embed": rng.normal(0, 0.5, (len(tiny_vocab()), c.hidden)).astype(np.float32),
           "norm": rng.uniform(0.5, 1.5, c.hidden).astype(np.float32)}
    for i in range(c.num_layers):
        for name, shape in shapes.items():
            out[f"layers.{i}.{name}"] = rng.normal(0, 1 / np.sqrt(shape[1]), shape).astype(np.float32)
        for name in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            out[f"layers.{i}.{name}"] = rng.uniform(0.5, 1.5, c.hidden).astype(np.float32)
    return out


def write_tiny_gguf(path, *, arch: str = "llama", layer_type: str = "Q4_1", seed: int = 0) -> dict:
    """Write the tiny Llama GGUF; returns the float weights it was made from (HF layout, before quantization)."""
    import gguf

    c = LLAMA
    weights = llama_float_weights(seed)
    qtype = getattr(gguf.GGMLQuantizationType, layer_type)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_layers)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(c.hidden)
    w.add_feed_forward_length(c.intermediate)
    w.add_head_count(c.heads)
    w.add_head_count_kv(c.kv_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    vocab = tiny_vocab()
    w.add_token_list(vocab)
    w.add_token_types([3 if t in SPECIAL else 1 for t in vocab])
    w.add_token_merges(list(MERGES))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}")
    q8 = gguf.GGMLQuantizationType.Q8_0
    w.add_tensor("token_embd.weight", gguf.quants.quantize(weights["embed"], q8), raw_dtype=q8)
    w.add_tensor("output_norm.weight", weights["norm"])
    inverse = {hf: short for short, hf in LAYER_NAMES.items()}
    for i in range(c.num_layers):
        for hf in inverse:
            t = weights[f"layers.{i}.{hf}"]
            name = f"blk.{i}.{inverse[hf]}.weight"
            if t.ndim == 1:
                w.add_tensor(name, t)
                continue
            if hf.startswith("self_attn.q_proj"):
                t = permute_qk(t, c.heads)
            elif hf.startswith("self_attn.k_proj"):
                t = permute_qk(t, c.kv_heads)
            w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(t), qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return weights


def write_tiny_bert(directory, *, seed: int = 0) -> list[str]:
    """Write a tiny BERT checkpoint directory; returns its word vocabulary."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "cat", "dog", "sat", "ran", "on", "mat", "fast", "."]
    tensors = {"embeddings.word_embeddings.weight": rng.normal(0, 0.5, (len(words), BERT.hidden)),
               "embeddings.position_embeddings.weight": rng.normal(0, 0.2, (32, BERT.hidden)),
               "embeddings.token_type_embeddings.weight": rng.normal(0, 0.2, (2, BERT.hidden)),
               "embeddings.LayerNorm.weight": rng.uniform(0.5, 1.5, BERT.hidden),
               "embeddings.LayerNorm.bias": rng.normal(0, 0.1, BERT.hidden)}
    for i in range(BERT.num_layers):
        layer = random_bert_weights(BERT, rng)
        assert set(layer) == set(bert_weight_shapes(BERT))
        tensors.update({f"encoder.layer.{i}.{k}": v for k, v in layer.items()})
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(directory / "model.safetensors"))
    cfg = config_to_dict(BERT)
    cfg["max_position_embeddings"] = 32
    (directory / "config.json").write_text(json.dumps(cfg))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    tok.save(str(directory / "tokenizer.json"))
    return words


def write_tiny_hf_llama(directory, ck) -> None:
    """Write a Hugging Face Llama directory (config.json, model.safetensors, tokenizer.json) holding a loaded
    checkpoint's float weights and tokenizer (a float checkpoint: no blocks of its own)."""
    from pathlib import Path

    from safetensors.numpy import save_file

    from npuforge.golden.models.tokenize import gguf_tokenizer

    directory = Path(directory)
    tensors = {"model.embed_tokens.weight": ck.embed, "model.norm.weight": ck.norm}
    for i, layer in enumerate(ck.layers):
        tensors.update({f"model.layers.{i}.{k}": v for k, v in layer.items()})
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
              str(directory / "model.safetensors"))
    cfg = config_to_dict(ck.cfg)
    cfg.update(max_position_embeddings=CONTEXT, eos_token_id=2)
    (directory / "config.json").write_text(json.dumps(cfg))
    gguf_tokenizer(ck.gguf.metadata).save(str(directory / "tokenizer.json"))
