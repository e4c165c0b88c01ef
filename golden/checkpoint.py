"""Hugging Face-format checkpoints for the BERT and Llama families: configs, loader, tiny random writer.

A checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``), read tensor by tensor with the ``safetensors`` package's NumPy API.
BF16 tensors (NumPy has no bfloat16) are decoded from the raw file: the 16 stored bits are the high half
of a float32.

Per-layer weights are returned as ``dict[name, float32 ndarray]`` keyed by the Hugging Face name relative
to the layer prefix, in Linear layout ``[out_features, in_features]``:

BERT (prefix ``encoder.layer.{i}.``, or ``bert.encoder.layer.{i}.``), see ``BERT_WEIGHTS``;
Llama / Qwen2 / Mistral (prefix ``model.layers.{i}.`` or ``layers.{i}.``), see ``llama_weight_shapes``.

``write_random_checkpoint`` writes a tiny checkpoint with realistic weight statistics (``random_*_weights``)
for tests: nothing is downloaded.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BertConfig",
    "LlamaConfig",
    "Checkpoint",
    "bert_weight_shapes",
    "llama_weight_shapes",
    "load_checkpoint",
    "config_from_dict",
    "write_checkpoint",
    "write_random_checkpoint",
    "random_bert_weights",
    "random_llama_weights",
    "random_hidden_states",
    "WEIGHT_STATS",
]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not np.isfinite(value)
            or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BertConfig:
    """Shape of a BERT encoder layer (post-LayerNorm, GELU MLP). head_dim = hidden / heads."""

    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    layer_norm_eps: float = 1e-12
    num_layers: int = 1

    def __post_init__(self):
        for name in ("hidden", "heads", "intermediate", "num_layers"):
            _positive_int(name, getattr(self, name))
        _positive_float("layer_norm_eps", self.layer_norm_eps)
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-style decoder layer (pre-RMSNorm, RoPE, grouped-query attention, SiLU-gated MLP)."""

    hidden: int = 896
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    head_dim: int = 64
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False  # Qwen2 has q/k/v biases
    num_layers: int = 1

    def __post_init__(self):
        for name in ("hidden", "heads", "kv_heads", "intermediate", "head_dim", "num_layers"):
            _positive_int(name, getattr(self, name))
        _positive_float("rms_norm_eps", self.rms_norm_eps)
        _positive_float("rope_theta", self.rope_theta)
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")


def bert_weight_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer tensor names (relative to ``encoder.layer.{i}.``) and shapes."""
    h, i = cfg.hidden, cfg.intermediate
    shapes = {}
    for proj in ("query", "key", "value"):
        shapes[f"attention.self.{proj}.weight"] = (h, h)
        shapes[f"attention.self.{proj}.bias"] = (h,)
    shapes.update({
        "attention.output.dense.weight": (h, h),
        "attention.output.dense.bias": (h,),
        "attention.output.LayerNorm.weight": (h,),
        "attention.output.LayerNorm.bias": (h,),
        "intermediate.dense.weight": (i, h),
        "intermediate.dense.bias": (i,),
        "output.dense.weight": (h, i),
        "output.dense.bias": (h,),
        "output.LayerNorm.weight": (h,),
        "output.LayerNorm.bias": (h,),
    })
    return shapes


def llama_weight_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer tensor names (relative to ``model.layers.{i}.``) and shapes."""
    h, i, d = cfg.hidden, cfg.intermediate, cfg.head_dim
    shapes = {
        "self_attn.q_proj.weight": (cfg.heads * d, h),
        "self_attn.k_proj.weight": (cfg.kv_heads * d, h),
        "self_attn.v_proj.weight": (cfg.kv_heads * d, h),
        "self_attn.o_proj.weight": (h, cfg.heads * d),
        "mlp.gate_proj.weight": (i, h),
        "mlp.up_proj.weight": (i, h),
        "mlp.down_proj.weight": (h, i),
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
    }
    if cfg.attention_bias:
        shapes["self_attn.q_proj.bias"] = (cfg.heads * d,)
        shapes["self_attn.k_proj.bias"] = (cfg.kv_heads * d,)
        shapes["self_attn.v_proj.bias"] = (cfg.kv_heads * d,)
    return shapes


