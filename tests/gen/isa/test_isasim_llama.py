"""The ISA simulator's Llama vector operators against the golden functions called directly: vec.rope on int16 head
vectors (flags bit 6 int16 rows, bit 7 int16 results; ``golden.elementwise.rope``), prefill (positions
start .. start + T - 1, heads interleaved) and decode (one token at the cache length); vec.gate on int16 operands
(flags bit 0) with int16 results (bit 1; ``golden.elementwise.gate_mul``); the error cases."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.isasim import run
from npuforge.gen.isa.layout import Window
from npuforge.gen.isa.layout import pack_requant_params
from npuforge.gen.isa.ops import pack_rope_params
from npuforge.golden.elementwise import GateParams, gate_mul, gate_params, rope, rope_table
from npuforge.spec.isa import VEC_EXECUTABLE, DmaLoad, DmaStore, ErrorCode, Fence, Halt, VecOp
from npuforge.spec.vector_ops import (GATE_IN16, GATE_OUT16, ROPE_IN16, ROPE_OUT16, gate_flags, gate_format, rope_flags,
                                      rope_format)

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=8192, spad_banks=1, acc_bytes=1024, axi_data_bits=64,
                vector_ops=VEC_EXECUTABLE)
WINDOW_ALL = [Window(0, 0x8000)]
_DTYPE = {8: np.int8, 16: "<i2"}
A_EXT, B_EXT, P_EXT, C_EXT = 0x100, 0x1100, 0x2100, 0x5000


def _run_vec(op, a, b, block, *, flags, imm=0, out_bits, page=0x18, **fields):
    """DMA a (and b) and the block in, one vec.<op> over a's rows, the result out; returns (result, SimResult)."""
    m, n = a.shape
    in_b, out_b = a.dtype.itemsize, out_bits // 8
    mem = np.full(0x8000, 0x11, dtype=np.uint8)
    mem[A_EXT:A_EXT + a.nbytes] = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).view(np.uint8).ravel()
    prog = [DmaLoad("spad", 0, A_EXT, n * in_b, m, n * in_b)]
    if b is not None:
        mem[B_EXT:B_EXT + b.nbytes] = np.ascontiguousarray(b.astype(b.dtype.newbyteorder("<"))).view(np.uint8).ravel()
        prog.append(DmaLoad("spad", 0x800, B_EXT, n * b.dtype.itemsize, m, n * b.dtype.itemsize))
    mem[P_EXT:P_EXT + block.size] = block
    prog += [DmaLoad("spad", page * 256, P_EXT, block.size, 1, block.size), Fence(load=0),
             VecOp(op, m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x800 if b is not None else 0,
                   param_page=page, flags=flags, imm=imm, **fields),
             Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, n * out_b, m, n * out_b), Halt()]
    res = run(CFG, prog, mem, WINDOW_ALL)
    got = res.memory[C_EXT:C_EXT + m * n * out_b].view(_DTYPE[out_bits]).reshape(m, n) if res.ok else None
    return got, res


def _q16(m, n, seed):
    """int16 rows with the extremes and small values (rounding ties at low frac_bits) in the first row."""
    x = np.random.default_rng(seed).integers(-32768, 32768, (m, n))
    x[0, :6] = [-32768, 32767, -32768, 32767, 1, -1]
    return x.astype(np.int16)


