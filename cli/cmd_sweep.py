"""``npuforge sweep``: area / fmax / utilization over a grid of array design points, in parallel and cached.

    npuforge sweep -o build/sweep                                # 2x2..16x16 + 4x8, 8x16; int8 vs scalable
    npuforge sweep --sizes 2,4 --shapes "" --macs int8 --no-pnr  # tiny grid
    npuforge sweep --scheduler tcp://HOST:8786                   # run the points on a Dask cluster
    npuforge sweep --llm none                                    # no Llama metrics (no SmolLM2 lowering)
    npuforge sweep --rtl-check 2                                 # + measured vs predicted cycles on 2 points

Each point gets MiniLM's prefill and an LLM's (default SmolLM2-135M-Instruct, its own Q4_1 / Q8_0 blocks) prefill of
``--llm-prompt`` tokens and one decode step at context ``--llm-prompt`` + 1 from the real models' NPU programs
through the cycle model (gen.ppa.sweep, gen.ppa.llm_metrics); a point that cannot run a model gets a reason column.
SmolLM2 costs minutes per NPU configuration (lowering 30 layers + the LM head and pricing them) and ~3 GB per
worker process; the cycles are cached per NPU configuration under OUT/cache/llm.

``--rtl-check N``: after the sweep, N points that run the LLM (spread over the sizes) run layer 0's decode-step
program on the NPU's Verilog (native harness, after layer 0's prefill on the ISA simulator) and the measured cycles
are written beside the cycle model's to OUT/rtl_check.json. Slow: one Verilator build per point (minutes each) and
~10^5..10^6 simulated cycles per program.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from npuforge.cli.main import add_config_arguments, config_from_args
from npuforge.gen.ppa.synth import TARGETS
from npuforge.gen.ppa.llm_metrics import LLM_WORKLOAD, llm_workload
from npuforge.gen.ppa.sweep import PRECISION_SETS, make_grid, run_sweep


def _int_list(name: str, text: str, lo: int, hi: int) -> list[int]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    out = []
    for t in items:
        if not t.isdigit() or not lo <= int(t) <= hi:
            raise ValueError(f"{name} entries must be integers in [{lo}, {hi}], got {t!r}")
        out.append(int(t))
    return out


def _shapes(text: str) -> list[tuple[int, int]]:
    out = []
    for t in (t.strip() for t in text.split(",") if t.strip()):
        m = re.fullmatch(r"(\d+)x(\d+)", t)
        if not m or not all(1 <= int(v) <= 64 for v in m.groups()):
            raise ValueError(f"--shapes entries must be ROWSxCOLS with sizes in [1, 64], got {t!r}")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def _words(name: str, text: str, allowed) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    for t in items:
        if t not in allowed:
            raise ValueError(f"{name} entries must be among {', '.join(allowed)}, got {t!r}")
    if not items:
        raise ValueError(f"{name} must name at least one of {', '.join(allowed)}")
    return items


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--sizes", default="2,4,8,12,16", help="square array sizes N (NxN), 1..64 (default 2,4,8,12,16; 12x12 "
                        "is the largest scalable array within the LFE5U-85F's 156 MULT18X18D)")
    parser.add_argument("--shapes", default="4x8,8x16", help="extra non-square ROWSxCOLS (default 4x8,8x16)")
    parser.add_argument("--macs", default="int8,scalable",
                        help=f"MAC variants among {', '.join(PRECISION_SETS)} (default both)")
    parser.add_argument("--dataflows", default="ws", help="dataflows among ws, os, both (default ws)")
    parser.add_argument("--acc-widths", default="32", help="accumulator widths, 16..64 (default 32)")
    parser.add_argument("--target", default="ecp5", help=f"one of {', '.join(TARGETS)} (default ecp5)")
    parser.add_argument("--no-pnr", action="store_true", help="skip nextpnr (no fmax)")
    parser.add_argument("--no-dsp", action="store_true", help="map multipliers to LUTs instead of DSP blocks")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel local worker processes (default min(2, cores))")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address (e.g. tcp://host:8786)")
    parser.add_argument("--no-plots", action="store_true", help="write CSV/JSON only")
    parser.add_argument("--llm", default=LLM_WORKLOAD["model"],
                        help="Llama-family model of the LLM metrics: smollm2 (default), a .gguf file, or none")
    parser.add_argument("--llm-prompt", type=int, default=LLM_WORKLOAD["prompt_tokens"],
                        help=f"LLM prompt tokens of the prefill metric; the decode step is at this context + 1 "
                             f"(default {LLM_WORKLOAD['prompt_tokens']})")
    parser.add_argument("--rtl-check", type=int, default=0, metavar="N",
                        help="run layer 0's decode program of N points on the RTL (native harness; slow: one "
                             "Verilator build per point) and record measured vs predicted cycles (default 0)")
    parser.add_argument("-o", "--out", default="build/sweep", metavar="DIR", help="output folder (default build/sweep)")


def run(args: argparse.Namespace) -> int:
    base = config_from_args(args)
    if args.target not in TARGETS:
        raise ValueError(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    llm = None if args.llm == "none" else llm_workload(args.llm, args.llm_prompt, LLM_WORKLOAD["scheme"])
    if args.rtl_check < 0 or (args.rtl_check and llm is None):
        raise ValueError(f"--rtl-check must be an integer >= 0 (and needs an --llm model), got {args.rtl_check}")
    sizes = _int_list("--sizes", args.sizes, 1, 64)
    shapes = _shapes(args.shapes)
    if not sizes and not shapes:
        raise ValueError("--sizes and --shapes are both empty: the grid has no points")
    points = make_grid(sizes=sizes, shapes=shapes, macs=_words("--macs", args.macs, tuple(PRECISION_SETS)),
                       dataflows=_words("--dataflows", args.dataflows, ("ws", "os", "both")),
                       acc_widths=_int_list("--acc-widths", args.acc_widths, 16, 64), target=args.target,
                       pnr=not args.no_pnr and args.target == "ecp5", dsp=not args.no_dsp, base=base)
    res = run_sweep(points, args.out, jobs=args.jobs, scheduler=args.scheduler, plots=not args.no_plots, llm=llm)
    print(f"{res['points']} points ({res['cached']} cached, {res['ran']} run, {res['failed']} failed) "
          f"-> {res['csv']}, {res['json']}" + (f", {len(res['plots'])} plots" if res["plots"] else "")
          + (f"; real-model metrics added to {res['upgraded']} cached point(s)" if res["upgraded"] else ""))
    fmt = lambda v, f="{}": "-" if v is None else f.format(v)  # noqa: E731
    print(f"  {'point':34} {'LUTs':>7} {'FFs':>7} {'DSPs':>5} {'transistors':>12} {'fmax':>7} "
          f"{'MAC/LUT':>8} {'util':>6} {'LLM dec tok/s':>13} {'bus':>5}")
    for r in sorted(res["rows"], key=lambda r: (r["mac"], r["dataflow"], r["pes"], r["rows"])):
        print(f"  {r['name']:34} {fmt(r['luts']):>7} {fmt(r['ffs']):>7} {fmt(r['dsps']):>5} "
              f"{fmt(r['transistors']):>12} {fmt(r['fmax_mhz']):>7} {fmt(r['macs_per_lut'], '{:.3f}'):>8} "
              f"{fmt(r['util_max'], '{:.1%}'):>6} {fmt(r['llm_decode_tokens_s'], '{:.2f}'):>13} "
              f"{fmt(r['llm_decode_bus'], '{:.0%}'):>5}" + (f"  ERROR {r['error']}" if r["error"] else ""))
    if res["llm_s"]:
        print(f"  LLM metrics computed on {len(res['llm_s'])} point(s): {min(res['llm_s']):.0f}..."
              f"{max(res['llm_s']):.0f} s per point (model load included on a worker's first point)")
    if llm is not None:
        print(f"  LLM {llm['model']} ({llm['scheme']}): prefill {llm['prompt_tokens']} tokens, decode step at context "
              f"{llm['prompt_tokens'] + 1}; tokens/s at the point's fmax (else the nearest measured one), 64-bit AXI")
    rc = 1 if res["failed"] else 0
    if args.rtl_check:
        from npuforge.sim.harness.sweep_check import rtl_check

        checks = rtl_check(res["results"], llm, args.rtl_check, args.out,
                           log=lambda msg: print(f"npuforge sweep: {msg}", file=sys.stderr, flush=True))
        for c in checks:
            print(f"  RTL check {c['name']}: {c['program']} {c['cycles']:,} cycles, model {c['predicted_cycles']:,} "
                  f"({100 * c['model_error']:+.2f}%), bit-exact {'yes' if c['bit_exact'] else 'NO'}")
        rc = rc or (0 if all(c["bit_exact"] for c in checks) else 1)
    return rc
