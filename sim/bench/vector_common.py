"""Pieces the vector benchmarks share (``sim.bench.vector`` and ``sim.bench.vector_rows``): how an operator is
built and driven, how rows stream through it, and its ECP5 resources through ``gen.ppa.synth``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["BenchOp", "resources", "stream_rows"]


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


def stream_rows(op: BenchOp, dut, *, lanes: int, row_len: int, n_rows: int) -> tuple[int, list[int]]:
    """Stream ``n_rows`` rows of ``row_len`` elements back to back through ``dut`` with ``o.ready`` high (Amaranth
    simulator; the data is don't-care, the operators' timing does not depend on it).

    Returns ``(first_in, row_done)``: the cycle the first beat was accepted and, per row, the cycle its last output
    beat left. Raises RuntimeError when the operator stops making progress or flags an error.
    """
    from amaranth.sim import Simulator
    beats_per_row = -(-row_len // lanes)
    total_beats = n_rows * beats_per_row
    in_names = ("a", "b") if op.two_operand else ("i",)
    res = {}

    async def tb(ctx):
        ctx.set(dut.row_len, row_len)
        op.configure(ctx, dut, row_len)
        ctx.set(dut.o.ready, 1)
        sent = got = cycle = 0
        first_in = None
        row_done = []
        while got < total_beats:
            for name in in_names:
                s = getattr(dut, name)
                ctx.set(s.valid, sent < total_beats)
                ctx.set(s.payload.last, sent % beats_per_row == beats_per_row - 1)
            fired = sent < total_beats and ctx.get(getattr(dut, in_names[0]).ready)
            if ctx.get(dut.o.valid):
                got += 1
                if ctx.get(dut.o.payload.last):
                    row_done.append(cycle)
            if fired:
                first_in = cycle if first_in is None else first_in
                sent += 1
            await ctx.tick()
            cycle += 1
            if cycle > 50 * total_beats + 10000:
                raise RuntimeError(f"{op.name}: no progress (lanes {lanes}, row_len {row_len})")
        if ctx.get(dut.error):
            raise RuntimeError(f"{op.name}: error code {ctx.get(dut.error_code)} while benchmarking")
        res["first_in"], res["row_done"] = first_in, row_done

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return res["first_in"], res["row_done"]
