"""``npuforge gen``: Verilog + FuseSoC ``.core`` + ``manifest.json`` of one array design point."""

from __future__ import annotations

import argparse
import json

from .cli import add_config_arguments, config_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("-o", "--out", default="build/gen", metavar="DIR", help="output folder (default build/gen)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a summary")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # validates before any elaboration: bad input never reaches Amaranth
    from .generate import generate

    man = generate(cfg, args.out)
    if args.json:
        print(json.dumps(man, indent=2, sort_keys=True))
    else:
        peaks = ", ".join(f"{m}={n}" for m, n in man["peak_macs_per_cycle"].items())
        print(f"{cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow} [{','.join(cfg.precisions)}] "
              f"acc{cfg.acc_width} -> {args.out}/{man['verilog'][0]}, {man['core']}, manifest.json "
              f"({len(man['ports'])} ports; peak MACs/cycle {peaks})")
    return 0
