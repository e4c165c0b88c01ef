"""The -pt additions (issue #13) in the ISA simulator and the layer builder, against the golden functions called
directly: vec.gate flags 5 (the exact int32 product of int16 operands), vec.rmsnorm flags 7 (the token scale only:
``golden.models.intops.token_shift(x, 16)`` and the k_r bytes), VEC_REQUANT.row_shift (``requant_wide(acc, M,
shift - k)``, int32 and 48-bit inputs), their fault cases, and the chain gate product -> token scale -> block-scaled
GEMM with row_shift against ``golden.models.qlinear.linear_apply(x, lin, token_bits=16)``."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.isasim import run
from npuforge.gen.isa.layout import Window, pack_requant_params
from npuforge.gen.perf.program import REQUANT_ROW_SHIFT, instruction_cycles
from npuforge.golden.models.intops import requant_wide, token_shift
from npuforge.spec.isa import VEC_EXECUTABLE, DmaLoad, DmaStore, ErrorCode, Fence, Halt, VecOp, VecRequant
from npuforge.spec.vector_ops import GATE_PRODUCT_FLAGS, RMSNORM_FLAGS
from tests.gen.isa.pt_chain import dram_image, le_bytes, pt_down_program

CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=8192, spad_banks=1, acc_bytes=4096, axi_data_bits=64,
                vector_ops=VEC_EXECUTABLE)
WINDOW = [Window(0, 0x8000)]
A_EXT, B_EXT, P_EXT, K_EXT, C_EXT = 0x100, 0x1100, 0x2100, 0x2f00, 0x5000


def _read(res, addr: int, shape, dtype) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return res.memory[addr:addr + n].view(dtype).reshape(shape)


# -- vec.gate flags 5: the exact int32 product ---------------------------------------------------------------------
def _int16_pair(m, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-32768, 32768, (2, m, n))
    a[0, :6] = [-32768, -32768, 32767, 32767, 0, -1]
    b[0, :6] = [-32768, 32767, -32768, 32767, -32768, 1]      # 2^30 (the largest product), -2^30 + 2^15, ...
    return a.astype(np.int16), b.astype(np.int16)


@pytest.mark.parametrize("m,n", [(3, 21), (1, 64), (5, 8)])
def test_gate_product_is_exact(m, n):
    a, b = _int16_pair(m, n, seed=n)
    mem = dram_image(0x8000, a=(A_EXT, le_bytes(a)), b=(B_EXT, le_bytes(b)))
    prog = [DmaLoad("spad", 0, A_EXT, 2 * n, m, 2 * n), DmaLoad("spad", 0x800, B_EXT, 2 * n, m, 2 * n), Fence(load=0),
            # param_page past the scratchpad: the product reads no block, so it is never checked
            VecOp("gate", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x800, flags=GATE_PRODUCT_FLAGS,
                  param_page=4095),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, 4 * n, m, 4 * n), Halt()]
    res = run(CFG, prog, mem, WINDOW)
    assert res.ok, res.message
    np.testing.assert_array_equal(_read(res, C_EXT, (m, n), "<i4"), a.astype(np.int64) * b)
    row = -(-4 * n // 8) * 8       # int32 rows at the scratchpad-word stride, tails written 0
    assert not res.spad[0x1000 + 4 * n:0x1000 + row].any()


# -- vec.rmsnorm flags 7: the token scale only ---------------------------------------------------------------------
def _token_rows(n: int) -> np.ndarray:
    """int32 rows whose k_r covers 0..17: -2^31 (k 17), zeros, |x| <= 2^15 - 1 (k 0), 2^15 (k 1), rounding ties
    (3 * 2^(k-1)) and random products of two int16 (k up to 16)."""
    rng = np.random.default_rng(n)
    x = rng.integers(-(1 << 30), (1 << 30) + 1, (8, n))
    x[0, 0] = -(1 << 31)
    x[1] = 0
    x[2] = rng.integers(-32767, 32768, n)
    x[2, 0] = 32767
    x[3, :] = 5
    x[3, 0] = 32768
    x[4] = 3 << 9
    x[4, 1] = -(3 << 9)
    x[4, 2] = 1 << 24
    x[5] = rng.integers(-(1 << 20), 1 << 20, n)
    return x.astype(np.int32)


@pytest.mark.parametrize("n", [16, 40])
def test_token_scale_is_token_shift(n):
    x = _token_rows(n)
    m = x.shape[0]
    mem = dram_image(0x8000, x=(A_EXT, le_bytes(x)), k=(K_EXT, np.full(16, 0x5A, dtype=np.uint8)))
    prog = [DmaLoad("spad", 0, A_EXT, 4 * n, m, 4 * n), DmaLoad("spad", 0x1800, K_EXT, 16, 1, 16), Fence(load=0),
            VecOp("rmsnorm", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x1800, flags=RMSNORM_FLAGS),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, 2 * n, m, 2 * n),
            DmaStore("spad", 0x1800, C_EXT + 0x800, 16, 1, 16), Halt()]
    res = run(CFG, prog, mem, WINDOW)
    assert res.ok, res.message
    y, k = token_shift(x, 16)
    np.testing.assert_array_equal(_read(res, C_EXT, (m, n), "<i2"), y)
    got_k = res.memory[C_EXT + 0x800:C_EXT + 0x810]
    np.testing.assert_array_equal(got_k[:m], k.ravel())
    assert list(k.ravel()[:5]) == [17, 0, 0, 1, 10]
    assert (got_k[m:] == 0x5A).all()            # only the m bytes k_r are written


@pytest.mark.parametrize("fields,cfg,code,addr", [
    (dict(src2_addr=0x1801), CFG, ErrorCode.LOCAL_RANGE, 0x1801),      # k_r bytes misaligned
    (dict(src2_addr=8192), CFG, ErrorCode.LOCAL_RANGE, 8192),           # k_r bytes past the scratchpad
    (dict(param_page=1), CFG, ErrorCode.ILLEGAL_INSTRUCTION, 0),        # no block: param_page must be 0
    (dict(imm=2), CFG, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    (dict(flags=5), CFG, ErrorCode.ILLEGAL_INSTRUCTION, 0),              # bit 2 needs bits 0 and 1
    ({}, NPUConfig(array=ArrayConfig(rows=4, cols=4), spad_bytes=8192, spad_banks=1, acc_bytes=4096),
     ErrorCode.ILLEGAL_INSTRUCTION, 0),                                  # rmsnorm not built
])
def test_token_scale_faults(fields, cfg, code, addr):
    x = _token_rows(16)
    instr = dict(m=8, n=16, src_addr=0, dst_addr=0x1000, src2_addr=0x1800, flags=RMSNORM_FLAGS)
    prog = [DmaLoad("spad", 0, A_EXT, 64, 8, 64), Fence(load=0), VecOp("rmsnorm", **{**instr, **fields}), Halt()]
    res = run(cfg, prog, dram_image(0x8000, x=(A_EXT, le_bytes(x))), WINDOW)
    assert (res.status, res.pc, res.fault_addr) == (code, 2, addr), res.message


# -- VEC_REQUANT.row_shift -----------------------------------------------------------------------------------------
def _requant_run(acc, mult, shift, k, *, out_bits=16, k_addr=0x1800, page=0x14, m=None, extra=()):
    m = acc.shape[0] if m is None else m
    n = acc.shape[1]
    ob = out_bits // 8
    mem = dram_image(0x8000, acc=(A_EXT, le_bytes(acc.astype(np.int32))), p=(P_EXT, pack_requant_params(mult, shift)),
                  k=(K_EXT, np.asarray(k, dtype=np.uint8)))
    prog = [DmaLoad("acc", 0, A_EXT, 4 * n, acc.shape[0], 4 * n),
            DmaLoad("spad", page * 256, P_EXT, 8 * n, 1, 8 * n), *extra,
            DmaLoad("spad", 0x1800, K_EXT, len(k), 1, len(k)), Fence(load=0),
            VecRequant(m, n, 0, 0x1000, page, row_shift=1, bias_addr=k_addr, out16=int(out_bits == 16),
                       out32=int(out_bits == 32)),
            Fence(vector=0), DmaStore("spad", 0x1000, C_EXT, ob * n, m, ob * n), Halt()]
    res = run(CFG, prog, mem, WINDOW)
    got = _read(res, C_EXT, (m, n), {1: np.int8, 2: "<i2", 4: "<i4"}[ob]) if res.ok else None
    return got, res


@pytest.mark.parametrize("out_bits", [8, 16, 32])
def test_requant_row_shift_is_requant_wide_minus_k(out_bits):
    rng = np.random.default_rng(out_bits)
    m, n = 17, 12
    acc = rng.integers(-(1 << 31), 1 << 31, (m, n))
    acc[0, :3] = [-(1 << 31), (1 << 31) - 1, 0]
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[0] = (1 << 31) - 1
    shift = rng.integers(-14, 32, n)
    shift[:2] = [-14, 31]                     # with k = 16: total shifts 1 and 46
    k = np.arange(m) % 17                     # 0..16
    got, res = _requant_run(acc, mult, shift, k, out_bits=out_bits)
    assert res.ok, res.message
    want = requant_wide(acc, mult, shift[None, :] - k[:, None], out_bits=out_bits)
    np.testing.assert_array_equal(got, want)
    # the cycle model prices the k_r bytes' reads: REQUANT_ROW_SHIFT cycles per scratchpad word (fitted on the RTL)
    plain = VecRequant(m, n, 0, 0x1000, 0x10, out16=int(out_bits == 16), out32=int(out_bits == 32))
    shifted = VecRequant(m, n, 0, 0x1000, 0x10, out16=int(out_bits == 16), out32=int(out_bits == 32), row_shift=1,
                         bias_addr=0x1800)
    assert instruction_cycles(shifted, CFG) - instruction_cycles(plain, CFG) == REQUANT_ROW_SHIFT * -(-m // 8)


@pytest.mark.parametrize("case,code,addr", [
    ("k17", ErrorCode.BAD_PARAM, 0x1800 + 3),          # k_r > 16
    ("t0", ErrorCode.BAD_PARAM, 0x1800 + 5),           # 31 + shift - k = 0 in one channel
    ("misaligned", ErrorCode.LOCAL_RANGE, 0x1804),
    ("past_end", ErrorCode.LOCAL_RANGE, 8192),
    ("record_first", ErrorCode.BAD_PARAM, 0x14 * 256 + 8),   # a bad record is reported before the row shifts
    ("range_first", ErrorCode.LOCAL_RANGE, 0x1804),          # ... but after their LOCAL_RANGE (the bias vector's slot)
])
def test_requant_row_shift_faults(case, code, addr):
    m, n = 8, 4
    acc = np.arange(m * n).reshape(m, n) * 1000
    mult, shift = np.full(n, 1 << 30), np.array([0, 5, -15, 3])
    k = np.array([0, 1, 2, 17 if case == "k17" else 3, 15, 16, 0, 0])
    if case != "t0":
        shift[2] = -14
    if case in ("record_first", "range_first"):
        mult[1] = (1 << 30) - 1
        k[3] = 17
    k_addr = {"misaligned": 0x1804, "past_end": 8192, "range_first": 0x1804}.get(case, 0x1800)
    got, res = _requant_run(acc, mult, shift, k, k_addr=k_addr)
    assert (res.status, res.fault_addr) == (code, addr), res.message
    assert not res.spad[0x1000:0x1100].any()          # a faulting requant writes nothing


def test_requant_row_shift_decode_rules():
    with pytest.raises(ValueError, match="bias and row_shift are exclusive"):
        VecRequant(1, 1, 0, 0, 0, bias=1, row_shift=1, bias_addr=8)
    assert VecRequant(1, 1, 0, 0, 0, row_shift=1).bias_addr == 0       # k_r at scratchpad byte 0 is legal


# -- the -pt down projection as a layer program --------------------------------------------------------------------
PT_CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8", "w8a16", "w4a16")), spad_bytes=32768,
                   spad_banks=2, acc_bytes=8192, axi_data_bits=64, windows=2, vector_ops=VEC_EXECUTABLE,
                   block_scaled=True)


@pytest.mark.parametrize("weights", ["q4_1", "int8"])
def test_gate_product_token_scale_row_shift_chain_is_linear_apply(weights):
    """g = a * up (vec.gate flags 5), (g', k) = token_shift(g, 16) (vec.rmsnorm flags 7), y = requant_wide(g' @ W, M,
    shift - k) (VEC_REQUANT.row_shift; wide for the Q4_1 blocks): golden linear_apply(a * up, lin, token_bits=16)."""
    rng = np.random.default_rng(3)
    a, up = _int16_pair(9, 64, seed=11)
    a[1] = 0                                                  # a zero row: k = 0
    up[2] = rng.integers(-40, 40, 64)                        # a small row: k = 0, no shift
    prog, want = pt_down_program(PT_CFG, a, up, weights, rng)
    res = run(PT_CFG, prog.program_bytes, prog.image, prog.windows)
    assert res.ok, (res.status, res.message)
    ref = prog.reference()
    for name in ("g", "gs", "k", "y"):
        np.testing.assert_array_equal(prog.read(res.memory, name), ref[name], err_msg=name)
    np.testing.assert_array_equal(prog.read(res.memory, "y").view("<i4"), want)
    assert (np.abs(want) < (1 << 31) - 1).all() and np.abs(want).max() > 1 << 16     # not saturated, not tiny


def test_builder_refuses_bad_pt_operands():
    lb = LayerBuilder(PT_CFG)
    x = lb.constant("x", np.ones((4, 8), np.int64), 32)
    k = lb.buffer("k", 4, 1, 8)
    with pytest.raises(ValueError, match="token_scale takes an int32 src and an int16 dst"):
        lb.token_scale(x, lb.buffer("y8", 4, 8, 8), k)
    with pytest.raises(ValueError, match=r"row shifts must be an 8-bit \[4, 1\] tensor"):
        lb.token_scale(x, lb.buffer("y16", 4, 8, 16), lb.buffer("k2", 4, 2, 8))
    with pytest.raises(ValueError, match="writes k_r too: use token_scale"):
        lb.vector("rmsnorm", x, lb.buffer("y16b", 4, 8, 16), None, flags=RMSNORM_FLAGS)
    a16 = lb.constant("a16", np.ones((4, 8), np.int64), 16)
    with pytest.raises(ValueError, match="reads no parameter block"):
        from npuforge.golden.elementwise import GateParams
        lb.vector("gate", a16, lb.buffer("g", 4, 8, 32), GateParams(1 << 30, 0, out_bits=16), src2=a16,
                  flags=GATE_PRODUCT_FLAGS)
    with pytest.raises(ValueError, match="gemm reads 'k' before any operator writes it"):
        lb.gemm(a16, lb.constant("w", np.ones((8, 4), np.int64)), lb.buffer("o", 4, 4, 16), [1 << 30] * 4, [0] * 4,
                row_shift=k)


def test_cycle_model_of_the_pt_vector_forms():
    """The -pt vector forms in the cycle model (fitted on the RTL by pt-rtl): the gate product skips the record
    (GATE_PRODUCT_BASE) and writes int32 rows at a scratchpad word per cycle; the token scale is the wide norm
    without its block, statistics pass and division (NORM_TOKEN_CALC, NORM_TOKEN_ROW per row)."""
    from npuforge.gen.isa.op_cycles import GATE_PRODUCT_BASE, NORM_TOKEN_CALC, VEC_BASE
    m, n = 4, 64
    gate16 = VecOp("gate", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x800, flags=3)
    product = VecOp("gate", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x800, flags=GATE_PRODUCT_FLAGS)
    assert GATE_PRODUCT_BASE == VEC_BASE["gate"] - 3 and NORM_TOKEN_CALC >= 1
    words32 = -(-4 * n // CFG.spad_word_bytes)             # int32 rows: one scratchpad word per cycle
    assert instruction_cycles(product, CFG) >= m * words32
    assert instruction_cycles(product, CFG) > instruction_cycles(gate16, CFG)     # twice the result words
    wide = VecOp("rmsnorm", m=m, n=n, src_addr=0, dst_addr=0x1000, flags=3)
    token = VecOp("rmsnorm", m=m, n=n, src_addr=0, dst_addr=0x1000, src2_addr=0x1800, flags=RMSNORM_FLAGS)
    assert m * words32 < instruction_cycles(token, CFG) < instruction_cycles(wide, CFG) / 2
