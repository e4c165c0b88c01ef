"""``npuforge`` command line: one entry point, one module per subcommand.

Each subcommand ``NAME`` lives in ``cli/cmd_NAME.py`` and exposes ``configure(parser)`` (adds its flags)
and ``run(args) -> int`` (exit code). Modules are imported lazily, only for the subcommand that runs, and
only subcommands whose module exists are offered, so engineers add commands without touching this file
(add the name to :data:`SUBCOMMANDS`).

Exit codes: 0 success, 1 a tool or run failure, 2 bad input (argparse error, :class:`~gen.config.array.ConfigError`
or ``ValueError`` from validation). Bad input prints exactly one line on stderr, never a traceback.

Helpers shared by the subcommands that take an array design point: :func:`add_config_arguments` and
:func:`config_from_args` (``--config FILE`` TOML, then flags override the file); those that take a whole NPU
add :func:`add_npu_arguments` and :func:`npu_config_from_args` (the file's ``[npu]`` table, then flags).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

from npuforge.gen.build.toolchain import ToolError
from npuforge.gen.config.array import ArrayConfig, ConfigError
from npuforge.spec.dataflow import DATAFLOW_CHOICES
from npuforge.spec.precision import MODE_NAMES

__all__ = ["main", "SUBCOMMANDS", "available_subcommands", "add_config_arguments", "config_from_args",
           "add_npu_arguments", "npu_config_from_args", "ToolError", "positive_float"]

#: Known subcommands and their one-line help; a subcommand is offered only when ``cli/cmd_NAME.py`` exists.
SUBCOMMANDS = {
    "demo": "run the main demonstration job",
    "gen": "generate Verilog and manifest.json of an array (with a FuseSoC .core) or of a whole NPU",
    "sim": "run one GEMM through the array RTL (cocotb)",
    "run": "compile and run a workload on the NPU RTL",
    "synth": "Yosys/nextpnr area and fmax of a unit (mac, array, ...)",
    "sweep": "design-space sweep: area, fmax, utilization; CSV/JSON and plots",
    "perf": "analytic performance model: GEMM cycles, model prefill/decode tokens/s",
    "embed": "sentence embeddings of a BERT encoder (default all-MiniLM-L6-v2) on the integer model",
    "generate": "greedy text generation of a Llama-family model (default SmolLM2-135M GGUF) on the integer model",
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so :func:`main` returns the exit code (2) itself."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def available_subcommands() -> list[str]:
    """Names of the subcommands whose module ``cli.cmd_NAME`` exists, in :data:`SUBCOMMANDS` order."""
    return [name for name in SUBCOMMANDS if importlib.util.find_spec(f"npuforge.cli.cmd_{name}") is not None]


# -- shared design-point flags ----------------------------------------------------------------------
def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` plus one flag per :class:`ArrayConfig` field; flags override the file."""
    g = parser.add_argument_group("design point (flags override --config)")
    g.add_argument("--config", metavar="FILE", help="TOML file with an [array] table (or top-level keys)")
    g.add_argument("--rows", type=int, help="PE rows, 1..64")
    g.add_argument("--cols", type=int, help="PE columns, 1..64")
    g.add_argument("--dataflow", help=f"one of {', '.join(DATAFLOW_CHOICES)}")
    g.add_argument("--precisions", help=f"comma-separated subset of {','.join(MODE_NAMES)} (must include int8)")
    g.add_argument("--acc-width", type=int, help="accumulator width in bits, 16..64")
    g.add_argument("--max-k", type=int, help="longest exact reduction, 1..2^20")
    g.add_argument("--mac-pipeline", type=int, help="MAC register stages, 1..5 (4, 5: the fmax points)")
    g.add_argument("--name", help="Verilog top-module name")


def config_from_args(args: argparse.Namespace, base: ArrayConfig | None = None) -> ArrayConfig:
    """The validated design point: ``base`` (default ArrayConfig()), then ``--config`` file, then flags.

    Raises :class:`ConfigError` (one line) for any bad value.
    """
    cfg = base if base is not None else ArrayConfig()
    if getattr(args, "preset", None):
        from npuforge.gen.config.presets import preset

        cfg = ArrayConfig.from_dict(preset(args.preset)["array"])
    if getattr(args, "config", None):
        cfg = ArrayConfig.from_toml(args.config)
    overrides = {
        "rows": getattr(args, "rows", None),
        "cols": getattr(args, "cols", None),
        "dataflow": getattr(args, "dataflow", None),
        "precisions": getattr(args, "precisions", None),
        "acc_width": getattr(args, "acc_width", None),
        "max_k": getattr(args, "max_k", None),
        "mac_pipeline": getattr(args, "mac_pipeline", None),
        "name": getattr(args, "name", None),
    }
    return cfg.with_overrides(**overrides)


