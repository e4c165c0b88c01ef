"""Running layer programs on the ISA simulator, program after program on one memory (the host's view)."""

from __future__ import annotations

import numpy as np

from npuforge.gen.isa.builder import LayerProgram
from npuforge.gen.isa.isasim import SimResult, run as isasim_run
from npuforge.spec.isa import encode_program


def isasim_programs(prog: LayerProgram, memory: np.ndarray | None = None,
                    names: list[str] | None = None) -> tuple[np.ndarray, dict[str, SimResult]]:
    """Run the programs ``names`` of ``prog`` (default: all, in order) on the ISA simulator, each on the memory the
    previous one left (the host writes the next program into the program area, as a driver does). Returns the final
    memory and each program's result; ``RuntimeError`` names the first program that does not halt cleanly."""
    memory = prog.image if memory is None else memory
    results = {}
    for name in (list(prog.programs) if names is None else names):
        res = isasim_run(prog.cfg, encode_program(prog.programs[name]), prog.load(memory, name), prog.windows)
        if not res.ok:
            raise RuntimeError(f"program {name!r} stopped with status {res.status.name} at instruction {res.pc}: "
                               f"{res.message}")
        results[name] = res
        memory = res.memory
    return memory, results
