"""``npuforge perf``: prefill/decode tokens/s of a Transformer on a design point, or cycles of one GEMM.

    npuforge perf --model qwen2-0.5b --rows 16 --cols 16 --mode w4a8 --clock-mhz 200 --dram-gbps 12.8 \
        --prompt 128 --context 512 [--json] [-o DIR]
    npuforge perf --gemm 64x384x384 --rows 8 --cols 8 --mode int8      # bare-array cycles vs SCALE-Sim
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .cli import add_config_arguments, config_from_args
from .config import PRECISIONS
from .perf import MODELS, HardwarePoint, gemm_cycles, load_model, model_perf, roofline_plot, scalesim_cycles


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--model", default="qwen2-0.5b",
                        help=f"one of {', '.join(MODELS)}, or PATH/config.json (default qwen2-0.5b)")
    parser.add_argument("--mode", default="int8", help=f"array precision mode, one of {', '.join(PRECISIONS)}")
    parser.add_argument("--clock-mhz", type=float, default=200.0, help="array clock in MHz (default 200)")
    parser.add_argument("--dram-gbps", type=float, default=12.8, help="DRAM bandwidth in GB/s (default 12.8)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens P for prefill / TTFT (default 128)")
    parser.add_argument("--context", type=int, default=512,
                        help="KV-cache length during decode, >= prompt (default 512)")
    parser.add_argument("--gemm", metavar="MxKxN", help="instead of a model: cycles of one GEMM on the bare array")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("-o", "--out", default="build/perf", metavar="DIR",
                        help="folder for perf.json and roofline.png (default build/perf)")


def _gemm(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    m = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*[x,]\s*(\d+)\s*", args.gemm)
    if not m:
        raise ValueError(f"--gemm must be MxKxN with positive integers, got {args.gemm!r}")
    mm, kk, nn = (int(x) for x in m.groups())
    rows = []
    for df in (("ws", "os") if cfg.dataflow == "both" else (cfg.dataflow,)):
        g = gemm_cycles(cfg, mm, kk, nn, mode=args.mode, dataflow=df)
        ss = scalesim_cycles(cfg.rows, cfg.cols, mm, kk, nn, dataflow=df, mode=args.mode)
        rows.append({"dataflow": df, "cycles": g.cycles, "folds": g.folds, "ideal_cycles": g.ideal_cycles,
                     "utilization": g.utilization, "scalesim_cycles": ss})
    res = {"m": mm, "k": kk, "n": nn, "mode": args.mode, "rows": cfg.rows, "cols": cfg.cols, "results": rows}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"GEMM {mm}x{kk}x{nn} on {cfg.rows}x{cfg.cols} {args.mode}:")
        for r in rows:
            print(f"  {r['dataflow']}: {r['cycles']} cycles ({r['folds']} folds, ideal {r['ideal_cycles']}, "
                  f"utilization {r['utilization']:.1%}); SCALE-Sim formula {r['scalesim_cycles']}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.gemm:
        return _gemm(args)
    cfg = config_from_args(args)
    shape = load_model(args.model)
    hw = HardwarePoint(cfg=cfg, mode=args.mode, clock_mhz=args.clock_mhz, dram_gbps=args.dram_gbps)
    res = model_perf(shape, hw, prompt=args.prompt, context=args.context)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    png = roofline_plot(res, out / "roofline.png")
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    print(f"{shape.name} on {cfg.rows}x{cfg.cols} {cfg.dataflow} {args.mode} @ {args.clock_mhz:g} MHz, "
          f"{args.dram_gbps:g} GB/s DRAM; prompt {args.prompt}, context {args.context}")
    print(f"  prefill {res['prefill_tokens_per_s']:.1f} tokens/s, TTFT {res['ttft_s'] * 1e3:.1f} ms")
    if res["decode_tokens_per_s"] is not None:
        print(f"  decode  {res['decode_tokens_per_s']:.2f} tokens/s ({res['decode_bound']}-bound; DRAM limit "
              f"{res['decode_bandwidth_limit_tokens_per_s']:.2f} tokens/s at "
              f"{res['decode_bytes_per_token'] / 1e6:.1f} MB/token)")
    else:
        print("  decode  n/a (encoder model)")
    print(f"  {'phase':8} {'layer type':12} {'GMAC':>9} {'MB':>9} {'compute ms':>11} {'memory ms':>10}  bound")
    for phase in ("prefill", "decode"):
        data = res[phase]
        if not data:
            continue
        for kind, v in data["layer_types"].items():
            print(f"  {phase:8} {kind:12} {v['macs'] / 1e9:9.3f} {v['bytes'] / 1e6:9.2f} "
                  f"{v['compute_s'] * 1e3:11.3f} {v['memory_s'] * 1e3:10.3f}  {v['bound']}")
    print(f"  -> {out / 'perf.json'}, {png}")
    return 0
