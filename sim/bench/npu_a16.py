"""16-bit-activation GEMMs on the NPU RTL (Verilator): utilization of w8a16 and w4a16 -> build/bench/npu_a16.json.

The issue's target point: a 64x384x384 GEMM on an 8x8 NPU (64-bit AXI, default memories, built with all five
precision modes and no vector unit) in w8a16 and w4a16, and int8 on the same build for reference. Utilization
includes data movement: useful MACs / (the mode's peak MACs/cycle x NPU busy cycles from START to DONE: program
fetch, DMA, MATMULs, requant and stores). Random operands with every edge value (sim.harness.npu_run.gemm_operands,
labelled random data); every run is checked bit for bit against both golden tiers (``bit_exact``). Also the cycles
gen.perf.program predicts for the same program. Harness: native (cycle for cycle the fast cocotb harness), DRAM
with no added latency and no random stalls, as sim/bench/npu.py.

Usage: ``python -m npuforge.sim.bench.npu_a16 [-o PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.perf.program import program_cycles
from npuforge.sim.harness.npu_run import gemm_job, run_jobs, summarize
from npuforge.sim.harness.runner import BUILD
from npuforge.spec.precision import MODE_NAMES

SHAPE = (64, 384, 384)
MODES = ("w8a16", "w4a16", "int8")
TARGET = 0.95      #: issue 16: >= 95 % of each 16-bit-activation mode's peak on 8x8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.npu_a16", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "npu_a16.json"))
    args = ap.parse_args(argv)
    cfg = NPUConfig(array=ArrayConfig(rows=8, cols=8, precisions=MODE_NAMES), vector_ops=())
    m, k, n = SHAPE
    built = [gemm_job(cfg, m, k, n, mode, seed=i, name=f"{mode}_{m}x{k}x{n}") for i, mode in enumerate(MODES)]
    jobs = [job for job, _ in built]
    t = time.time()
    print(f"NPU 16-bit-activation bench: 8x8, {cfg.axi_data_bits}-bit AXI, {len(jobs)} GEMMs (native harness)...",
          flush=True)
    results = run_jobs(cfg, jobs, latency=0, stall=0.0, check=False, harness="native", tag="bench_a16")
    rows = []
    for mode, (job, comp), res in zip(MODES, built, results):
        s = summarize(job, res)
        model = program_cycles(comp.program_bytes, cfg, latency=0, harness="fast").cycles
        rows.append({"array": "8x8", "axi_bits": cfg.axi_data_bits, "read_words": cfg.spad_read_words,
                     "mode": mode, "m": m, "k": k, "n": n, "tiles": job.extra["tiles"], "order": job.extra["order"],
                     "peak_macs_per_cycle": job.peak_macs_per_cycle, "model_cycles": model,
                     "meets_target": mode == "int8" or s["utilization"] >= TARGET, **s})
    out = {"description": "64x384x384 GEMM utilization incl. data movement on the RTL, random operands",
           "npu": "8x8, default memories, precisions " + ",".join(MODE_NAMES) + ", vector_ops=()",
           "target_utilization_16bit_modes": TARGET, "wall_s": round(time.time() - t, 1), "runs": rows,
           "all_bit_exact": all(r["bit_exact"] for r in rows)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print(f"{'mode':6s} {'tiles':16s} {'cycles':>8s} {'model':>8s} {'util%':>6s} {'target':>6s} exact")
    for r in rows:
        target = "-" if r["mode"] == "int8" else ("met" if r["meets_target"] else "MISSED")
        print(f"{r['mode']:6s} {str(tuple(r['tiles'])) + ' ' + r['order']:16s} {r['cycles']:>8d} "
              f"{r['model_cycles']:>8d} {100 * r['utilization']:6.1f} {target:>6s} {r['bit_exact']}")
    return 0 if out["all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
