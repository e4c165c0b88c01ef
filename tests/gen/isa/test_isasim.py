"""ISA-level simulator on hand-written programs: results vs NumPy/golden computed here, every error status."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from npuforge.gen.isa.asm import assemble
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import (VEC_EXECUTABLE, DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, Nop, VecRequant, encode,
                     encode_program)
from npuforge.gen.isa.isasim import (Window, pack_norm_params, pack_requant_params, pack_rope_params, read_norm_header,
                        read_requant_params, read_rope_header, run)
from npuforge.golden.elementwise import rope, rope_table
from npuforge.golden.norms import LayerNormParams, RMSNormParams, layernorm, layernorm_params, rmsnorm, rmsnorm_params
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.requant import quantize_multipliers, requantize
from npuforge.golden.softmax import softmax, softmax_params
from tests.spec.test_isa import INSTRS
from tests.conftest import REPO

# 4x4 array, 64-bit AXI: scratchpad and accumulator rows on 8-byte words (the DMA's local word).
CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="both"), spad_bytes=4096, acc_bytes=1024, windows=4)
WINDOW_ALL = [Window(0, 0x1000)]
BITS = {"int8": (8, 8), "w4a8": (8, 4), "int4": (4, 4)}


def _pack(q: np.ndarray, bits: int) -> np.ndarray:
    """Row-major bytes of q; int4 two per byte along rows, element 2i in the low nibble (golden/quant.py)."""
    q = np.asarray(q, dtype=np.int64)
    if bits == 8:
        return q.astype(np.int8).view(np.uint8)
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), np.int64)], axis=1)
    return ((q[:, 0::2] & 0xF) | ((q[:, 1::2] & 0xF) << 4)).astype(np.uint8)


def _pack_a(a: np.ndarray, bits: int) -> np.ndarray:
    """A's layout: int8 rows; int4 row pairs, byte (p, j) = A[2p, j] low nibble | A[2p+1, j] high nibble."""
    return _pack(a, 8) if bits == 8 else np.ascontiguousarray(_pack(np.asarray(a).T, 4).T)


def _param_bytes(mult, shift) -> np.ndarray:
    """Requant records written out by hand: u64 LE, multiplier bits [0, 31), shift (7-bit two's compl.) [31, 38)."""
    out = bytearray()
    for mv, sv in zip(mult, shift):
        out += (int(mv) | ((int(sv) & 0x7F) << 31)).to_bytes(8, "little")
    return np.frombuffer(bytes(out), dtype=np.uint8)


def _gemm_program(mode: str, m: int, k: int, n: int, a_rows: int, b_row: int, zp: int, out16: int) -> str:
    ob = 2 if out16 else 1
    return f"""
    dma.load mem=spad local_addr=0x000 ext_addr=0x100 ext_stride={k} rows={a_rows} row_bytes={k}
    dma.load mem=spad local_addr=0x100 ext_addr=0x200 ext_stride={b_row} rows={k} row_bytes={b_row}
    dma.load mem=spad local_addr=0x200 ext_addr=0x300 ext_stride=0 rows=1 row_bytes={8 * n}
    fence load=0
    matmul mode={mode} dataflow=os accumulate=0 m={m} k={k} n={n} a_addr=0x0 b_addr=0x100 acc_addr=0x0
    fence matrix=0
    vec.requant m={m} n={n} src_addr=0x0 dst_addr=0x300 param_page=2 zero_point={zp} out16={out16}
    fence vector=0
    dma.store mem=spad local_addr=0x300 ext_addr=0x400 ext_stride={n * ob} rows={m} row_bytes={n * ob}
    halt
    """


