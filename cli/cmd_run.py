"""``npuforge run gemm``: compile ``C = requant(A @ B)``, run it on the NPU RTL and check it bit for bit.

    npuforge run gemm --m 64 --k 384 --n 384 --mode int8 [--rows 8 --cols 8] [--axi-bits 64]
                      [--sim verilator|icarus] [--harness fast|axi] [--latency N] [--waves] [--json]

The NPU runs in the fast system harness (NPU + HDL AXI4 DRAM model, sim/hdl/axi_dram.v) unless ``--harness axi``
asks for cocotbext-axi's AXI RAM. Prints cycles, utilization, bytes moved and the bit-exact verdict (both golden tiers: the ISA simulator's DRAM
image and golden ``requantize(gemm)``). ``--json`` prints exactly ``{"cycles", "macs", "utilization",
"bytes_moved", "bit_exact", "mismatches"}``. Exit code 0 when bit-exact, 1 when the results differ, 2 for bad
input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from npuforge.cli.main import add_config_arguments, add_npu_arguments, config_from_args, npu_config_from_args

WORKLOADS = ("gemm",)
SIMS = ("verilator", "icarus")
CONTRACT = ("cycles", "macs", "utilization", "bytes_moved", "bit_exact", "mismatches")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", help=f"what to run: {', '.join(WORKLOADS)}")
    parser.add_argument("--m", type=int, default=64, help="rows of A and C (default 64)")
    parser.add_argument("--k", type=int, default=384, help="reduction length (default 384)")
    parser.add_argument("--n", type=int, default=384, help="columns of B and C (default 384)")
    parser.add_argument("--mode", default="int8", help="int8, w4a8 or int4 (default int8)")
    parser.add_argument("--sim", default="verilator", help=f"one of {', '.join(SIMS)} (default verilator)")
    parser.add_argument("--waves", action="store_true", help="write a waveform (build/sim/.../runs/...)")
    parser.add_argument("--seed", type=int, default=0, help="operand seed (default 0)")
    parser.add_argument("--latency", type=int, default=0,
                        help="extra DRAM latency in cycles, 0..1000 (default 0)")
    parser.add_argument("--harness", default="fast", help="system testbench: fast (default: NPU + HDL DRAM model) "
                        "or axi (cocotbext-axi AXI RAM, about 1,000 cycles/s)")
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
    if args.harness not in ("fast", "axi"):
        raise ValueError(f"--harness must be fast or axi, got {args.harness!r}")
    if not 0 <= args.latency <= 1000:
        raise ValueError(f"--latency must be in [0, 1000] cycles, got {args.latency}")
    array = config_from_args(args)
    cfg = npu_config_from_args(args, array)
    # Validate the workload before any simulator work (ValueError names the bad value).
    from npuforge.gen.isa.compiler import plan_gemm

    plan_gemm(cfg, args.m, args.k, args.n, mode=args.mode)
    from npuforge.sim.harness.npu_run import run_gemm
    from npuforge.sim.harness.runner import available_simulators

    if args.sim not in available_simulators():
        raise ValueError(f"--sim {args.sim} is not installed here (available: {', '.join(available_simulators())})")
    try:
        res = run_gemm(cfg, args.m, args.k, args.n, args.mode, sim=args.sim, waves=args.waves, seed=args.seed,
                       latency=args.latency, harness=args.harness)
    except (AssertionError, RuntimeError, SystemExit) as e:
        # The simulation itself failed (a hang caught by the testbench timeout, a simulator error): one line.
        print(f"npuforge run: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: res[k] for k in CONTRACT}))
    else:
        print(f"gemm {args.m}x{args.k}x{args.n} {args.mode} on {array.rows}x{array.cols}, {cfg.axi_data_bits}-bit AXI "
              f"({args.sim}), tiles {tuple(res['tiles'])} order {res['order']}:")
        print(f"  cycles {res['cycles']}  MACs {res['macs']}  utilization {100 * res['utilization']:.1f}%  "
              f"bytes moved {res['bytes_moved']}  bit-exact {'yes' if res['bit_exact'] else 'NO'}  "
              f"mismatches {res['mismatches']}")
    return 0 if res["bit_exact"] else 1
