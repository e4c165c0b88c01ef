"""Assembler / disassembler: round trips both ways, the documented syntax, errors naming the line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from npuforge.gen.isa.asm import assemble, disassemble, format_instr
from npuforge.spec.isa import DmaLoad, DmaStore, Fence, Halt, MatMul, Nop, VecOp, VecRequant, encode_program
from tests.spec.test_isa import INSTRS
from tests.conftest import REPO


@settings(max_examples=200, deadline=None)
@given(st.lists(INSTRS, max_size=12))
def test_disassemble_assemble_round_trip(program):
    text = disassemble(program)
    assert assemble(text) == program
    assert disassemble(encode_program(program)) == text       # from bytes too
    assert disassemble(assemble(text)) == text                 # canonical text is a fixed point
    assert text.count("\n") == len(program)


def test_documented_syntax():
    text = """
    ; a comment line
    dma.load mem=spad, local_addr=0x40 ext_addr=4096 ext_stride=0x180 rows=64 row_bytes=384   # trailing comment
    DMA.STORE row_bytes=1 rows=2 ext_stride=3 ext_addr=0x10 local_addr=0 mem=acc
    fence load=0 matrix=1
    fence
    matmul mode=w4a8 dataflow=os accumulate=1 m=64 k=384 n=64 a_addr=0x0 b_addr=0x6000 acc_addr=0b100000
    vec.requant m=4 n=8 src_addr=0 dst_addr=0x100 param_page=1 zero_point=-5
    vec.softmax m=4 n=64 src_addr=0 dst_addr=0 param_page=3 flags=0x81 imm=-2
    nop
    halt
    """
    assert assemble(text) == [
        DmaLoad("spad", 0x40, 4096, 384, 64, 384),
        DmaStore("acc", 0, 0x10, 3, 2, 1),
        Fence(load=0, matrix=1),
        Fence(),
        MatMul("w4a8", "os", 1, 64, 384, 64, 0, 0x6000, 32),
        VecRequant(m=4, n=8, src_addr=0, dst_addr=0x100, param_page=1, zero_point=-5, out16=0),
        VecOp("softmax", m=4, n=64, src_addr=0, dst_addr=0, param_page=3, flags=0x81, imm=-2),
        Nop(),
        Halt(),
    ]


def test_canonical_format():
    assert format_instr(MatMul("int8", "ws", 0, 2, 3, 4, 0x10, 0x20, 0x40)) == (
        "matmul mode=int8 dataflow=ws accumulate=0 m=2 k=3 n=4 a_addr=0x10 b_addr=0x20 acc_addr=0x40 b_trans=0 blocks=0 "
        "b16=0")
    assert format_instr(Fence(vector=0, load=3)) == "fence load=3 vector=0"
    assert format_instr(Halt()) == "halt"
    assert format_instr(VecOp("gate", m=1, n=2, src_addr=0, dst_addr=16, src2_addr=32)) == (
        "vec.gate m=1 n=2 src_addr=0x0 dst_addr=0x10 src2_addr=0x20 param_page=0 flags=0x0 imm=0")


@pytest.mark.parametrize("text,pattern", [
    ("nop\nfrobnicate x=1", r"line 2: unknown mnemonic 'frobnicate'"),
    ("halt\n\nmatmul mode=int8 dataflow=ws accumulate=0 m=1 k=1 n=1 a_addr=0 b_addr=0",
     r"line 3: matmul is missing operand\(s\) acc_addr"),
    ("fence load=0 dma=1", r"line 1: fence has no operand 'dma'"),
    ("fence load=0 load=1", r"line 1: operand 'load' given twice"),
    ("fence load", r"line 1: operand 'load' must be name=value"),
    ("fence load=zero", r"line 1: load='zero' is not an integer"),
    ("fence load=256", r"line 1: Fence.load must be None or an integer in \[0, 255\], got 256"),
    ("dma.load mem=dram local_addr=0 ext_addr=0 ext_stride=0 rows=1 row_bytes=1",
     r"line 1: DmaLoad.mem must be one of spad, acc, got 'dram'"),
    ("vec.requant m=0 n=1 src_addr=0 dst_addr=0 param_page=0", r"line 1: VecRequant.m must be in \[1, 4095\], got 0"),
    ("vec.requant m=1 n=1 src_addr=0 dst_addr=0 param_page=0 zero_point=40000",
     r"line 1: VecRequant.zero_point must be in \[-32768, 32767\], got 40000"),
])
def test_assembler_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        assemble(text)


def test_docs_example_assembles():
    """The example in docs/isa.md is valid assembly and survives a round trip."""
    from pathlib import Path
    doc = (REPO / "docs" / "isa.md").read_text()
    block = doc.split("```\n", 2)[1]
    program = assemble(block)
    assert len(program) == 10 and isinstance(program[-1], Halt)
    assert assemble(disassemble(program)) == program


def test_docs_vector_example_assembles():
    from pathlib import Path
    doc = (REPO / "docs" / "isa.md").read_text()
    block = doc.split("```\n")[3]
    program = assemble(block)
    assert [type(i).__name__ for i in program] == ["VecOp", "VecOp", "Fence"]
    act, res = program[0], program[1]
    assert (act.op, act.flags, act.param_page, act.src_addr, act.dst_addr) == ("act", 1, 0xD4, 0xC000, 0xC000)
    assert (res.op, res.imm, res.src2_addr, res.dst_addr) == ("residual", 32, 0xC800, 0xE000)
    assert assemble(disassemble(program)) == program


def test_docs_norm_rope_example_assembles():
    from pathlib import Path
    doc = (REPO / "docs" / "isa.md").read_text()
    program = assemble(doc.split("```\n")[5])
    ln, rope = program[0], program[1]
    assert (ln.op, ln.m, ln.n, ln.param_page, ln.flags, ln.imm) == ("layernorm", 64, 64, 0xD6, 0, 0)
    assert (rope.op, rope.m, rope.n, rope.flags, rope.imm, rope.param_page) == ("rope", 8, 32, 1, 100, 0xD8)
    assert assemble(disassemble(program)) == program


@pytest.mark.parametrize("line,fields", [
    ("vec.rmsnorm m=3 n=4095 src_addr=0x0 dst_addr=0x0 param_page=0x20",
     dict(op="rmsnorm", m=3, n=4095, flags=0, imm=0, param_page=0x20)),
    ("vec.rope m=16 n=128 src_addr=0x0 dst_addr=0x800 param_page=9 flags=255 imm=32767",
     dict(op="rope", flags=255, imm=32767, param_page=9)),
    ("vec.act m=2 n=13 src_addr=0x0 dst_addr=0x40 param_page=4 flags=1",
     dict(op="act", m=2, n=13, flags=1, imm=0, src2_addr=0, param_page=4)),
    ("vec.residual m=1 n=8 src_addr=0x0 src2_addr=0x80 dst_addr=0x40 param_page=5 imm=-3",
     dict(op="residual", imm=-3, src2_addr=0x80, param_page=5)),
    ("vec.gate, m=4, n=4095, src_addr=0x0, src2_addr=0x1000, dst_addr=0x2000",
     dict(op="gate", n=4095, src2_addr=0x1000, dst_addr=0x2000, param_page=0)),
])
def test_vector_lines_round_trip(line, fields):
    (instr,) = assemble(line)
    for k, v in fields.items():
        assert getattr(instr, k) == v, k
    text = disassemble(encode_program([instr]))
    assert assemble(text) == [instr]
    assert text.startswith(f"vec.{fields['op']} ")