@pytest.mark.parametrize("mode", list(BITS))
@pytest.mark.parametrize("out16,zp", [(0, 3), (1, -300)])
def test_hand_written_gemm(mode, out16, zp):
    rng = np.random.default_rng(7)
    a_bits, b_bits = BITS[mode]
    m, k, n = 3, 5, 6
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (m, k))
    b = rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (k, n))
    a[0, :] = -(1 << (a_bits - 1))  # directed extremes: most negative operands
    b[:, 0] = -(1 << (b_bits - 1))
    mult, shift = quantize_multipliers(rng.uniform(0.001, 0.05, n))
    shift[1] = 31 if not out16 else shift[1]  # edge of the shift window
    a_raw, b_raw = _pack_a(a, a_bits), _pack(b, b_bits)
    assert a_raw.shape == ((m + 1) // 2 if a_bits == 4 else m, k)
    mem = np.full(0x1000, 0x5A, dtype=np.uint8)
    mem[0x100:0x100 + a_raw.size] = a_raw.ravel()
    mem[0x200:0x200 + b_raw.size] = b_raw.ravel()
    mem[0x300:0x300 + 8 * n] = _param_bytes(mult, shift)
    prog = assemble(_gemm_program(mode, m, k, n, a_raw.shape[0], b_raw.shape[1], zp, out16))
    res = run(CFG, encode_program(prog), mem, WINDOW_ALL)
    assert res.status == ErrorCode.NONE, res.message
    assert res.pc == len(prog) - 1
    expected = requantize(a @ b, mult, shift, zero_point=zp, out_bits=16 if out16 else 8)
    ob = 2 if out16 else 1
    got = res.memory[0x400:0x400 + m * n * ob].view("<i2" if out16 else np.int8).reshape(m, n)
    np.testing.assert_array_equal(got, expected)
    untouched = np.ones(0x1000, bool)
    untouched[0x400:0x400 + m * n * ob] = False
    np.testing.assert_array_equal(res.memory[untouched], mem[untouched])
    assert res.stats["macs"] == m * k * n and res.stats[f"macs_{mode}"] == m * k * n
    assert res.stats["dma_load_bytes"] == a_raw.size + b_raw.size + 8 * n
    assert res.stats["dma_store_bytes"] == m * n * ob
    assert res.stats["vector_elements"] == m * n
    assert [t["op"] for t in res.trace if t["op"] != "fence"] == ["dma.load"] * 3 + ["matmul", "vec.requant",
                                                                                      "dma.store"]
    mm = next(t for t in res.trace if t["op"] == "matmul")
    assert (mm["unit"], mm["m"], mm["k"], mm["n"], mm["macs"], mm["mode"]) == ("matrix", m, k, n, m * k * n, mode)
    assert sum(t.get("bytes", 0) for t in res.trace if t["op"] == "dma.load") == res.stats["dma_load_bytes"]
    assert [t["pc"] for t in res.trace] == list(range(len(prog) - 1))  # every instruction but HALT


def _acc_after(program_text: str, mem: np.ndarray, m: int, n: int) -> np.ndarray:
    res = run(CFG, assemble(program_text), mem, WINDOW_ALL)
    assert res.ok, res.message
    return res.memory[0x800:0x800 + 4 * m * n].view("<i4").reshape(m, n)


def test_accumulate_overwrite_and_acc_dma():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (2, 3))
    b = rng.integers(-128, 128, (3, 4))
    mem = np.zeros(0x1000, np.uint8)
    mem[0x100:0x106] = _pack(a, 8).ravel()
    mem[0x200:0x20C] = _pack(b, 8).ravel()
    head = """
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride=3 rows=2 row_bytes=3
    dma.load mem=spad local_addr=0x40 ext_addr=0x200 ext_stride=4 rows=3 row_bytes=4
    fence load=0
    matmul mode=int8 dataflow=ws accumulate=0 m=2 k=3 n=4 a_addr=0x0 b_addr=0x40 acc_addr=0x20
    matmul mode=int8 dataflow=ws accumulate=1 m=2 k=3 n=4 a_addr=0x0 b_addr=0x40 acc_addr=0x20
    """
    tail = """
    fence matrix=0
    dma.store mem=acc local_addr=0x20 ext_addr=0x800 ext_stride=16 rows=2 row_bytes=16
    halt
    """
    np.testing.assert_array_equal(_acc_after(head + tail, mem, 2, 4), 2 * (a @ b))
    again = "matmul mode=int8 dataflow=ws accumulate=0 m=2 k=3 n=4 a_addr=0x0 b_addr=0x40 acc_addr=0x20\n"
    np.testing.assert_array_equal(_acc_after(head + again + tail, mem, 2, 4), a @ b)


def test_accumulator_wraps_like_int32_adder():
    """A bias preloaded into the accumulator by DMA, then accumulate: the int32 sum wraps (two's complement)."""
    mem = np.zeros(0x1000, np.uint8)
    mem[0x100] = 1          # A = [[1]]
    mem[0x200] = 5          # B = [[5]]
    mem[0x300:0x304] = np.frombuffer((2**31 - 3).to_bytes(4, "little"), np.uint8)
    text = """
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride=1 rows=1 row_bytes=1
    dma.load mem=spad local_addr=0x8 ext_addr=0x200 ext_stride=1 rows=1 row_bytes=1
    dma.load mem=acc local_addr=0x10 ext_addr=0x300 ext_stride=4 rows=1 row_bytes=4
    fence load=0
    matmul mode=int8 dataflow=ws accumulate=1 m=1 k=1 n=1 a_addr=0x0 b_addr=0x8 acc_addr=0x10
    fence matrix=0
    dma.store mem=acc local_addr=0x10 ext_addr=0x800 ext_stride=4 rows=1 row_bytes=4
    halt
    """
    res = run(CFG, assemble(text), mem, WINDOW_ALL)
    assert res.ok, res.message
    assert int(res.memory[0x800:0x804].view("<i4")[0]) == -(2**31) + 2