def add_npu_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the NPU around the array (:class:`gen.config.npu.NPUConfig`); they override the ``[npu]`` table
    of ``--config``. Unset flags keep the file's or the default value."""
    from npuforge.spec.isa import VEC_EXECUTABLE
    from npuforge.gen.config.npu import AXI_DATA_BITS, DEFAULT_VECTOR_OPS

    from npuforge.gen.config.presets import PRESETS

    g = parser.add_argument_group("NPU (flags override the [npu] table of --config, which overrides --preset)")
    g.add_argument("--preset", help=f"named design point as the base: one of {', '.join(PRESETS)} (ecp5-85f: the "
                   "8x8 NPU sized for the LFE5U-85F: 116 of its 156 MULT18X18D, 144 of 208 DP16KD)")
    g.add_argument("--axi-bits", type=int, help=f"AXI data width, one of {', '.join(map(str, AXI_DATA_BITS))} "
                   "(default 64)")
    g.add_argument("--spad-kib", type=int, help="scratchpad KiB, power of two 4..1024 (default 256)")
    g.add_argument("--spad-banks", type=int, help="scratchpad banks, power of two 1..16 (default 4)")
    g.add_argument("--acc-kib", type=int, help="accumulator KiB, power of two 1..1024 (default 64)")
    g.add_argument("--windows", type=int, help="DMA address windows, 1..16 (default 4)")
    g.add_argument("--vector-lanes", type=int, help="vector-unit elements per cycle, power of two 1..64 (default 8)")
    g.add_argument("--block-scaled", action="store_true", default=None,
                   help="build the block-scaled MATMUL (a GGUF checkpoint's own Q4_1 / Q4_0 / Q8_0 blocks run exactly; "
                        "needs w4a16 or w8a16 in --precisions and rows dividing 32)")
    g.add_argument("--kv16", action="store_true", default=None,
                   help="build MATMUL.b16 (int16 x int16 attention over an int16 KV cache: the *-kv16 schemes; needs "
                        "--block-scaled)")
    g.add_argument("--vector-ops", help=f"comma-separated subset of {','.join(VEC_EXECUTABLE)}, or 'all' or "
                   f"'none' (default {','.join(DEFAULT_VECTOR_OPS)})")


def npu_config_from_args(args: argparse.Namespace, array: ArrayConfig):
    """The validated :class:`~gen.config.npu.NPUConfig` around ``array``: defaults, then the ``[npu]`` table of
    ``--config``, then the flags of :func:`add_npu_arguments`. :class:`ConfigError` (one line) for a bad value."""
    from npuforge.gen.config.array import read_toml
    from npuforge.spec.isa import VEC_EXECUTABLE
    from npuforge.gen.config.npu import NPUConfig

    fields: dict = {}
    if getattr(args, "preset", None):
        from npuforge.gen.config.presets import preset

        fields.update(preset(args.preset)["npu"])
    if getattr(args, "config", None):
        table = read_toml(args.config).get("npu", {})
        if not isinstance(table, dict):
            raise ConfigError(f"[npu] in {args.config!r} must be a table, got {table!r}")
        fields.update(table)
    kib = lambda v: None if v is None else 1024 * v  # noqa: E731
    flags = {"axi_data_bits": getattr(args, "axi_bits", None), "spad_bytes": kib(getattr(args, "spad_kib", None)),
             "spad_banks": getattr(args, "spad_banks", None), "acc_bytes": kib(getattr(args, "acc_kib", None)),
             "windows": getattr(args, "windows", None), "vector_lanes": getattr(args, "vector_lanes", None),
             "block_scaled": getattr(args, "block_scaled", None), "kv16": getattr(args, "kv16", None)}
    fields.update({k: v for k, v in flags.items() if v is not None})
    ops = getattr(args, "vector_ops", None)
    if ops is not None:
        text = ops.strip().lower()
        fields["vector_ops"] = (VEC_EXECUTABLE if text == "all" else () if text in ("none", "")
                                else tuple(o.strip() for o in text.split(",")))
    fields["array"] = array
    return NPUConfig.from_dict(fields)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (clock rates, bandwidths)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


# -- entry point ------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``npuforge ARGV``; return the exit code (0 ok, 1 run/tool failure, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available_subcommands()
    parser = _ArgumentParser(prog="npuforge", description="Generator of edge Transformer NPUs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (and configures its parser): startup stays fast
    # and a broken or missing optional module never breaks the other commands.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name in names:
        p = sub.add_parser(name, help=SUBCOMMANDS[name], description=SUBCOMMANDS[name])
        if name == chosen:
            module = importlib.import_module(f"npuforge.cli.cmd_{name}")
            module.configure(p)
            p.set_defaults(_module=module)
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(_one_line(e), file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"npuforge {args.command}"
    try:
        return int(args._module.run(args) or 0)
    except (ConfigError, ValueError) as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except ToolError as e:
        print(f"{prog}: failed: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours, and no traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
