"""Decode GEMVs of SmolLM2's shapes on the NPU RTL: block-scaled w4a16 (Q4_1 blocks, K-packed codes, M = 1) cycles
and bus efficiency against the program cycle model -> build/bench/decode_gemv.json.

Random Gaussian weights in Q4_1 blocks and random int16 activations with both extremes (labelled random data) of
SmolLM2-135M's q projection (576 x 576) and down projection (1536 x 576), compiled by ``compile_gemm(...,
blocks=...)`` and run on the native harness (DRAM with no added latency, no stalls), each checked bit for bit
against both golden tiers. Bus efficiency = bytes moved (DMA payload + command fetch) / (bus bytes per cycle x
busy cycles).

Design points: 8x8 / 64-bit and 16x16 / 128-bit AXI (the layer bench's NPUs, sim.bench.layer.bench_config, so the
native builds are shared), or one with ``--size``. Usage: ``python -m npuforge.sim.bench.decode_gemv [--size 16
--bus-bits 128] [-o PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.perf.layers import program_bytes_moved
from npuforge.gen.perf.program import program_cycles
from npuforge.golden.models.qlinear import blocks_q4_1, linear_apply, make_linear, weight_from_blocks
from npuforge.sim.harness.npu_run import compiled_job, run_jobs
from npuforge.sim.bench.layer import bench_config
from npuforge.sim.harness.runner import BUILD
from npuforge.spec.isa import decode_program

#: (name, K, N) of SmolLM2-135M's decode projections measured here.
SHAPES = (("q_proj", 576, 576), ("down_proj", 1536, 576))


def _job(cfg, name: str, k: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    w = weight_from_blocks(blocks_q4_1(rng.normal(scale=0.05, size=(n, k)) + rng.normal(scale=0.01, size=(n, 1))))
    lin = make_linear(w, None, in_scale=2.0 ** -12, out_scale=2.0 ** -8, out_bits=16)
    x = rng.integers(-(1 << 15), 1 << 15, size=(1, k))
    x.flat[0], x.flat[-1] = -(1 << 15), (1 << 15) - 1
    blk = w.blocks
    comp = compile_gemm(cfg, x, blk.s.T, lin.multiplier, lin.shift, mode="w4a16", out_bits=16,
                        blocks=(blk.d.T, blk.o.T))
    assert np.array_equal(comp.expected, linear_apply(x, lin))
    return compiled_job(cfg, comp, name=f"{name}_1x{k}x{n}")


#: (rows = cols, bus bits) measured by default: the two decode design points of issues #13 / #14.
POINTS = ((8, 64), (16, 128))


def bench_point(size: int, bus_bits: int) -> list[dict]:
    """Every GEMV of :data:`SHAPES` on the ``size`` x ``size`` NPU with a ``bus_bits``-bit AXI bus (the layer
    bench's design point, sim.bench.layer.bench_config): RTL cycles, the model's, bus efficiency, bit-exactness."""
    cfg = bench_config(size, bus_bits)
    jobs = [_job(cfg, name, k, n, seed=i) for i, (name, k, n) in enumerate(SHAPES)]
    results = run_jobs(cfg, jobs, harness="native", latency=0, stall=0.0, seed=1, check=False)
    rows = []
    for job, r in zip(jobs, results):
        prog = bytes(job.image[:job.program_len])
        rtl = r["counters"]["BUSY_CYCLES"]
        model = program_cycles(prog, cfg, latency=0, harness="fast").cycles
        moved = program_bytes_moved(decode_program(prog))
        rows.append({"array": f"{size}x{size}", "bus_bits": bus_bits, "gemv": job.name, "rtl_cycles": rtl,
                     "model_cycles": model, "model_error": (model - rtl) / rtl,
                     "bytes_moved": moved, "bus_efficiency": moved / (cfg.axi_bytes * rtl),
                     "bit_exact": r["isasim_mismatch_bytes"] == 0 and r["golden_mismatch_bytes"] == 0
                     and r["error"] == 0 and not r["timeout"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.decode_gemv", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="one square array (rows = cols) instead of both points")
    ap.add_argument("--bus-bits", type=int, default=None, help="its AXI width (with --size)")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "decode_gemv.json"))
    args = ap.parse_args(argv)
    if (args.size is None) != (args.bus_bits is None):
        ap.error("--size and --bus-bits go together")
    points = POINTS if args.size is None else ((args.size, args.bus_bits),)
    rows = [row for size, bits in points for row in bench_point(size, bits)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"gemvs": rows}, indent=2))
    print(f"{'point':10} {'gemv':24} {'rtl cycles':>11} {'model':>9} {'error':>7} {'bus':>6}  bit-exact")
    for r in rows:
        print(f"{r['array'] + '/' + str(r['bus_bits']):10} {r['gemv']:24} {r['rtl_cycles']:>11,} "
              f"{r['model_cycles']:>9,} {r['model_error']:>7.2%} {r['bus_efficiency']:>6.1%}  {r['bit_exact']}")
    print(f"-> {out}")
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
