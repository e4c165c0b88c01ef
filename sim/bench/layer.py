"""Layer-program benchmark: the feed-forward halves of MiniLM and SmolLM2-135M layers as single NPU programs
(gen.isa.builder) -> build/bench/layer.json.

* MiniLM (hidden 384, MLP 1536): ``x @ W1 -> GELU -> @ W2 -> + x -> LayerNorm``.
* SmolLM2-135M (hidden 576, MLP 1536): ``RMSNorm(x) -> gate, up projections -> SiLU(gate) * up -> @ W_down -> + x``.

Prefill of 64 tokens and one decode token (T = 1) per shape. All int8 (weights and activations), **random data**:
these programs exercise the NPU's operators at the real layers' shapes; the real checkpoints' schemes need the
16-bit paths (docs/quantization.md) that are not on the NPU yet, so no accuracy is claimed here.

Per design point: the program cycle model's prediction (gen.perf.program, validated on the RTL within 3 % by
tests/rtl/npu/test_layer_cocotb.py) for 8x8 and 16x16 arrays with 64- and 128-bit AXI, and the RTL run (native
harness, DRAM without added latency or stalls, checked bit for bit against the ISA simulator and the golden
operators) on the points given by ``--rtl`` (default 8x8 with 64-bit AXI; ``all`` for every point, one Verilator
build each). Utilization = useful MACs / (peak MACs per cycle x cycles from START to DONE, vector work, DMA and
fetch included); bus efficiency = bytes moved / (AXI bytes per cycle x cycles).
Usage: ``python -m npuforge.sim.bench.layer [--rtl none|8x8|all]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder, LayerProgram
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.activations import gelu_table, silu_table
from npuforge.golden.elementwise import gate_params, residual_params
from npuforge.golden.norms import layernorm_params, rmsnorm_params
from npuforge.golden.requant import quantize_multipliers
from npuforge.sim.harness.npu_run import layer_job, run_jobs, summarize
from npuforge.sim.harness.runner import BUILD
from npuforge.spec.isa import INSTR_BYTES, DmaLoad, DmaStore

VECTOR_OPS = ("act", "residual", "gate", "layernorm", "rmsnorm")
SHAPES = {"minilm_ffn": (384, 1536), "smollm2_mlp": (576, 1536)}
TOKENS = {"prefill": 64, "decode": 1}
POINTS = [(8, 64), (8, 128), (16, 64), (16, 128)]


def _requant(rng, n: int, k: int, a_std: float = 74.0, b_std: float = 74.0):
    return quantize_multipliers(rng.uniform(0.5, 2.0, n) * 48.0 / (np.sqrt(k) * a_std * b_std))


def _weight(rng, lb: LayerBuilder, name: str, k: int, n: int):
    return lb.constant(name, rng.integers(-128, 128, (k, n)))


def minilm_ffn(cfg: NPUConfig, t: int, *, seed: int = 0) -> LayerProgram:
    hidden, ffn = SHAPES["minilm_ffn"]
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t, hidden)))
    h, g = lb.buffer("h", t, ffn), lb.buffer("g", t, ffn)
    y, r, out = lb.buffer("y", t, hidden), lb.buffer("r", t, hidden), lb.buffer("out", t, hidden)
    lb.gemm(x, _weight(rng, lb, "w1", hidden, ffn), h, *_requant(rng, ffn, hidden))
    lb.vector("act", h, g, gelu_table(0.05, 0.03))
    lb.gemm(g, _weight(rng, lb, "w2", ffn, hidden), y, *_requant(rng, hidden, ffn, a_std=45.0))
    lb.vector("residual", y, r, residual_params(0.04, 0.05, 0.07), src2=x)
    lb.vector("layernorm", r, out, layernorm_params(0.07, rng.uniform(0.5, 1.5, hidden),
                                                    rng.uniform(-0.5, 0.5, hidden), 0.04))
    return lb.build()


def smollm2_mlp(cfg: NPUConfig, t: int, *, seed: int = 0) -> LayerProgram:
    hidden, ffn = SHAPES["smollm2_mlp"]
    rng = np.random.default_rng(seed)
    lb = LayerBuilder(cfg)
    x = lb.constant("x", rng.integers(-128, 128, (t, hidden)))
    xn = lb.buffer("xn", t, hidden)
    gate, up, act, prod = (lb.buffer(n, t, ffn) for n in ("gate", "up", "act", "prod"))
    down, out = lb.buffer("down", t, hidden), lb.buffer("out", t, hidden)
    lb.vector("rmsnorm", x, xn, rmsnorm_params(0.07, rng.uniform(0.5, 1.5, hidden), 0.04))
    lb.gemm(xn, _weight(rng, lb, "w_gate", hidden, ffn), gate, *_requant(rng, ffn, hidden))
    lb.gemm(xn, _weight(rng, lb, "w_up", hidden, ffn), up, *_requant(rng, ffn, hidden))
    lb.vector("act", gate, act, silu_table(0.05, 0.03))
    lb.vector("gate", act, prod, gate_params(0.03, 0.05, 0.04), src2=up)
    lb.gemm(prod, _weight(rng, lb, "w_down", ffn, hidden), down, *_requant(rng, hidden, ffn, a_std=45.0))
    lb.vector("residual", down, out, residual_params(0.04, 0.07, 0.07), src2=x)
    return lb.build()


BUILDERS = {"minilm_ffn": minilm_ffn, "smollm2_mlp": smollm2_mlp}


def _bytes_moved(prog: LayerProgram) -> int:
    """DMA payload plus command fetch of a program (what the BYTES_READ / BYTES_WRITTEN counters and the fetch
    count on the RTL)."""
    return sum(i.rows * i.row_bytes for i in prog.program if isinstance(i, (DmaLoad, DmaStore))) \
        + INSTR_BYTES * len(prog.program)


def _cfg(size: int, axi_bits: int) -> NPUConfig:
    return NPUConfig(array=ArrayConfig(rows=size, cols=size), axi_data_bits=axi_bits, vector_ops=VECTOR_OPS)


def bench_point(size: int, axi_bits: int, *, rtl: bool, log=print) -> list[dict]:
    cfg = _cfg(size, axi_bits)
    peak = cfg.array.rows * cfg.array.cols
    progs = {(shape, phase): BUILDERS[shape](cfg, t, seed=i)
             for i, (shape, (phase, t)) in enumerate((s, p) for s in SHAPES for p in TOKENS.items())}
    rows = []
    for (shape, phase), prog in progs.items():
        model = program_cycles(prog.program_bytes, cfg, latency=0, harness="fast")
        moved = _bytes_moved(prog)
        rows.append({"array": f"{size}x{size}", "axi_bits": axi_bits, "workload": shape, "phase": phase,
                     "tokens": TOKENS[phase], "macs": prog.macs, "instructions": len(prog.program),
                     "predicted_cycles": model.cycles,
                     "predicted_utilization": prog.macs / (peak * model.cycles), "predicted_bytes_moved": moved,
                     "predicted_bus_efficiency": moved / (axi_bits // 8 * model.cycles)})
    if rtl:
        jobs = [layer_job(prog, f"{shape}_{phase}", "out") for (shape, phase), prog in progs.items()]
        t0 = time.time()
        log(f"  {size}x{size}, {axi_bits}-bit AXI: {len(jobs)} layer programs on the RTL (native harness)...")
        results = run_jobs(cfg, jobs, latency=0, stall=0.0, check=False, harness="native",
                           tag=f"layer{size}_{axi_bits}")
        for row, job, res in zip(rows, jobs, results):
            s = summarize(job, res)
            row.update(cycles=s["cycles"], utilization=s["utilization"], bytes_moved=s["bytes_moved"],
                       bus_efficiency=s["bytes_moved"] / (axi_bits // 8 * s["cycles"]) if s["cycles"] else 0.0,
                       bit_exact=s["bit_exact"],
                       model_error=(row["predicted_cycles"] - s["cycles"]) / s["cycles"] if s["cycles"] else None)
        log(f"    ({time.time() - t0:.0f} s wall)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.layer", description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", choices=("none", "8x8", "all"), default="8x8",
                    help="design points run on the RTL besides the model: none, 8x8 with 64-bit AXI, or all")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "layer.json"))
    args = ap.parse_args(argv)
    rows = []
    for size, bits in POINTS:
        rtl = args.rtl == "all" or (args.rtl == "8x8" and (size, bits) == (8, 64))
        rows += bench_point(size, bits, rtl=rtl)
    out = {"description": __doc__.split("\n\n")[0], "data": "random int8 operands (not a real checkpoint)",
           "npu": f"default NPUConfig per array / AXI width with vector_ops={list(VECTOR_OPS)}",
           "rows": rows, "all_bit_exact": all(r.get("bit_exact", True) for r in rows)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print("int8, random data; util = useful MACs / (peak x cycles), whole program; RTL columns where run")
    print(f"{'array':6s} {'axi':>4s} {'workload':12s} {'phase':8s} {'model cyc':>10s} {'util':>6s} {'bus':>6s} "
          f"{'RTL cyc':>9s} {'util%':>6s} {'bus%':>6s} {'err%':>6s} exact")
    for r in rows:
        rtl = (f"{r['cycles']:>9d} {100 * r['utilization']:6.1f} {100 * r['bus_efficiency']:6.1f} "
               f"{100 * r['model_error']:6.2f} {r['bit_exact']}") if "cycles" in r else f"{'-':>9s}"
        print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['workload']:12s} {r['phase']:8s} {r['predicted_cycles']:>10d} "
              f"{100 * r['predicted_utilization']:5.1f}% {100 * r['predicted_bus_efficiency']:5.1f}% {rtl}")
    return 0 if out["all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
