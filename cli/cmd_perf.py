"""``npuforge perf``: prefill/decode tokens/s of a Transformer on a design point, or cycles of one GEMM.

    npuforge perf --model qwen2-0.5b --rows 16 --cols 16 --mode w4a8 --clock-mhz 200 --dram-gbps 12.8 \
        --prompt 128 --context 512 [--json] [-o DIR]
    npuforge perf --gemm 64,384,384 --rows 8 --cols 8 --mode int8 [--bus-bits 64 --latency 0] [--json]

``--programs``: with ``--model minilm`` (or a BERT checkpoint directory) the prefill of ``--prompt`` tokens is priced
from the real model's NPU programs (gen.lower.bert, scheme w8a16: embedding LayerNorm and every layer, attention
and vector work included) by the whole-program cycle model, per program and in total, with the bound resource.
With ``--model smollm2`` (or a Llama-family .gguf file / directory) the same for the prefill of ``--prompt`` tokens
and one decode step at position ``--prompt`` (gen.lower.llama, scheme w8a16: every layer and the LM head; a GGUF
checkpoint's own blocks on the block-scaled MATMUL, which is added to the design point), per phase.

``--gemm``: the bare-array cycles (gen.perf.model, with SCALE-Sim's formula beside them) and the whole compiled NPU
program (gen.isa.compiler tiling, gen.perf.program cycle model: command fetch, DMA, MATMUL, requant and their
overlap): predicted cycles, utilization and the per-unit breakdown.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from npuforge.cli.main import add_config_arguments, config_from_args
from npuforge.spec.dataflow import dataflows_of
from npuforge.spec.precision import MODE_NAMES, PRECISION_MODES
from npuforge.gen.perf.model import MODELS, HardwarePoint, default_clock_mhz, gemm_cycles, load_model, model_perf, npu_clock_mhz, roofline_plot, scalesim_cycles


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--model", default="qwen2-0.5b",
                        help=f"one of {', '.join(MODELS)}, or PATH/config.json (default qwen2-0.5b)")
    parser.add_argument("--mode", default="int8", help=f"array precision mode, one of {', '.join(MODE_NAMES)}")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="clock in MHz (default: the measured ECP5 fmax of the closest array point, "
                             "gen.perf.model.MEASURED_FMAX_MHZ; with --programs capped by the whole NPU's measured "
                             "fmax, MEASURED_NPU_FMAX_MHZ)")
    parser.add_argument("--dram-gbps", type=float, default=12.8, help="DRAM bandwidth in GB/s (default 12.8)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens P for prefill / TTFT (default 128)")
    parser.add_argument("--context", type=int, default=512,
                        help="KV-cache length during decode, >= prompt (default 512)")
    parser.add_argument("--gemm", metavar="MxKxN",
                        help="instead of a model: cycles of one GEMM (M,K,N or MxKxN) on the array and as an NPU program")
    parser.add_argument("--bus-bits", type=int, default=64,
                        help="--gemm: NPU AXI data width in bits, one of 32, 64, 128, 256 (default 64)")
    parser.add_argument("--latency", type=int, default=0,
                        help="--gemm: DRAM latency in cycles: a read's first beat comes latency + 2 cycles after its "
                             "AR handshake (default 0)")
    parser.add_argument("--harness", default="axi", choices=("axi", "fast"),
                        help="--gemm: DRAM model the prediction follows: axi (cocotbext-axi AxiRam, default) or fast "
                             "(the HDL DRAM of sim/hdl)")
    parser.add_argument("--programs", action="store_true",
                        help="price the prefill from the real model's NPU layer programs (--model minilm or a BERT "
                             "checkpoint directory; --bus-bits, --latency apply)")
    parser.add_argument("--cache-dir", default="build/models", help="--programs: calibration cache")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("-o", "--out", default="build/perf", metavar="DIR",
                        help="folder for perf.json and roofline.png (default build/perf)")


def _npu_program(cfg, args, mm: int, kk: int, nn: int) -> dict:
    """Whole-program prediction of the compiled GEMM on an NPU with this array (gen.perf.program)."""
    from npuforge.gen.isa.compiler import lower_gemm, plan_gemm
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.perf.program import program_cycles

    if args.latency < 0:
        raise ValueError(f"--latency must be an integer >= 0 cycles, got {args.latency}")
    npu = NPUConfig(array=cfg, axi_data_bits=args.bus_bits)
    plan = plan_gemm(npu, mm, kk, nn, mode=args.mode)
    program = lower_gemm(plan)
    pc = program_cycles(program, npu, latency=args.latency, harness=args.harness)
    peak = cfg.rows * cfg.cols * PRECISION_MODES[args.mode].products
    return {"bus_bits": args.bus_bits, "latency": args.latency, "harness": args.harness,
            "tiles": [plan.tm, plan.tk, plan.tn],
            "order": plan.order, "instructions": len(program), "cycles": pc.cycles,
            "utilization": mm * kk * nn / (peak * pc.cycles), "fetch_cycles": pc.fetch_cycles,
            "units": pc.to_dict()["units"]}


def _gemm(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.mode in MODE_NAMES and args.mode not in cfg.precisions and getattr(args, "precisions", None) is None:
        # As `npuforge run gemm`: the design point is built with the mode it runs unless --precisions says otherwise.
        cfg = cfg.with_overrides(precisions=cfg.precisions + (args.mode,))
    m = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*[x,]\s*(\d+)\s*", args.gemm)
    if not m or 0 in (int(x) for x in m.groups()):
        raise ValueError(f"--gemm must be MxKxN (or M,K,N) with positive integers, got {args.gemm!r}")
    mm, kk, nn = (int(x) for x in m.groups())
    rows = []
    for df in dataflows_of(cfg.dataflow):
        g = gemm_cycles(cfg, mm, kk, nn, mode=args.mode, dataflow=df)
        ss = scalesim_cycles(cfg.rows, cfg.cols, mm, kk, nn, dataflow=df, mode=args.mode)
        rows.append({"dataflow": df, "cycles": g.cycles, "folds": g.folds, "ideal_cycles": g.ideal_cycles,
                     "utilization": g.utilization, "scalesim_cycles": ss})
    res = {"m": mm, "k": kk, "n": nn, "mode": args.mode, "rows": cfg.rows, "cols": cfg.cols, "results": rows}
    # The NPU controller runs MATMUL weight-stationary: an output-stationary-only array has no NPU program.
    res["npu"] = _npu_program(cfg, args, mm, kk, nn) if cfg.dataflow != "os" else None
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"GEMM {mm}x{kk}x{nn} on {cfg.rows}x{cfg.cols} {args.mode}:")
    for r in rows:
        print(f"  array {r['dataflow']}: {r['cycles']} cycles ({r['folds']} folds, ideal {r['ideal_cycles']}, "
              f"utilization {r['utilization']:.1%}); SCALE-Sim formula {r['scalesim_cycles']}")
    npu = res["npu"]
    if npu is None:
        print("  NPU program: n/a (the NPU controller needs a weight-stationary array)")
        return 0
    print(f"  NPU program ({npu['bus_bits']}-bit AXI, {npu['harness']} DRAM latency {npu['latency']}): "
          f"{npu['cycles']} cycles, "
          f"utilization {npu['utilization']:.1%}; {npu['instructions']} instructions, tiles "
          f"{'x'.join(map(str, npu['tiles']))} order {npu['order']}, fetch {npu['fetch_cycles']} cycles")
    print(f"    {'unit':7} {'instr':>6} {'busy':>9} {'busy %':>7} {'stalled':>9}")
    for unit, u in npu["units"].items():
        print(f"    {unit:7} {u['instructions']:>6} {u['busy']:>9} {u['busy'] / npu['cycles']:>7.1%} {u['stalled']:>9}")
    return 0


def _llama_programs(args: argparse.Namespace) -> int:
    """``--programs`` for a Llama model: its prefill and one decode step priced from its NPU programs."""
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower.llama import PRECISIONS, VECTOR_OPS, LlamaPlan, block_modes, llama_programs
    from npuforge.gen.perf.layers import programs_perf
    from npuforge.golden.models import llama
    from npuforge.golden.models.api import int_llama, resolve_model

    if args.latency < 0:
        raise ValueError(f"--latency must be an integer >= 0 cycles, got {args.latency}")
    ck = llama.load_llama(resolve_model(args.model, "llama"), name=args.model)
    if not 1 <= args.prompt < ck.context_length:
        raise ValueError(f"--prompt must be in [1, {ck.context_length - 1}] tokens for {args.model} (one decode step "
                         f"must fit the context), got {args.prompt}")
    m = int_llama(ck, "w8a16", args.cache_dir)
    modes = block_modes(m)
    array = config_from_args(args)
    if getattr(args, "precisions", None) is None:
        array = array.with_overrides(precisions=tuple(dict.fromkeys(array.precisions + PRECISIONS + modes)))
    npu = NPUConfig(array=array, axi_data_bits=args.bus_bits, vector_ops=VECTOR_OPS, block_scaled=bool(modes))
    clock_note = ""
    if args.clock_mhz is None:
        args.clock_mhz, clock_note = npu_clock_mhz(npu)
    plan = llama_programs(npu, m, args.prompt, steps=1)     # cycles do not depend on the tokens
    mode = modes[-1] if modes else "w8a16"
    phases = {}
    for phase, tokens in zip(LlamaPlan.phases(1), (args.prompt, 1)):
        phases[phase] = programs_perf(plan.prog, mode=mode, tokens=tokens, clock_mhz=args.clock_mhz,
                                      latency=args.latency, harness=args.harness, names=plan.programs_of(phase))
    res = {"model": args.model, "scheme": "w8a16", "weights": m.weight_formats, "array": f"{array.rows}x{array.cols}",
           "bus_bits": args.bus_bits, "clock_mhz": args.clock_mhz, "clock_source": clock_note or "--clock-mhz",
           "prefill": phases["prefill"], "decode": phases["step1"]}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model} from its NPU programs (w8a16, weights {m.weight_formats['linear']}, LM head "
          f"{m.weight_formats['head']}) on {array.rows}x{array.cols}, {args.bus_bits}-bit AXI @ {args.clock_mhz:g} MHz "
          f"({res['clock_source']}):")
    print(f"  {'phase':24} {'cycles':>12} {'util':>6} {'bus':>6}  bound")
    for phase, label in (("prefill", f"prefill of {args.prompt} tokens"), ("decode", f"decode at {args.prompt}")):
        t = res[phase]["total"]
        print(f"  {label:24} {t['cycles']:>12,} {t['utilization']:>6.1%} {t['bus_efficiency']:>6.1%}  {t['bound']}"
              f"  -> {res[phase]['tokens_per_s']:,.1f} tokens/s")
    return 0


def _programs(args: argparse.Namespace) -> int:
    """``--programs``: prefill priced from a real BERT model's layer programs (a Llama model: _llama_programs)."""
    from npuforge.golden.models.assets import DEFAULT_MODELS

    if args.model in DEFAULT_MODELS and DEFAULT_MODELS[args.model][2] == "llama" or str(args.model).endswith(".gguf"):
        return _llama_programs(args)
    import numpy as np

    from npuforge.gen.config.npu import NPUConfig
    from npuforge.gen.lower.bert import VECTOR_OPS, bert_programs, with_bert_precisions
    from npuforge.gen.perf.layers import programs_perf
    from npuforge.golden.models.api import int_bert

    array = config_from_args(args)
    if getattr(args, "precisions", None) is None:
        array = with_bert_precisions(array)
    npu = NPUConfig(array=array, axi_data_bits=args.bus_bits, vector_ops=VECTOR_OPS)
    if args.latency < 0:
        raise ValueError(f"--latency must be an integer >= 0 cycles, got {args.latency}")
    _, ck, m = int_bert(args.model, "w8a16", args.cache_dir)
    if not 1 <= args.prompt <= ck.max_tokens:
        raise ValueError(f"--prompt must be in [1, {ck.max_tokens}] tokens for {args.model}, got {args.prompt}")
    clock_note = ""
    if args.clock_mhz is None:
        args.clock_mhz, clock_note = npu_clock_mhz(npu)
    # cycles do not depend on the data: an all-zero embedding sum gives the same programs as real text
    prog, _ = bert_programs(npu, m, e=np.zeros((args.prompt, ck.cfg.hidden), np.int64))
    res = programs_perf(prog, mode="w8a16", tokens=args.prompt, clock_mhz=args.clock_mhz, latency=args.latency,
                        harness=args.harness)
    res.update(model=args.model, scheme="w8a16", array=f"{array.rows}x{array.cols}", bus_bits=args.bus_bits,
               clock_source=clock_note or "--clock-mhz")
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model} prefill of {args.prompt} tokens from its NPU programs (w8a16) on {array.rows}x{array.cols}, "
          f"{args.bus_bits}-bit AXI @ {args.clock_mhz:g} MHz ({res['clock_source']}):")
    print(f"  {'program':8} {'cycles':>10} {'util':>6} {'bus':>6}  bound")
    for name, r in list(res["programs"].items()) + [("total", res["total"])]:
        print(f"  {name:8} {r['cycles']:>10,} {r['utilization']:>6.1%} {r['bus_efficiency']:>6.1%}  {r['bound']}")
    print(f"  -> {res['seconds'] * 1e3:.2f} ms, {res['tokens_per_s']:,.0f} tokens/s")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.gemm:
        return _gemm(args)
    if args.programs:
        return _programs(args)
    cfg = config_from_args(args)
    shape = load_model(args.model)
    clock_note = ""
    if args.clock_mhz is None:
        args.clock_mhz, source = default_clock_mhz(cfg)
        clock_note = f" (clock: {source})"
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
          f"{args.dram_gbps:g} GB/s DRAM; prompt {args.prompt}, context {args.context}{clock_note}")
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
