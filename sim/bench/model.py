"""Real-model benchmark: all-MiniLM-L6-v2 (scheme w8a16, the real checkpoint, real text) on the NPU
-> build/bench/model.json.

* **Layer prefill**: encoder layer 2 over the first 64 tokens of the shipped evaluation prose (its input: the golden
  model's activations of that text after layers 0-1), lowered by gen.lower.bert into one program: Q/K/V, 12 heads of
  Q.K^T + softmax + P.V, the output projection, residual, LayerNorm, MLP with GELU, residual, LayerNorm. For 8x8 and
  16x16 arrays with 64- and 128-bit AXI: the cycle model's prediction (gen.perf.program); on the RTL (native
  harness, DRAM without added latency) for the points of ``--rtl``: cycles, utilization (useful MACs / (w8a16 peak
  MACs per cycle x cycles), attention and vector work included), bus efficiency (bytes moved / (AXI bytes per
  cycle x cycles)), the model's error, and bit-exactness against both golden tiers.
* **Whole model**: the embedding LayerNorm and six layers per sentence of the shipped evaluation sentences on the
  8x8 / 64-bit NPU (RTL with ``--rtl`` 8x8 or all): cycles, utilization, the NPU's token sums equal to the golden
  model's, and the embeddings' cosine against the float model.

Usage: ``python -m npuforge.sim.bench.model [--rtl none|8x8|all] [--sentences N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npuforge.gen.lower.bert import bert_npu_config, bert_programs
from npuforge.golden.models import bert
from npuforge.golden.models.api import int_bert
from npuforge.golden.models.assets import data_text
from npuforge.sim.harness.model_run import embed_on_npu, run_programs
from npuforge.sim.harness.runner import BUILD

POINTS = [(8, 64), (8, 128), (16, 64), (16, 128)]
LAYER, TOKENS = 2, 64


def layer_rows(m, ck, rtl: str, log=print) -> list[dict]:
    ids = np.array([ck.tokenizer.encode(data_text("eval_prose.txt")).ids[:TOKENS]])
    x = bert.int_layer_input(m, ids, LAYER)[0]
    rows = []
    for size, bits in POINTS:
        cfg = bert_npu_config(size, size, axi_data_bits=bits)
        prog, _ = bert_programs(cfg, m, x=x, layers=range(LAYER, LAYER + 1))
        on_rtl = rtl == "all" or (rtl == "8x8" and (size, bits) == (8, 64))
        name = f"layer{LAYER}"
        _, model = run_programs(prog, backend="isa")
        peak = size * size           # w8a16: one int16 x int8 product per PE per cycle
        pred = model[name]["predicted_cycles"]
        row = {"array": f"{size}x{size}", "axi_bits": bits, "layer": LAYER, "tokens": TOKENS,
               "macs": prog.macs_of(name), "instructions": len(prog.programs[name]), "predicted_cycles": pred,
               "predicted_utilization": prog.macs_of(name) / (peak * pred)}
        if on_rtl:
            t0 = time.time()
            log(f"  {size}x{size}, {bits}-bit AXI: MiniLM layer {LAYER}, {TOKENS} tokens on the RTL (native)...")
            _, res = run_programs(prog, backend="rtl", harness="native")
            r = res[name]
            row.update({k: r[k] for k in ("cycles", "utilization", "bus_efficiency", "bytes_moved", "bit_exact",
                                          "mismatches")},
                       model_error=(pred - r["cycles"]) / r["cycles"], wall_s=round(time.time() - t0, 1))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.model", description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", choices=("none", "8x8", "all"), default="8x8",
                    help="design points run on the RTL besides the model: none, 8x8 with 64-bit AXI, or all")
    ap.add_argument("--sentences", type=int, default=3, help="evaluation sentences through the whole model")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "model.json"))
    args = ap.parse_args(argv)
    _, ck, m = int_bert("minilm", "w8a16")
    layer = layer_rows(m, ck, args.rtl)
    sentences = [s for s in data_text("sentences_eval.txt").splitlines() if s.strip()][:args.sentences]
    backend = "isa" if args.rtl == "none" else "rtl"
    t0 = time.time()
    whole = embed_on_npu(bert_npu_config(8, 8), "minilm", sentences, backend=backend, compare_float=True,
                         log=lambda msg: print(f"  {msg}", flush=True))
    model = {"backend": backend, "sentences": sentences, "cosine_vs_float": whole["cosine_vs_float"],
             "npu": whole["npu"], "wall_s": round(time.time() - t0, 1)}
    ok = all(r.get("bit_exact", True) for r in layer) and whole["npu"]["matches_golden"] and \
        whole["npu"]["bit_exact"]
    out = {"description": __doc__.split("\n\n")[0], "data": "all-MiniLM-L6-v2 checkpoint, shipped evaluation text",
           "scheme": "w8a16", "layer_prefill": layer, "whole_model": model, "all_bit_exact": ok}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print(f"MiniLM layer {LAYER} prefill, {TOKENS} tokens of real text, w8a16; util of the w8a16 peak, whole layer")
    print(f"{'array':6s} {'axi':>4s} {'model cyc':>10s} {'util':>6s} {'RTL cyc':>9s} {'util%':>6s} {'bus%':>6s} "
          f"{'err%':>6s} exact")
    for r in layer:
        rtl = (f"{r['cycles']:>9d} {100 * r['utilization']:6.1f} {100 * r['bus_efficiency']:6.1f} "
               f"{100 * r['model_error']:6.2f} {r['bit_exact']}") if "cycles" in r else f"{'-':>9s}"
        print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['predicted_cycles']:>10d} "
              f"{100 * r['predicted_utilization']:5.1f}% {rtl}")
    print(f"whole model on the {backend.upper()} (8x8, 64-bit AXI):")
    for s, c, sentence in zip(whole["npu"]["sentences"], whole["cosine_vs_float"], sentences):
        cyc = f"{s['cycles']:>9,} cycles, util {100 * s['utilization']:.1f}%" if "cycles" in s else \
            f"{s['predicted_cycles']:>9,} cycles (model)"
        print(f"  {s['tokens']:>3} tokens {cyc}, = golden {s['matches_golden']}, cos vs float {c:.5f}  {sentence}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