def test_dma_strides_padding_and_overlap():
    rng = np.random.default_rng(3)
    mem = rng.integers(0, 256, 0x1000).astype(np.uint8)
    text = """
    dma.load mem=spad local_addr=0x40 ext_addr=0x10 ext_stride=8 rows=4 row_bytes=8
    dma.load mem=spad local_addr=0x40 ext_addr=0x100 ext_stride=9 rows=4 row_bytes=5
    fence load=0
    dma.store mem=spad local_addr=0x40 ext_addr=0x600 ext_stride=11 rows=4 row_bytes=8
    dma.store mem=spad local_addr=0x40 ext_addr=0x700 ext_stride=2 rows=3 row_bytes=4
    halt
    """
    res = run(CFG, assemble(text), mem, WINDOW_ALL)
    assert res.ok, res.message
    # Local rows: 5 loaded bytes, then the rest of the 8-byte word written as 0 (the first load's bytes vanish).
    local = np.zeros((4, 8), np.uint8)
    for r in range(4):
        local[r, :5] = mem[0x100 + 9 * r:0x105 + 9 * r]
    np.testing.assert_array_equal(res.spad[0x40:0x60].reshape(4, 8), local)
    assert not res.spad[:0x40].any() and not res.spad[0x60:].any()
    expected = mem.copy()
    for r in range(4):
        expected[0x600 + 11 * r:0x608 + 11 * r] = local[r]
    for r in range(3):  # overlapping rows (stride 2 < 4 bytes): written in order, later rows win
        expected[0x700 + 2 * r:0x704 + 2 * r] = local[r, :4]
    np.testing.assert_array_equal(res.memory, expected)


def test_requant_records_pack_round_trip():
    mult = np.array([2**30, 2**31 - 1, 1234567890])
    shift = np.array([-30, 31, 0])
    raw = pack_requant_params(mult, shift)
    np.testing.assert_array_equal(raw, _param_bytes(mult, shift))
    m2, s2 = read_requant_params(raw)
    np.testing.assert_array_equal(m2, mult)
    np.testing.assert_array_equal(s2, shift)
    with pytest.raises(ValueError, match=r"multiplier must be in \[0, 2147483647\], got 2147483648"):
        pack_requant_params([2**31], [0])


# -- error statuses ------------------------------------------------------------------------------------------
STORE_A = DmaStore("spad", 0, 0x500, 4, 1, 4)
STORE_B = DmaStore("spad", 0, 0x600, 4, 1, 4)


def _mem():
    return np.full(0x1000, 0x11, dtype=np.uint8)


def _assert_fault(res, code, pc, addr=None):
    assert res.status == code, (res.status, res.message)
    assert res.pc == pc
    if addr is not None:
        assert res.fault_addr == addr, hex(res.fault_addr)


def test_illegal_instruction_stops_and_changes_nothing_after():
    for bad in (bytes(16), (0x01 | 1 << 8).to_bytes(4, "little") + bytes(12), b"\xee" + bytes(15)):
        prog = encode(STORE_A) + bad + encode(STORE_B) + encode(Halt())
        res = run(CFG, prog, _mem(), WINDOW_ALL)
        _assert_fault(res, ErrorCode.ILLEGAL_INSTRUCTION, 1)
        assert not res.memory[0x500:0x504].any()            # the store before the fault happened
        assert (res.memory[0x600:0x604] == 0x11).all()      # the one after did not


@pytest.mark.parametrize("text", [
    "vec.layernorm m=1 n=4 src_addr=0 dst_addr=0",
    "vec.rmsnorm m=1 n=4 src_addr=0 dst_addr=0",
    "vec.rope m=1 n=16 src_addr=0 dst_addr=0",
])
def test_norms_and_rope_are_illegal_unless_built(text):
    """The default NPU leaves layernorm / rmsnorm / rope out (build cost): ILLEGAL_INSTRUCTION."""
    res = run(CFG, assemble("nop\n" + text + "\nhalt"), _mem(), WINDOW_ALL)
    _assert_fault(res, ErrorCode.ILLEGAL_INSTRUCTION, 1)
    assert "not built" in res.message


@pytest.mark.parametrize("built,text", [
    ((), "vec.act m=1 n=4 src_addr=0 dst_addr=0x40"),
    (("act", "gate"), "vec.residual m=1 n=4 src_addr=0 dst_addr=0 src2_addr=0x40 imm=31"),
    (("residual",), "vec.gate m=1 n=4 src_addr=0 dst_addr=0 src2_addr=0x40"),
    (("act", "residual", "gate"), "vec.softmax m=1 n=4 src_addr=0 dst_addr=0x40"),
])
def test_vector_op_not_built_is_illegal(built, text):
    cfg = replace(CFG, vector_ops=built)
    res = run(cfg, assemble("nop\n" + text + "\nhalt"), _mem(), WINDOW_ALL)
    _assert_fault(res, ErrorCode.ILLEGAL_INSTRUCTION, 1)
    assert "not built" in res.message


