"""The controller's vector sequencer (VecEngine: ParamLoader + RowStreamer) alone on Amaranth's simulator, with a
Python scratchpad model: lanes narrower than the word, 4-byte words, every operator (int8 and the wide softmax /
residual / norms and the interpolated 16-bit act), bad records and headers; outputs compared with the golden
operators. The same operators on the whole NPU: tests/rtl/npu/test_npu_vector_cocotb.py."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.golden.activations import silu_table
from npuforge.golden.elementwise import GateParams, gate_params, residual_params
from npuforge.golden.softmax import softmax, softmax_params
from npuforge.sim.harness.npu_vec_jobs import edge_operands, elem_bytes, param_block
from npuforge.spec.isa import ErrorCode

SILU = silu_table(0.08, 0.05)


# -- the vector sequencer alone, on Amaranth's simulator: lanes narrower than the word, 4-byte words --------------
def _engine_run(word_bytes, lanes, op, m, n, a, b, block, *, flags=0, imm=0, seed=0, spad_extra=256,
                ops=("softmax", "act", "residual", "gate"), spad_out=None, probe=None):
    """Run one instruction on VecEngine with a Python scratchpad model (synchronous reads, DMA that steals the
    shared read / write port at random); return (spad bytes, error, code, fault, cycles). ``spad_out``: a list that
    receives the whole scratchpad before and after, and the src2 byte address. ``probe``: a list that receives, each
    cycle, (reader A's ready, the unit's ``i.ready``, reader A's valid, reader B's ready, the unit's ``b.ready``)."""
    from amaranth.sim import Simulator
    from npuforge.rtl.controller import VecEngine

    rng = np.random.default_rng(seed)
    B = word_bytes
    ea, eb, eo = elem_bytes(op, flags)
    stride_a, stride_b, stride = (-(-(n * e) // B) * B for e in (ea, eb, eo))
    src, src2 = 0, m * stride_a
    dst = src2 + m * stride_b
    page = -(-(dst + m * stride) // 256)
    spad = bytearray(rng.integers(0, 256, (page + 1) * 256 + spad_extra, dtype=np.uint8).tobytes())
    for base, arr, e, st in ((src, a, ea, stride_a), (src2, b, eb, stride_b)):
        if arr is not None:
            for r in range(m):
                row = np.asarray(arr[r]).astype({1: np.int8, 2: "<i2", 4: "<i4"}[e]).tobytes()
                spad[base + r * st:base + r * st + n * e] = row
    spad[page * 256:page * 256 + len(block)] = bytes(block)
    if spad_out is not None:
        spad_out += [bytes(spad), spad, src2]
    dut = VecEngine(word_bytes=B, spad_aw=16, lanes=lanes, ops=ops)
    # vec.act: the controller's top picks GELU / SiLU by flags bit 0; the engine switches to the 16-bit tables.
    unit_op = {"act": 2 if flags & 1 else 1, "residual": 3, "gate": 4, "rope": 5, "softmax": 6, "layernorm": 7,
               "rmsnorm": 8}[op]
    state = {"done": None}

    def word(addr):
        return int.from_bytes(spad[addr * B:(addr + 1) * B], "little")

    async def memory(ctx):
        async for _, _, ren, raddr, r2en, r2addr, wen, waddr, wdata, r2blk, wblk in ctx.tick().sample(
                dut.rd.en, dut.rd.addr, dut.rd2.en, dut.rd2.addr, dut.wr.en, dut.wr.addr, dut.wr.data,
                dut.rd2_block, dut.wr_block):
            assert not (wblk and wen), "the sequencer wrote while the DMA owned the write port"
            assert not (r2blk and r2en), "the sequencer read port 2 while the DMA owned it"
            if wen:
                for i in range(B):
                    if wen >> i & 1:
                        spad[waddr * B + i] = (wdata >> (8 * i)) & 0xFF
            if ren:
                ctx.set(dut.rd.data, word(raddr))
            if r2en:
                ctx.set(dut.rd2.data, word(r2addr))
            elif r2blk:
                ctx.set(dut.rd2.data, int(rng.integers(0, 1 << 62)))   # the DMA's word, not ours
            ctx.set(dut.rd2_block, int(rng.random() < 0.3))
            ctx.set(dut.wr_block, int(rng.random() < 0.3))

    async def bench(ctx):
        ctx.set(dut.unit_op, unit_op)
        ctx.set(dut.two, op in ("residual", "gate"))
        ctx.set(dut.causal, flags & 1)
        ctx.set(dut.row_offset, imm if op in ("softmax", "rope") else 0)
        ctx.set(dut.heads_m1, flags & 63 if op == "rope" else 0)
        ctx.set(dut.is_act, op == "act")
        ctx.set(dut.table, flags & 1)
        ctx.set(dut.m, m)
        ctx.set(dut.n, n)
        ctx.set(dut.src_word, src // B)
        ctx.set(dut.src2_word, src2 // B)
        ctx.set(dut.dst_word, dst // B)
        ctx.set(dut.param_word, page * 256 // B)
        ctx.set(dut.shift, imm & 63)
        ctx.set(dut.flags, flags)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for cycle in range(20_000):
            await ctx.tick()
            if probe is not None:
                two_ports = "b" in dut.unit.signature.members
                probe.append((ctx.get(dut.rows.a.ready), ctx.get(dut.unit.i.ready), ctx.get(dut.rows.a.valid),
                              ctx.get(dut.rows.b.ready) if two_ports else 1,
                              ctx.get(dut.unit.b.ready) if two_ports else 1))
            if ctx.get(dut.done):
                state["done"] = (ctx.get(dut.error), ctx.get(dut.code), ctx.get(dut.fault_addr), cycle)
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(memory)
    sim.add_testbench(bench)
    sim.run()
    assert state["done"] is not None, "no done within 20000 cycles"
    out = np.frombuffer(bytes(spad[dst:dst + m * stride]), np.uint8).reshape(m, stride)
    return out, page * 256, state["done"]


@pytest.mark.parametrize("word_bytes,lanes", [(8, 2), (8, 4), (4, 4), (4, 1)])
def test_vec_engine_lanes_and_words(word_bytes, lanes):
    from npuforge.golden.activations import lookup
    from npuforge.golden.elementwise import gate_mul, residual_add
    a, b = edge_operands(2, 11, seed=20 + lanes)
    rp = residual_params(0.05, 0.03, 0.06)
    gp = gate_params(0.05, 0.03, 0.6)
    sp = softmax_params(0.07, input_bits=8)
    for op, block, want, kw in (
            ("softmax", param_block("softmax", sp), softmax(a, sp, causal=True, row_offset=3).view(np.int8),
             dict(flags=1, imm=3)),
            ("act", param_block("act", SILU), lookup(a, SILU), dict(flags=1)),
            ("residual", param_block("residual", rp), residual_add(a, b, rp), dict(imm=rp.shift)),
            ("gate", param_block("gate", gp), gate_mul(a, b, gp), {})):
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, op, 2, 11, a, b, block, **kw)
        assert error == 0, (op, code)
        np.testing.assert_array_equal(out[:, :11].view(np.int8), want, err_msg=op)
        assert not out[:, 11:].any(), "row tails must be written 0"


def test_vec_engine_bad_gate_record_reports_its_address():
    a, b = edge_operands(1, 8, seed=30)
    block = param_block("gate", GateParams((1 << 30) - 1, 0))
    _, page_byte, (error, code, fault, _) = _engine_run(4, 4, "gate", 1, 8, a, b, block)
    assert (error, code, fault) == (1, ErrorCode.BAD_PARAM, page_byte)


_NEW_OPS = ("layernorm", "rmsnorm", "rope")


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_norms_and_rope(word_bytes, lanes):
    """Norm channel words / RoPE entries streamed from the scratchpad block on 4- and 8-byte words (a LayerNorm
    word spans two 4-byte words), rows narrower than the word, RoPE rows from a table slice at position imm."""
    from npuforge.gen.isa.isasim import pack_norm_params, pack_rope_params
    from npuforge.golden.elementwise import rope, rope_table
    from npuforge.golden.norms import layernorm, layernorm_params, rmsnorm, rmsnorm_params
    rng = np.random.default_rng(40 + lanes)
    m, n = 3, 11
    a, _ = edge_operands(m, n, seed=41)
    a[1, :] = -128                                                    # constant row
    lp = layernorm_params(0.05, rng.uniform(-2, 2, n), rng.uniform(-1, 1, n), 0.03)
    rp = rmsnorm_params(0.05, rng.uniform(-2, 2, n), 0.03)
    for op, params, want in (("layernorm", lp, layernorm(a, lp)), ("rmsnorm", rp, rmsnorm(a, rp))):
        block = pack_norm_params(params)
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, op, m, n, a, None, block,
                                                           spad_extra=block.size, ops=_NEW_OPS)
        assert error == 0, (op, code)
        np.testing.assert_array_equal(out[:, :n].view(np.int8), want, err_msg=op)
        assert not out[:, n:].any(), "row tails must be written 0"
    hd, heads, first = 4 * lanes, 2, 7
    cos, sin = rope_table(hd, 11)
    block = pack_rope_params(cos, sin)
    a, _ = edge_operands(7, hd, seed=42)
    out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "rope", 7, hd, a, None, block,
                                                       flags=heads - 1, imm=first, spad_extra=block.size,
                                                       ops=_NEW_OPS)
    assert error == 0, code
    np.testing.assert_array_equal(out[:, :hd].view(np.int8), rope(a, first + np.arange(7) // heads, cos, sin))


def test_vec_engine_norm_and_rope_headers_checked():
    """A bad header stops the instruction before any row with BAD_PARAM at the block address; RoPE table rows past
    the scratchpad: LOCAL_RANGE at the block address."""
    from npuforge.gen.isa.isasim import pack_norm_params, pack_rope_params
    from npuforge.golden.elementwise import rope_table
    from npuforge.golden.norms import rmsnorm_params
    a, _ = edge_operands(1, 8, seed=43)
    block = pack_norm_params(rmsnorm_params(0.05, np.ones(8), 0.03))
    block[8] = 29                                                     # var_frac_bits odd
    out, page_byte, (error, code, fault, _) = _engine_run(8, 8, "rmsnorm", 1, 8, a, None, block,
                                                          spad_extra=block.size, ops=_NEW_OPS)
    assert (error, code, fault) == (1, ErrorCode.BAD_PARAM, page_byte)
    cos, sin = rope_table(16, 4)
    block = pack_rope_params(cos, sin)
    a, _ = edge_operands(2, 16, seed=44)
    _, page_byte, (error, code, fault, _) = _engine_run(8, 8, "rope", 2, 16, a, None, block, imm=3,
                                                        spad_extra=block.size, ops=_NEW_OPS)
    assert (error, code, fault) == (1, ErrorCode.BAD_PARAM, page_byte)     # positions 3, 4 of a 4-row table
    block[:4] = np.frombuffer((1 << 20).to_bytes(4, "little"), np.uint8)
    _, page_byte, (error, code, fault, _) = _engine_run(8, 8, "rope", 2, 16, a, None, block, imm=20000,
                                                        spad_extra=block.size, ops=_NEW_OPS)
    assert (error, code, fault) == (1, ErrorCode.LOCAL_RANGE, page_byte)   # 16 + 32 * 20000 past 512 KiB


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_wide_softmax(word_bytes, lanes):
    """vec.softmax of int16 / int32 scores (rows of 2- and 4-byte elements, gathered from several words when a beat
    is wider than a word), Q0.15 int16 and uint8 outputs, padding and causal masks, on 4- and 8-byte words."""
    from npuforge.gen.isa.ops import SoftmaxBlock
    from npuforge.golden.models.llama import SCORE_SCALE
    m, n = 3, 11
    rng = np.random.default_rng(70 + lanes)
    s16 = rng.integers(-32768, 32768, (m, n))
    s16[0, :3] = [-32768, 32767, 32767]
    s32 = np.round(rng.normal(0, 4.0, (m, n)) / SCORE_SCALE).astype(np.int64)
    s32[1, :2] = [-(1 << 31), (1 << 31) - 1]
    p16, p32 = softmax_params(0.004, input_bits=16), softmax_params(SCORE_SCALE, input_bits=32)
    for name, x, params, flags, imm, valid in (
            ("int16->q15", s16, p16, 2 | 8, 0, 0),
            ("int32->q15 causal", s32, p32, 4 | 8 | 1, 2, 0),
            ("int32->uint8 padded", s32, p32, 4 | 16, 0, 7),
            ("int16->q15 padded causal", s16, p16, 2 | 8 | 16 | 1, 0, 1)):
        blk = SoftmaxBlock(params, valid)
        want = operator_golden("softmax", x, blk, flags, imm)
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "softmax", m, n, x, None,
                                                           param_block("softmax", blk), flags=flags, imm=imm)
        assert error == 0, (name, code)
        eo = want.dtype.itemsize
        got = np.ascontiguousarray(out[:, :n * eo]).view("<i2" if eo == 2 else np.uint8)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert not out[:, n * eo:].any(), "row tails must be written 0"


@pytest.mark.parametrize("op", ["softmax", "residual"])
def test_vec_engine_reader_ready_is_registered(op):
    """The row readers' ready is a register (the input skid buffers, issue #16): when the operators' ready drops
    (softmax's input stalls behind its row buffers, residual's behind the output), the readers' ready is still high
    in that cycle; it falls a cycle later at the earliest."""
    m, n = 6, 64
    a, b = edge_operands(m, n, seed=31)
    rp = residual_params(0.05, 0.03, 0.06)
    params = rp if op == "residual" else softmax_params(0.06, input_bits=8)
    probe = []
    _, _, (error, code, _, _) = _engine_run(8, 8, op, m, n, a, b if op == "residual" else None,
                                            param_block(op, params), imm=rp.shift if op == "residual" else 0,
                                            probe=probe)
    assert error == 0, code
    falls = 0
    for (_, unit_was, _, _, unit_b_was), (rows_now, unit_now, _, rows_b_now, unit_b_now) in zip(probe, probe[1:]):
        if unit_was and not unit_now:
            falls += 1
            assert rows_now, "reader A's ready fell in the cycle the unit's did"
        if unit_b_was and not unit_b_now:
            assert rows_b_now, "reader B's ready fell in the cycle the unit's did"
    assert falls > 0, "the operator never stalled its input: nothing was checked"


def test_vec_engine_softmax_padding_without_columns_is_bad_param():
    from npuforge.gen.isa.ops import SoftmaxBlock
    a, _ = edge_operands(1, 8, seed=71)
    block = param_block("softmax", SoftmaxBlock(softmax_params(0.06, input_bits=8), 0))
    _, page_byte, (error, code, fault, _) = _engine_run(8, 8, "softmax", 1, 8, a, None, block, flags=16)
    assert (error, code, fault) == (1, ErrorCode.BAD_PARAM, page_byte)


def operator_golden(op, a, params, flags, imm):
    """The golden operator (``gen.isa.ops`` registry entry) for an instruction's flags / imm."""
    from npuforge.gen.isa.ops import operator
    return np.asarray(operator(op).golden(a, None, params, flags=flags, imm=imm))


def _residual_flags(a_bits, b_bits, out_bits):
    code = {8: 0, 16: 1, 32: 2}
    return 1 | code[a_bits] << 1 | code[b_bits] << 3 | (out_bits == 32) << 5


def _wide_operands(m, n, bits, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (m, n))
    x.flat[:3] = [lo, hi, hi]
    return x.astype({8: np.int8, 16: np.int16, 32: np.int32}[bits])


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_wide_residual(word_bytes, lanes):
    """The int32 residual stream's vec.residual (golden.models.intops.residual_add_wide): int32 / int16 / int8 src
    requantized, int16 / int32 src2 and results, saturating, on 4- and 8-byte words; then the int8 residual."""
    from npuforge.gen.isa.ops import WideResidualParams
    from npuforge.golden.models.intops import IDENTITY_REQUANT
    m, n = 3, 11
    for a_bits, b_bits, out_bits, (mult, shift) in ((32, 32, 32, IDENTITY_REQUANT), (16, 32, 32, (1_700_000_000, -2)),
                                                     (32, 16, 16, (1_100_000_000, 5)), (8, 16, 16, (1 << 30, -20))):
        a, b = _wide_operands(m, n, a_bits, 90 + a_bits), _wide_operands(m, n, b_bits, 91 + b_bits)
        flags = _residual_flags(a_bits, b_bits, out_bits)
        params = WideResidualParams(mult, shift)
        want = np.asarray(operator_golden_two("residual", a, b, params, flags, 31 + shift))
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "residual", m, n, a, b,
                                                           param_block("residual", params), flags=flags,
                                                           imm=31 + shift)
        assert error == 0, code
        eo = out_bits // 8
        got = np.ascontiguousarray(out[:, :n * eo]).view("<i4" if eo == 4 else "<i2")
        np.testing.assert_array_equal(got, want, err_msg=f"{a_bits}+{b_bits}->{out_bits}")
        assert not out[:, n * eo:].any(), "row tails must be written 0"


def test_vec_engine_wide_residual_bad_record_is_bad_param_at_0():
    from npuforge.gen.isa.ops import WideResidualParams
    a = _wide_operands(1, 8, 32, 95)
    block = param_block("residual", WideResidualParams((1 << 30) - 1, -1))
    _, _, (error, code, fault, _) = _engine_run(8, 8, "residual", 1, 8, a, a, block, flags=_residual_flags(32, 32, 32),
                                                imm=30)
    assert (error, code, fault) == (1, ErrorCode.BAD_PARAM, 0)


def operator_golden_two(op, a, b, params, flags, imm):
    from npuforge.gen.isa.ops import operator
    return operator(op).golden(a, b, params, flags=flags, imm=imm)


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_wide_norms(word_bytes, lanes):
    """vec.layernorm / vec.rmsnorm of int32 rows (golden.models.intops.norm_wide: the block's eps table streamed into
    the operator, the rows' pre-shift) with int16 and int8 results, and int8 rows with int16 results, on 4- and
    8-byte words (16-byte LayerNorm records gathered from 2 or 4 words)."""
    from npuforge.golden.models.intops import wide_norm_params
    from npuforge.golden.norms import layernorm_params, rmsnorm_params
    rng = np.random.default_rng(110 + lanes)
    m, n = 3, 11
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n)
    x32 = (rng.integers(-(1 << 31), 1 << 31, (m, n)) >> rng.integers(0, 24, (m, 1))).astype(np.int32)
    x32[0, 0] = -(1 << 31)
    x8, _ = edge_operands(m, n, seed=111)
    for kind in ("layernorm", "rmsnorm"):
        for flags in (3, 1, 2):
            out_bits = 16 if flags & 2 else 8
            out_scale = 0.03 / (256 if out_bits == 16 else 1)
            if kind == "layernorm":
                build = lambda s, **kw: layernorm_params(s, gamma, beta, out_scale, **kw)   # noqa: E731
            else:
                build = lambda s, **kw: rmsnorm_params(s, gamma, out_scale, **kw)         # noqa: E731
            if flags & 1:
                params, x = wide_norm_params(build, 2.0 ** -12, out_bits=out_bits), x32
            else:
                params, x = build(0.05, out_bits=out_bits), x8
            block = param_block(kind, params)
            want = np.asarray(operator_golden_two(kind, x, None, params, flags, 0))
            out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, kind, m, n, x, None, block,
                                                               flags=flags, spad_extra=block.size, ops=_NEW_OPS)
            assert error == 0, (kind, flags, code)
            eo = out_bits // 8
            got = np.ascontiguousarray(out[:, :n * eo]).view("<i2" if eo == 2 else np.int8)
            np.testing.assert_array_equal(got, want, err_msg=f"{kind} flags={flags}")
            assert not out[:, n * eo:].any(), "row tails must be written 0"


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_interp_act(word_bytes, lanes):
    """vec.act flags bit 1: int16 rows through the 1025-entry interpolated GELU / SiLU tables (2050-byte block, one
    entry per cycle), then the int8 table on the same engine."""
    from npuforge.golden.models.intops import gelu_float, interp_table, silu_float
    m, n = 2, 13
    x = np.random.default_rng(130 + lanes).integers(-32768, 32768, (m, n)).astype(np.int16)
    x[0, :4] = [-32768, 32767, 0, -1]
    for flags, fn in ((2, gelu_float), (3, silu_float)):
        table = interp_table(fn, 1 / 2048, 1 / 4096)
        block = param_block("act", table)
        want = np.asarray(operator_golden_two("act", x, None, table, flags, 0))
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "act", m, n, x, None, block,
                                                           flags=flags, spad_extra=block.size)
        assert error == 0, code
        got = np.ascontiguousarray(out[:, :2 * n]).view("<i2")
        np.testing.assert_array_equal(got, want, err_msg=f"flags={flags}")
        assert not out[:, 2 * n:].any(), "row tails must be written 0"


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_rope16(word_bytes, lanes):
    """vec.rope flags bits 6 / 7: int16 head vectors in (a beat of 2 * lanes bytes gathered from two words when it is
    wider than the word) and int16 or int8 results, int8 rows with int16 results; the int16 extremes, 2 heads from
    position 5 (prefill) and 2 heads at the table's last position (decode)."""
    from npuforge.gen.isa.isasim import pack_rope_params
    from npuforge.golden.elementwise import rope, rope_table
    hd, heads = 4 * lanes, 2
    cos, sin = rope_table(hd, 8)
    block = pack_rope_params(cos, sin)
    x16 = _wide_operands(5, hd, 16, 160 + lanes)
    x16[1, :hd // 2], x16[1, hd // 2:] = 32767, -32768
    x8, _ = edge_operands(5, hd, seed=161)
    for flags, x, first, out_bits in ((0xC1, x16, 5, 16), (0x41, x16[:2], 7, 8), (0x81, x8, 4, 16)):
        m = x.shape[0]
        want = rope(x, first + np.arange(m) // heads, cos, sin, out_bits=out_bits)
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "rope", m, hd, x, None, block,
                                                           flags=flags, imm=first, spad_extra=block.size,
                                                           ops=_NEW_OPS)
        assert error == 0, (flags, code)
        eo = out_bits // 8
        got = np.ascontiguousarray(out[:, :hd * eo]).view("<i2" if eo == 2 else np.int8)
        np.testing.assert_array_equal(got, want, err_msg=f"flags=0x{flags:x}")


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_gate16(word_bytes, lanes):
    """vec.gate flags bits 0 / 1: int16 operands on both readers (beats gathered from two words when wider than the
    word) with int16 or int8 results, int8 operands with int16 results; the int16 extremes paired."""
    from npuforge.golden.elementwise import gate_mul
    m, n = 2, 11
    a16, b16 = _wide_operands(m, n, 16, 180 + lanes), _wide_operands(m, n, 16, 181 + lanes)
    a16[1, :3], b16[1, :3] = [-32768, -32768, 32767], [-32768, 32767, 32767]
    a8, b8 = edge_operands(m, n, seed=182)
    for flags, a, b, params in ((3, a16, b16, gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -9, out_bits=16)),
                                (1, a16, b16, gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -2)),
                                (2, a8, b8, gate_params(0.05, 0.03, 0.0005, out_bits=16))):
        want = gate_mul(a, b, params)
        out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "gate", m, n, a, b,
                                                           param_block("gate", params), flags=flags)
        assert error == 0, (flags, code)
        eo = params.out_bits // 8
        got = np.ascontiguousarray(out[:, :n * eo]).view("<i2" if eo == 2 else np.int8)
        np.testing.assert_array_equal(got, want, err_msg=f"flags={flags}")
        assert not out[:, n * eo:].any(), "row tails must be written 0"
