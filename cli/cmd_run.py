"""``npuforge run gemm``: compile ``C = requant(A @ B)``, run it on the NPU RTL and check it bit for bit.

    npuforge run gemm --m 64 --k 384 --n 384 --mode int8 [--rows 8 --cols 8] [--axi-bits 64]
                      [--harness native|fast|axi] [--sim verilator|icarus] [--latency N] [--bandwidth B]
                      [--max-cycles N] [--waves] [--json]

Harnesses: ``native`` (default; the C++ harness: Verilated NPU + C++ DRAM model, no Python per cycle), ``fast``
(cocotb with the HDL AXI4 DRAM model sim/hdl/axi_dram.v; cycle for cycle the same as native; the default with
``--sim icarus`` or ``--waves``) and ``axi`` (cocotbext-axi's AXI RAM, the protocol reference). Prints cycles,
utilization, bytes moved and the bit-exact verdict (both golden tiers: the ISA simulator's DRAM image and golden
``requantize(gemm)``). ``--json`` prints ``{"cycles", "macs", "utilization", "bytes_moved", "bit_exact",
"mismatches", "harness", "sim_wall_s", "sim_cycles_per_s"}`` (simulation wall time, build excluded). Exit code 0
when bit-exact, 1 when the results differ or the simulation fails (cycle limit reached: one line), 2 for bad
input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from npuforge.cli.main import add_config_arguments, add_npu_arguments, config_from_args, npu_config_from_args
from npuforge.spec.precision import MODE_NAMES

WORKLOADS = ("gemm",)
SIMS = ("verilator", "icarus")
HARNESSES = ("native", "fast", "axi")
CONTRACT = ("cycles", "macs", "utilization", "bytes_moved", "bit_exact", "mismatches", "harness", "sim_wall_s",
            "sim_cycles_per_s")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", help=f"what to run: {', '.join(WORKLOADS)}")
    parser.add_argument("--m", type=int, default=64, help="rows of A and C (default 64)")
    parser.add_argument("--k", type=int, default=384, help="reduction length (default 384)")
    parser.add_argument("--n", type=int, default=384, help="columns of B and C (default 384)")
    parser.add_argument("--mode", default="int8", help=f"precision mode, one of {', '.join(MODE_NAMES)} (default "
                        "int8; a mode the array's --precisions leave out is added to them unless --precisions is "
                        "given)")
    parser.add_argument("--sim", default="verilator", help=f"one of {', '.join(SIMS)} (default verilator)")
    parser.add_argument("--waves", action="store_true", help="write a waveform (build/sim/.../runs/...)")
    parser.add_argument("--seed", type=int, default=0, help="operand seed (default 0)")
    parser.add_argument("--latency", type=int, default=0,
                        help="extra DRAM latency in cycles, 0..1000 (default 0)")
    parser.add_argument("--harness", default=None, help="native (default: C++ harness), fast (cocotb + HDL DRAM "
                        "model; default with --sim icarus or --waves) or axi (cocotbext-axi AXI RAM, about 1,000 "
                        "cycles/s)")
    parser.add_argument("--bandwidth", type=int, default=0,
                        help="DRAM bandwidth cap in bytes per cycle, 0..4096 (0: none; native harness only)")
    parser.add_argument("--max-cycles", type=int, default=None,
                        help="cycle limit of the wait for the NPU's interrupt (default: generous, from the MACs)")
    parser.add_argument("--json", action="store_true", help="print the result JSON")
    add_config_arguments(parser)
    add_npu_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, got {args.workload!r}")
    if args.sim not in SIMS:
        raise ValueError(f"--sim must be one of {', '.join(SIMS)}, got {args.sim!r}")
    for name in ("m", "k", "n"):
        v = getattr(args, name)
        if v < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {v}")
    if args.harness is None:
        args.harness = "fast" if args.sim != "verilator" or args.waves else "native"
    if args.harness not in HARNESSES:
        raise ValueError(f"--harness must be one of {', '.join(HARNESSES)}, got {args.harness!r}")
    if args.harness == "native" and args.sim != "verilator":
        raise ValueError(f"--harness native runs on Verilator only, got --sim {args.sim}")
    if args.harness == "native" and args.waves:
        raise ValueError("--waves needs --harness fast or axi (the native harness writes no waveform)")
    if not 0 <= args.latency <= 1000:
        raise ValueError(f"--latency must be in [0, 1000] cycles, got {args.latency}")
    if not 0 <= args.bandwidth <= 4096:
        raise ValueError(f"--bandwidth must be in [0, 4096] bytes per cycle, got {args.bandwidth}")
    if args.bandwidth and args.harness != "native":
        raise ValueError(f"--bandwidth needs --harness native, got --harness {args.harness}")
    if args.max_cycles is not None and args.max_cycles < 1:
        raise ValueError(f"--max-cycles must be an integer >= 1, got {args.max_cycles}")
    if args.mode not in MODE_NAMES:
        raise ValueError(f"--mode must be one of {', '.join(MODE_NAMES)}, got {args.mode!r}")
    array = config_from_args(args)
    if args.mode not in array.precisions and getattr(args, "precisions", None) is None:
        # `run gemm --mode w8a16` builds the NPU with the mode it runs; explicit --precisions are taken as given.
        array = array.with_overrides(precisions=array.precisions + (args.mode,))
    cfg = npu_config_from_args(args, array)
    # Validate the workload before any simulator work (ValueError names the bad value).
    from npuforge.gen.isa.compiler import plan_gemm

    plan_gemm(cfg, args.m, args.k, args.n, mode=args.mode)
    from npuforge.sim.harness.npu_run import run_gemm
    from npuforge.sim.harness.runner import available_simulators

    if args.sim not in available_simulators():
        raise ValueError(f"--sim {args.sim} is not installed here (available: {', '.join(available_simulators())})")
    log = None if args.json else (lambda msg: print(f"npuforge run: {msg}", file=sys.stderr, flush=True))
    try:
        res = run_gemm(cfg, args.m, args.k, args.n, args.mode, sim=args.sim, waves=args.waves, seed=args.seed,
                       latency=args.latency, harness=args.harness, bandwidth=args.bandwidth,
                       max_cycles=args.max_cycles, log=log)
    except (AssertionError, RuntimeError, SystemExit) as e:
        # The simulation itself failed (a simulator or build error): one line.
        print(f"npuforge run: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    if res["timeout"]:
        print(f"npuforge run: cycle limit reached: no interrupt from the NPU within {res['timeout_cycles']} cycles "
              f"(--max-cycles)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: res[k] for k in CONTRACT}))
    else:
        print(f"gemm {args.m}x{args.k}x{args.n} {args.mode} on {array.rows}x{array.cols}, {cfg.axi_data_bits}-bit AXI "
              f"({args.sim}, {args.harness} harness), tiles {tuple(res['tiles'])} order {res['order']}:")
        print(f"  cycles {res['cycles']}  MACs {res['macs']}  utilization {100 * res['utilization']:.1f}%  "
              f"bytes moved {res['bytes_moved']}  bit-exact {'yes' if res['bit_exact'] else 'NO'}  "
              f"mismatches {res['mismatches']}")
        rate = f"{res['sim_cycles_per_s']:,} cycles/s" if res["sim_cycles_per_s"] else "-"
        print(f"  harness {res['harness']}: {res['sim_cycles']} cycles simulated in {res['sim_wall_s']:.3f} s ({rate})")
    return 0 if res["bit_exact"] else 1
