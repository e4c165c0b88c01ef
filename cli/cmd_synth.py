"""``npuforge synth``: area (Yosys) and out-of-context fmax (nextpnr-ecp5) of one unit of a design point."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from npuforge.cli.main import (add_config_arguments, add_npu_arguments, config_from_args, npu_config_from_args,
                               positive_float)
from npuforge.gen.ppa.synth import KNOWN_UNITS, ROUTERS, TARGETS, available_units, pnr_seed, synthesize


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_npu_arguments(parser)   # used with --unit npu, and --unit vector (its lanes and operators)
    parser.add_argument("--unit", default="array", help=f"what to synthesize: one of {', '.join(KNOWN_UNITS)} "
                        "(those whose builder exists; default array)")
    parser.add_argument("--target", default="ecp5", help=f"one of {', '.join(TARGETS)} (default ecp5)")
    parser.add_argument("--pnr", action="store_true", help="place and route with nextpnr-ecp5 for fmax")
    parser.add_argument("--freq-mhz", type=positive_float, default=250.0,
                        help="nextpnr timing-driven target in MHz (default 250; fmax is reported either way)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    parser.add_argument("--router", choices=ROUTERS, default=None,
                        help="nextpnr router (default router1, or with --netlist-from that run's; router2 finishes "
                        "congested designs such as the scalable 8x8 array and the NPU)")
    parser.add_argument("--netlist-from", metavar="DIR",
                        help="place and route again, with --seed, the netlist of a finished `synth --pnr` run in "
                        "DIR (no Yosys run: the design point and --freq-mhz are that run's; design flags are ignored)")
    parser.add_argument("--place-only", action="store_true",
                        help="with --pnr (or --netlist-from): place without routing; reports nextpnr's post-placement "
                        "fmax estimate and the placed netlist's estimated worst paths instead of a routed fmax")
    parser.add_argument("--paths", type=int, default=None, metavar="N",
                        help="print the N worst estimated register-to-register paths of the run's ECP5 netlist "
                        "(placed with --place-only, else unplaced; gen.ppa.paths), N in 1..1000")
    parser.add_argument("--no-cmos", action="store_true",
                        help="skip the generic-synthesis transistor estimate on FPGA targets")
    parser.add_argument("--no-dsp", action="store_true", help="map multipliers to LUTs instead of DSP blocks")
    parser.add_argument("--json", action="store_true", help="print the result JSON")
    parser.add_argument("-o", "--out", default="build/synth", metavar="DIR", help="output folder (default build/synth)")


def run(args: argparse.Namespace) -> int:
    if args.paths is not None and not 1 <= args.paths <= 1000:
        raise ValueError(f"--paths must be in 1..1000, got {args.paths}")
    if args.netlist_from:
        if not (Path(args.netlist_from) / "synth.json").is_file():
            raise ValueError(f"--netlist-from must be the -o folder of a finished `npuforge synth --pnr` run "
                             f"(with synth.json), got {args.netlist_from!r}")
        return _report(args, pnr_seed(args.netlist_from, args.seed, out_dir=args.out, router=args.router,
                                      place_only=args.place_only))
    cfg = config_from_args(args)
    if args.target not in TARGETS:
        raise ValueError(f"--target must be one of {', '.join(TARGETS)}, got {args.target!r}")
    units = available_units()
    if args.unit not in units:
        raise ValueError(f"--unit must be one of {', '.join(units)}, got {args.unit!r}")
    if args.pnr and args.target != "ecp5":
        raise ValueError(f"--pnr is supported with --target ecp5 only, got --target {args.target!r}")
    if args.place_only and not args.pnr:
        raise ValueError("--place-only needs --pnr (or --netlist-from)")
    if args.paths is not None and args.target != "ecp5":
        raise ValueError(f"--paths is supported with --target ecp5 only, got --target {args.target!r}")
    npu = npu_config_from_args(args, cfg) if args.unit in ("npu", "vector") else None
    res = synthesize(cfg, unit=args.unit, target=args.target, pnr=args.pnr, out_dir=args.out,
                     cmos=not args.no_cmos, freq_mhz=args.freq_mhz, seed=args.seed, dsp=not args.no_dsp, npu=npu,
                     router=args.router or "router1", place_only=args.place_only)
    return _report(args, res)


def _report(args: argparse.Namespace, res: dict) -> int:
    if args.paths is not None:
        res["paths"] = _ranked_paths(args, res)
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
    cfg = res["config"]
    print(f"{res['top']} ({res['unit']}, {cfg['rows']}x{cfg['cols']} {cfg['dataflow']} "
          f"[{','.join(cfg['precisions'])}]) on {res['target']}:")
    print(f"  LUTs {fmt(res['luts'])}  FFs {fmt(res['ffs'])}  DSPs {fmt(res['dsps'])}  BRAMs {fmt(res['brams'])}  "
          f"transistors {fmt(res['transistors'])}  fmax {fmt(res['fmax_mhz'])} MHz")
    if res.get("units"):
        print(f"  {'unit':<12} {'LUT':>7} {'FF':>7} {'MULT18':>7} {'DP16KD':>7}")
        for unit, row in res["units"].items():
            print(f"  {unit:<12} {row['luts']:>7} {row['ffs']:>7} {row['dsps']:>7} {row['brams']:>7}")
    if res.get("mult18", {}).get("blocks"):
        m18 = res["mult18"]
        print(f"  MULT18X18D: {m18['blocks']} blocks, {m18['input_registered']} with input and "
              f"{m18['output_registered']} with output registers")
    if res.get("pnr") and res["pnr"].get("seed") is not None:
        print(f"  place and route: nextpnr-ecp5 seed {res['pnr']['seed']}")
    cp = res.get("critical_path")
    if cp:
        print(f"  critical path {cp['delay_ns']} ns ({cp['logic_ns']} logic + {cp['routing_ns']} routing): "
              f"{cp['from']} -> {cp['to']}")
    if res.get("placement_estimate_mhz") is not None:
        print(f"  placed, not routed: nextpnr's post-placement estimate {res['placement_estimate_mhz']} MHz")
    if res.get("paths"):
        from npuforge.gen.ppa.paths import format_paths

        print(f"  worst estimated paths ({'placed' if res.get('placement_estimate_mhz') else 'unplaced'} netlist, "
              "gen.ppa.paths):")
        print("\n".join("  " + line for line in format_paths(res["paths"]).splitlines()))
    if res.get("pnr_skipped"):
        print(f"  no place and route: {res['pnr_skipped']}")
    print(f"  -> {args.out}/synth.json")
    return 0


def _ranked_paths(args: argparse.Namespace, res: dict) -> list:
    """``--paths N``: the run's ECP5 netlist ranked (placed when the run placed it)."""
    from npuforge.gen.ppa.paths import rank_paths
    from npuforge.gen.ppa.synth import PLACED_NETLIST

    out = Path(args.out)
    net = next((out / n for n in (f"{res['top']}_regwrap.json", f"{res['top']}.json") if (out / n).is_file()), None)
    if net is None:
        raise ValueError(f"--paths needs an ECP5 netlist in {out}, found none (--target ecp5)")
    placed = out / PLACED_NETLIST
    return rank_paths(net, placed if res.get("placement_estimate_mhz") and placed.is_file() else None, limit=args.paths)