# -- vector operators ---------------------------------------------------------------------------------------------
def _vec_mem(a, b, block):
    """A at ext 0x100, B at 0x300, the parameter block at 0x500 (rows packed), everything else 0x11."""
    mem = _mem()
    mem[0x100:0x100 + a.size] = np.asarray(a, np.int8).view(np.uint8).ravel()
    if b is not None:
        mem[0x300:0x300 + b.size] = np.asarray(b, np.int8).view(np.uint8).ravel()
    mem[0x500:0x500 + len(block)] = np.frombuffer(bytes(block), np.uint8)
    return mem


def _vec_text(op, m, n, *, flags=0, imm=0, src=0x0, src2=0x200, dst=0x400, page=0xa, nparam=8):
    two = op in ("residual", "gate")
    return f"""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride={n} rows={m} row_bytes={n}
    {"dma.load mem=spad local_addr=0x200 ext_addr=0x300 ext_stride=%d rows=%d row_bytes=%d" % (n, m, n) if two else "nop"}
    dma.load mem=spad local_addr=0xa00 ext_addr=0x500 ext_stride={nparam} rows=1 row_bytes={nparam}
    fence load=0
    vec.{op} m={m} n={n} src_addr={src:#x} dst_addr={dst:#x} src2_addr={src2 if two else 0:#x} param_page={page:#x} flags={flags} imm={imm}
    fence vector=0
    dma.store mem=spad local_addr={dst:#x} ext_addr=0x800 ext_stride={n} rows={m} row_bytes={n}
    halt
    """


def _edges(m, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, n))
    b = rng.integers(-128, 128, (m, n))
    a.flat[:6] = [-128, 127, 0, -8, 7, -128]
    b.flat[:6] = [-128, 127, 0, 7, -8, 127]
    return a, b


@pytest.mark.parametrize("func", [0, 1])
def test_vec_act_is_the_table_lookup(func):
    m, n = 3, 13                       # n not a multiple of the 8-byte word: the row tails are written 0
    a, _ = _edges(m, n, 1)
    table = np.random.default_rng(2).integers(-128, 128, 256).astype(np.int8)
    res = run(CFG, assemble(_vec_text("act", m, n, flags=func, nparam=256)), _vec_mem(a, None, table.tobytes()),
              WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x800:0x800 + m * n].view(np.int8).reshape(m, n)
    np.testing.assert_array_equal(got, table[a + 128])          # entry x + 128, by definition
    assert not res.spad[0x400:0x400 + m * 16].reshape(m, 16)[:, n:].any()
    assert res.stats["vec_act"] == 1 and res.stats["vector_elements"] == m * n
    assert res.trace[-3]["op"] == "vec.act"


def test_vec_residual_matches_the_formula():
    m, n = 2, 9
    a, b = _edges(m, n, 3)
    ma, mb, t = 1_500_000_000, 700_000_000, 32
    rec = (ma | mb << 31).to_bytes(8, "little")
    res = run(CFG, assemble(_vec_text("residual", m, n, imm=t)), _vec_mem(a, b, rec), WINDOW_ALL)
    assert res.ok, res.message
    want = np.clip((a * ma + b * mb + (1 << (t - 1))) >> t, -128, 127)
    np.testing.assert_array_equal(res.memory[0x800:0x800 + m * n].view(np.int8).reshape(m, n), want)


def test_vec_gate_matches_requantized_product():
    m, n = 2, 11
    a, b = _edges(m, n, 4)
    mult, shift = quantize_multipliers([1 / 300.0])
    rec = _param_bytes(mult, shift).tobytes()
    res = run(CFG, assemble(_vec_text("gate", m, n)), _vec_mem(a, b, rec), WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x800 + m * n].view(np.int8).reshape(m, n),
                                  requantize(a * b, int(mult[0]), int(shift[0])))


@pytest.mark.parametrize("causal,offset", [(0, 0), (1, 0), (1, 2)])
def test_vec_softmax_is_golden_softmax_of_int8_scores(causal, offset):
    m, n = 4, 10
    a, _ = _edges(m, n, 9)
    a[2, :] = 127                                            # a row of equal maxima
    a[3, :] = -128
    a[3, 5] = 127
    params = softmax_params(0.06, input_bits=8)
    rec = _param_bytes([params.exp_multiplier], [params.exp_shift]).tobytes()
    res = run(CFG, assemble(_vec_text("softmax", m, n, flags=causal, imm=offset)), _vec_mem(a, None, rec),
              WINDOW_ALL)
    assert res.ok, res.message
    got = res.memory[0x800:0x800 + m * n].reshape(m, n)        # uint8 probabilities, units of 1/255
    np.testing.assert_array_equal(got, softmax(a, params, causal=bool(causal), row_offset=offset))
    if causal:
        assert not got[0, offset + 1:].any()                    # masked columns are exactly 0
    assert res.stats["vec_softmax"] == 1


def test_vec_act_in_place():
    a, _ = _edges(1, 8, 5)
    table = np.arange(256, dtype=np.int64) - 128
    table = np.clip(-table, -128, 127).astype(np.int8)         # negation, saturating -(-128)
    res = run(CFG, assemble(_vec_text("act", 1, 8, dst=0x0, nparam=256)), _vec_mem(a, None, table.tobytes()),
              WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x808].view(np.int8), np.clip(-a[0], -128, 127))