BERT_MODEL_TYPES = ("bert",)
LLAMA_MODEL_TYPES = ("llama", "qwen2", "mistral")


def _require(raw: dict, key: str):
    if key not in raw:
        raise ValueError(f"config.json has no key {key!r} (needed for this model family)")
    return raw[key]


def config_from_dict(raw: dict, *, family: str | None = None) -> BertConfig | LlamaConfig:
    """Build a config from a Hugging Face ``config.json`` dictionary (family from ``model_type``)."""
    if family is None:
        model_type = raw.get("model_type")
        if model_type in BERT_MODEL_TYPES:
            family = "bert"
        elif model_type in LLAMA_MODEL_TYPES:
            family = "llama"
        else:
            raise ValueError(
                f"config.json model_type {model_type!r} is not supported; allowed: "
                f"{BERT_MODEL_TYPES + LLAMA_MODEL_TYPES}")
    if family == "bert":
        act = raw.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"config.json hidden_act {act!r} is not supported for BERT; allowed: 'gelu'")
        return BertConfig(
            hidden=_require(raw, "hidden_size"),
            heads=_require(raw, "num_attention_heads"),
            intermediate=_require(raw, "intermediate_size"),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            num_layers=_require(raw, "num_hidden_layers"),
        )
    if family == "llama":
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"config.json hidden_act {act!r} is not supported for Llama; allowed: 'silu'")
        if raw.get("rope_scaling") is not None:
            # Llama 3.x "llama3" scaling (and YaRN, dynamic NTK) change the rotary frequencies; the twins implement
            # plain RoPE, so refuse rather than silently run a different model.
            raise ValueError(f"config.json rope_scaling {raw['rope_scaling']!r} is not supported; allowed: null")
        hidden = _require(raw, "hidden_size")
        heads = _require(raw, "num_attention_heads")
        head_dim = raw.get("head_dim") or (hidden // heads)
        bias = raw.get("attention_bias", raw.get("model_type") == "qwen2")
        return LlamaConfig(
            hidden=hidden,
            heads=heads,
            kv_heads=raw.get("num_key_value_heads") or heads,
            intermediate=_require(raw, "intermediate_size"),
            head_dim=head_dim,
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            attention_bias=bool(bias),
            num_layers=_require(raw, "num_hidden_layers"),
        )
    raise ValueError(f"family must be 'bert' or 'llama', got {family!r}")


def config_to_dict(cfg: BertConfig | LlamaConfig) -> dict:
    """The Hugging Face ``config.json`` form of a config."""
    if isinstance(cfg, BertConfig):
        return {
            "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
            "hidden_size": cfg.hidden, "num_attention_heads": cfg.heads,
            "intermediate_size": cfg.intermediate, "layer_norm_eps": cfg.layer_norm_eps,
            "num_hidden_layers": cfg.num_layers,
        }
    if isinstance(cfg, LlamaConfig):
        return {
            "architectures": ["Qwen2Model" if cfg.attention_bias else "LlamaModel"],
            "model_type": "qwen2" if cfg.attention_bias else "llama", "hidden_act": "silu",
            "hidden_size": cfg.hidden, "num_attention_heads": cfg.heads,
            "num_key_value_heads": cfg.kv_heads, "intermediate_size": cfg.intermediate,
            "head_dim": cfg.head_dim, "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
            "attention_bias": cfg.attention_bias, "num_hidden_layers": cfg.num_layers,
        }
    raise ValueError(f"cfg must be a BertConfig or LlamaConfig, got {type(cfg).__name__}")


def _weight_shapes(cfg) -> dict[str, tuple[int, ...]]:
    return bert_weight_shapes(cfg) if isinstance(cfg, BertConfig) else llama_weight_shapes(cfg)


def _layer_prefixes(cfg, index: int) -> tuple[str, ...]:
    if isinstance(cfg, BertConfig):
        return (f"encoder.layer.{index}.", f"bert.encoder.layer.{index}.")
    return (f"model.layers.{index}.", f"layers.{index}.")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: family ('bert' | 'llama'), config, and one weight dict per loaded layer."""

    family: str
    config: BertConfig | LlamaConfig
    layers: tuple[dict, ...]
    layer_indices: tuple[int, ...]


# ---- safetensors access -------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class _TensorSource:
    """Lazy access to the tensors of one or several safetensors files (name -> file)."""

    def __init__(self, directory: Path):
        single = directory / "model.safetensors"
        index = directory / "model.safetensors.index.json"
        if single.is_file():
            files = [single]
        elif index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted({directory / f for f in weight_map.values()})
        else:
            raise ValueError(f"{directory} has no model.safetensors or model.safetensors.index.json")
        self.location: dict[str, tuple[Path, dict, int]] = {}
        for path in files:
            with open(path, "rb") as fh:
                (header_len,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(header_len))
            for name, info in header.items():
                if name != "__metadata__":
                    self.location[name] = (path, info, 8 + header_len)

    def __contains__(self, name: str) -> bool:
        return name in self.location

    def get(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        path, info, data_start = self.location[name]
        if info["dtype"] == "BF16":
            # NumPy has no bfloat16: a BF16 value is the high 16 bits of the float32 with the same sign/exponent.
            begin, end = info["data_offsets"]
            raw = np.fromfile(path, dtype="<u2", count=(end - begin) // 2, offset=data_start + begin)
            return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {info['dtype']}; allowed: F32, F16, F64, BF16")
        with safe_open(str(path), framework="numpy") as f:
            return np.asarray(f.get_tensor(name), dtype=np.float32)


_LEGACY_ALIASES = {"LayerNorm.weight": "LayerNorm.gamma", "LayerNorm.bias": "LayerNorm.beta"}


def load_checkpoint(directory, *, layers=None) -> Checkpoint:
    """Load ``config.json`` and the per-layer weights of ``layers`` (indices; default all) as float32.

    Raises ValueError on a missing directory, file, config key or tensor, or on a shape mismatch.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(f"checkpoint directory {str(directory)!r} has no config.json")
    cfg = config_from_dict(json.loads(config_path.read_text()))
    family = "bert" if isinstance(cfg, BertConfig) else "llama"
    if layers is None:
        layers = range(cfg.num_layers)
    indices = tuple(int(i) for i in layers)
    for i in indices:
        if not 0 <= i < cfg.num_layers:
            raise ValueError(f"layer index {i} out of range [0, {cfg.num_layers - 1}]")
    source = _TensorSource(directory)
    shapes = _weight_shapes(cfg)
    loaded = []
    for i in indices:
        prefixes = _layer_prefixes(cfg, i)
        weights = {}
        for name, shape in shapes.items():
            candidates = [p + name for p in prefixes]
            for suffix, legacy in _LEGACY_ALIASES.items():
                if name.endswith(suffix):
                    candidates += [p + name[: -len(suffix)] + legacy for p in prefixes]
            found = next((c for c in candidates if c in source), None)
            if found is None:
                raise ValueError(f"checkpoint {str(directory)!r} has no tensor {prefixes[0] + name!r} (layer {i})")
            tensor = source.get(found)
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"tensor {found!r} has shape {tuple(tensor.shape)}, expected {shape} from config.json")
            weights[name] = tensor
        loaded.append(weights)
    return Checkpoint(family=family, config=cfg, layers=tuple(loaded), layer_indices=indices)


