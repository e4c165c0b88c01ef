"""What the controller's units share: the ISA contract they execute (imported from :mod:`spec.isa`, never copied)
and two elaboration helpers."""

from __future__ import annotations

from npuforge.rtl.vector.common import ErrorCode as UnitErrorCode
from npuforge.rtl.vector.unit import OPCODES as _VECTOR_UNIT_OPCODES
from npuforge.spec.isa import ACT_TABLE_BYTES, VEC_EXECUTABLE, ErrorCode, Opcode
from amaranth.hdl import Elaboratable, Module, Mux, Signal

from npuforge.spec.vector_ops import (ACT_INTERP, GATE_IN16, GATE_OUT16, GATE_OUT32, NORM_OUT16, NORM_WIDE, RESIDUAL_A_LSB, RESIDUAL_B_LSB, RESIDUAL_OUT32, RESIDUAL_WIDE, ROPE_MAX_HEAD_DIM,
                                      ROPE_IN16, ROPE_OUT16, ROPE_POSITIONS, SOFTMAX_Q15, SOFTMAX_SCORE_LSB, VEC_HEADER_BYTES, by_name)

__all__ = ["ErrorCode", "OPCODES", "VEC_OPCODES", "VEC_UNIT_OPERATOR", "UNIT_OPCODE", "ITEM_BYTES",
           "ROPE_MAX_HEAD_DIM", "ROPE_POSITIONS", "VEC_HEADER_BYTES", "ACT_TABLE_BYTES", "UnitErrorCode", "log2",
           "cdiv_shift", "vec_elem_log2", "ResetTap"]

#: Opcodes every controller executes (the vector operators of :data:`VEC_OPCODES` come on top, per NPU).
OPCODES = {name: Opcode[name] for name in ("NOP", "HALT", "FENCE", "DMA_LOAD", "DMA_STORE", "MATMUL",
                                           "VEC_REQUANT")}
#: ISA vector operators the controller can sequence -> their opcode.
VEC_OPCODES = {op: Opcode[f"VEC_{op.upper()}"] for op in VEC_EXECUTABLE}
#: ISA vector operator -> the :class:`rtl.vector.unit.VectorUnit` operator that runs it.
VEC_UNIT_OPERATOR = {"softmax": "softmax", "layernorm": "layernorm", "rmsnorm": "rmsnorm", "act": "table",
                     "residual": "residual", "gate": "gate", "rope": "rope"}
#: rtl.vector.unit.OPCODES values the sequencer drives, by lower-case name (GELU/SiLU: the two table slots).
UNIT_OPCODE = {name.lower(): code for name, code in _VECTOR_UNIT_OPCODES.items()}
#: Bytes per parameter item after the 16-byte header (``spec.vector_ops`` descriptors): a LayerNorm channel (G int16,
#: B int48), an RMSNorm G (int16), a RoPE table entry (cos int16, sin int16).
ITEM_BYTES = {op: by_name(op).item_bytes for op in ("layernorm", "rmsnorm", "rope")}


def log2(n: int) -> int:
    """log2 of a power of two."""
    return n.bit_length() - 1


def cdiv_shift(value, shift):
    """ceil(value / 2**shift) for an unsigned Amaranth value."""
    return (value + ((1 << shift) - 1)) >> shift if shift else value


def vec_elem_log2(vop: str, flags):
    """log2 bytes per element of (src, src2, dst) rows of vector operator ``vop`` for the 8-bit ``flags`` value
    (``spec.vector_ops.VectorOp.elem_bytes``): int8 everywhere but vec.softmax, whose score width code (flags bits
    [2:1]: 0 int8, 1 int16, 2 int32) is the log2 of its bytes and whose Q0.15 flag (bit 3) makes 2-byte outputs,
    the wide vec.residual (flags bit 0: width codes in bits [2:1] / [4:3], bit 5 int32 output), the norms (bit 0:
    int32 rows, bit 1: int16 results), vec.rope (bit 6: int16 rows, bit 7: int16 results) and vec.gate (bit 0: int16
    operands, bit 1: int16 results, bit 2: int32 products)."""
    if vop == "softmax":
        return (flags[SOFTMAX_SCORE_LSB:SOFTMAX_SCORE_LSB + 2], 0, flags[SOFTMAX_Q15.bit_length() - 1])
    if vop == "residual":
        # The int32 residual stream (flags bit 0): width codes are log2 bytes; int16 (1) or int32 (2) results.
        wide = flags[RESIDUAL_WIDE.bit_length() - 1]
        return (Mux(wide, flags[RESIDUAL_A_LSB:RESIDUAL_A_LSB + 2], 0), Mux(wide, flags[RESIDUAL_B_LSB:RESIDUAL_B_LSB + 2], 0),
                Mux(wide, 1 + flags[RESIDUAL_OUT32.bit_length() - 1], 0))
    if vop == "act":
        # flags bit 1: int16 rows through the 16-bit interpolated table.
        interp = flags[ACT_INTERP.bit_length() - 1]
        return interp, 0, interp
    if vop in ("layernorm", "rmsnorm"):
        # flags bit 0: int32 rows (norm_wide); bit 1: int16 results.
        return Mux(flags[NORM_WIDE.bit_length() - 1], 2, 0), 0, flags[NORM_OUT16.bit_length() - 1]
    if vop == "rope":
        # flags bit 6: int16 rows; bit 7: int16 results.
        return flags[ROPE_IN16.bit_length() - 1], 0, flags[ROPE_OUT16.bit_length() - 1]
    if vop == "gate":
        # flags bit 0: int16 operands (both); bit 1: int16 results; bit 2: the exact int32 product.
        in16 = flags[GATE_IN16.bit_length() - 1]
        return in16, in16, Mux(flags[GATE_OUT32.bit_length() - 1], 2, flags[GATE_OUT16.bit_length() - 1])
    return 0, 0, 0


class ResetTap(Elaboratable):
    """A registered copy of a reset pulse (``o`` = ``i`` one clock later), in a module of its own.

    One tap per engine (rtl.controller.top, rtl.npu): the placer puts each beside the engine it resets, so no single
    flip-flop drives the synchronous reset of the whole NPU across the chip, and a hierarchical synthesis keeps the
    taps apart (one module each; an optimiser would merge identical flip-flops of one module).
    """

    def __init__(self):
        self.i = Signal()
        self.o = Signal()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.i)
        return m