_GOOD_GATE = _param_bytes(*quantize_multipliers([1 / 300.0])).tobytes()


@pytest.mark.parametrize("op,kw,block,code,addr", [
    ("act", dict(flags=4, nparam=256), bytes(256), ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("act", dict(imm=1, nparam=256), bytes(256), ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("act", dict(flags=0x80, nparam=256), bytes(256), ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("residual", dict(flags=2, imm=3), bytes(8), ErrorCode.ILLEGAL_INSTRUCTION, 0),     # width bits without bit 0
    ("residual", dict(flags=0x41, imm=3), bytes(8), ErrorCode.ILLEGAL_INSTRUCTION, 0),  # wide, reserved bit 6
    ("residual", dict(flags=0x7, imm=3), bytes(8), ErrorCode.ILLEGAL_INSTRUCTION, 0),   # wide, src width code 3
    ("residual", dict(flags=1, imm=3), bytes(8), ErrorCode.BAD_PARAM, 0),               # wide, a_multiplier 0
    ("gate", dict(imm=1), _GOOD_GATE, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("act", dict(src=0x4, nparam=256), bytes(256), ErrorCode.LOCAL_RANGE, 0x4),
    ("residual", dict(src2=0xff8, imm=3), bytes(8), ErrorCode.LOCAL_RANGE, 0xff8),
    ("gate", dict(dst=0xffc), _GOOD_GATE, ErrorCode.LOCAL_RANGE, 0xffc),
    ("gate", dict(page=0x10), _GOOD_GATE, ErrorCode.LOCAL_RANGE, 0x1000),
    ("act", dict(page=0x10, nparam=256), bytes(256), ErrorCode.LOCAL_RANGE, 0x1000),    # table past 4 KiB
    ("residual", dict(imm=0), bytes(8), ErrorCode.BAD_PARAM, 0),
    ("residual", dict(imm=63), bytes(8), ErrorCode.BAD_PARAM, 0),
    ("residual", dict(imm=-1), bytes(8), ErrorCode.BAD_PARAM, 0),
    ("gate", dict(), _param_bytes([(1 << 30) - 1], [0]).tobytes(), ErrorCode.BAD_PARAM, 0xa00),
    ("gate", dict(), _param_bytes([1 << 30], [32]).tobytes(), ErrorCode.BAD_PARAM, 0xa00),
    ("gate", dict(), _param_bytes([1 << 30], [-31]).tobytes(), ErrorCode.BAD_PARAM, 0xa00),
    ("softmax", dict(flags=0x20), _GOOD_GATE, ErrorCode.ILLEGAL_INSTRUCTION, 0),    # reserved flag bit 5
    ("softmax", dict(flags=6), _GOOD_GATE, ErrorCode.ILLEGAL_INSTRUCTION, 0),       # reserved score width code 3
    ("softmax", dict(imm=1), _GOOD_GATE, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("softmax", dict(flags=1, imm=-2), _GOOD_GATE, ErrorCode.ILLEGAL_INSTRUCTION, 0),
    ("softmax", dict(dst=0x3), _GOOD_GATE, ErrorCode.LOCAL_RANGE, 0x3),
    ("softmax", dict(), _param_bytes([5], [0]).tobytes(), ErrorCode.BAD_PARAM, 0xa00),
])
def test_vec_errors(op, kw, block, code, addr):
    a, b = _edges(2, 8, 6)
    prog = assemble(_vec_text(op, 2, 8, **kw))
    res = run(CFG, prog, _vec_mem(a, b if op in ("residual", "gate") else None, block), WINDOW_ALL)
    _assert_fault(res, code, 4, addr)
    assert (res.memory[0x800:0x810] == 0x11).all()             # nothing after the fault ran


def test_vec_table_on_the_last_page():
    """A table ending exactly at the end of the scratchpad is legal (page 0xf of 4 KiB)."""
    a, _ = _edges(1, 8, 7)
    table = np.random.default_rng(8).integers(-128, 128, 256).astype(np.int8)
    text = _vec_text("act", 1, 8, nparam=256).replace("local_addr=0xa00", "local_addr=0xf00")
    res = run(CFG, assemble(text.replace("param_page=0xa", "param_page=0xf")), _vec_mem(a, None, table.tobytes()),
              WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x800:0x808].view(np.int8), table[a[0] + 128])


def test_vec_hazard_without_fence():
    prog = assemble("""
    dma.load mem=spad local_addr=0x0 ext_addr=0x100 ext_stride=8 rows=1 row_bytes=8
    vec.act m=1 n=8 src_addr=0x0 dst_addr=0x400 param_page=0xa
    halt""")
    res = run(CFG, prog, _mem(), WINDOW_ALL)
    _assert_fault(res, ErrorCode.HAZARD, 1, 0)


@pytest.mark.parametrize("cfg,mode,dataflow", [
    (NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8",))), "int4", "ws"),
    (NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=("int8",))), "w4a8", "ws"),
    (NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="ws")), "int8", "os"),
])
def test_unbuilt_mode_or_dataflow_is_illegal(cfg, mode, dataflow):
    res = run(cfg, [MatMul(mode, dataflow, 0, 1, 1, 1, 0, 0x40, 0), Halt()], _mem(), WINDOW_ALL)
    _assert_fault(res, ErrorCode.ILLEGAL_INSTRUCTION, 0)


@pytest.mark.parametrize("instr,windows,addr", [
    # nothing mapped at the address
    (DmaLoad("spad", 0, 0x900, 16, 1, 16), [Window(0, 0x800)], 0x900),
    # starts inside, ends outside: the last byte of the extent is reported
    (DmaLoad("spad", 0, 0x7F0, 0x10, 2, 16), [Window(0, 0x800)], 0x80F),
    # the extent spans two windows: refused (one window must hold the whole command)
    (DmaLoad("spad", 0, 0x7F8, 16, 1, 16), [Window(0, 0x800), Window(0x800, 0x800)], 0x807),
    # permission: a store into a read-only window, a load from a write-only one
    (DmaStore("spad", 0, 0x100, 4, 1, 4), [Window(0, 0x1000, read=True, write=False)], 0x100),
    (DmaLoad("spad", 0, 0x100, 4, 1, 4), [Window(0, 0x1000, read=False, write=True)], 0x100),
    # no windows programmed at all
    (DmaLoad("spad", 0, 0x0, 4, 1, 4), [], 0x0),
    # the extent does not wrap around the 32-bit space into a window
    (DmaLoad("spad", 0, 0xFFFFFFF0, 16, 2, 16), [Window(0, 0x1000)], 0xFFFFFFF0),
    # (row 1 would sit at 0xF0 modulo 2^32; the reported last byte is taken modulo 2^32)
    (DmaLoad("spad", 0, 0xFF0, 0xFFFFF100, 2, 16), [Window(0, 0x1000)], 0xFF),
])
def test_dma_window_fault(instr, windows, addr):
    mem = _mem()
    res = run(CFG, [Nop(), instr, Halt()], mem, windows)
    _assert_fault(res, ErrorCode.DMA_WINDOW, 1, addr)
    assert not res.spad.any()                       # refused before any transfer
    np.testing.assert_array_equal(res.memory, mem)


def test_dma_window_exact_fit_and_bus_error():
    ok = run(CFG, [DmaLoad("spad", 0, 0x7F0, 8, 2, 8), Halt()], _mem(), [Window(0x7F0, 0x10)])
    assert ok.ok, ok.message
    # A window larger than the memory behind it: the bus answers with an error.
    res = run(CFG, [DmaLoad("spad", 0, 0xFF8, 8, 2, 8), Halt()], _mem(), [Window(0, 0x10000)])
    _assert_fault(res, ErrorCode.BUS_ERROR, 0, 0x1000)


@pytest.mark.parametrize("instr,addr", [
    (DmaLoad("spad", 0x4, 0, 4, 1, 4), 0x4),                     # not on the 8-byte scratchpad word
    (DmaLoad("acc", 0x4, 0, 4, 1, 4), 0x4),                      # not on the 8-byte accumulator word
    (DmaLoad("spad", 0xFF8, 0, 9, 1, 9), 0xFF8),                 # 9 bytes -> 16-byte local row, past the end
    (DmaStore("acc", 0x3F0, 0, 32, 3, 4), 0x3F0),                # 3 rows x 8 bytes from 0x3f0
    (MatMul("int8", "ws", 0, 1, 1, 1, 0x3, 0x0, 0x0), 0x3),
    (MatMul("int8", "ws", 0, 1, 600, 1, 0x0, 0x0, 0x0), 0x0),     # B: 600 rows x 8 bytes
    (MatMul("int8", "ws", 0, 65, 1, 4, 0x0, 0x0, 0x8), 0x8),      # acc: 65 rows x 16 bytes from 0x8
    (VecRequant(m=1, n=40, src_addr=0, dst_addr=0, param_page=15), 0xF00),  # 320 bytes of records
    (VecRequant(m=1, n=4, src_addr=0x10, dst_addr=0x5, param_page=0), 0x5),
])
def test_local_range_fault(instr, addr):
    mem = _mem()
    res = run(CFG, [instr, Halt()], mem, WINDOW_ALL)
    _assert_fault(res, ErrorCode.LOCAL_RANGE, 0, addr)


@pytest.mark.parametrize("mult,shift,zp,out16,pattern", [
    (2**30 - 1, 0, 0, 0, "multiplier 1073741823"),
    (2**30, 32, 0, 0, "shift 32"),
    (2**30, -31, 0, 0, "shift -31"),
    (2**30, 0, 128, 0, "zero_point 128"),
    (2**30, 0, -129, 0, "zero_point -129"),
])
def test_bad_requant_param(mult, shift, zp, out16, pattern):
    mem = _mem()
    mem[0x100:0x108] = _param_bytes([mult], [shift])
    prog = [DmaLoad("spad", 0x100, 0x100, 8, 1, 8), Fence(load=0),
            VecRequant(m=1, n=1, src_addr=0, dst_addr=0, param_page=1, zero_point=zp, out16=out16), Halt()]
    res = run(CFG, prog, mem, WINDOW_ALL)
    _assert_fault(res, ErrorCode.BAD_PARAM, 2)
    assert pattern in res.message
    good = run(CFG, prog[:2] + [VecRequant(m=1, n=1, src_addr=0, dst_addr=0, param_page=1, zero_point=zp,
                                           out16=1), Halt()], mem, WINDOW_ALL)
    assert good.ok == (zp in (128, -129)), good.message  # int16 output accepts those zero points


def test_program_overrun():
    res = run(CFG, [Nop(), STORE_A], _mem(), WINDOW_ALL)
    _assert_fault(res, ErrorCode.PROGRAM_OVERRUN, 2)
    assert not res.memory[0x500:0x504].any()


# -- hazards: the concurrency contract the controller relies on ------------------------------------------------
LOAD_X = DmaLoad("spad", 0x000, 0x100, 8, 4, 8)   # spad [0x000, 0x020)
LOAD_Y = DmaLoad("spad", 0x100, 0x100, 8, 4, 8)   # spad [0x100, 0x120)
MM_X = MatMul("int8", "ws", 0, 1, 4, 4, 0x000, 0x000, 0x000)   # reads X (A and B), writes acc [0, 0x10)
MM_Y = MatMul("int8", "ws", 0, 1, 4, 4, 0x100, 0x100, 0x100)   # reads Y, writes acc [0x100, 0x110)


@pytest.mark.parametrize("prog,ok", [
    ([LOAD_X, MM_X], False),                                  # RAW: matmul reads while the load may still run
    ([LOAD_X, Fence(load=0), MM_X], True),
    ([LOAD_X, LOAD_Y, Fence(load=1), MM_X], True),            # load=1: the older load (X) is complete
    ([LOAD_X, LOAD_Y, Fence(load=1), MM_Y], False),           # ... but Y may still be in flight
    ([LOAD_X, Fence(load=0), MM_X, LOAD_X], False),           # WAR: load overwrites an operand in use
    ([LOAD_X, LOAD_Y, Fence(load=0), MM_X, MM_Y, Fence(matrix=1), LOAD_X], True),
    ([LOAD_X, LOAD_Y, Fence(load=0), MM_X, MM_Y, Fence(matrix=1), LOAD_Y], False),
    ([LOAD_X, Fence(load=0), MM_X, Fence(vector=0), LOAD_X], False),  # fencing the wrong unit does not help
    ([LOAD_X, Fence(load=0), MM_X, DmaStore("acc", 0, 0x800, 16, 1, 16)], False),
    ([LOAD_X, Fence(load=0), MM_X, Fence(matrix=0), DmaStore("acc", 0, 0x800, 16, 1, 16)], True),
    ([DmaStore("spad", 0, 0x800, 8, 1, 8), DmaLoad("spad", 0x40, 0x800, 8, 1, 8)], False),  # external RAW
    ([LOAD_X, LOAD_X], True),                                 # one unit is in order
])
def test_hazards(prog, ok):
    res = run(CFG, prog + [Halt()], _mem(), WINDOW_ALL)
    if ok:
        assert res.ok, res.message
    else:
        _assert_fault(res, ErrorCode.HAZARD, len(prog) - 1)
        assert run(CFG, prog + [Halt()], _mem(), WINDOW_ALL, check_hazards=False).ok


def test_run_input_errors():
    with pytest.raises(ValueError, match="this NPU has 4 address windows, got 5"):
        run(CFG, [Halt()], _mem(), [Window(0, 1)] * 5)
    with pytest.raises(ValueError, match="memory must be a 1-D uint8 array"):
        run(CFG, [Halt()], np.zeros(16, np.int32), WINDOW_ALL)
    with pytest.raises(ValueError, match="multiple of 16 bytes"):
        run(CFG, b"\x02" * 17, _mem(), WINDOW_ALL)
    with pytest.raises(ValueError, match=r"Window.size must be in"):
        Window(0xFFFFFF00, 0x200)
    mem = _mem()
    run(CFG, [STORE_A, Halt()], mem, WINDOW_ALL)
    assert (mem == 0x11).all()  # the caller's image is never modified


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(INSTRS.map(encode), st.binary(min_size=16, max_size=16)), max_size=8),
       st.booleans())