def write_checkpoint(directory, cfg: BertConfig | LlamaConfig, layers, *, dtype=np.float32) -> Path:
    """Write ``config.json`` + ``model.safetensors`` with one weight dict per layer (HF names)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    if len(layers) != cfg.num_layers:
        raise ValueError(f"got {len(layers)} layer weight dicts, config has num_layers={cfg.num_layers}")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    shapes = _weight_shapes(cfg)
    for i, weights in enumerate(layers):
        prefix = _layer_prefixes(cfg, i)[0]
        for name, shape in shapes.items():
            if name not in weights:
                raise ValueError(f"layer {i} weights have no tensor {name!r}")
            if tuple(np.shape(weights[name])) != shape:
                raise ValueError(f"layer {i} tensor {name!r} has shape {np.shape(weights[name])}, expected {shape}")
            tensors[prefix + name] = np.ascontiguousarray(weights[name], dtype=dtype)
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    return directory


# ---- realistic random weights -------------------------------------------------------------------

# Stated in the accuracy report. Trained Transformers have weights of std ~0.02-0.05 with a few input
# features whose weight columns are several times larger, norm gains near 1, and hidden states with a few
# channels of much larger magnitude than the rest (the "massive activations" that make per-tensor int8 hard).
WEIGHT_STATS = {
    "weight_std": 0.02,
    "outlier_input_columns_fraction": 0.005,
    "outlier_column_gain": 4.0,
    "bias_std": 0.02,
    "norm_gamma": "N(1, 0.05)",
    "norm_beta_std": 0.02,
    "hidden_state_std": 1.0,
    "hidden_outlier_channels": 4,
    "hidden_outlier_gain": 10.0,
}


def _linear(rng, out_features: int, in_features: int) -> np.ndarray:
    w = rng.normal(0.0, WEIGHT_STATS["weight_std"], size=(out_features, in_features))
    n_out = max(1, int(round(in_features * WEIGHT_STATS["outlier_input_columns_fraction"])))
    cols = rng.choice(in_features, size=n_out, replace=False)
    w[:, cols] *= WEIGHT_STATS["outlier_column_gain"]
    return w.astype(np.float32)


def _vector(rng, n: int, mean: float, std: float) -> np.ndarray:
    return rng.normal(mean, std, size=n).astype(np.float32)


def random_bert_weights(cfg: BertConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One BERT layer of random weights with the statistics of ``WEIGHT_STATS``."""
    out = {}
    for name, shape in bert_weight_shapes(cfg).items():
        if name.endswith("LayerNorm.weight"):
            out[name] = _vector(rng, shape[0], 1.0, 0.05)
        elif name.endswith("LayerNorm.bias"):
            out[name] = _vector(rng, shape[0], 0.0, WEIGHT_STATS["norm_beta_std"])
        elif name.endswith(".bias"):
            out[name] = _vector(rng, shape[0], 0.0, WEIGHT_STATS["bias_std"])
        else:
            out[name] = _linear(rng, *shape)
    return out


