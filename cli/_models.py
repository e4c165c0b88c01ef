"""Shared flags of ``npuforge embed`` and ``npuforge generate``: scheme listing, the backend dispatch point and the
NPU a model runs on (``--backend isa|rtl``)."""

from __future__ import annotations

import argparse

#: Where a whole model runs: the golden integer model, the NPU's ISA simulator, or the NPU's Verilog (RTL).
BACKENDS = ("golden", "isa", "rtl")
#: Backends per model family (a Llama checkpoint's own 4-bit blocks still need the block-scaled MATMUL on the NPU:
#: gen.lower.llama.check_model names it).
FAMILY_BACKENDS = {"bert": BACKENDS, "llama": BACKENDS}


#: The schemes the NPU backends may run for ``--scheme best``, most accurate first, with the accuracy `make
#: accuracy` measured (docs/quantization.md, "Measured accuracy"): ``best`` on the NPU is the first one the family's
#: lowering runs (gen.lower.bert / gen.lower.llama NPU_SCHEMES), so it moves up by itself when the NPU learns more.
NPU_BEST = {
    "bert": (("w8a16-kv16", "MiniLM cosine >= 0.9994"),
             ("w8a16", "MiniLM cosine 0.9992-0.9995 against the float model")),
    "llama": (("w4a16-kv16-pt", "SmolLM2 99.8 % top-1"),
              ("w4a16-pt", "SmolLM2 96.7 % top-1 against the float model, w4a16 94.2 %"),
              ("w4a16", "SmolLM2 94.2 % top-1")),
}


def pct_diff(a: float, b: float) -> str:
    """``a`` against ``b`` as a signed percentage of ``b`` (e.g. the cycle model against the RTL): "+1.02%"."""
    return f"{100 * (a - b) / b:+.2f}%"


def npu_scheme(name: str, family: str, *, kv16: bool = False) -> tuple[str, str]:
    """The scheme the NPU backends run for ``--scheme name`` and one line saying which and why: ``best`` is the
    golden model's best scheme (golden.models.schemes.BEST) where the configured NPU runs it, else the most accurate
    one it runs (:data:`NPU_BEST`); the int16-KV schemes need an NPU built with ``kv16`` (MATMUL.b16)."""
    from npuforge.golden.models.schemes import BEST, SCHEMES
    if family == "bert":
        from npuforge.gen.lower.bert import NPU_SCHEMES
    else:
        from npuforge.gen.lower.llama import NPU_SCHEMES

    if name != "best":
        return name, f"scheme {name} (as asked)"
    golden = BEST[family]
    accuracy = dict(NPU_BEST[family])
    runs = [s for s, _ in NPU_BEST[family] if s in NPU_SCHEMES and (kv16 or SCHEMES[s].kv_bits == 8)]
    if not runs:
        raise AssertionError(f"no scheme of NPU_BEST[{family!r}] runs on this NPU (NPU_SCHEMES {NPU_SCHEMES})")
    scheme = runs[0]
    if scheme == golden:
        return scheme, f"scheme {scheme}: best ({accuracy[scheme]})"
    # runs[0] is not the golden best: the best keeps int16 K/V on an NPU built without kv16, or has no lowering
    lacks = "an NPU built with --kv16 (int16 K/V, MATMUL.b16)" if golden in NPU_SCHEMES else "a lowering"
    return scheme, (f"scheme {scheme}: the best this NPU runs ({accuracy[scheme]}); best on the golden model is "
                    f"{golden} ({accuracy.get(golden, 'more accurate')}), which needs {lacks}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheme", default="best",
                        help="quantization scheme name, 'best' (default) or 'list' to print the schemes")
    parser.add_argument("--backend", default="golden", help=f"where the model runs: {', '.join(BACKENDS)} "
                        "(default golden; isa: the NPU's ISA simulator, rtl: the NPU's Verilog)")
    parser.add_argument("--compare-float", action="store_true", help="also run the float twin and compare")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--cache-dir", default="build/models", help="calibration cache (default build/models)")


def check_backend(name: str, family: str) -> None:
    allowed = FAMILY_BACKENDS[family]
    if name not in allowed:
        raise ValueError(f"--backend must be one of {', '.join(allowed)}, got {name!r}")


def add_npu_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The NPU design point of ``--backend isa|rtl`` (array and NPU flags) and the RTL harness."""
    from npuforge.cli.main import add_config_arguments, add_npu_arguments

    parser.add_argument("--harness", default="native", help="RTL harness: native (default), fast or axi")
    add_config_arguments(parser)
    add_npu_arguments(parser)


def model_npu_config_from_args(args: argparse.Namespace, family: str, *, blocks: tuple[str, ...] = ()):
    """The NPU a model runs on: the design-point flags, plus the MATMUL modes and vector operators the family's
    programs need (gen.lower.bert / gen.lower.llama) unless --precisions / --vector-ops are given (then the
    lowering's check_model names what is missing). ``blocks``: the modes of the checkpoint's own block weights
    (gen.lower.llama.block_modes): added too, with the block-scaled MATMUL, unless --precisions is given."""
    from npuforge.cli.main import config_from_args, npu_config_from_args
    if family == "bert":
        from npuforge.gen.lower.bert import PRECISIONS, VECTOR_OPS
    else:
        from npuforge.gen.lower.llama import PRECISIONS, VECTOR_OPS

    array = config_from_args(args)
    defaults = getattr(args, "precisions", None) is None
    if defaults:
        array = array.with_overrides(precisions=tuple(dict.fromkeys(array.precisions + PRECISIONS + blocks)))
    cfg = npu_config_from_args(args, array)
    if getattr(args, "vector_ops", None) is None:
        cfg = cfg.with_overrides(vector_ops=tuple(dict.fromkeys(cfg.vector_ops + VECTOR_OPS)))
    if blocks and defaults and getattr(args, "block_scaled", None) is None:
        cfg = cfg.with_overrides(block_scaled=True)
    return cfg


def bert_npu_config_from_args(args: argparse.Namespace):
    """The NPU a BERT model runs on (:func:`model_npu_config_from_args`)."""
    return model_npu_config_from_args(args, "bert")


def print_schemes() -> int:
    from npuforge.golden.models.schemes import BEST, SCHEMES, describe

    for scheme in SCHEMES.values():
        print(describe(scheme))
    print(f"best           MiniLM/BERT: {BEST['bert']}, SmolLM2/Llama: {BEST['llama']}")
    return 0