def test_no_exception_escapes(words, hazards):
    """Any command stream (random valid instructions and random words) ends with a status, never an exception."""
    res = run(CFG, b"".join(words), _mem(), [Window(0, 0x800, write=False), Window(0x800, 0x1000)],
              check_hazards=hazards)
    assert res.status in set(ErrorCode)
    assert 0 <= res.pc <= len(words)
    if res.status == ErrorCode.PROGRAM_OVERRUN:
        assert res.pc == len(words)


def test_program_list_must_hold_instructions():
    with pytest.raises(ValueError, match=r"program\[1\] is not an instruction: 'halt'"):
        run(CFG, [Nop(), "halt"], _mem(), WINDOW_ALL)


def test_docs_example_runs():
    """The assembly example of docs/isa.md computes the first 64 x 64 tile of requant(A @ B) on the default NPU."""
    from pathlib import Path
    block = (REPO / "docs" / "isa.md").read_text().split("```\n", 2)[1]
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (64, 384))
    b = rng.integers(-128, 128, (384, 384))
    mult, shift = quantize_multipliers(rng.uniform(1e-4, 1e-3, 384))
    mem = np.zeros(0x48000, np.uint8)
    mem[0x1000:0x1000 + a.size] = _pack(a, 8).ravel()
    mem[0x7000:0x7000 + b.size] = _pack(b, 8).ravel()
    mem[0x30000:0x30000 + 8 * 384] = _param_bytes(mult, shift)
    res = run(NPUConfig(), assemble(block), mem, [Window(0, 0x48000)])
    assert res.ok, res.message
    got = res.memory[0x40000:0x40000 + 64 * 384].view(np.int8).reshape(64, 384)[:, :64]
    np.testing.assert_array_equal(got, requantize(a @ b[:, :64], mult[:64], shift[:64]))


