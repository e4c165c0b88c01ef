"""golden.checkpoint: Hugging Face-format load/write round trips, BF16 decoding, and clear errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from npuforge.golden.checkpoint import (
    BertConfig,
    LlamaConfig,
    bert_weight_shapes,
    config_from_dict,
    llama_weight_shapes,
    load_checkpoint,
    random_bert_weights,
    random_hidden_states,
    random_llama_weights,
    write_random_checkpoint,
)

BERT_TINY = BertConfig(hidden=32, heads=4, intermediate=64, num_layers=2)
LLAMA_TINY = LlamaConfig(hidden=32, heads=4, kv_heads=2, intermediate=48, head_dim=8, attention_bias=True,
                         num_layers=2)


@pytest.mark.parametrize("cfg", [BERT_TINY, LLAMA_TINY], ids=["bert", "llama"])
def test_round_trip(tmp_path, cfg):
    write_random_checkpoint(tmp_path, cfg, seed=3)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.config == cfg
    assert ckpt.family == ("bert" if isinstance(cfg, BertConfig) else "llama")
    assert len(ckpt.layers) == 2 and ckpt.layer_indices == (0, 1)
    raw = load_file(str(tmp_path / "model.safetensors"))
    prefix = "encoder.layer.1." if ckpt.family == "bert" else "model.layers.1."
    for name, tensor in ckpt.layers[1].items():
        assert tensor.dtype == np.float32
        np.testing.assert_array_equal(tensor, raw[prefix + name])
    # Two layers are drawn independently.
    name = next(iter(ckpt.layers[0]))
    assert not np.array_equal(ckpt.layers[0][name], ckpt.layers[1][name])


def test_load_subset_of_layers(tmp_path):
    write_random_checkpoint(tmp_path, BERT_TINY)
    ckpt = load_checkpoint(tmp_path, layers=[1])
    assert ckpt.layer_indices == (1,) and len(ckpt.layers) == 1
    with pytest.raises(ValueError, match=r"layer index 2 out of range \[0, 1\]"):
        load_checkpoint(tmp_path, layers=[2])


def test_bert_prefix_and_legacy_gamma_names(tmp_path):
    """BertForXxx checkpoints prefix 'bert.'; old ones name LayerNorm parameters gamma/beta."""
    cfg = BertConfig(hidden=16, heads=2, intermediate=32, num_layers=1)
    weights = random_bert_weights(cfg, np.random.default_rng(0))
    tensors = {}
    for name, value in weights.items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        tensors["bert.encoder.layer.0." + name] = value
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
        "num_hidden_layers": 1}))
    ckpt = load_checkpoint(tmp_path)
    for name, value in weights.items():
        np.testing.assert_array_equal(ckpt.layers[0][name], value)


def _write_bf16(path, tensors: dict[str, np.ndarray]):
    """A safetensors file with BF16 tensors (truncated float32), written by hand as the spec describes."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        data = (np.asarray(value, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_bf16_sharded_qwen2(tmp_path):
    """Qwen2 checkpoints are BF16 and may be sharded with an index file; biases come from model_type."""
    cfg = LlamaConfig(hidden=16, heads=4, kv_heads=1, intermediate=24, head_dim=4, attention_bias=True,
                      num_layers=1)
    weights = random_llama_weights(cfg, np.random.default_rng(1))
    names = sorted(weights)
    shard_a = {"model.layers.0." + n: weights[n] for n in names[: len(names) // 2]}
    shard_b = {"model.layers.0." + n: weights[n] for n in names[len(names) // 2:]}
    _write_bf16(tmp_path / "a.safetensors", shard_a)
    _write_bf16(tmp_path / "b.safetensors", shard_b)
    weight_map = {**{k: "a.safetensors" for k in shard_a}, **{k: "b.safetensors" for k in shard_b}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 1,
        "intermediate_size": 24, "num_hidden_layers": 1, "rms_norm_eps": 1e-6, "rope_theta": 1e6}))
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.config == LlamaConfig(hidden=16, heads=4, kv_heads=1, intermediate=24, head_dim=4,
                                      rope_theta=1e6, attention_bias=True, num_layers=1)
    for name, value in weights.items():
        # BF16 keeps the top 16 bits: value truncated towards zero to 8 significant bits.
        expected = (value.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        np.testing.assert_array_equal(ckpt.layers[0][name], expected)
        np.testing.assert_allclose(ckpt.layers[0][name], value, rtol=2 ** -7)


def test_config_from_dict_defaults():
    cfg = config_from_dict({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 8,
                            "intermediate_size": 128, "num_hidden_layers": 2})
    assert cfg == LlamaConfig(hidden=64, heads=8, kv_heads=8, intermediate=128, head_dim=8,
                              rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False, num_layers=2)
    with pytest.raises(ValueError, match="rope_scaling .*'llama3'.* is not supported; allowed: null"):
        config_from_dict({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128,
                          "num_hidden_layers": 2, "rope_scaling": {"rope_type": "llama3", "factor": 32.0}})
    bert = config_from_dict({"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12,
                             "intermediate_size": 1536, "num_hidden_layers": 6})
    assert bert.head_dim == 32 and bert.layer_norm_eps == 1e-12


def test_missing_tensor(tmp_path):
    write_random_checkpoint(tmp_path, LLAMA_TINY)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    load_checkpoint(tmp_path, layers=[0])  # layer 0 is intact
    with pytest.raises(ValueError, match=r"no tensor 'model.layers.1.mlp.up_proj.weight' \(layer 1\)"):
        load_checkpoint(tmp_path)


def test_shape_mismatch(tmp_path):
    write_random_checkpoint(tmp_path, BERT_TINY)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"'encoder.layer.0.intermediate.dense.weight' has shape \(64, 32\), "
                                         r"expected \(96, 32\)"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("drop, message", [
    ("hidden_size", "config.json has no key 'hidden_size'"),
    ("model_type", "model_type None is not supported"),
])
def test_bad_config(tmp_path, drop, message):
    write_random_checkpoint(tmp_path, BERT_TINY)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg[drop]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8,
                                                      "num_attention_heads": 2, "intermediate_size": 16,
                                                      "num_hidden_layers": 1}))
    with pytest.raises(ValueError, match="has no model.safetensors"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden=30, heads=4), r"hidden \(30\) must be a multiple of heads \(4\)"),
    (dict(heads=0), "heads must be an integer >= 1, got 0"),
    (dict(layer_norm_eps=float("nan")), "layer_norm_eps must be a finite number > 0"),
])
def test_bert_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=14, kv_heads=4), r"heads \(14\) must be a multiple of kv_heads \(4\)"),
    (dict(head_dim=7), "head_dim must be even"),
    (dict(rope_theta=0.0), "rope_theta must be a finite number > 0"),
])
def test_llama_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**kwargs)


def test_random_weight_statistics():
    cfg = BertConfig(hidden=256, heads=4, intermediate=512)
    w = random_bert_weights(cfg, np.random.default_rng(0))
    assert set(w) == set(bert_weight_shapes(cfg))
    dense = w["intermediate.dense.weight"]
    col_std = dense.std(axis=0)
    # Most input columns have std 0.02; a few outlier columns are 4x larger.
    assert abs(np.median(col_std) - 0.02) < 0.002
    assert 1 <= np.sum(col_std > 0.06) <= 3
    assert abs(w["output.LayerNorm.weight"].mean() - 1.0) < 0.02
    lw = random_llama_weights(LLAMA_TINY, np.random.default_rng(0))
    assert set(lw) == set(llama_weight_shapes(LLAMA_TINY))
    x = random_hidden_states(np.random.default_rng(0), 64, 256)
    ch_std = x.std(axis=0)
    assert np.sum(ch_std > 5) == 4 and abs(np.median(ch_std) - 1.0) < 0.1
