"""``npuforge demo`` (``make demo``): the main job, end to end.

Generates the default NPU (8x8 precision-scalable array, AXI4 DMA with address windows, AXI4-Lite registers),
compiles the linear layers of one MiniLM-sized encoder layer over 64 tokens -- the Q, K, V and output projections
(384 -> 384), the MLP up projection (384 -> 1536) and down projection (1536 -> 384) -- runs each program on the
RTL on the native harness (sim/harness/native.py: the Verilated NPU + a C++ AXI4 DRAM model with 4 cycles of extra
latency, no Python per cycle; ``--sim icarus`` uses the fast cocotb harness instead), checks DRAM bit for bit
against both golden tiers (the ISA-level simulator and golden
``requantize(gemm)``), and prints cycles, utilisation, bytes moved and the verdict. Exit code 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import time

from npuforge.cli.main import ToolError
from npuforge.spec.precision import MODE_NAMES

#: (name, M, K, N) of the linear layers of one all-MiniLM-L6-v2 encoder layer over 64 tokens.
MINILM_LINEARS = (
    ("attention.self.query", 64, 384, 384),
    ("attention.self.key", 64, 384, 384),
    ("attention.self.value", 64, 384, 384),
    ("attention.output.dense", 64, 384, 384),
    ("intermediate.dense", 64, 384, 1536),
    ("output.dense", 64, 1536, 384),
)


#: Extra DRAM latency (cycles) of the demo's DRAM model (sim/native/axi_dram.h, as sim/hdl/axi_dram.v: first R
#: beat 2 + this after AR).
DRAM_LATENCY = 4


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--mode", default="int8", help=f"precision mode, one of {', '.join(MODE_NAMES)} (default int8)")
    parser.add_argument("--sim", default="verilator", help="simulator: verilator (default) or icarus")
    parser.add_argument("--tokens", type=int, default=64, help="sequence length M, 1..4095 (default 64)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.mode not in MODE_NAMES:
        raise ValueError(f"--mode must be one of {', '.join(MODE_NAMES)}, got {args.mode!r}")
    if args.sim not in ("verilator", "icarus"):
        raise ValueError(f"--sim must be verilator or icarus, got {args.sim!r}")
    if not 1 <= args.tokens <= 4095:
        raise ValueError(f"--tokens must be in [1, 4095], got {args.tokens}")
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.sim.harness.npu_run import gemm_job, run_jobs, summarize, system_verilog
    from npuforge.sim.harness.runner import available_simulators

    if args.sim not in available_simulators():
        raise ToolError(f"simulator {args.sim} is not installed")
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None

    cfg = NPUConfig()
    harness = "native" if args.sim == "verilator" else "fast"
    t0 = time.time()
    verilog = system_verilog(cfg, sim=args.sim)[0][0]
    a = cfg.array
    print(f"npuforge demo: NPU {a.rows}x{a.cols} {a.dataflow} array, precisions {','.join(a.precisions)}, "
          f"{cfg.axi_data_bits}-bit AXI; Verilog {verilog} ({time.time() - t0:.1f} s)", flush=True)
    print(f"MiniLM encoder layer linears over {args.tokens} tokens, mode {args.mode}, simulator {args.sim}, "
          f"DRAM model latency +{DRAM_LATENCY} cycles, {harness} harness (the first run builds the simulator: "
          f"a few minutes)", flush=True)
    rows = []
    layers = [(name, args.tokens, k, n) for name, _, k, n in MINILM_LINEARS]
    bar = tqdm(layers, unit="gemm", desc="simulating") if tqdm else layers
    for seed, (name, m, k, n) in enumerate(bar):
        if tqdm:
            bar.set_postfix_str(f"{name} {m}x{k}x{n}")
        job, _ = gemm_job(cfg, m, k, n, args.mode, seed=seed, name=name)
        t1 = time.time()
        res = run_jobs(cfg, [job], sim=args.sim, check=False, seed=seed + 1, latency=DRAM_LATENCY, harness=harness,
                       tag=f"demo-{name}-{args.mode}")[0]
        out = summarize(job, res)
        out.update(layer=name, m=m, k=k, n=n, wall_s=round(time.time() - t1, 1))
        rows.append(out)
    ok = all(r["bit_exact"] for r in rows)
    if args.json:
        print(json.dumps({"mode": args.mode, "array": a.to_dict(), "layers": rows, "bit_exact": ok}, indent=2))
        return 0 if ok else 1
    print(f"\n{'layer':24} {'GEMM':>14} {'cycles':>9} {'util':>6} {'bytes moved':>12} {'bit-exact':>9}")
    for r in rows:
        print(f"{r['layer']:24} {r['m']:>4}x{r['k']}x{r['n']:<5} {r['cycles']:>9} {r['utilization']:>6.1%} "
              f"{r['bytes_moved']:>12} {'yes' if r['bit_exact'] else 'NO':>9}")
    cycles = sum(r["cycles"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    peak = cfg.array.peak_macs_per_cycle[args.mode]
    print(f"{'total':24} {'':>14} {cycles:>9} {macs / (peak * cycles) if cycles else 0:>6.1%} "
          f"{sum(r['bytes_moved'] for r in rows):>12} {'yes' if ok else 'NO':>9}")
    print(f"{sum(r['mismatches'] for r in rows)} mismatching outputs; wall time {time.time() - t0:.0f} s")
    return 0 if ok else 1
