"""``npuforge gen``: Verilog + FuseSoC ``.core`` + ``manifest.json`` of one design point.

``--unit array`` (default): the PE array alone. ``--unit npu``: the whole NPU around it (array, scratchpad and
accumulator SRAMs, AXI4 DMA, AXI4-Lite registers, controller, vector unit of ``--vector-ops``), sized by the NPU
flags; its top is ``npu_<config hash>`` with the ports of :mod:`rtl.npu`.
"""

from __future__ import annotations

import argparse
import json

from npuforge.cli.main import add_config_arguments, add_npu_arguments, config_from_args, npu_config_from_args

UNITS = ("array", "npu")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_npu_arguments(parser)
    parser.add_argument("--unit", default="array", help=f"what to generate: {' or '.join(UNITS)} (default array)")
    parser.add_argument("-o", "--out", default="build/gen", metavar="DIR", help="output folder (default build/gen)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a summary")


def run(args: argparse.Namespace) -> int:
    if args.unit not in UNITS:
        raise ValueError(f"--unit must be one of {', '.join(UNITS)}, got {args.unit!r}")
    cfg = config_from_args(args)  # validates before any elaboration: bad input never reaches Amaranth
    if args.unit == "npu":
        npu = npu_config_from_args(args, cfg)
        from npuforge.gen.build.generate import generate_npu

        man = generate_npu(npu, args.out)
        if args.json:
            print(json.dumps(man, indent=2, sort_keys=True))
        else:
            print(f"{man['top']}: NPU {cfg.rows}x{cfg.cols} [{','.join(cfg.precisions)}], {npu.axi_data_bits}-bit "
                  f"AXI4, scratchpad {npu.spad_bytes // 1024} KiB / accumulator {npu.acc_bytes // 1024} KiB, "
                  f"vector ops {','.join(npu.vector_ops) or 'none'} -> {args.out}/{man['verilog'][0]}, "
                  f"{man['core']}, manifest.json ({len(man['ports'])} ports)")
        return 0
    from npuforge.gen.build.generate import generate

    man = generate(cfg, args.out)
    if args.json:
        print(json.dumps(man, indent=2, sort_keys=True))
    else:
        peaks = ", ".join(f"{m}={n}" for m, n in man["peak_macs_per_cycle"].items())
        print(f"{cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow} [{','.join(cfg.precisions)}] "
              f"acc{cfg.acc_width} -> {args.out}/{man['verilog'][0]}, {man['core']}, manifest.json "
              f"({len(man['ports'])} ports; peak MACs/cycle {peaks})")
    return 0