# -- VEC_REQUANT with a bias vector ---------------------------------------------------------------------------------
def test_requant_bias_faults_and_decode():
    mem = _mem()
    mem[0x100:0x108] = _param_bytes([2**30], [0])
    load = [DmaLoad("spad", 0x100, 0x100, 8, 1, 8), Fence(load=0)]
    # misaligned bias vector, and one running past the scratchpad: LOCAL_RANGE at bias_addr (before the records)
    for addr in (0x204, 0xFF8):
        res = run(CFG, load + [VecRequant(m=1, n=4, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=addr),
                               Halt()], mem, WINDOW_ALL)
        _assert_fault(res, ErrorCode.LOCAL_RANGE, 2, addr)
    # bias_addr without bias is a reserved encoding: the decoder refuses it (ILLEGAL_INSTRUCTION)
    with pytest.raises(ValueError, match="bias_addr must be 0"):
        VecRequant(m=1, n=1, src_addr=0, dst_addr=0, param_page=1, bias_addr=0x200)
    word = bytearray(encode(VecRequant(m=1, n=1, src_addr=0, dst_addr=0, param_page=1, bias=1, bias_addr=0x200)))
    word[1] &= ~0x02      # clear w0[9] (bias), keep bias_addr
    res = run(CFG, encode_program(load) + bytes(word) + encode(Halt()), mem, WINDOW_ALL)
    _assert_fault(res, ErrorCode.ILLEGAL_INSTRUCTION, 2)


