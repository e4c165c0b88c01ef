"""NPU benchmark on the RTL (Verilator): utilization and bus efficiency of compiled GEMMs -> build/bench/npu.json.

* Prefill GEMMs 64x384x384, 64x384x1536, 64x1536x384 (int8, MiniLM-sized linear layers) on 8x8 and 16x16
  arrays with 64- and 128-bit AXI: utilization including data movement = useful MACs / (peak MACs/cycle x NPU
  busy cycles from START to DONE, program fetch, DMA, requant and stores included).
* Decode matrix-vector product 1x896x4864 (a Qwen2-0.5B MLP projection) in int8 and w4a8: bus-bandwidth
  efficiency = bytes moved (DMA payload + command fetch) / (AXI bytes per cycle x cycles).

Every run is also checked bit for bit against both golden tiers (``bit_exact``). Harness: the native one
(sim/harness/native.py; cycle for cycle the same as the fast cocotb harness). DRAM: its model of the HDL AXI4 DRAM
(sim/native/axi_dram.h = sim/hdl/axi_dram.v) with no added latency and no random stalls (first R beat 2 cycles
after its AR, bursts back to back), so the figures show the NPU, not the memory. The bench NPUs are built without the vector
unit (``vector_ops=()``: these programs use only DMA, MATMUL and VEC_REQUANT, and the vector unit only slows the
Verilator build); otherwise the default NPUConfig. The scratchpad's matmul read ports are ``I`` words wide
(``NPUConfig.spad_read_words``; ``read_words`` in the JSON), so 16-byte operand beats on a 64-bit bus take one cycle.
Usage: ``python -m npuforge.sim.bench.npu [--quick] [--decode all|8x8]`` (``--quick``: 8x8 with 64-bit AXI only;
``--decode``: the decode GEMMs on every design point, default, or on the 8x8 ones only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.sim.harness.npu_run import gemm_job, run_jobs, summarize
from npuforge.sim.harness.runner import BUILD

PREFILL = [(64, 384, 384), (64, 384, 1536), (64, 1536, 384)]
DECODE = (1, 896, 4864)
ARRAYS = (8, 16)
AXI_BITS = (64, 128)


def bench_config(size: int, axi_bits: int, *, decode: bool, log=print) -> list[dict]:
    cfg = NPUConfig(array=ArrayConfig(rows=size, cols=size), axi_data_bits=axi_bits, vector_ops=())
    words = cfg.spad_read_words
    jobs = [gemm_job(cfg, m, k, n, "int8", seed=i, name=f"prefill_{m}x{k}x{n}")[0]
            for i, (m, k, n) in enumerate(PREFILL)]
    if decode:
        jobs += [gemm_job(cfg, *DECODE, mode, seed=9, name=f"decode_{mode}")[0] for mode in ("int8", "w4a8")]
    t = time.time()
    log(f"  {size}x{size}, {axi_bits}-bit AXI: {len(jobs)} programs (one Verilator build, then one simulation)...")
    results = run_jobs(cfg, jobs, latency=0, stall=0.0, check=False, harness="native", tag=f"bench{size}_{axi_bits}")
    rows = []
    for job, res in zip(jobs, results):
        s = summarize(job, res)
        m, k, n = (int(x) for x in job.name.split("_")[1].split("x")) if job.name.startswith("prefill") else DECODE
        row = {"array": f"{size}x{size}", "axi_bits": axi_bits, "vector_ops": [], "read_words": words,
               "workload": job.name, "m": m, "k": k, "n": n,
               "mode": "int8" if "w4a8" not in job.name else "w4a8", "tiles": job.extra["tiles"],
               "order": job.extra["order"], **s}
        row["bus_efficiency"] = s["bytes_moved"] / (axi_bits // 8 * s["cycles"]) if s["cycles"] else 0.0
        rows.append(row)
        log(f"    {job.name:22s} cycles {s['cycles']:>9d}  util {100 * s['utilization']:5.1f}%  "
            f"bus {100 * row['bus_efficiency']:5.1f}%  bytes {s['bytes_moved']:>9d}  bit-exact {s['bit_exact']}")
    log(f"    ({time.time() - t:.0f} s wall)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m npuforge.sim.bench.npu", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 8x8 array with 64-bit AXI")
    ap.add_argument("--decode", choices=("all", "8x8"), default="all",
                    help="run the decode GEMMs on every design point (all) or on the 8x8 array only")
    ap.add_argument("-o", "--out", default=str(BUILD / "bench" / "npu.json"))
    args = ap.parse_args(argv)
    points = [(8, 64)] if args.quick else [(s, b) for s in ARRAYS for b in AXI_BITS]
    print(f"NPU bench: {len(points)} design points")
    rows = []
    for i, (size, bits) in enumerate(points):
        print(f"[{i + 1}/{len(points)}]")
        rows += bench_config(size, bits, decode=args.decode == "all" or size == 8)
    prefill = [r for r in rows if r["workload"].startswith("prefill")]
    decode = [r for r in rows if r["workload"].startswith("decode")]
    out = {
        "description": "utilization incl. data movement (prefill) and bus-bandwidth efficiency (decode) on RTL",
        "npu": "default NPUConfig per array size / AXI width, built without the vector unit (vector_ops=())",
        "decode_points": "every design point" if args.decode == "all" else "8x8 arrays only",
        "targets": {"prefill_utilization_8x8": 0.9, "decode_bus_efficiency": 0.9},
        "prefill": prefill,
        "decode": decode,
        "all_bit_exact": all(r["bit_exact"] for r in rows),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    print("NPUs without the vector unit (vector_ops=()); I = scratchpad words per matmul operand read")
    print(f"{'array':6s} {'axi':>4s} {'I':>2s} {'workload':22s} {'cycles':>9s} {'util%':>6s} {'bus%':>6s} exact")
    for r in rows:
        print(f"{r['array']:6s} {r['axi_bits']:>4d} {r['read_words']:>2d} {r['workload']:22s} {r['cycles']:>9d} "
              f"{100 * r['utilization']:6.1f} {100 * r['bus_efficiency']:6.1f} {r['bit_exact']}")
    return 0 if out["all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
