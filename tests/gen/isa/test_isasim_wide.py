"""The ISA simulator's wide vector operators against the golden functions called directly: vec.softmax with wide
scores (int16 / int32 at 2^-16), the Q0.15 int16 output and the padding mask (flags bits [2:1], 3, 4; record
``spec.vector_ops.SOFTMAX_RECORD``; ``golden.softmax``), the int32 residual stream's vec.residual (flags bit 0 and
width codes; ``golden.models.intops.residual_add_wide``): rows of 2- and 4-byte elements at the scratchpad-word
stride, and the error cases."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.asm import assemble
from npuforge.gen.isa.isasim import run
from npuforge.gen.isa.layout import Window
from npuforge.gen.isa.ops import pack_residual_params
from npuforge.golden.models.intops import IDENTITY_REQUANT, residual_add_wide
from npuforge.golden.models.llama import SCORE_SCALE
from npuforge.golden.softmax import softmax, softmax_params, softmax_q15
from npuforge.spec.isa import ErrorCode
from npuforge.spec.vector_ops import SOFTMAX_RECORD

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=4096, spad_banks=1, acc_bytes=1024, axi_data_bits=64)
WINDOW_ALL = [Window(0, 0x4000)]
_DTYPE = {8: np.int8, 16: "<i2", 32: "<i4"}


def _program(m, n, flags, imm=0, *, in_bytes, out_bytes, src=0x0, dst=0x600):
    rb_in, rb_out = n * in_bytes, n * out_bytes
    return assemble(f"""
    dma.load mem=spad local_addr={src:#x} ext_addr=0x100 ext_stride={rb_in} rows={m} row_bytes={rb_in}
    dma.load mem=spad local_addr=0xe00 ext_addr=0x900 ext_stride=8 rows=1 row_bytes=8
    fence load=0
    vec.softmax m={m} n={n} src_addr={src:#x} dst_addr={dst:#x} param_page=0xe flags={flags} imm={imm}
    fence vector=0
    dma.store mem=spad local_addr={dst:#x} ext_addr=0x1000 ext_stride={rb_out} rows={m} row_bytes={rb_out}
    halt
    """)


def _memory(scores, bits, params, valid_len=0):
    mem = np.full(0x4000, 0x11, dtype=np.uint8)
    raw = np.ascontiguousarray(scores.astype(_DTYPE[bits])).view(np.uint8).ravel()
    mem[0x100:0x100 + raw.size] = raw
    rec = SOFTMAX_RECORD.pack(multiplier=params.exp_multiplier, shift=params.exp_shift, valid_len=valid_len)
    mem[0x900:0x908] = np.frombuffer(rec, np.uint8)
    return mem


def _scores(m, n, bits, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if bits == 32:
        # real-model logits at 2^-16: a few units wide, plus the int32 extremes in the first row
        x = np.round(rng.normal(0, 3.0, (m, n)) / SCORE_SCALE).astype(np.int64)
        x[0, :2] = [lo, hi]
    else:
        x = rng.integers(lo, hi + 1, (m, n))
        x[0, :2] = [lo, hi]
    return x


@pytest.mark.parametrize("bits,q15,causal,pad", [(16, 1, 0, 0), (32, 1, 1, 0), (32, 1, 0, 1), (16, 0, 1, 1),
                                                 (8, 1, 0, 1), (32, 0, 0, 0)])
def test_wide_softmax_is_golden(bits, q15, causal, pad):
    m, n, offset, valid = 3, 11, 2 if causal else 0, 7
    scale = {8: 0.06, 16: 0.004, 32: SCORE_SCALE}[bits]
    params = softmax_params(scale, input_bits=bits)
    x = _scores(m, n, bits, seed=bits + 4 * q15 + 2 * causal + pad)
    flags = causal | {8: 0, 16: 1, 32: 2}[bits] << 1 | q15 << 3 | pad << 4
    out_bytes = 2 if q15 else 1
    res = run(CFG, _program(m, n, flags, offset, in_bytes=bits // 8, out_bytes=out_bytes),
              _memory(x, bits, params, valid if pad else 0), WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x1000:0x1000 + m * n * out_bytes].view("<i2" if q15 else np.uint8).reshape(m, n)
    mask = np.arange(n) >= valid if pad else None
    fn = softmax_q15 if q15 else softmax
    want = fn(x.astype(_DTYPE[bits]), params, causal=bool(causal), row_offset=offset, mask=mask)
    np.testing.assert_array_equal(got, want)
    if pad:
        assert not got[:, valid:].any()                        # padding keys get probability exactly 0
    if q15:
        assert abs(int(got[1].astype(np.int64).sum()) - (1 << 15)) <= n   # rows sum to 1.0 within rounding


def test_wide_rows_sit_at_the_word_stride_of_their_bytes():
    """n = 5 int32 scores are 20 bytes: rows 24 bytes apart in the scratchpad; the Q0.15 output rows 16 apart,
    their tails written 0."""
    m, n = 2, 5
    params = softmax_params(SCORE_SCALE, input_bits=32)
    x = _scores(m, n, 32, seed=3)
    prog = assemble(f"""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride=20 rows={m} row_bytes=20
    dma.load mem=spad local_addr=0xe00 ext_addr=0x900 ext_stride=8 rows=1 row_bytes=8
    fence load=0
    vec.softmax m={m} n={n} src_addr=0x0 dst_addr=0x600 param_page=0xe flags={4 | 8}
    fence vector=0
    dma.store mem=spad local_addr=0x600 ext_addr=0x1000 ext_stride=16 rows={m} row_bytes=16
    halt
    """)
    res = run(CFG, prog, _memory(x, 32, params), WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x1000:0x1020].view("<i2").reshape(m, 8)
    np.testing.assert_array_equal(got[:, :n], softmax_q15(x.astype(np.int32), params))
    assert not got[:, n:].any()


@pytest.mark.parametrize("flags,valid_len,src,code,addr", [
    (6, 0, 0x0, ErrorCode.ILLEGAL_INSTRUCTION, 0),          # score width code 3 is reserved
    (0x40, 0, 0x0, ErrorCode.ILLEGAL_INSTRUCTION, 0),       # bit 6 reserved
    (4 | 16, 0, 0x0, ErrorCode.BAD_PARAM, 0xe00),           # padding flag with valid_len 0: every column masked
    (4, 0, 0xf80, ErrorCode.LOCAL_RANGE, 0xf80),            # 3 rows x 48 bytes of int32 run past 4 KiB
])
def test_wide_softmax_errors(flags, valid_len, src, code, addr):
    params = softmax_params(SCORE_SCALE, input_bits=32)
    x = _scores(3, 11, 32, seed=1)
    res = run(CFG, _program(3, 11, flags, in_bytes=4, out_bytes=1, src=0x0) if src == 0 else assemble(f"""
    dma.load mem=spad local_addr=0xe00 ext_addr=0x900 ext_stride=8 rows=1 row_bytes=8
    fence load=0
    vec.softmax m=3 n=11 src_addr={src:#x} dst_addr=0x600 param_page=0xe flags={flags}
    halt
    """), _memory(x, 32, params, valid_len), WINDOW_ALL)
    assert res.status == code, (res.status, res.message)
    assert res.fault_addr == addr


def _residual_run(a, b, a_bits, b_bits, out_bits, mult, shift, *, b_mult=0):
    m, n = a.shape
    ea, eb, eo = a_bits // 8, b_bits // 8, out_bits // 8
    flags = 1 | {8: 0, 16: 1, 32: 2}[a_bits] << 1 | {8: 0, 16: 1, 32: 2}[b_bits] << 3 | (out_bits == 32) << 5
    mem = np.full(0x4000, 0x11, dtype=np.uint8)
    for at, x, bits in ((0x100, a, a_bits), (0x500, b, b_bits)):
        raw = np.ascontiguousarray(x.astype(_DTYPE[bits])).view(np.uint8).ravel()
        mem[at:at + raw.size] = raw
    mem[0x900:0x908] = pack_residual_params(mult, b_mult)
    prog = assemble(f"""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride={n * ea} rows={m} row_bytes={n * ea}
    dma.load mem=spad local_addr=0x300 ext_addr=0x500 ext_stride={n * eb} rows={m} row_bytes={n * eb}
    dma.load mem=spad local_addr=0xe00 ext_addr=0x900 ext_stride=8 rows=1 row_bytes=8
    fence load=0
    vec.residual m={m} n={n} src_addr=0x0 src2_addr=0x300 dst_addr=0x600 param_page=0xe flags={flags} imm={31 + shift}
    fence vector=0
    dma.store mem=spad local_addr=0x600 ext_addr=0x1000 ext_stride={n * eo} rows={m} row_bytes={n * eo}
    halt
    """)
    res = run(CFG, prog, mem, WINDOW_ALL)
    got = res.memory[0x1000:0x1000 + m * n * eo].view(_DTYPE[out_bits]).reshape(m, n)
    return res, got


@pytest.mark.parametrize("a_bits,b_bits,out_bits,conv", [
    (32, 32, 32, IDENTITY_REQUANT), (16, 32, 32, (1_700_000_000, -2)), (32, 16, 16, (1_100_000_000, 5)),
    (8, 16, 16, (1 << 30, -20)), (32, 32, 16, ((1 << 31) - 1, 31))])
def test_wide_residual_is_golden(a_bits, b_bits, out_bits, conv):
    rng = np.random.default_rng(a_bits + b_bits + out_bits)
    m, n = 3, 9
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (m, n))
    b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (m, n))
    a[0, :3] = [-(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1, (1 << (a_bits - 1)) - 1]
    b[0, :3] = [-(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1, -(1 << (b_bits - 1))]
    res, got = _residual_run(a, b, a_bits, b_bits, out_bits, *conv)
    assert res.ok, res.message
    np.testing.assert_array_equal(got, residual_add_wide(a, b, conv[0], conv[1], out_bits=out_bits))
    if conv == IDENTITY_REQUANT:
        np.testing.assert_array_equal(got, np.clip(a + b, -(1 << 31), (1 << 31) - 1))   # saturating int32 add


def test_wide_residual_bad_record():
    a = np.zeros((1, 4), np.int64)
    for mult, b_mult in (((1 << 30) - 1, 0), (1 << 30, 5)):
        res, _ = _residual_run(a, a, 32, 32, 32, mult, -1, b_mult=b_mult)
        assert (res.status, res.fault_addr) == (ErrorCode.BAD_PARAM, 0), res.message


@pytest.mark.parametrize("kind,flags", [("layernorm", 3), ("rmsnorm", 3), ("layernorm", 1), ("rmsnorm", 2)])
def test_wide_norm_is_golden(kind, flags):
    """vec.layernorm / vec.rmsnorm of int32 rows (flags bit 0: golden.models.intops.norm_wide with the block's eps
    table) or int8 rows, int16 (bit 1) or int8 outputs."""
    from npuforge.gen.isa.ops import pack_norm_params
    from npuforge.golden.models.intops import norm_wide, wide_norm_params
    from npuforge.golden.norms import layernorm, layernorm_params, rmsnorm, rmsnorm_params
    rng = np.random.default_rng(flags + len(kind))
    m, n = 3, 12
    wide, out_bits = flags & 1, 16 if flags & 2 else 8
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n)
    out_scale = 0.03 / (256 if out_bits == 16 else 1)
    if wide:
        x = rng.integers(-(1 << 31), 1 << 31, (m, n)) >> rng.integers(0, 20, (m, 1))
        x[0, 0] = -(1 << 31)
        build = (lambda s, **kw: layernorm_params(s, gamma, beta, out_scale, **kw)) if kind == "layernorm" else \
            (lambda s, **kw: rmsnorm_params(s, gamma, out_scale, **kw))
        params, eps = wide_norm_params(build, 2.0 ** -12, out_bits=out_bits)
        block, want = pack_norm_params(params, eps), norm_wide(x, params, eps)
    else:
        x = rng.integers(-128, 128, (m, n))
        params = (layernorm_params(0.05, gamma, beta, out_scale, out_bits=out_bits) if kind == "layernorm"
                  else rmsnorm_params(0.05, gamma, out_scale, out_bits=out_bits))
        block = pack_norm_params(params)
        want = (layernorm if kind == "layernorm" else rmsnorm)(x.astype(np.int8), params)
    ea, eo = (4 if wide else 1), out_bits // 8
    mem = np.full(0x4000, 0x11, dtype=np.uint8)
    raw = np.ascontiguousarray(x.astype(_DTYPE[32 if wide else 8])).view(np.uint8).ravel()
    mem[0x100:0x100 + raw.size] = raw
    mem[0x900:0x900 + block.size] = block
    prog = assemble(f"""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride={n * ea} rows={m} row_bytes={n * ea}
    dma.load mem=spad local_addr=0xc00 ext_addr=0x900 ext_stride={block.size} rows=1 row_bytes={block.size}
    fence load=0
    vec.{kind} m={m} n={n} src_addr=0x0 dst_addr=0x600 param_page=0xc flags={flags}
    fence vector=0
    dma.store mem=spad local_addr=0x600 ext_addr=0x1000 ext_stride={n * eo} rows={m} row_bytes={n * eo}
    halt
    """)
    from dataclasses import replace
    from npuforge.spec.isa import VEC_EXECUTABLE
    res = run(replace(CFG, vector_ops=VEC_EXECUTABLE), prog, mem, WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x1000:0x1000 + m * n * eo].view("<i2" if eo == 2 else np.int8).reshape(m, n)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("flags", [2, 3])
def test_interp_act_is_golden(flags):
    """vec.act flags bit 1: int16 rows through the 1025-entry interpolated table (golden.models.intops)."""
    from dataclasses import replace
    from npuforge.gen.isa.ops import operator
    from npuforge.golden.models.intops import gelu_float, interp_lookup, interp_table, silu_float
    table = interp_table(silu_float if flags & 1 else gelu_float, 1 / 2048, 1 / 4096)
    block = operator("act").block(table)
    assert block.size == 2050
    m, n = 2, 13
    x = np.random.default_rng(flags).integers(-32768, 32768, (m, n))
    x[0, :4] = [-32768, 32767, 0, -1]
    mem = np.full(0x4000, 0x11, dtype=np.uint8)
    raw = np.ascontiguousarray(x.astype("<i2")).view(np.uint8).ravel()
    mem[0x100:0x100 + raw.size] = raw
    mem[0x1800:0x1800 + block.size] = block
    prog = assemble(f"""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride={2 * n} rows={m} row_bytes={2 * n}
    dma.load mem=spad local_addr=0x400 ext_addr=0x1800 ext_stride={block.size} rows=1 row_bytes={block.size}
    fence load=0
    vec.act m={m} n={n} src_addr=0x0 dst_addr=0x200 param_page=0x4 flags={flags}
    fence vector=0
    dma.store mem=spad local_addr=0x200 ext_addr=0x1000 ext_stride={2 * n} rows={m} row_bytes={2 * n}
    halt
    """)
    res = run(CFG, prog, mem, WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x1000:0x1000 + 2 * m * n].view("<i2").reshape(m, n)
    np.testing.assert_array_equal(got, interp_lookup(x, table))
    # The 2050-byte table from the last page runs past the 4 KiB scratchpad.
    res = run(CFG, assemble(f"""
    vec.act m={m} n={n} src_addr=0x0 dst_addr=0x200 param_page=0xf flags={flags}
    halt
    """), mem, WINDOW_ALL)
    assert (res.status, res.fault_addr) == (ErrorCode.LOCAL_RANGE, 0xf00), res.message
