"""Shared flags of ``npuforge embed`` and ``npuforge generate``: scheme listing and the backend dispatch point."""

from __future__ import annotations

import argparse

#: Backends that run a whole model. The ISA simulator and the RTL come next (they will register here).
BACKENDS = ("golden",)
PLANNED_BACKENDS = ("isa", "rtl")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheme", default="best",
                        help="quantization scheme name, 'best' (default) or 'list' to print the schemes")
    parser.add_argument("--backend", default="golden", help=f"where the model runs: {', '.join(BACKENDS)} "
                        "(default golden)")
    parser.add_argument("--compare-float", action="store_true", help="also run the float twin and compare")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--cache-dir", default="build/models", help="calibration cache (default build/models)")


def check_backend(name: str) -> None:
    if name in PLANNED_BACKENDS:
        raise ValueError(f"--backend {name} is not built yet; allowed: {', '.join(BACKENDS)}")
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}")


def print_schemes() -> int:
    from npuforge.golden.models.schemes import BEST, SCHEMES, describe

    for scheme in SCHEMES.values():
        print(describe(scheme))
    print(f"best           MiniLM/BERT: {BEST['bert']}, SmolLM2/Llama: {BEST['llama']}")
    return 0
