"""FENCE insertion for NPU programs (the compiler's GEMMs and the layer builder's programs)."""

from __future__ import annotations

from typing import Sequence

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.layout import Access, footprint
from npuforge.spec.isa import Fence, Instr, Unit

__all__ = ["insert_fences"]


def insert_fences(cfg: NPUConfig, program: Sequence[Instr]) -> list[Instr]:
    """Add the minimal FENCEs that order every conflicting pair of accesses by different units."""
    outstanding: dict[Unit, list[list[Access]]] = {u: [] for u in Unit}
    out: list[Instr] = []
    for instr in program:
        if isinstance(instr, Fence):
            for unit, count in instr.waits().items():
                lst = outstanding[unit]
                del lst[:max(0, len(lst) - count)]
            out.append(instr)
            continue
        unit = instr.UNIT
        if unit is None:
            out.append(instr)
            continue
        acc = footprint(cfg, instr)
        waits = {}
        for other, lst in outstanding.items():
            if other == unit:
                continue
            for pos in range(len(lst) - 1, -1, -1):
                if any(a.conflicts(b) for a in acc for b in lst[pos]):
                    waits[other.name.lower()] = len(lst) - pos - 1
                    break
        if waits:
            fence = Fence(**waits)
            for u, count in fence.waits().items():
                del outstanding[u][:max(0, len(outstanding[u]) - count)]
            out.append(fence)
        out.append(instr)
        outstanding[unit].append(acc)
    return out
