"""``npuforge sim``: stream random GEMMs through the array RTL (cocotb) and compare with the golden GEMM.

Runs every requested mode (default: all modes of the design point) and, for ``--dataflow both`` arrays, both
dataflows, in one simulation. Prints one line per run (cycles, ideal cycles, utilization, match) and exits 0
only when every output equals ``golden.gemm``; 1 on a mismatch or simulator failure; 2 on bad input.
``--waves`` leaves a waveform (Verilator: VCD, Icarus: FST) and prints its path.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from npuforge.cli.main import ToolError, add_config_arguments, config_from_args
from npuforge.spec.dataflow import dataflows_of
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES

__all__ = ["configure", "run"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--mode", choices=MODE_NAMES, help="run only this mode (default: every mode of the array)")
    parser.add_argument("--m", type=_positive_int, default=16, help="GEMM rows M (default 16)")
    parser.add_argument("--k", type=_positive_int, default=64, help="reduction length K (default 64)")
    parser.add_argument("--n", type=_positive_int, default=32, help="GEMM columns N (default 32)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator", help="simulator")
    parser.add_argument("--waves", action="store_true", help="record a waveform and print its path")
    parser.add_argument("--seed", type=int, default=0, help="random operand seed (default 0)")
    parser.add_argument("--stalls", type=float, default=0.0,
                        help="probability of an idle cycle on each stream, 0..0.9 (default 0)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also write the results as JSON (to FILE, or stdout without FILE)")


def run(args: argparse.Namespace) -> int:
    from npuforge.sim.harness.array_gemm import _find_waves, golden_gemm, run_gemms

    cfg = config_from_args(args)
    if args.mode is not None and args.mode not in cfg.precisions:
        raise ValueError(f"--mode must be one of {', '.join(cfg.precisions)} for this array, got {args.mode!r}")
    if not 0.0 <= args.stalls <= 0.9:
        raise ValueError(f"--stalls must be in [0, 0.9], got {args.stalls!r}")
    if args.k > cfg.max_k:
        raise ValueError(f"--k must be in [1, {cfg.max_k}] (max_k of the design point), got {args.k}")
    modes = (args.mode,) if args.mode else cfg.precisions
    dataflows = dataflows_of(cfg.dataflow)
    rng = np.random.default_rng(args.seed)
    jobs = []
    for mode in modes:
        a_bits, b_bits = PRECISION_MODES[mode].bits
        a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (args.m, args.k))
        b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (args.k, args.n))
        for dataflow in dataflows:
            jobs.append({"kind": "gemm", "a": a, "b": b, "mode": mode, "dataflow": dataflow,
                         "stalls": args.stalls, "seed": args.seed})
    try:
        results = run_gemms(cfg, jobs, sim=args.sim, waves=args.waves, tag=f"cli-{args.seed}")
    except (RuntimeError, AssertionError) as e:
        raise ToolError(" ".join(str(e).split())) from None
    macs = args.m * args.k * args.n
    rows = []
    ok_all = True
    print(f"{cfg.rows}x{cfg.cols} array ({cfg.dataflow}, {','.join(cfg.precisions)}), "
          f"GEMM {args.m}x{args.k}x{args.n} on {args.sim}")
    print(f"{'mode':6} {'dataflow':8} {'cycles':>8} {'ideal':>8} {'util':>6} {'cycles/s':>9}  golden")
    for job, res in zip(jobs, results):
        want = golden_gemm(job["a"], job["b"], job["mode"])
        ok = bool(np.array_equal(res["c"], want))
        ok_all &= ok
        ideal = macs / cfg.peak_macs_per_cycle[job["mode"]]
        row = {"mode": job["mode"], "dataflow": job["dataflow"], "m": args.m, "k": args.k, "n": args.n,
               "cycles": res["cycles"], "ideal_cycles": ideal, "utilization": ideal / res["cycles"],
               "cycles_per_s": res["cycles"] / max(res["sim_seconds"], 1e-9), "match": ok,
               "mismatches": int(np.count_nonzero(res["c"] != want))}
        rows.append(row)
        verdict = "match" if ok else f"MISMATCH ({row['mismatches']} outputs)"
        print(f"{row['mode']:6} {row['dataflow']:8} {row['cycles']:>8} {ideal:>8.0f} {row['utilization']:>6.1%} "
              f"{row['cycles_per_s']:>9.0f}  {verdict}")
    out = {"config": cfg.to_dict(), "sim": args.sim, "runs": rows}
    if args.waves:
        from pathlib import Path

        waves = _find_waves(Path(results[0]["test_dir"]), args.sim)
        out["waves"] = waves
        print(f"waveform: {waves}")
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if not ok_all:
        print("npuforge sim: failed: RTL output differs from golden.gemm", file=sys.stderr)
        return 1
    return 0
