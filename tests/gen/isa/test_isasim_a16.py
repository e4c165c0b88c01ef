"""The 16-bit-activation modes (w8a16, w4a16) in the ISA tools: the int16 A layout of gen.isa.layout (bytes written
out by hand), compiled GEMMs on the ISA simulator equal to golden ``requantize(gemm)`` (ragged shapes, edge values,
K split into accumulate chains, both dataflows, K at each mode's int32 limit), the K limit refused with one line,
and MATMUL footprints/range checks with A rows of 2k bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import plan_gemm
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.isa.isasim import Window, run
from npuforge.gen.isa.layout import a_tile_shape, footprint, pack_a_tile, unpack_a_tile
from npuforge.sim.harness.npu_run import gemm_operands
from npuforge.spec.isa import DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, encode_program

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="both",
                                  precisions=("int8", "w4a8", "int4", "w8a16", "w4a16")),
                spad_bytes=16384, spad_banks=2, acc_bytes=4096, axi_data_bits=64, windows=2, vector_ops=())


def test_int16_a_layout_by_hand():
    a = np.array([[1, -2, 32767], [-32768, 0, 256]])
    raw = pack_a_tile(a, 16)
    assert a_tile_shape(2, 3, 16) == raw.shape == (2, 6)
    assert raw.tolist() == [[0x01, 0x00, 0xFE, 0xFF, 0xFF, 0x7F], [0x00, 0x80, 0x00, 0x00, 0x00, 0x01]]
    assert np.array_equal(unpack_a_tile(raw, 2, 16), a)
    for bits, m in ((8, 3), (4, 3)):     # the 8- and 4-bit layouts round-trip through the same helpers
        x = np.arange(-6, 6).reshape(m, 4) % (1 << (bits - 1))
        assert np.array_equal(unpack_a_tile(pack_a_tile(x, bits), m, bits), x)


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_compiled_gemms_equal_golden(mode, dataflow):
    cases = [((1, 1, 1), {}), ((9, 37, 13), {}), ((6, 5, 10), {"out_bits": 16}),
             ((13, 20, 11), {"tiles": (8, 8, 6), "order": "nm"}), ((2, 511, 3), {})]
    for i, ((m, k, n), kw) in enumerate(cases):
        a, b, mult, shift = gemm_operands(m, k, n, mode, seed=i)
        assert a.min() == -32768 and (a.max() == 32767 or a.size < 2)
        comp = compile_gemm(CFG, a, b, mult, shift, mode=mode, dataflow=dataflow, **kw)
        res = run(CFG, comp.program_bytes, comp.image, comp.windows)
        p = comp.plan
        assert res.status == ErrorCode.NONE, res.message
        got = res.memory[p.c_base:p.c_base + p.m * p.c_row_bytes]
        want = comp.expected.astype(np.int8 if p.out_bits == 8 else "<i2").view(np.uint8).ravel()
        assert np.array_equal(got, want), (mode, m, k, n)
        if "tiles" in kw:
            assert any(isinstance(i, MatMul) and i.accumulate for i in comp.program)


@pytest.mark.parametrize("mode, limit", [("w8a16", 511), ("w4a16", 8191)])
def test_k_limit_refused_with_one_line(mode, limit):
    assert plan_gemm(CFG, 1, limit, 1, mode=mode).k == limit
    with pytest.raises(ValueError, match=rf"^K must be in \[1, {limit}\] for mode {mode} \(int32 accumulator\), "
                                         rf"got {limit + 1}$"):
        plan_gemm(CFG, 1, limit + 1, 1, mode=mode)


def test_matmul_a_rows_are_two_bytes_an_element():
    """Footprint and the simulator's LOCAL_RANGE check both see 2k-byte A rows (at the 8-byte word stride)."""
    mm = MatMul("w8a16", "ws", 0, 3, 5, 4, 0, 4096, 0)
    a_read = footprint(CFG, mm)[0]
    assert (a_read.lo, a_read.hi) == (0, 3 * 16)
    image = np.zeros(0x1000, dtype=np.uint8)
    for k, status in ((512, ErrorCode.NONE), (513, ErrorCode.LOCAL_RANGE)):
        instr = MatMul("w8a16", "ws", 0, 1, k, 4, 16384 - 1024, 0, 0)
        res = run(CFG, encode_program([instr, Halt()]), image, [Window(0, 0x1000)])
        assert res.status == status and res.fault_addr == (0 if k == 512 else 16384 - 1024), res.message


def test_hand_written_k_past_the_bound_wraps_like_the_int32_adder():
    """A program may ask for w8a16 K = 600 (the compiler never does): the simulator wraps the exact sum to int32,
    as the array's and accumulator's 32-bit adders do, instead of failing."""
    k = 600
    a = np.full((1, k), -32768)
    image = np.zeros(0x4000, dtype=np.uint8)
    image[0x1000:0x1000 + 2 * k] = pack_a_tile(a, 16).ravel()
    for r in range(k):                 # B [k, 4] int8, all -128, rows at the 8-byte word
        image[0x2000 + 8 * r:0x2000 + 8 * r + 4] = 0x80
    prog = encode_program([DmaLoad("spad", 0, 0x1000, 2 * k, 1, 2 * k), DmaLoad("spad", 2048, 0x2000, 8, k, 4),
                           Fence(load=0), MatMul("w8a16", "ws", 0, 1, k, 4, 0, 2048, 0), Fence(matrix=0),
                           DmaStore("acc", 0, 0x3000, 16, 1, 16), Halt()])
    res = run(CFG, prog, image, [Window(0, 0x4000)])
    assert res.status == ErrorCode.NONE, res.message
    want = (k * 32768 * 128) % (1 << 32)
    want = want - (1 << 32) if want >= 1 << 31 else want
    assert res.memory[0x3000:0x3010].view("<i4").tolist() == [want] * 4 and want < 0
