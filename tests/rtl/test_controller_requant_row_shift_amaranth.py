"""The VEC_REQUANT engine with ``row_shift`` (the -pt schemes' per-token requant) on the Amaranth simulator, with
word-wide scratchpad / accumulator models: every output byte equal to ``gen.isa.isasim.requant_wide_exact(acc, M,
shift - k)`` (k_r = 0 and 16, total shifts 1 and 62, int8 / int16 / int32 outputs, bytes past the m k_r in the last
k word ignored); BAD_PARAM at the first bad row's byte (k_r = 17, k_r above 30 + the smallest record shift), nothing
written; a bad record wins over a bad k_r (records first), a bad zero point too; never a hang. The engine runs in
the NPU in tests/rtl/npu/test_npu_pt_cocotb.py."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.isasim import requant_wide_exact
from npuforge.gen.isa.layout import pack_requant_params
from npuforge.rtl.controller.requant import RequantEngine
from tests.conftest import set_ports, simulate

B = 8                                   # scratchpad / accumulator word bytes
SRC, DST, PAGE, KADDR = 0, 0x200, 0x100, 0x380     # acc byte, spad bytes (records at PAGE, k bytes at KADDR)


def _run(acc, mult, shift, k, *, out_bytes=2, zero_point=0, k_tail=255):
    """One instruction: returns (error, fault_addr, output int64 [m, n] or None when nothing was written)."""
    m, n = acc.shape
    row_words = -(-4 * n // B)
    acc_mem = {}
    for r in range(m):
        raw = acc[r].astype("<i4").tobytes() + bytes(row_words * B - 4 * n)
        for j in range(row_words):
            acc_mem[SRC // B + r * row_words + j] = int.from_bytes(raw[j * B:(j + 1) * B], "little")
    spad = bytearray(1 << 10)
    rec = pack_requant_params(mult, shift)
    spad[PAGE:PAGE + rec.size] = rec.tobytes()
    spad[KADDR:KADDR + m] = bytes(int(v) for v in k)
    spad[KADDR + m:KADDR + -(-m // B) * B] = bytes([k_tail]) * (-(-m // B) * B - m)   # not k bytes: not read
    before = bytes(spad)
    dut = RequantEngine(word_bytes=B, spad_aw=7, acc_aw=6)
    out = {}

    async def bench(ctx):
        set_ports(ctx, dut, out16=int(out_bytes == 2), out32=int(out_bytes == 4), zero_point=zero_point, bias=0,
                  bias_word=KADDR // B, row_shift=1, m=m, n=n, src_word=SRC // B, dst_word=DST // B,
                  param_byte=PAGE, rd_block=0, wr_block=0, start=1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        acc_rd = spad_rd = None
        for _ in range(3000):
            ctx.set(dut.acc_rd.data, acc_mem.get(acc_rd, 0))
            ctx.set(dut.spad_rd.data, int.from_bytes(spad[spad_rd * B:(spad_rd + 1) * B], "little")
                    if spad_rd is not None else 0)
            if ctx.get(dut.done):
                out["error"], out["fault"] = ctx.get(dut.error), ctx.get(dut.fault_addr)
                return
            en = ctx.get(dut.spad_wr.en)
            if en:
                addr, data = ctx.get(dut.spad_wr.addr), ctx.get(dut.spad_wr.data).to_bytes(B, "little")
                for j in range(B):
                    if en >> j & 1:
                        spad[addr * B + j] = data[j]
            acc_rd = ctx.get(dut.acc_rd.addr) if ctx.get(dut.acc_rd.en) else None
            spad_rd = ctx.get(dut.spad_rd.addr) if ctx.get(dut.spad_rd.en) else None
            await ctx.tick()
        raise AssertionError("hang")

    simulate(dut, bench)
    if out["error"]:
        assert bytes(spad) == before, "a faulting instruction wrote the scratchpad"
        return 1, out["fault"], None
    stride = -(-out_bytes * n // B) * B
    dt = {1: "<i1", 2: "<i2", 4: "<i4"}[out_bytes]
    rows = [np.frombuffer(bytes(spad[DST + r * stride:DST + r * stride + out_bytes * n]), dt) for r in range(m)]
    return 0, 0, np.array(rows, np.int64)


def _case(rng, m, n):
    k = rng.integers(0, 17, m)
    k[:2] = [16, 0]
    shift = rng.integers(-14, 32, n)
    shift[:2] = [-14, 31]                   # t = 1 on rows with k = 16, t = 62 on rows with k = 0
    mult = rng.integers(1 << 30, 1 << 31, n)
    acc = rng.integers(-(1 << 31), 1 << 31, (m, n))
    acc[0, 0] = -(1 << 31)
    return acc, mult, shift, k


@pytest.mark.parametrize("out_bytes,zero_point,m,n", [(2, -3, 11, 5), (1, 7, 3, 9), (4, 0, 9, 2)])
def test_row_shift_output_equals_isasim_kernel(out_bytes, zero_point, m, n):
    rng = np.random.default_rng(m * n + out_bytes)
    acc, mult, shift, k = _case(rng, m, n)
    error, _, got = _run(acc, mult, shift, k, out_bytes=out_bytes, zero_point=zero_point)
    assert not error
    want = requant_wide_exact(acc, mult, shift[None, :] - k[:, None], zero_point=zero_point, out_bits=8 * out_bytes)
    np.testing.assert_array_equal(got, want)


def test_row_shift_bad_param_at_the_first_bad_row():
    rng = np.random.default_rng(5)
    acc, mult, shift, k = _case(rng, 11, 5)
    k[:] = [16, 0, 3, 5, 2, 8, 1, 4, 6, 7, 9]
    k[9] = 17                                             # k_r > 16
    assert _run(acc, mult, shift, k)[:2] == (1, KADDR + 9)
    k[9], shift[2] = 3, -20                               # the limit is now 30 - 20 = 10: rows 0 (k = 16) and 5
    k[5] = 11
    assert _run(acc, mult, shift, k)[:2] == (1, KADDR + 0)
    k[0] = 10                                             # t = 1 exactly: fine; row 5 (k = 11, t = 0) is not
    assert _run(acc, mult, shift, k)[:2] == (1, KADDR + 5)
    k[5] = 10
    assert _run(acc, mult, shift, k)[0] == 0


def test_row_shift_checks_after_records_and_zero_point():
    rng = np.random.default_rng(6)
    acc, mult, shift, k = _case(rng, 4, 3)
    k[1] = 40
    mult[2] = 5                                           # below 2^30: the record's BAD_PARAM comes first
    assert _run(acc, mult, shift, k)[:2] == (1, PAGE + 8 * 2)
    mult[2] = 1 << 30
    assert _run(acc, mult, shift, k, out_bytes=1, zero_point=200)[:2] == (1, 0)   # zero point before k
    assert _run(acc, mult, shift, k)[:2] == (1, KADDR + 1)
