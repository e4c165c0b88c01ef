"""rtl.controller.Decoder on Amaranth's simulator against the ISA's own decoder (``spec.isa.decode``): every
reserved bit of every executed instruction is ILLEGAL_INSTRUCTION on both; the reserved MATMUL modes (split field
w0[9:8] + w0[12]) and the modes this NPU was not built with are ILLEGAL; in-range instructions issue (NONE);
operands past their memory are LOCAL_RANGE with the operand's byte address.
"""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from npuforge.gen.build.npu import used_masks
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.rtl.controller import Decoder
from npuforge.spec.isa import (DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, Nop, VecOp, VecRequant, decode,
                               encode)

WORD_BYTES, SPAD_WORDS, ACC_WORDS = 8, 1024, 256      # 8 KiB scratchpad, 2 KiB accumulator
VECTOR_OPS = ("softmax", "layernorm", "act", "residual")


NARROW = ("int8", "w4a8", "int4")
WIDE = ("int8", "w4a8", "int4", "w8a16", "w4a16")     #: an NPU built with the 16-bit-activation modes


def decoder(precisions=NARROW):
    cfg = NPUConfig(array=ArrayConfig(precisions=precisions), vector_ops=VECTOR_OPS)
    return Decoder(word_bytes=WORD_BYTES, spad_words=SPAD_WORDS, acc_words=ACC_WORDS,
                   precisions=precisions, dataflows=("ws", "os"), used_masks=used_masks(cfg),
                   vector_ops=VECTOR_OPS, vector_lanes=8)


def run(words, precisions=NARROW):
    """(code, fault_addr) of the Decoder for each 128-bit command."""
    return run_decoder(decoder(precisions), words)


