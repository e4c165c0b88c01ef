"""Whole-model performance from layer programs: each program of a :class:`gen.isa.builder.LayerProgram` priced by
the whole-program cycle model (gen.perf.program: fetch, DMA bursts, unit overlap, fences), so attention, vector
work and weight traffic are counted as the NPU executes them, not as GEMMs alone.

Per program: ``cycles``, ``macs``, ``bytes_moved`` (DMA payload + command fetch), ``utilization`` (MACs / (peak
MACs per cycle of the mode x cycles)), ``bus_efficiency`` (bytes / (AXI bytes per cycle x cycles)) and ``bound``:
the resource closer to saturation, ``"compute"`` or ``"memory"``.
"""

from __future__ import annotations

from npuforge.gen.isa.builder import LayerProgram
from npuforge.gen.perf.program import program_cycles
from npuforge.spec.isa import INSTR_BYTES, DmaLoad, DmaStore
from npuforge.spec.precision import PRECISION_MODES


def program_bytes_moved(program) -> int:
    """DMA payload bytes plus the command fetch of one program (what the RTL's byte counters and fetch count)."""
    return sum(i.rows * i.row_bytes for i in program if isinstance(i, (DmaLoad, DmaStore))) \
        + INSTR_BYTES * len(program)


def programs_perf(prog: LayerProgram, *, mode: str, tokens: int, clock_mhz: float, latency: int = 0,
                  harness: str = "fast", names: list[str] | None = None) -> dict:
    """Predicted cycles per program (``names``, default all) and in total, and ``tokens_per_s`` = tokens / (total
    cycles / clock)."""
    cfg = prog.cfg
    peak = cfg.array.rows * cfg.array.cols * PRECISION_MODES[mode].products
    bus = cfg.axi_data_bits // 8
    rows = {}
    for name in (list(prog.programs) if names is None else names):
        program = prog.programs[name]
        cycles = program_cycles(program, cfg, latency=latency, harness=harness).cycles
        macs, moved = prog.macs_of(name), program_bytes_moved(program)
        util, bus_eff = macs / (peak * cycles), moved / (bus * cycles)
        rows[name] = {"cycles": cycles, "macs": macs, "bytes_moved": moved, "utilization": util,
                      "bus_efficiency": bus_eff, "bound": "compute" if util >= bus_eff else "memory"}
    total = {k: sum(r[k] for r in rows.values()) for k in ("cycles", "macs", "bytes_moved")}
    total.update(utilization=total["macs"] / (peak * total["cycles"]),
                 bus_efficiency=total["bytes_moved"] / (bus * total["cycles"]))
    total["bound"] = "compute" if total["utilization"] >= total["bus_efficiency"] else "memory"
    seconds = total["cycles"] / (clock_mhz * 1e6)
    return {"programs": rows, "total": total, "tokens": tokens, "clock_mhz": clock_mhz, "seconds": seconds,
            "tokens_per_s": tokens / seconds}
