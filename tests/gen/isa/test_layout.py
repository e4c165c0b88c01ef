"""gen.isa.layout.footprint: the bytes each instruction touches, which FENCE insertion and the ISA simulator's
hazard check rely on (a short footprint would let a conflicting access through unfenced)."""

from __future__ import annotations

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import insert_fences
from npuforge.gen.isa.layout import footprint
from npuforge.spec.isa import DmaLoad, Fence, VecOp
from npuforge.spec.vector_ops import SOFTMAX_Q15, SOFTMAX_SCORE_LSB

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=16384, spad_banks=2, acc_bytes=4096,
                axi_data_bits=64, windows=2, vector_ops=("softmax", "act"))


def _spans(instr):
    return [(a.lo, a.hi, a.write) for a in footprint(CFG, instr) if a.space == "spad"]


def test_wide_softmax_rows_cover_their_element_bytes():
    # int32 scores (code 2) -> Q0.15 int16 output: rows of 4 * 24 = 96 and 2 * 24 = 48 bytes (8-byte words).
    op = VecOp("softmax", m=3, n=24, src_addr=0, dst_addr=1024, param_page=8,
               flags=(2 << SOFTMAX_SCORE_LSB) | SOFTMAX_Q15)
    spans = _spans(op)
    assert (0, 3 * 96, False) in spans and (1024, 1024 + 3 * 48, True) in spans
    narrow = VecOp("softmax", m=3, n=24, src_addr=0, dst_addr=1024, param_page=8)
    assert (0, 3 * 24, False) in _spans(narrow) and (1024, 1024 + 3 * 24, True) in _spans(narrow)


def test_a_load_into_the_tail_of_a_wide_row_is_fenced():
    """A DMA load into bytes 200.. of the scratchpad while an int32-score softmax reads rows up to byte 288."""
    op = VecOp("softmax", m=3, n=24, src_addr=0, dst_addr=1024, param_page=8, flags=2 << SOFTMAX_SCORE_LSB)
    prog = insert_fences(CFG, [op, DmaLoad("spad", 200, 0x1000, 8, 1, 8)])
    assert isinstance(prog[1], Fence) and prog[1] == Fence(vector=0)