def run_decoder(dut, words):
    """(code, fault_addr) of the Decoder ``dut`` for each 128-bit command."""
    out = []

    async def bench(ctx):
        for w in words:
            ctx.set(dut.ir, w)
            await ctx.tick().repeat(dut.LATENCY)      # the checks are registered; ir is held meanwhile
            out.append((ctx.get(dut.code), ctx.get(dut.fault_addr)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


VALID = [
    Nop(), Halt(), Fence(load=0, matrix=1),
    DmaLoad("spad", 64, 0x1000, 32, 4, 24), DmaStore("acc", 0, 0x2000, 64, 2, 16),
    MatMul(mode="int8", dataflow="ws", accumulate=0, m=5, k=9, n=7, a_addr=0, b_addr=256, acc_addr=0),
    MatMul(mode="int4", dataflow="os", accumulate=1, m=6, k=16, n=8, a_addr=512, b_addr=1024, acc_addr=128),
    VecRequant(out16=0, zero_point=-3, src_addr=0, m=2, dst_addr=64, n=8, param_page=4),
    VecOp("softmax", m=2, n=16, src_addr=0, dst_addr=64, flags=1, imm=3, param_page=2),
    VecOp("residual", m=2, n=16, src_addr=0, dst_addr=64, src2_addr=128, imm=9, param_page=2),
]


def _word(instr) -> int:
    return int.from_bytes(encode(instr), "little")


def test_valid_instructions_issue():
    assert run([_word(i) for i in VALID]) == [(ErrorCode.NONE, 0)] * len(VALID)


def test_every_reserved_bit_is_illegal_as_the_isa_decoder_says():
    words, fence_counts = [], set()
    for instr in VALID:
        base = _word(instr)
        for bit in range(8, 128):
            word = base ^ (1 << bit)
            try:
                decode(word.to_bytes(16, "little"))
            except ValueError as err:   # the ISA refuses it: reserved bit, reserved enum, 0 in a 1..N field
                words.append(word)
                if "count must be 0 when" in str(err):
                    fence_counts.add(word)
    assert len(words) > 100 and fence_counts      # stray FENCE counts are among the cases
    accepted = {word for word, (code, _) in zip(words, run(words)) if code != ErrorCode.ILLEGAL_INSTRUCTION}
    assert accepted == set()


@pytest.mark.parametrize("mode_code", [3, 4, 5, 6, 7])
def test_matmul_modes_not_built_or_reserved_are_illegal(mode_code):
    base = _word(VALID[5]) & ~(0b11 << 8 | 1 << 12)
    word = base | (mode_code & 0b11) << 8 | (mode_code >> 2) << 12
    assert run([word]) == [(ErrorCode.ILLEGAL_INSTRUCTION, 0)]


def test_operands_past_their_memory_are_local_range_with_their_address():
    spad, acc = SPAD_WORDS * WORD_BYTES, ACC_WORDS * WORD_BYTES
    cases = [
        (DmaLoad("spad", spad - 64, 0, 32, 9, 8), spad - 64),
        (DmaLoad("acc", 4, 0, 32, 1, 8), 4),                                 # misaligned
        (MatMul(mode="int8", dataflow="ws", accumulate=0, m=4, k=8, n=4, a_addr=0, b_addr=spad - 8,
                acc_addr=0), spad - 8),
        (MatMul(mode="int8", dataflow="ws", accumulate=0, m=4, k=8, n=4, a_addr=0, b_addr=0,
                acc_addr=acc - 8), acc - 8),
        (VecRequant(out16=0, zero_point=0, src_addr=0, m=1, dst_addr=0, n=8, param_page=spad // 256), spad),
        (VecRequant(m=1, n=8, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=0x204), 0x204),
        (VecRequant(m=1, n=8, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=spad - 24), spad - 24),
        (VecOp("residual", m=2, n=16, src_addr=0, dst_addr=64, src2_addr=spad - 16, imm=9, param_page=2),
         spad - 16),
    ]
    assert run([_word(i) for i, _ in cases]) == [(ErrorCode.LOCAL_RANGE, addr) for _, addr in cases]


def test_residual_shift_outside_its_window_is_bad_param():
    shifts = (0, 1, 62, 63)
    words = [_word(VecOp("residual", m=2, n=16, src_addr=0, dst_addr=64, src2_addr=128, imm=s, param_page=2))
             for s in shifts]
    assert [code for code, _ in run(words)] == [ErrorCode.BAD_PARAM, ErrorCode.NONE, ErrorCode.NONE,
                                                ErrorCode.BAD_PARAM]


# -- an NPU built with w8a16 / w4a16: the whole 3-bit mode field decodes -------------------------------------------
WIDE_VALID = [
    MatMul(mode="w8a16", dataflow="ws", accumulate=0, m=5, k=9, n=7, a_addr=0, b_addr=512, acc_addr=0),
    MatMul(mode="w4a16", dataflow="ws", accumulate=1, m=3, k=16, n=9, a_addr=256, b_addr=1024, acc_addr=64),
]


def test_wide_build_issues_16bit_modes_and_traps_every_reserved_bit():
    """w8a16/w4a16 issue; every bit spec.isa.decode refuses on them (w0[12] is a field bit here) is ILLEGAL."""
    assert run([_word(i) for i in WIDE_VALID + VALID[5:7]], WIDE) == [(ErrorCode.NONE, 0)] * 4
    words = []
    for instr in WIDE_VALID:
        base = _word(instr)
        for bit in range(8, 128):
            try:
                decode((base ^ (1 << bit)).to_bytes(16, "little"))
            except ValueError:
                words.append(base ^ (1 << bit))
    assert len(words) >= 38   # w0[13] is MATMUL.b_trans (legal for w8a16), w0[16:15] MATMUL.b16 (below)
    # MATMUL.b16 (w0[15], w0[16]) decodes in the spec, but an NPU built without kv16 keeps it reserved
    words += [base ^ (1 << bit) for base in map(_word, WIDE_VALID) if base & 0xFF == 0x20 for bit in (15, 16)]
    assert all(code == ErrorCode.ILLEGAL_INSTRUCTION for code, _ in run(words, WIDE))


@pytest.mark.parametrize("mode_code, code", [(3, ErrorCode.NONE), (7, ErrorCode.NONE), (4, ErrorCode.ILLEGAL_INSTRUCTION),
                                             (5, ErrorCode.ILLEGAL_INSTRUCTION), (6, ErrorCode.ILLEGAL_INSTRUCTION)])
def test_wide_build_mode_codes(mode_code, code):
    base = _word(VALID[5]) & ~(0b11 << 8 | 1 << 12)
    word = base | (mode_code & 0b11) << 8 | (mode_code >> 2) << 12
    assert run([word], WIDE) == [(code, 0)]


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_wide_modes_issue_in_both_dataflows(mode):
    words = [_word(MatMul(mode=mode, dataflow=df, accumulate=0, m=4, k=8, n=8, a_addr=0, b_addr=512, acc_addr=0))
             for df in ("ws", "os")]
    assert run(words, WIDE) == [(ErrorCode.NONE, 0)] * 2


def test_wide_a_rows_are_two_bytes_an_element_in_the_range_check():
    """A [m, k] int16 takes m rows of 2k bytes: k = 512 from byte spad - 1024 fits one row (ws), k = 513 does
    not; the same k in int8 fits. w4a16 B rows are ceil(n / 2) bytes, as w4a8's."""
    spad = SPAD_WORDS * WORD_BYTES
    fits = MatMul(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=512, n=8, a_addr=spad - 1024, b_addr=0,
                  acc_addr=0)
    over = MatMul(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=513, n=8, a_addr=spad - 1024, b_addr=0,
                  acc_addr=0)
    int8 = MatMul(mode="int8", dataflow="ws", accumulate=0, m=1, k=513, n=8, a_addr=spad - 1024, b_addr=0,
                  acc_addr=0)
    b_w4 = MatMul(mode="w4a16", dataflow="ws", accumulate=0, m=1, k=8, n=16, a_addr=0, b_addr=spad - 64,
                  acc_addr=0)
    b_over = MatMul(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=8, n=16, a_addr=0, b_addr=spad - 64,
                    acc_addr=0)
    assert run([_word(i) for i in (fits, over, int8, b_w4, b_over)], WIDE) == [
        (ErrorCode.NONE, 0), (ErrorCode.LOCAL_RANGE, spad - 1024), (ErrorCode.NONE, 0), (ErrorCode.NONE, 0),
        (ErrorCode.LOCAL_RANGE, spad - 64)]


def test_requant_bias_fields():
    """In range: NONE; bias_addr without the bias flag: ILLEGAL_INSTRUCTION (as spec.isa.decode refuses it)."""
    spad = SPAD_WORDS * WORD_BYTES
    ok = VecRequant(m=2, n=8, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=spad - 32)
    stray = _word(ok) & ~(1 << 9)
    with pytest.raises(ValueError, match="bias_addr must be 0"):
        decode(stray.to_bytes(16, "little"))
    assert run([_word(ok), stray]) == [(ErrorCode.NONE, 0), (ErrorCode.ILLEGAL_INSTRUCTION, 0)]


def test_matmul_b_trans_legality_and_range():
    """b_trans: NONE for int8 ws; ILLEGAL for an int4 B or os (as spec.isa refuses them); B^T's n rows of k bytes
    past the scratchpad: LOCAL_RANGE at b_addr."""
    spad = SPAD_WORDS * WORD_BYTES
    ok = MatMul("int8", "ws", 0, 2, 8, 4, 0, 0x100, 0, b_trans=1)
    w = _word(ok)
    as_os = w | 1 << 10
    as_w4a8 = (w & ~(0b11 << 8)) | 1 << 8
    past = _word(MatMul("int8", "ws", 0, 1, 8, 9, 0, spad - 64, 0, b_trans=1))     # 9 rows of one word
    fits = _word(MatMul("int8", "ws", 0, 1, 9, 8, 0, spad - 64, 0, b_trans=1))     # 8 rows of two words: no
    exact = _word(MatMul("int8", "ws", 0, 1, 8, 8, 0, spad - 64, 0, b_trans=1))
    assert run([w, as_os, as_w4a8, past, fits, exact]) == [
        (ErrorCode.NONE, 0), (ErrorCode.ILLEGAL_INSTRUCTION, 0), (ErrorCode.ILLEGAL_INSTRUCTION, 0),
        (ErrorCode.LOCAL_RANGE, spad - 64), (ErrorCode.LOCAL_RANGE, spad - 64), (ErrorCode.NONE, 0)]


def test_requant_out32_fields():
    """int32 output: rows of 4n bytes in the destination range check; out16 with out32 is ILLEGAL_INSTRUCTION."""
    spad = SPAD_WORDS * WORD_BYTES
    fits = VecRequant(m=2, n=8, src_addr=0, dst_addr=spad - 64, param_page=1, out32=1)     # 2 rows x 32 bytes
    over = VecRequant(m=3, n=8, src_addr=0, dst_addr=spad - 64, param_page=1, out32=1)
    as16 = VecRequant(m=3, n=8, src_addr=0, dst_addr=spad - 64, param_page=1, out16=1)     # 3 x 16 bytes fit
    both = _word(fits) | 1 << 8
    assert run([_word(fits), _word(over), _word(as16), both]) == [
        (ErrorCode.NONE, 0), (ErrorCode.LOCAL_RANGE, spad - 64), (ErrorCode.NONE, 0),
        (ErrorCode.ILLEGAL_INSTRUCTION, 0)]


def test_block_scaled_fields_trap_without_block_scaled():
    """MATMUL.blocks and VEC_REQUANT.wide (spec.block_scale) are legal encodings that an NPU built without
    block_scaled (this decoder) does not execute: ILLEGAL_INSTRUCTION rather than a block MATMUL run as a plain one
    (the block_scaled decoder: tests/rtl/test_controller_decode_blocks_amaranth.py)."""
    blk = MatMul(mode="w4a16", dataflow="ws", accumulate=0, m=2, k=32, n=8, a_addr=0, b_addr=1024, acc_addr=0,
                 blocks=1)
    plain = MatMul(mode="w4a16", dataflow="ws", accumulate=0, m=2, k=32, n=8, a_addr=0, b_addr=1024, acc_addr=0)
    wide = VecRequant(m=2, n=8, src_addr=0, dst_addr=64, param_page=4, wide=1)
    assert decode(encode(blk)) == blk and decode(encode(wide)) == wide
    assert run([_word(plain), _word(blk), _word(wide)], WIDE) == [
        (ErrorCode.NONE, 0), (ErrorCode.ILLEGAL_INSTRUCTION, 0), (ErrorCode.ILLEGAL_INSTRUCTION, 0)]
