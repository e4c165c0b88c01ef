"""Pieces the vector benchmarks share (``sim.bench.vector`` and ``sim.bench.vector_rows``): how an operator is
built and driven, and its ECP5 resources through ``gen.ppa.synth``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["BenchOp", "resources"]


@dataclass(frozen=True)
class BenchOp:
    """How to build and drive one operator for the benchmark."""
    name: str
    build: Callable[[int], object]           # lanes -> component (max_row = MAX_ROW)
    configure: Callable[[object, object, int], None]  # (ctx, dut, row_len): drive scalar ports
    two_operand: bool = False


def resources(op: BenchOp, lanes: int, out_dir: Path) -> dict:
    """ECP5 cells of the operator through gen.ppa.synth (registered as unit ``vector_<op>_l<lanes>``)."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.ppa.synth import register_unit, synthesize
    unit = f"vector_{op.name}_l{lanes}"
    register_unit(unit, lambda cfg: op.build(lanes))
    r = synthesize(ArrayConfig(), unit=unit, target="ecp5", pnr=False, cmos=False, out_dir=out_dir / unit)
    return {k: r.get(k) for k in ("luts", "lut4", "ccu2c", "ffs", "dsps", "brams", "lutram")}