@pytest.mark.parametrize("flags", [ROPE_IN16 | ROPE_OUT16, ROPE_IN16, ROPE_OUT16])
@pytest.mark.parametrize("heads,tokens,start", [(3, 4, 0), (3, 1, 37), (1, 8, 30), (2, 3, 5)])
def test_rope16_prefill_and_decode_is_golden(flags, heads, tokens, start):
    """Row i = token i // heads, head i % heads at position start + i // heads (q [T, heads * head_dim] row-major is
    [T * heads, head_dim] head vectors); decode = one token (heads rows) at position start = the cache length."""
    hd, frac = 16, 14
    in_bits, out_bits = rope_format(flags)
    cos, sin = rope_table(hd, 40)
    x = _q16(tokens * heads, hd, seed=heads * 100 + start)
    if in_bits == 8:
        x = (x >> 8).astype(np.int8)
    got, res = _run_vec("rope", x, None, pack_rope_params(cos, sin), flags=flags | (heads - 1), imm=start,
                        out_bits=out_bits)
    assert res.ok, res.message
    positions = start + np.arange(tokens * heads) // heads
    np.testing.assert_array_equal(got, rope(x, positions, cos, sin, frac_bits=frac, out_bits=out_bits))
    # decode == the last token of a longer prefill, bit for bit
    if tokens == 1:
        longer = _q16((start + 1) * heads, hd, seed=1)
        longer[-heads:] = x
        want = rope(longer, np.arange((start + 1) * heads) // heads, cos, sin, out_bits=out_bits)[-heads:]
        np.testing.assert_array_equal(got, want)


def test_rope16_saturates_and_rounds_like_golden():
    """frac_bits 1 (every other sum a tie) and a table of int16 extremes: int16 results saturate, int8 results
    saturate at the int8 range."""
    hd = 16
    cos = np.full((2, hd // 2), -32768, np.int16)
    sin = np.full((2, hd // 2), 32767, np.int16)
    cos[1], sin[1] = 3, -1
    x = _q16(2, hd, seed=7)
    for flags, out_bits in ((ROPE_IN16 | ROPE_OUT16, 16), (ROPE_IN16, 8)):
        got, res = _run_vec("rope", x, None, pack_rope_params(cos, sin, frac_bits=1), flags=flags, out_bits=out_bits)
        assert res.ok, res.message
        want = rope(x, np.arange(2), cos, sin, frac_bits=1, out_bits=out_bits)
        np.testing.assert_array_equal(got, want)
        assert (np.abs(want.astype(np.int64)) >= (1 << (out_bits - 1)) - 1).any()


def test_rope_64_heads():
    """flags bits [5:0] = 63: 64 interleaved heads (the most one instruction takes), 2 positions."""
    cos, sin = rope_table(16, 4)
    x = _q16(128, 16, seed=9)
    got, res = _run_vec("rope", x, None, pack_rope_params(cos, sin), flags=ROPE_IN16 | ROPE_OUT16 | 63, imm=2,
                        out_bits=16)
    assert res.ok, res.message
    np.testing.assert_array_equal(got, rope(x, 2 + np.arange(128) // 64, cos, sin, out_bits=16))


@pytest.mark.parametrize("kw,code,message", [
    (dict(m=17, flags=ROPE_IN16 | ROPE_OUT16 | 1), ErrorCode.ILLEGAL_INSTRUCTION,
     "vec.rope m must be <= 8 positions * heads (flags bits [5:0] + 1 = 2) = 16, got 17"),
    (dict(m=2, n=24, flags=ROPE_IN16 | ROPE_OUT16), ErrorCode.ILLEGAL_INSTRUCTION,
     "vec.rope n (head_dim) must be a multiple of 2 * lanes = 16 on this NPU, got 24"),
    (dict(m=2, flags=ROPE_IN16 | ROPE_OUT16, imm=39), ErrorCode.BAD_PARAM,
     "vec.rope header: frac_bits 14 must be in [1, 14] and the positions 39..40 inside the table's 40"),
])
def test_rope16_errors(kw, code, message):
    cos, sin = rope_table(16, 40)
    m, n = kw.pop("m"), kw.pop("n", 16)
    x = _q16(m, n, seed=3)
    _, res = _run_vec("rope", x, None, pack_rope_params(cos, sin), out_bits=16, **kw)
    assert (res.status, res.message) == (code, message)


def test_rope_flags_helper():
    assert rope_flags(9, 16, 16) == 0xC8 and rope_flags(3) == 2 and rope_flags(64, 16, 8) == 0x7F
    assert rope_flags(1, 8, 16) == ROPE_OUT16
    with pytest.raises(ValueError, match=r"vec.rope heads must be an integer in \[1, 64\], got 65"):
        rope_flags(65)
    with pytest.raises(ValueError, match="vec.rope out_bits must be 8 or 16, got 32"):
        rope_flags(2, 16, 32)


# -- vec.gate with int16 operands / results (flags bits 0, 1) ------------------------------------------------------
def _gate16(m, n, seed):
    """int16 operands with the extremes paired (-32768 * -32768 = 2^30, the largest product), products of +-2^15 and
    small values."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-32768, 32768, (m, n))
    b = rng.integers(-32768, 32768, (m, n))
    a[0, :8] = [-32768, -32768, 32767, 32767, 256, -256, 1, -1]
    b[0, :8] = [-32768, 32767, -32768, 32767, 128, 128, -1, 1]      # products +-2^15: ties at p / 2^16
    return a.astype(np.int16), b.astype(np.int16)


@pytest.mark.parametrize("flags,params", [
    (GATE_IN16 | GATE_OUT16, gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -9, out_bits=16)),   # SwiGLU of the a16 schemes
    (GATE_IN16 | GATE_OUT16, GateParams(multiplier=(1 << 31) - 1, shift=31, out_bits=16)),    # tiny scale: rounds to 0/±1
    (GATE_IN16 | GATE_OUT16, GateParams(multiplier=1 << 30, shift=-30, out_bits=16)),         # huge scale: saturates
    (GATE_IN16 | GATE_OUT16, GateParams(multiplier=1 << 30, shift=15, out_bits=16)),          # p / 2^16: exact ties
    (GATE_IN16, gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -2)),
    (GATE_OUT16, gate_params(0.05, 0.03, 0.0005, out_bits=16)),
])
def test_gate16_is_golden(flags, params):
    in_bits, out_bits = gate_format(flags)
    a, b = _gate16(3, 21, seed=flags)
    if in_bits == 8:
        a, b = (a >> 8).astype(np.int8), (b >> 8).astype(np.int8)
    page = 0x1e
    got, res = _run_vec("gate", a, b, pack_requant_params([params.multiplier], [params.shift]), flags=flags,
                        out_bits=out_bits, page=page)
    assert res.ok, res.message
    np.testing.assert_array_equal(got, gate_mul(a, b, params))
    assert gate_flags(in_bits, out_bits) == flags


def test_gate16_errors():
    a, b = _gate16(2, 16, seed=5)
    good = pack_requant_params([1 << 30], [0])
    _, res = _run_vec("gate", a, b, good, flags=4 | GATE_IN16 | GATE_OUT16, out_bits=16)
    assert (res.status, res.message) == (ErrorCode.ILLEGAL_INSTRUCTION,
                                         "vec.gate flags must be 0..3 (bit 0: int16 operands, bit 1: int16 result) or 5 "
                                         "(bit 2: the exact int32 product of int16 operands), got 0x7")
    _, res = _run_vec("gate", a, b, good, flags=3, imm=1, out_bits=16)
    assert (res.status, res.message) == (ErrorCode.ILLEGAL_INSTRUCTION, "vec.gate imm must be 0, got 1")
    _, res = _run_vec("gate", a, b, pack_requant_params([(1 << 30) - 1], [0]), flags=3, out_bits=16)
    assert res.status == ErrorCode.BAD_PARAM and res.fault_addr == 0x18 * 256
    with pytest.raises(ValueError, match=r"vec.gate out_bits must be 8, 16 or \(int16 operands\) 32, got 32"):
        gate_flags(8, 32)