def random_llama_weights(cfg: LlamaConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One Llama layer of random weights with the statistics of ``WEIGHT_STATS``."""
    out = {}
    for name, shape in llama_weight_shapes(cfg).items():
        if name.endswith("layernorm.weight"):
            out[name] = _vector(rng, shape[0], 1.0, 0.05)
        elif name.endswith(".bias"):
            out[name] = _vector(rng, shape[0], 0.0, WEIGHT_STATS["bias_std"])
        else:
            out[name] = _linear(rng, *shape)
    return out


def random_hidden_states(rng: np.random.Generator, seq: int, hidden: int, *, outlier_channels=None) -> np.ndarray:
    """Hidden states [seq, hidden]: N(0, 1) with a few fixed channels ``hidden_outlier_gain`` times larger.

    ``outlier_channels`` (indices) defaults to the first ``hidden_outlier_channels`` channels of a fixed
    permutation so calibration and evaluation inputs share them, as in real models.
    """
    x = rng.normal(0.0, WEIGHT_STATS["hidden_state_std"], size=(seq, hidden))
    if outlier_channels is None:
        outlier_channels = np.random.default_rng(1234).permutation(hidden)[: WEIGHT_STATS["hidden_outlier_channels"]]
    x[:, outlier_channels] *= WEIGHT_STATS["hidden_outlier_gain"]
    return x.astype(np.float32)


def write_random_checkpoint(directory, cfg: BertConfig | LlamaConfig, *, seed: int = 0, dtype=np.float32) -> Path:
    """Write a checkpoint of ``cfg.num_layers`` random layers (``random_*_weights``) to ``directory``."""
    rng = np.random.default_rng(seed)
    make = random_bert_weights if isinstance(cfg, BertConfig) else random_llama_weights
    return write_checkpoint(directory, cfg, [make(cfg, rng) for _ in range(cfg.num_layers)], dtype=dtype)