def test_matmul_b_trans_reads_n_rows_of_k():
    """B^T [n, k]: n rows of k bytes at the word stride (LOCAL_RANGE when they pass the end where [k, n] would
    not), and the result is A @ (stored)^T."""
    mem = np.zeros(0x1000, np.uint8)
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (3, 5)).astype(np.int8)
    bt = rng.integers(-128, 128, (6, 5)).astype(np.int8)
    mem[0x100:0x100 + 24].reshape(3, 8)[:, :5] = a.view(np.uint8)
    mem[0x200:0x200 + 48].reshape(6, 8)[:, :5] = bt.view(np.uint8)
    prog = [DmaLoad("spad", 0, 0x100, 8, 3, 8), DmaLoad("spad", 0x100, 0x200, 8, 6, 8), Fence(load=0),
            MatMul("int8", "ws", 0, 3, 5, 6, 0, 0x100, 0, b_trans=1), Fence(matrix=0),
            DmaStore("acc", 0, 0x400, 24, 3, 24), Halt()]
    res = run(CFG, prog, mem, WINDOW_ALL)
    assert res.ok, res.message
    np.testing.assert_array_equal(res.memory[0x400:0x400 + 72].view("<i4").reshape(3, 6),
                                  a.astype(np.int64) @ bt.T.astype(np.int64))
    # 6 rows x 8 bytes from 0xFD8 run past the 4 KiB scratchpad; the same MATMUL without b_trans (5 rows) fits
    past = run(CFG, [MatMul("int8", "ws", 0, 1, 5, 6, 0, 0xFD8, 0, b_trans=1), Halt()], mem, WINDOW_ALL)
    _assert_fault(past, ErrorCode.LOCAL_RANGE, 0, 0xFD8)
    assert run(CFG, [MatMul("int8", "ws", 0, 1, 5, 6, 0, 0xFD8, 0), Halt()], mem, WINDOW_ALL).ok
