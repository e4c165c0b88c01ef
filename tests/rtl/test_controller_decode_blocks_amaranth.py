"""rtl.controller.Decoder on MATMUL.blocks and VEC_REQUANT.wide (spec.block_scale), on Amaranth's simulator, against
the ISA simulator's outcome of the same single instruction: on a block_scaled NPU the legal block MATMULs and wide
requants issue, every illegal field combination (spec.block_scale.block_error: int8 mode, b_trans, k not a multiple
of 32) is ILLEGAL_INSTRUCTION and block records past the scratchpad are LOCAL_RANGE at b_addr; on an NPU built
without block_scaled both fields are ILLEGAL_INSTRUCTION.
"""

from __future__ import annotations

import numpy as np

from npuforge.gen.build.npu import used_masks
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.isasim import run as isasim_run
from npuforge.rtl.controller import Decoder
from npuforge.spec.isa import ErrorCode, MatMul, VecRequant, encode
from tests.rtl.test_controller_decode_amaranth import run_decoder

PRECISIONS = ("int8", "w8a16", "w4a16")
SPAD, ACC = 8192, 2048


def _cfg(block_scaled: bool) -> NPUConfig:
    return NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=PRECISIONS), spad_bytes=SPAD, spad_banks=2,
                     acc_bytes=ACC, axi_data_bits=64, windows=2, vector_ops=(), block_scaled=block_scaled)


def _decode(words, block_scaled: bool):
    cfg = _cfg(block_scaled)
    dut = Decoder(word_bytes=8, spad_words=SPAD // 8, acc_words=ACC // 8, precisions=PRECISIONS, dataflows=("ws",),
                  used_masks=used_masks(cfg), block_scaled=block_scaled)
    return run_decoder(dut, words)


def _isa_outcome(word: int, block_scaled: bool):
    """(code, fault) the ISA simulator gives the instruction alone; a run-time BAD_PARAM (zero requant records)
    counts as issued (NONE, 0): the decoder only judges the fields."""
    from npuforge.spec.isa import Halt
    res = isasim_run(_cfg(block_scaled), word.to_bytes(16, "little") + encode(Halt()), np.zeros(64, np.uint8), [])
    if res.status == ErrorCode.BAD_PARAM:
        return ErrorCode.NONE, 0
    return int(res.status), int(res.fault_addr) if res.status else 0


def _w(instr) -> int:
    return int.from_bytes(encode(instr), "little")


def _with_blocks(instr) -> int:
    """``instr``'s encoding with MATMUL.blocks (w0[14]) set, whatever its other fields."""
    return _w(instr) | 1 << 14


def _words():
    mm = lambda mode, k, b_addr, **kw: MatMul(mode, "ws", kw.pop("acc", 0), kw.pop("m", 3), k, kw.pop("n", 8), 0,
                                              b_addr, 0, **kw)
    legal = [_w(mm("w4a16", 32, 0x400, blocks=1)), _w(mm("w8a16", 64, 0x800, blocks=1, n=5, acc=1)),
             _w(mm("w4a16", 96, 0x1000, blocks=1, n=16)),
             # codes end exactly where the record rows fit / do not fit (w4a16 n=8: K-packed, 16 code rows of 8
             # bytes; 32-byte record rows)
             _w(mm("w4a16", 32, SPAD - 128 - 32, blocks=1)), _w(mm("w4a16", 32, SPAD - 128 - 24, blocks=1)),
             _w(mm("w4a16", 32, SPAD - 128, blocks=1)), _w(mm("w8a16", 64, SPAD - 512 - 64, blocks=1)),
             _w(mm("w8a16", 64, SPAD - 512 - 56, blocks=1))]
    illegal = [_with_blocks(mm("int8", 32, 0x400)), _with_blocks(mm("w8a16", 32, 0x400, b_trans=1)),
               _with_blocks(mm("w4a16", 48, 0x400)), _with_blocks(mm("w8a16", 33, 0x400)),
               _with_blocks(mm("w8a16", 16, 0x400))]
    requant = [_w(VecRequant(m=2, n=8, src_addr=0, dst_addr=0x40, param_page=2, wide=1)),
               _w(VecRequant(m=2, n=8, src_addr=0, dst_addr=0x40, param_page=2, wide=1, bias=1, bias_addr=0x80)),
               _w(VecRequant(m=2, n=8, src_addr=ACC - 64, dst_addr=0x40, param_page=2, wide=1))]
    plain = [_w(mm("w8a16", 32, 0x400)), _w(mm("w8a16", 32, 0x400, b_trans=1))]
    return legal, illegal, requant, plain


def test_block_scaled_decoder_equals_the_isa_simulator():
    legal, illegal, requant, plain = _words()
    words = legal + illegal + requant + plain
    want = [_isa_outcome(w, True) for w in words]
    # the cases cover each outcome
    assert want[:3] == [(ErrorCode.NONE, 0)] * 3
    assert {c for c, _ in want[3:8]} == {ErrorCode.NONE, ErrorCode.LOCAL_RANGE}
    assert [c for c, _ in want[8:13]] == [ErrorCode.ILLEGAL_INSTRUCTION] * 5
    assert want[13:] == [(ErrorCode.NONE, 0)] * 5
    assert _decode(words, True) == want


def test_fields_are_illegal_without_block_scaled():
    legal, illegal, requant, plain = _words()
    words = legal + requant
    want = [_isa_outcome(w, False) for w in words]
    assert want == [(ErrorCode.ILLEGAL_INSTRUCTION, 0)] * len(words)
    assert _decode(words, False) == want
    assert _decode(plain, False) == [(ErrorCode.NONE, 0)] * 2
