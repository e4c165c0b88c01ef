"""Accuracy of the integer golden model against its float twin: real models first, then per operator and layer.

``python -m npuforge.golden.accuracy -o build/accuracy.json [--checkpoint DIR] [--no-models]`` writes::

    {"real_models": {...},          golden.models.evaluate.run_models: MiniLM and SmolLM2, every scheme, on the
                                    held-out text shipped in golden/models/data (null with --no-models / --small)
     "random_weights": {"label", "setup", "operators", "layers"}}     the figures below, on RANDOM data

The random-weight section (``run()``)::

    {"setup": {...},
     "operators": {NAME: {"max_abs_err", "mean_abs_err", "input_bits", ...}},   requant softmax layernorm rmsnorm
                                                                                 gelu silu rope
     "layers":    {NAME: {"cosine", "max_abs_err", ...}}}                        bert-w8a8 bert-w4a8 llama-w8a8
                                                                                 llama-w4a8
and prints a short table. Errors are measured against the float function on the same inputs:

- operators, in the units of the float function's own output: output LSBs for requant (its output scale is
  one LSB), probabilities for softmax (float softmax of the float scores), normalised units for the norms
  (value before gamma/beta vs the float norm of the float input, so input rounding counts; ``kernel_*`` keys
  compare with the float norm of the same integer input; ``input_bits_8`` repeats it for int8 inputs), the real
  output of GELU / SiLU / RoPE on every int8 input / random int8 pairs (``*_lsb`` keys: the same in output LSBs);
- layers: cosine similarity of the dequantized integer output with the float twin's output over all elements,
  max and mean |difference| in real units. Both twins get the same input (x on the integer layer's input grid).
  Llama also reports ``update_cosine`` (cosine of out - x, the attention + MLP branches alone, which the
  residual would otherwise hide) and ``decode_bit_exact`` (decode after prefill == longer prefill).

Without ``--checkpoint`` the layer weights are random with the statistics of golden.checkpoint.WEIGHT_STATS
(stated in "setup"); with it, layer ``--layer`` of that checkpoint replaces the random layer of its family.
Inputs are always random hidden states with a few large-magnitude channels (there is no tokenizer here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npuforge.golden.checkpoint import (
    WEIGHT_STATS,
    BertConfig,
    LlamaConfig,
    load_checkpoint,
    random_bert_weights,
    random_hidden_states,
    random_llama_weights,
)
from npuforge.golden.attention import KVCache
from npuforge.golden.layers import (
    bert_layer_float,
    llama_layer_float,
    llama_layer_int,
    quantize_bert_layer,
    quantize_llama_layer,
    run_bert_layer,
    run_llama_layer,
)
from npuforge.golden.quant import dequantize_activation, quantize_activation

OPERATOR_NAMES = ("requant", "softmax", "layernorm", "rmsnorm", "gelu", "silu", "rope")
LAYER_NAMES = ("bert-w8a8", "bert-w4a8", "llama-w8a8", "llama-w4a8")

# BERT-base and Qwen2-0.5B layer shapes (../shared/models/), and a tiny setting for tests.
FULL = {"bert": BertConfig(hidden=768, heads=12, intermediate=3072), "bert_seq": 128,
        "llama": LlamaConfig(hidden=896, heads=14, kv_heads=2, intermediate=4864, head_dim=64,
                             rope_theta=1000000.0, attention_bias=True), "llama_seq": 64}
SMALL = {"bert": BertConfig(hidden=128, heads=4, intermediate=256), "bert_seq": 16,
         "llama": LlamaConfig(hidden=128, heads=4, kv_heads=2, intermediate=256, head_dim=32,
                              attention_bias=True), "llama_seq": 16}
RANDOM_LABEL = ("RANDOM-WEIGHT SECTION: operators on random inputs and single layers with random (or --checkpoint) "
                "weights fed random hidden states; not a real-model accuracy figure")
CALIBRATION_SEQUENCES = 4
EVALUATION_SEQUENCES = 2


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else float(np.array_equal(a, b))


# ---- layers -------------------------------------------------------------------------------------

def evaluate_layer(family: str, cfg, weights: dict, *, weight_bits: int, group_size, seq: int,
                   seed: int = 0) -> dict:
    """Calibrate on CALIBRATION_SEQUENCES random inputs, compare integer vs float on EVALUATION_SEQUENCES others."""
    rng = np.random.default_rng(seed)
    calib = [random_hidden_states(rng, seq, cfg.hidden) for _ in range(CALIBRATION_SEQUENCES)]
    evals = [random_hidden_states(rng, seq, cfg.hidden) for _ in range(EVALUATION_SEQUENCES)]
    if family == "bert":
        layer = quantize_bert_layer(weights, cfg, calib, weight_bits=weight_bits, group_size=group_size)
        run_int, run_float, input_bits = run_bert_layer, bert_layer_float, 8
    else:
        layer = quantize_llama_layer(weights, cfg, calib, weight_bits=weight_bits, group_size=group_size,
                                     max_positions=max(seq, 1))
        run_int, run_float, input_bits = run_llama_layer, llama_layer_float, 16
    # Both twins see the same input: x on the integer layer's input grid (int8 BERT / int16 Llama residual), as it
    # would arrive from the previous integer layer; the error is then the layer's own.
    s_x = layer.scales["x"]
    evals = [dequantize_activation(quantize_activation(x, s_x, bits=input_bits), s_x) for x in evals]
    pairs = [(run_int(x, layer), run_float(x, weights, cfg)) for x in evals]
    got = np.concatenate([p[0] for p in pairs])
    want = np.concatenate([p[1] for p in pairs])
    err = np.abs(got.astype(np.float64) - want)
    result = {"cosine": cosine(got, want), "max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
              "output_rms": float(np.sqrt(np.mean(want.astype(np.float64) ** 2))),
              "weight_bits": weight_bits, "group_size": group_size}
    if family == "llama":
        # The residual stream passes x through; the cosine of the update (out - x) shows the attention + MLP
        # branches alone, which the plain cosine would hide.
        x = np.concatenate(evals)
        result["update_cosine"] = cosine(got - x, want - x)
        # Decode of token t against the cache of a t-token prefill == row t of a (t+1)-token prefill (t = 7 here;
        # tests/golden/test_layers.py checks more t).
        xq = quantize_activation(evals[0][:8], s_x, bits=16)
        cache = KVCache(cfg.kv_heads, cfg.head_dim)
        llama_layer_int(xq[:-1], layer, cache=cache)
        result["decode_bit_exact"] = bool(np.array_equal(llama_layer_int(xq[-1:], layer, cache=cache),
                                                         llama_layer_int(xq, layer)[-1:]))
    return result


def layer_report(shapes: dict, *, checkpoint=None, layer_index: int = 0, group_size: int = 128,
                 seed: int = 0) -> tuple[dict, dict]:
    """All four layer entries and the setup that produced them."""
    rng = np.random.default_rng(seed)
    models = {"bert": (shapes["bert"], random_bert_weights(shapes["bert"], rng), "random"),
              "llama": (shapes["llama"], random_llama_weights(shapes["llama"], rng), "random")}
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, layers=[layer_index])
        models[ckpt.family] = (ckpt.config, ckpt.layers[0], f"{checkpoint} layer {layer_index}")
    setup = {}
    layers = {}
    for family, (cfg, weights, source) in models.items():
        seq = shapes[f"{family}_seq"]
        setup[family] = {"config": {k: v for k, v in cfg.__dict__.items() if k != "num_layers"},
                         "seq": seq, "weights": source}
        for bits, group in ((8, None), (4, group_size)):
            layers[f"{family}-w{bits}a8"] = evaluate_layer(family, cfg, weights, weight_bits=bits,
                                                           group_size=group, seq=seq, seed=seed + 1)
    return layers, setup


# ---- operators ----------------------------------------------------------------------------------

def _errors(got, want, input_bits: int, lsb: float | None = None) -> dict:
    err = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    out = {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()), "input_bits": input_bits}
    if lsb is not None:
        out["max_abs_err_lsb"] = float(err.max() / lsb)
        out["mean_abs_err_lsb"] = float(err.mean() / lsb)
    return out


def operator_report(seed: int = 0, *, rows: int = 64) -> dict:
    """Error of every integer operator against its float twin (see the module docstring for the units)."""
    from npuforge.golden import activations, elementwise, norms, reference, requant, softmax
    from npuforge.golden.quant import quantize_activation

    rng = np.random.default_rng(seed)
    report = {}

    # requant: int32 accumulators, per-channel scales; inputs kept where the float result is in the int8 range,
    # so the error is the rounding alone (in output LSBs, which is the float function's unit).
    channels = 64
    real_scale = np.exp(rng.uniform(np.log(1e-6), np.log(1e-2), channels))
    acc = np.rint(rng.uniform(-127.4, 127.4, (rows * 16, channels)) / real_scale).astype(np.int64)
    mult, shift = requant.quantize_multipliers(real_scale)
    got = requant.requantize(acc.astype(np.int32), mult, shift)
    report["requant"] = _errors(got, reference.float_requant(acc, real_scale), 32, lsb=1.0)

    # softmax: float scores of attention-like spread, quantized to int16; error in probability.
    scores = rng.normal(0.0, 3.0, (rows, 128))
    s_scale = float(np.abs(scores).max()) / 32767
    p = softmax.softmax(quantize_activation(scores, s_scale, bits=16), softmax.softmax_params(s_scale, input_bits=16))
    report["softmax"] = _errors(p.astype(np.float64) * softmax.SOFTMAX_OUT_SCALE, reference.float_softmax(scores), 16)

    # norms: Gaussian rows of BERT-base width, quantized to 16 or 8 bits; normalised value (before gamma/beta) vs
    # the float norm of the float input (so 8-bit input rounding counts), and vs the float norm of the same
    # integer input ("kernel_*": the integer kernel alone).
    x = rng.normal(0.0, 1.0, (rows, 768))
    for name in ("layernorm", "rmsnorm"):
        float_norm = (lambda a: reference.float_layernorm_normalized(a, eps=1e-5)) if name == "layernorm" else \
            (lambda a: reference.float_rmsnorm_normalized(a, eps=1e-6))
        entries = {}
        for bits in (16, 8):
            scale = float(np.abs(x).max()) / ((1 << (bits - 1)) - 1)
            xq = quantize_activation(x, scale, bits=bits)
            ones = np.ones(x.shape[1])
            if name == "layernorm":
                params = norms.layernorm_params(scale, ones, np.zeros(x.shape[1]), 1.0, input_bits=bits, eps=1e-5)
                y = norms.layernorm_normalized(xq, params)
            else:
                params = norms.rmsnorm_params(scale, ones, 1.0, input_bits=bits, eps=1e-6)
                y = norms.rmsnorm_normalized(xq, params)
            y = y.astype(np.float64) / 2.0 ** norms.NORM_FRAC_BITS
            entries[bits] = _errors(y, float_norm(x), bits)
            kernel = _errors(y, float_norm(xq.astype(np.float64) * scale), bits)
            entries[bits].update(kernel_max_abs_err=kernel["max_abs_err"], kernel_mean_abs_err=kernel["mean_abs_err"])
        report[name] = {**entries[16], "input_bits_8": entries[8]}

    # GELU / SiLU tables: every int8 input; error vs the float function of the dequantized input.
    grid = np.arange(-128, 128, dtype=np.int64)
    for name, table_fn, float_fn, in_range in (("gelu", activations.gelu_table, reference.float_gelu, 6.0),
                                               ("silu", activations.silu_table, reference.float_silu, 8.0)):
        in_scale = in_range / 127
        want = float_fn(grid * in_scale).astype(np.float64)
        out_scale = float(np.abs(want).max()) / 127
        got = activations.lookup(grid.astype(np.int8), table_fn(in_scale, out_scale)).astype(np.float64) * out_scale
        report[name] = _errors(got, want, 8, lsb=out_scale)

    # RoPE: int8 q of one head at many positions; error vs float RoPE of the same values, real units.
    head_dim, positions = 64, np.arange(0, 4096, 4096 // rows)
    # |pair| <= 89 sqrt 2 < 127.5: no rotation can saturate, so the error is the table and rounding alone.
    q = rng.integers(-89, 90, (len(positions), head_dim)).astype(np.int8)
    cos, sin = elementwise.rope_table(head_dim, 4096)
    q_scale = 4.0 / 127
    got = elementwise.rope(q, positions, cos, sin).astype(np.float64) * q_scale
    want = reference.float_rope(q.astype(np.float64) * q_scale, positions)
    report["rope"] = _errors(got, want, 8, lsb=q_scale)
    return report


# ---- report -------------------------------------------------------------------------------------

def run(*, checkpoint=None, layer_index: int = 0, group_size: int = 128, small: bool = False, seed: int = 0) -> dict:
    """The whole report as a dict (see the module docstring)."""
    shapes = SMALL if small else FULL
    layers, layer_setup = layer_report(shapes, checkpoint=checkpoint, layer_index=layer_index,
                                       group_size=group_size, seed=seed)
    setup = {
        **layer_setup,
        "weight_statistics": WEIGHT_STATS,
        "calibration": f"{CALIBRATION_SEQUENCES} random sequences, per-tensor max |x| at every quantization point "
                       "of the float twin (scores int16, all others int8)",
        "evaluation": f"{EVALUATION_SEQUENCES} other random sequences, prefill; both twins get the same input, "
                      "x on the integer layer's input grid (int8 BERT, int16 Llama residual stream)",
        "w8a8": "int8 weights per output channel, int8 activations per tensor",
        "w4a8": f"int4 weights in groups of {group_size} along K (scale = channel scale x 8-bit integer), "
                "int8 activations per tensor",
        "seed": seed,
    }
    return {"setup": setup, "operators": operator_report(seed), "layers": layers}


def format_table(report: dict) -> str:
    lines = [f"{'operator':<10} {'bits':>4} {'max_abs_err':>12} {'mean_abs_err':>12}"]
    for name in OPERATOR_NAMES:
        e = report["operators"][name]
        lines.append(f"{name:<10} {e['input_bits']:>4} {e['max_abs_err']:>12.3g} {e['mean_abs_err']:>12.3g}")
    lines.append("")
    lines.append(f"{'layer':<11} {'cosine':>8} {'update_cos':>10} {'max_abs_err':>12} {'mean_abs_err':>12} "
                 f"{'decode==prefill':>15}")
    for name in LAYER_NAMES:
        e = report["layers"][name]
        update = f"{e['update_cosine']:.5f}" if "update_cosine" in e else "-"
        decode = {True: "bit-exact", False: "MISMATCH"}.get(e.get("decode_bit_exact"), "-")
        lines.append(f"{name:<11} {e['cosine']:>8.5f} {update:>10} {e['max_abs_err']:>12.3g} "
                     f"{e['mean_abs_err']:>12.3g} {decode:>15}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m npuforge.golden.accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSON report path")
    parser.add_argument("--checkpoint", type=Path, help="Hugging Face-format directory (BERT or Llama family)")
    parser.add_argument("--layer", type=int, default=0, help="layer of the checkpoint to evaluate (default 0)")
    parser.add_argument("--group-size", type=int, default=128, choices=(32, 64, 128), help="W4A8 group size")
    parser.add_argument("--small", action="store_true", help="tiny shapes (for tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-models", action="store_true",
                        help="skip the real-model section (MiniLM, SmolLM2; about 20 minutes on 2 cores)")
    parser.add_argument("--schemes", help="comma-separated schemes for the real-model section (default: all)")
    parser.add_argument("--models-cache", type=Path, default=Path("build/models"),
                        help="cache of calibration maxima and float-twin outputs (default build/models)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    real = None
    try:
        report = run(checkpoint=args.checkpoint, layer_index=args.layer, group_size=args.group_size,
                     small=args.small, seed=args.seed)
        if not (args.no_models or args.small):
            from npuforge.golden.models.evaluate import format_models_table, run_models
            from npuforge.golden.models.schemes import SCHEMES

            names = args.schemes.split(",") if args.schemes else None
            for name in names or ():
                if name not in SCHEMES:
                    raise ValueError(f"--schemes must name schemes from {', '.join(SCHEMES)}, got {name!r}")
            real = run_models(args.models_cache, names, progress=lambda line: print(line, flush=True))
    except ValueError as exc:
        print(f"golden.accuracy: error: {exc}", file=sys.stderr)
        return 2
    full = {"real_models": real, "random_weights": {"label": RANDOM_LABEL, **report}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(full, indent=2) + "\n")
    if real is not None:
        print(format_models_table(real))
        print()
    print(RANDOM_LABEL)
    print(format_table(report))
    print(f"\nwrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
