"""``npuforge run gemm|layer``: compile a workload, run it on the NPU RTL and check it bit for bit.

    npuforge run gemm --m 64 --k 384 --n 384 --mode int8 [--rows 8 --cols 8] [--axi-bits 64]
                      [--harness native|fast|axi] [--sim verilator|icarus] [--latency N] [--bandwidth B]
                      [--max-cycles N] [--waves] [--json]
    npuforge run layer --model minilm|smollm2|DIR|FILE --layer N --phase prefill|decode --tokens T [--context C]
                      [--scheme w8a16|w4a16] [--text TEXT] [--backend rtl|isa] [design-point flags]
                      [--harness native|fast|axi] [--json]

``run layer`` compiles one layer of a real checkpoint (weights from the checkpoint, its input the golden model's
activations of real text up to that layer: ``--text``, default the shipped evaluation prose, for a Llama the three
shipped held-out evaluation texts: prose, dialogue and code) and runs it on the RTL
(``--backend isa``: on the ISA simulator, cycles from the cycle model); sim.harness.layer_run does the work.
A BERT encoder layer (minilm or a BERT directory; gen.lower.bert) runs a prefill of the text's first T tokens.
A Llama decoder layer (smollm2, a GGUF file or a Llama directory; gen.lower.llama, schemes w8a16 and w4a16, a
GGUF's own blocks on the block-scaled MATMUL) runs a prefill of T tokens, or ``--phase decode``: T decode steps
(default 1) after a KV cache of C tokens (``--context``, default 256) that holds the golden model's K/V of the
text's first C tokens at that layer, each step fed the layer's golden input of the next token of the text. The JSON
adds ``"bus_efficiency"`` and ``"predicted_cycles"`` (gen.perf.program) to the contract, summed over the layer's
programs; ``utilization`` is of the scheme's MATMUL mode peak over the whole layer (attention and vector work
included). ``bit_exact``: the RTL's DRAM equals the ISA simulator's, the output equals the layer program's golden
operators and the golden model's own layer (``golden_mismatches`` counts elements that differ from the latter).
The NPU is built with the modes and vector operators the layer needs unless ``--precisions`` / ``--vector-ops``
say otherwise. Bad input (a layer the model does not have, context + tokens past the model's context or the text,
a shape the NPU's memories cannot hold, a scheme the NPU does not run) exits 2 with one line.

Harnesses: ``native`` (default; the C++ harness: Verilated NPU + C++ DRAM model, no Python per cycle), ``fast``
(cocotb with the HDL AXI4 DRAM model sim/hdl/axi_dram.v; cycle for cycle the same as native; the default with
``--sim icarus`` or ``--waves``) and ``axi`` (cocotbext-axi's AXI RAM, the protocol reference). Prints cycles,
utilization, bytes moved and the bit-exact verdict (both golden tiers: the ISA simulator's DRAM image and golden
``requantize(gemm)``). ``--json`` prints ``{"cycles", "macs", "utilization", "bytes_moved", "bit_exact",
"mismatches", "harness", "sim_wall_s", "sim_cycles_per_s"}`` (simulation wall time, build excluded); ``run layer``
prints ``{"cycles", "macs", "utilization", "bus_efficiency", "bytes_moved", "predicted_cycles", "bit_exact",
"mismatches", "model", "layer", "phase", "tokens", "context", "scheme", "backend", "harness", "sim_wall_s",
"golden_mismatches"}``. Exit code 0 when bit-exact, 1 when the results differ or the simulation fails (cycle limit
reached: one line), 2 for bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys


from npuforge.cli.main import add_config_arguments, add_npu_arguments, config_from_args, npu_config_from_args
from npuforge.spec.precision import MODE_NAMES

WORKLOADS = ("gemm", "layer")
LAYER_BACKENDS = ("rtl", "isa")
#: the cached tokens of a decode step without --context (fewer when the model's context is shorter)
DECODE_CONTEXT = 256
PHASES = ("prefill", "decode")
SIMS = ("verilator", "icarus")
HARNESSES = ("native", "fast", "axi")
CONTRACT = ("cycles", "macs", "utilization", "bytes_moved", "bit_exact", "mismatches", "harness", "sim_wall_s",
            "sim_cycles_per_s")
LAYER_CONTRACT = ("cycles", "macs", "utilization", "bus_efficiency", "bytes_moved", "predicted_cycles", "bit_exact",
                  "mismatches")


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
    g = parser.add_argument_group("run layer")
    g.add_argument("--model", default="minilm", help="minilm (default), smollm2, a BERT or Llama checkpoint "
                   "directory or a Llama GGUF file")
    g.add_argument("--layer", type=int, default=0, help="layer index (default 0)")
    g.add_argument("--phase", default="prefill", help="prefill (default) or decode (Llama: --tokens steps after a "
                   "KV cache of --context tokens)")
    g.add_argument("--tokens", type=int, default=None, help="prefill: tokens of real text (default 64); decode: steps "
                   "(default 1)")
    g.add_argument("--context", type=int, default=None, help=f"decode: tokens of the text in the KV cache before "
                   f"the first step (default {DECODE_CONTEXT})")
    g.add_argument("--scheme", default="w8a16", help="quantization scheme the NPU runs (default w8a16; Llama also "
                   "w4a16)")
    g.add_argument("--backend", default="rtl", help="rtl (default: the NPU's Verilog) or isa (the ISA simulator; "
                   "cycles from the cycle model)")
    g.add_argument("--text", default=None, help="the text whose tokens run (default: the shipped evaluation "
                   "prose; Llama: the three shipped evaluation texts, 1,787 SmolLM2 tokens)")
    g.add_argument("--cache-dir", default="build/models", help="calibration cache (default build/models)")
    add_config_arguments(parser)
    add_npu_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, got {args.workload!r}")
    _check_sim_args(args)
    if args.workload == "layer":
        return _run_layer(args)
    return _run_gemm(args)


def _check_sim_args(args: argparse.Namespace) -> None:
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


def _run_gemm(args: argparse.Namespace) -> int:
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


def _family(model: str) -> str:
    """"bert" or "llama": a default model's family, a file (GGUF) is a Llama, a directory by its config.json."""
    from npuforge.golden.models.assets import DEFAULT_MODELS
    from pathlib import Path

    if model in DEFAULT_MODELS:
        return DEFAULT_MODELS[model][2]
    path = Path(model)
    if path.is_file():
        return "llama"
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        from npuforge.golden.checkpoint import BERT_MODEL_TYPES

        return "bert" if json.loads(config.read_text()).get("model_type") in BERT_MODEL_TYPES else "llama"
    raise ValueError(f"--model must be minilm, smollm2, a checkpoint directory or a GGUF file, got {model!r}")


