"""NPU controller: fetches 128-bit commands from a ring buffer, decodes them and runs them on the units.

Execution model (docs/isa.md). Instructions are decoded and issued in program order, one in flight per unit
(DMA, MATMUL, VECTOR): an instruction waits at issue until its unit is free, a FENCE until the units it names have
drained, and the controller keeps fetching and issuing while the units run, so DMA, the array and the vector unit
overlap (the compiler's double-buffered tiles rely on it). The ports the units share are interlocked here: an
accumulator DMA starts only with no MATMUL or VECTOR instruction in flight, and no MATMUL or VEC_REQUANT starts
while it runs. Ordering of scratchpad data between units is the program's job (FENCE), as in the ISA simulator.

Command fetch
    ``start`` (pulse) resets the ring consumer offset ``ring_tail`` to 0 and starts fetching at
    ``ring_base + ring_tail`` (16-byte aligned) through the ``fetch`` port (AXI4 AR/R, one burst of 16 bytes),
    advancing by 16 modulo ``ring_size``. Reaching ``ring_head`` without a HALT is ``PROGRAM_OVERRUN``. When the
    run ends, ``ring_tail`` is ``16 * pc``: the byte offset of the HALT or of the faulting instruction.

Decode
    An opcode not in ``used_masks`` (0x00, undefined, a vector operator this NPU was not built with), a set bit
    outside the opcode's fields, a 0 in a 1..N field (rows, row_bytes, m, k, n), a MATMUL mode/dataflow
    this NPU was not generated with is ``ILLEGAL_INSTRUCTION``. On an NPU generated with both dataflows a MATMUL
    runs on the schedule its dataflow field names (``ws`` weight-stationary, ``os`` output-stationary; same
    result, different timing, see :class:`MatmulEngine`).

Units
    DMA_LOAD/STORE: local range check (aligned, inside the selected memory), then the descriptor goes to the
    DMA engine (which checks the windows and maps errors: WINDOW -> DMA_WINDOW, AXI_* -> BUS_ERROR).
    MATMUL: :class:`MatmulEngine` (PE array + accumulator read-modify-write). VEC_REQUANT:
    :class:`RequantEngine` (records -> :class:`rtl.vector.requant.Requant` -> scratchpad). The other vector operators
    (those of ``vector_ops`` among softmax, layernorm, rmsnorm, act, residual, gate, rope): operator-specific
    reserved flags/imm and row shapes (ILLEGAL), operand and parameter-block ranges (LOCAL_RANGE), the residual
    shift (BAD_PARAM) are checked at decode, records and headers (BAD_PARAM) when loaded, then
    :class:`VecEngine` (parameter block -> :class:`rtl.vector.unit.VectorUnit` param memory / ports, rows streamed
    from the scratchpad through the unit and back). Requant and VecEngine are the one VECTOR unit: in order, one
    instruction at a time, overlapping DMA and MATMUL like the other units.

Errors stop the run: ``done`` pulses with ``error`` (the ISA's 4-bit ErrorCode) and ``fault_addr``.

Package map (one unit per module, each a :class:`amaranth.lib.wiring.Component` with its ports as a signature)
    ``top``         :class:`Controller`: the run FSM tying fetch, decode and issue to the units.
    ``fetch``       :class:`CommandFetch`: ring pointer and AXI4 read of one command (:class:`FetchSignature`).
    ``decode``      :class:`Decoder`: legality and range checks of the held command (ILLEGAL / LOCAL_RANGE /
                    BAD_PARAM); :func:`field` reads an instruction field at its ``spec.isa.FORMATS`` position.
    ``issue``       :class:`Interlocks`: one instruction per unit, shared-port interlocks, FENCE, first unit error.
    ``matmul``      :class:`MatmulEngine`: operand generators, PE array, accumulator read-modify-write;
    ``transposer``  :class:`OsTransposer`: its output-stationary A columns (only on ws+os engines).
    ``requant``     :class:`RequantEngine`.
    ``vector``      :class:`VecEngine` = ``vec_params`` :class:`ParamLoader` (parameter block, checks, sequencing)
                    + ``vec_rows`` :class:`RowStreamer` (rows through the vector unit and back).
    ``common``      the ISA names the units use, imported from :mod:`spec.isa` (no copies), and two helpers.
"""

from npuforge.rtl.controller.common import OPCODES, VEC_OPCODES, ErrorCode
from npuforge.rtl.controller.decode import Decoder
from npuforge.rtl.controller.fetch import CommandFetch, FetchSignature
from npuforge.rtl.controller.issue import Interlocks
from npuforge.rtl.controller.matmul import MatmulEngine
from npuforge.rtl.controller.requant import RequantEngine
from npuforge.rtl.controller.transposer import OsTransposer
from npuforge.rtl.controller.vec_params import ParamLoader
from npuforge.rtl.controller.vec_rows import RowStreamer
from npuforge.rtl.controller.vector import VecEngine
from npuforge.rtl.controller.top import Controller

__all__ = ["ErrorCode", "OPCODES", "VEC_OPCODES", "FetchSignature", "CommandFetch", "Decoder", "Interlocks",
           "MatmulEngine", "OsTransposer", "RequantEngine", "ParamLoader", "RowStreamer", "VecEngine", "Controller"]