def _layer_case(args: argparse.Namespace):
    """(NPU config, model name shown, scheme name, the prepared sim.harness.layer_run.LayerCase)."""
    from npuforge.golden.models.assets import data_text
    from npuforge.sim.harness.layer_run import bert_case, llama_case, llama_text

    if _family(args.model) == "bert":
        text = args.text if args.text is not None else data_text("eval_prose.txt")
        if args.phase == "decode" or args.context is not None:
            raise ValueError(f"--phase must be prefill for a BERT encoder (no KV-cache decode), got --phase "
                             f"{args.phase}{'' if args.context is None else f' --context {args.context}'}")
        from npuforge.cli._models import bert_npu_config_from_args
        from npuforge.gen.lower.bert import check_model
        from npuforge.golden.models.api import int_bert

        cfg = bert_npu_config_from_args(args)
        _, ck, m = int_bert(args.model, args.scheme, args.cache_dir)
        check_model(m, cfg)
        ids = ck.tokenizer.encode(text).ids[:ck.max_tokens]
        return cfg, m.scheme.name, bert_case(cfg, m, ids, args.layer, args.tokens)
    from npuforge.cli._models import model_npu_config_from_args
    from npuforge.gen.lower.llama import block_modes, check_model
    from npuforge.golden.models import llama
    from npuforge.golden.models.api import int_llama, resolve_model

    ck = llama.load_llama(resolve_model(args.model, "llama"), name=args.model)
    m = int_llama(ck, args.scheme, args.cache_dir)
    check_model(m)
    cfg = model_npu_config_from_args(args, "llama", blocks=block_modes(m))
    text = args.text if args.text is not None else llama_text()
    context = 0 if args.context is None else args.context
    if args.phase == "decode" and args.context is None:
        context = min(DECODE_CONTEXT, m.rope_cos.shape[0] - args.tokens)
    return cfg, m.scheme.name, llama_case(cfg, m, ck.tokenizer.encode(text).ids, args.layer, args.phase,
                                          args.tokens, context)


def _run_layer(args: argparse.Namespace) -> int:
    if args.phase not in PHASES:
        raise ValueError(f"--phase must be one of {', '.join(PHASES)}, got {args.phase!r}")
    if args.backend not in LAYER_BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(LAYER_BACKENDS)}, got {args.backend!r}")
    from npuforge.sim.harness.runner import available_simulators

    if args.backend == "rtl" and args.sim not in available_simulators():
        raise ValueError(f"--sim {args.sim} is not installed here (available: {', '.join(available_simulators())})")
    if args.tokens is None:
        args.tokens = 64 if args.phase == "prefill" else 1
    cfg, scheme, case = _layer_case(args)
    from npuforge.sim.harness.layer_run import run_case

    log = None if args.json else (lambda msg: print(f"npuforge run: {msg}", file=sys.stderr, flush=True))
    try:
        res = run_case(case, backend=args.backend, harness=args.harness, latency=args.latency, log=log)
    except (AssertionError, RuntimeError, SystemExit) as e:
        print(f"npuforge run: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    out = {k: res[k] for k in LAYER_CONTRACT}
    info = case.info
    out.update(model=args.model, layer=args.layer, phase=info["phase"], tokens=info["tokens"],
               context=info["context"], scheme=scheme, backend=args.backend,
               harness=args.harness if args.backend == "rtl" else None, sim_wall_s=res["sim_wall_s"],
               golden_mismatches=res["golden_mismatches"])
    if args.json:
        print(json.dumps(out))
    else:
        what = (f"prefill of {info['tokens']} tokens" if info["phase"] == "prefill" else
                f"{info['tokens']} decode step(s) after a context of {info['context']} tokens")
        where = f"{args.harness} harness" if args.backend == "rtl" else "ISA simulator, cycles from the cycle model"
        print(f"{args.model} layer {args.layer} {what}, scheme {scheme}, on {cfg.array.rows}x{cfg.array.cols} with "
              f"{cfg.axi_data_bits}-bit AXI ({where}):")
        print(f"  cycles {out['cycles']} (model {out['predicted_cycles']})  MACs {out['macs']}  utilization "
              f"{100 * out['utilization']:.1f}%  bus efficiency {100 * out['bus_efficiency']:.1f}%  bytes moved "
              f"{out['bytes_moved']}  bit-exact {'yes' if out['bit_exact'] else 'NO'}  mismatches "
              f"{out['mismatches']}")
    return 0 if out["bit_exact"] else 1
