"""Block-scaled MATMUL (MATMUL.blocks, VEC_REQUANT.wide; spec.block_scale) in the ISA tools, against the golden
integer path of the whole-model Linear layers (golden.models.qlinear: weight_from_blocks, linear_apply).

Weights: random Q4_1 blocks from ``blocks_q4_1`` of Gaussian weights (labelled random), Q8_0-style random int8
blocks, and real rows of the SmolLM2-135M checkpoint (its Q4_1 ``blk.0.ffn_down`` and Q8_0 ``token_embd``) with
random int16 activations. Checks: a hand-written program (assembler text: DMA the codes and the records into one
slot, MATMUL blocks=1, VEC_REQUANT wide=1), compiled GEMMs (K and N split into accumulate chains, ragged M, a
bias), layer programs with block-weight views, the 48-bit accumulator's wrap, the exact wide requant against Python
integers, and every illegal field / NPU combination (error status, nothing else).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.config.array import ArrayConfig, ConfigError
from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.asm import assemble
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.compiler import block_k_max, plan_gemm
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.isa.isasim import Window, requant_wide_exact, run, wide_acc_values
from npuforge.gen.isa.layout import (block_records_addr, pack_a_tile, pack_block_records, pack_block_weight,
                                     pack_requant_params, read_block_records)
from npuforge.gen.perf.cost import block_record_reads, matmul_cycles
from npuforge.golden.models.intops import exact_matmul, requant_wide
from npuforge.golden.models.qlinear import (BlockInts, blocks_q4_1, linear_apply, make_linear,
                                            weight_from_blocks)
from npuforge.golden.models.gguf_reader import NativeBlocks
from npuforge.spec.isa import ErrorCode, MatMul, VecRequant, decode, encode

PRECISIONS = ("int8", "w8a16", "w4a16")
CFG = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=PRECISIONS), spad_bytes=32768, spad_banks=2,
                acc_bytes=8192, axi_data_bits=64, windows=2, vector_ops=(), block_scaled=True)
PLAIN = NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=PRECISIONS), spad_bytes=32768, spad_banks=2,
                  acc_bytes=8192, axi_data_bits=64, windows=2, vector_ops=())


def _q4_1_weight(n: int, k: int, seed: int):
    """Random (Gaussian) weights in Q4_1 blocks, as golden's integer weight."""
    rng = np.random.default_rng(seed)
    return weight_from_blocks(blocks_q4_1(rng.normal(scale=0.05, size=(n, k)) + rng.normal(scale=0.01, size=(n, 1))))


def _q8_0_weight(n: int, k: int, seed: int):
    """Random Q8_0-style blocks (int8 q, f16 scales, no minimum), as golden's integer weight."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(1e-4, 2e-3, size=(n, k // 32)).astype(np.float16).astype(np.float64)
    q = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    return weight_from_blocks(NativeBlocks(kind="Q8_0", codes=q, d=d, m=np.zeros_like(d)))


def _linear(weight, seed: int, out_bits: int = 16, bias: bool = False):
    rng = np.random.default_rng(seed)
    n = weight.shape[0]
    b = rng.normal(scale=1e-5, size=n) if bias else None     # within int32 in accumulator units (VEC_REQUANT.bias)
    return make_linear(weight, b, in_scale=2.0 ** -12, out_scale=2.0 ** -8, out_bits=out_bits)


def _x(m: int, k: int, seed: int) -> np.ndarray:
    """Random int16 activations with both extremes present."""
    x = np.random.default_rng(seed).integers(-(1 << 15), 1 << 15, size=(m, k))
    x.flat[0], x.flat[-1] = -(1 << 15), (1 << 15) - 1
    return x


def _run_compiled(cfg, x, weight, lin, **kw):
    b = weight.blocks
    mode = "w4a16" if b.bits == 4 else "w8a16"
    comp = compile_gemm(cfg, x, b.s.T, lin.multiplier, lin.shift, mode=mode, out_bits=lin.out_bits,
                        bias=lin.bias, blocks=(b.d.T, b.o.T), **kw)
    res = run(cfg, comp.program_bytes, comp.image, comp.windows)
    assert res.status == ErrorCode.NONE, res.message
    return comp, comp.read_output(res.memory)


# -- records and images -------------------------------------------------------------------------------------------
def test_block_records_by_hand():
    raw = pack_block_records([[1, -2]], [[-32768, 32767]])
    assert raw.tolist() == [[0x01, 0x00, 0x00, 0x80, 0xFE, 0xFF, 0xFF, 0x7F]]
    d, o = read_block_records(raw, 2)
    assert d.tolist() == [[1, -2]] and o.tolist() == [[-32768, 32767]]
    with pytest.raises(ValueError, match=r"block d must be in \[-32768, 32767\] \(signed 16 bit\), got 32768"):
        pack_block_records([[32768]], [[0]])


def test_block_weight_image_by_hand():
    """Codes s^T row-major, int4 K-packed (byte (p, c) = s^T[2p, c] low nibble | s^T[2p + 1, c] high nibble);
    records [K/32, 4N] of D^T, O^T."""
    s = np.zeros((2, 32), dtype=np.int64)
    s[0, 0], s[1, 0], s[0, 31] = -8, 7, 3
    img = pack_block_weight(s, [[5], [-6]], [[100], [-100]], bits=4)
    assert img.codes.shape == (16, 2) and img.codes[0].tolist() == [0x08, 0x07] and img.codes[15, 0] == 0x30
    assert img.records.tolist() == [[5, 0, 100, 0, 0xFA, 0xFF, 0x9C, 0xFF]]
    assert img.shape == (32, 2)
    with pytest.raises(ValueError, match=r"s must be in \[-8, 7\] \(signed 4 bit\), got 15"):
        pack_block_weight(s + 8, [[5], [-6]], [[100], [-100]], bits=4)


def test_golden_block_ints_reproduce_the_integer_weight():
    w = _q4_1_weight(8, 64, seed=0)
    b = w.blocks
    assert b.bits == 4 and b.s.min() >= -8 and b.s.max() <= 7
    rebuilt = np.repeat(b.d, 32, axis=1) * b.s + np.repeat(b.o, 32, axis=1)
    assert np.array_equal(rebuilt, w.w_t.T)


# -- a hand-written program ---------------------------------------------------------------------------------------
def test_hand_written_program_equals_golden_linear():
    """x int16 [3, 64] @ Q4_1 W [8, 64]^T: codes at 0x800 and records right after them in the same slot."""
    m, k, n = 3, 64, 8
    w = _q4_1_weight(n, k, seed=1)
    lin = _linear(w, seed=1)
    x = _x(m, k, seed=1)
    img = pack_block_weight(w.blocks.s, w.blocks.d, w.blocks.o, bits=4)
    mem = np.zeros(0x4000, dtype=np.uint8)
    ext = {"x": 0x1000, "codes": 0x2000, "rec": 0x2800, "param": 0x3000, "out": 0x3800}
    a_raw = pack_a_tile(x, 16)
    mem[ext["x"]:ext["x"] + a_raw.size] = a_raw.ravel()
    mem[ext["codes"]:ext["codes"] + img.codes.size] = img.codes.ravel()
    mem[ext["rec"]:ext["rec"] + img.records.size] = img.records.ravel()
    par = pack_requant_params(lin.multiplier, lin.shift)
    mem[ext["param"]:ext["param"] + par.size] = par
    # codes (K-packed): 32 rows of 8 bytes at the 8-byte word stride = 256 bytes from 0x800, records from 0x900
    mm = MatMul("w4a16", "ws", 0, m, k, n, 0x0, 0x800, 0x0, blocks=1)
    assert block_records_addr(CFG, mm) == 0x900
    text = f"""
        dma.load mem=spad local_addr=0x0 ext_addr={ext['x']:#x} ext_stride=128 rows=3 row_bytes=128
        dma.load mem=spad local_addr=0x800 ext_addr={ext['codes']:#x} ext_stride=8 rows=32 row_bytes=8
        dma.load mem=spad local_addr=0x900 ext_addr={ext['rec']:#x} ext_stride=32 rows=2 row_bytes=32
        dma.load mem=spad local_addr=0x1000 ext_addr={ext['param']:#x} ext_stride=64 rows=1 row_bytes=64
        fence load=0
        matmul mode=w4a16 dataflow=ws accumulate=0 m=3 k=64 n=8 a_addr=0x0 b_addr=0x800 acc_addr=0x0 blocks=1
        fence matrix=0
        vec.requant m=3 n=8 src_addr=0x0 dst_addr=0x1800 param_page=16 out16=1 wide=1
        fence vector=0
        dma.store mem=spad local_addr=0x1800 ext_addr={ext['out']:#x} ext_stride=16 rows=3 row_bytes=16
        halt
    """
    res = run(CFG, assemble(text), mem, [Window(0x1000, 0x3000)])
    assert res.status == ErrorCode.NONE, res.message
    acc = wide_acc_values(res, CFG, 0, m, n)
    assert np.array_equal(acc, exact_matmul(x, w.w_t))
    assert np.abs(acc).max() >= 1 << 31          # the result needs the extension
    got = res.memory[ext["out"]:ext["out"] + 48].view("<i2").reshape(m, n)
    assert np.array_equal(got, linear_apply(x, lin))


def test_accumulate_adds_in_48_bits_and_wraps_mod_2_48():
    """Eight w8a16 block MATMULs into one accumulator (accumulate 0, then 1): the 48-bit sum, wrapped as the adder."""
    from npuforge.spec.isa import DmaLoad, Fence, Halt
    m, k, n = 1, 256, 4
    s = np.full((n, k), -128)
    d = np.full((n, k // 32), -32768)
    o = np.full((n, k // 32), -32768)
    img = pack_block_weight(s, d, o, bits=8)
    x = np.full((m, k), -32768)
    mem = np.zeros(0x4000, dtype=np.uint8)
    mem[0x1000:0x1200] = pack_a_tile(x, 16).ravel()
    mem[0x2000:0x2000 + img.codes.size] = img.codes.ravel()
    mem[0x3000:0x3000 + img.records.size] = img.records.ravel()
    mms = [MatMul("w8a16", "ws", int(i > 0), m, k, n, 0x0, 0x1000, 0x0, blocks=1) for i in range(8)]
    prog = [DmaLoad("spad", 0, 0x1000, 512, 1, 512), DmaLoad("spad", 0x1000, 0x2000, 4, k, 4),
            DmaLoad("spad", block_records_addr(CFG, mms[0]), 0x3000, 16, k // 32, 16), Fence(load=0)]
    res = run(CFG, prog + mms + [Halt()], mem, [Window(0x1000, 0x3000)])
    assert res.status == ErrorCode.NONE, res.message
    one = k * (-32768) * (-32768 * -128 + -32768)      # x . (D s + O) of one MATMUL, per column
    total = 8 * one
    wrapped = ((total + (1 << 47)) % (1 << 48)) - (1 << 47)
    assert total < -(1 << 47) and wrapped != total       # past 48 bits: the wrap shows
    assert wide_acc_values(res, CFG, 0, m, n).tolist() == [[wrapped] * n]


# -- compiled GEMMs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    dict(m=1, k=32, n=4, tiles=None),                       # one block, decode-like GEMV
    dict(m=7, k=96, n=10, tiles=(4, 32, 4)),                 # K and N split: accumulate chains, ragged M and N
    dict(m=5, k=128, n=6, tiles=(8, 64, 6), out_bits=8),
    dict(m=6, k=64, n=8, tiles=None, bias=True, out_bits=32),
])
@pytest.mark.parametrize("fmt", ["Q4_1", "Q8_0"])
def test_compiled_block_gemm_equals_golden_linear(case, fmt):
    seed = case["m"] * 100 + case["k"]
    w = (_q4_1_weight if fmt == "Q4_1" else _q8_0_weight)(case["n"], case["k"], seed)
    lin = _linear(w, seed, out_bits=case.get("out_bits", 16), bias=case.get("bias", False))
    x = _x(case["m"], case["k"], seed)
    comp, got = _run_compiled(CFG, x, w, lin, tiles=case["tiles"])
    assert np.array_equal(got, linear_apply(x, lin))
    assert np.array_equal(comp.expected, linear_apply(x, lin))
    mms = [i for i in comp.program if isinstance(i, MatMul)]
    assert all(i.blocks and i.k % 32 == 0 for i in mms)
    assert all(i.wide for i in comp.program if isinstance(i, VecRequant))
    if case["tiles"] and case["tiles"][1] < case["k"]:
        assert any(i.accumulate for i in mms)


def test_extreme_block_values_bit_exact():
    """D, O and x at their extremes (one block all -8 codes, one all 7), w4a16 and w8a16."""
    k, n = 64, 4
    for bits, lo, hi in ((4, -8, 7), (8, -128, 127)):
        s = np.concatenate([np.full((n, 32), lo), np.full((n, 32), hi)], axis=1)
        d = np.array([[-32768, 32767]] * n)
        o = np.array([[-32768, 32767]] * n) if bits == 4 else np.zeros((n, 2), np.int64)
        x = np.array([[-32768] * 32 + [32767] * 32, [32767] * 64, [-32768] * 64])
        w = np.repeat(d, 32, axis=1) * s + np.repeat(o, 32, axis=1)
        acc = exact_matmul(x, w.T)
        mult, shift = np.full(n, 1 << 30), np.full(n, 20)            # t = 51
        comp = compile_gemm(CFG, x, s.T, mult, shift, mode="w4a16" if bits == 4 else "w8a16", out_bits=32,
                            blocks=(d.T, o.T), tiles=(4, 32, 4))
        res = run(CFG, comp.program_bytes, comp.image, comp.windows)
        assert res.status == ErrorCode.NONE, res.message
        assert np.array_equal(comp.read_output(res.memory), requant_wide(acc, mult, shift, out_bits=32))


def test_real_smollm2_rows_bit_exact():
    """Real weights: 12 output rows of SmolLM2-135M's Q4_1 blk.0.ffn_down (K = 1536) and 8 rows of its Q8_0
    token_embd (the tied LM head, K = 576); activations random int16."""
    from npuforge.golden.models.assets import model_path
    from npuforge.golden.models.gguf_reader import native_blocks, read_gguf
    g = read_gguf(model_path("smollm2"))
    for name, rows, m in (("blk.0.ffn_down.weight", slice(100, 112), 3), ("token_embd.weight", slice(1000, 1008), 2)):
        nb = native_blocks(g, name)
        part = NativeBlocks(kind=nb.kind, codes=nb.codes[rows], d=nb.d[rows], m=nb.m[rows])
        w = weight_from_blocks(part)
        assert w.blocks.bits == (8 if nb.kind == "Q8_0" else 4)
        lin = _linear(w, seed=7)
        x = _x(m, w.shape[1], seed=7)
        _, got = _run_compiled(CFG, x, w, lin)
        assert np.array_equal(got, linear_apply(x, lin)), name


# -- layer programs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [4096, 5])
def test_layer_program_with_block_weight_views(chunk, monkeypatch):
    """Two block-scaled linears in one layer program: the whole weight, and a view of its second block row and
    last columns (records addressed at the view's block row / column), bit-exact against the golden reference
    (formed in column chunks of ``chunk``, as for a large LM head)."""
    import npuforge.gen.isa.layer_ir as layer_ir
    monkeypatch.setattr(layer_ir, "BLOCK_CHUNK", chunk)
    m, k, n = 5, 64, 12
    w = _q4_1_weight(n, k, seed=3)
    lin = _linear(w, seed=3)
    x = _x(m, k, seed=3)
    lb = LayerBuilder(CFG)
    xt = lb.constant("x", x, bits=16)
    wt = lb.block_weight("w", w)
    y = lb.buffer("y", m, n, bits=16)
    lb.gemm(xt, wt, y, lin.multiplier, lin.shift, name="lin")
    y2 = lb.buffer("y2", m, 6, bits=8)
    lb.gemm(xt.view(cols=slice(32, 64)), wt.view(rows=slice(32, 64), cols=slice(6, 12)), y2,
            lin.multiplier[6:], lin.shift[6:] + 3, name="part")
    prog = lb.build()
    ref = prog.reference()
    assert np.array_equal(ref["y"].view("<i2").reshape(m, n), linear_apply(x, lin))
    part = requant_wide(exact_matmul(x[:, 32:], w.w_t[32:, 6:]), lin.multiplier[6:], lin.shift[6:] + 3, out_bits=8)
    assert np.array_equal(ref["y2"].view(np.int8), part)
    res = run(CFG, prog.program_bytes, prog.image, prog.windows)
    assert res.status == ErrorCode.NONE, res.message
    for name in ("y", "y2"):
        assert np.array_equal(prog.read(res.memory, name), ref[name]), name


def test_builder_refuses_a_view_splitting_a_block():
    w = _q4_1_weight(4, 64, seed=4)
    lb = LayerBuilder(CFG)
    xt = lb.constant("x", _x(2, 16, 4), bits=16)
    wt = lb.block_weight("w", w)
    with pytest.raises(ValueError, match="whole 32-row blocks"):
        lb.gemm(xt, wt.view(rows=slice(16, 32)), lb.buffer("y", 2, 4, bits=16), np.full(4, 1 << 30),
                np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="weight_from_blocks"):
        lb.block_weight("v", object())


# -- the wide requant ---------------------------------------------------------------------------------------------
def test_requant_wide_exact_equals_python_integers_and_golden():
    rng = np.random.default_rng(5)
    n = 64
    acc = rng.integers(-(1 << 47), 1 << 47, size=(4, n))
    acc[0] = rng.integers(-(1 << 31), 1 << 31, size=n)                 # int32-sized rows too
    acc[1, :4] = [-(1 << 47) + 1, (1 << 47) - 1, 1 << 31, -(1 << 31)]
    mult = rng.integers(1 << 30, 1 << 31, size=n)
    shift = rng.integers(-30, 32, size=n)                               # t = 1..62, below 25 included
    bias = rng.integers(-(1 << 31), 1 << 31, size=n)
    for zp, bits in ((0, 8), (-7, 16), (1000, 32)):
        got = requant_wide_exact(acc, mult, shift, bias=bias, zero_point=zp, out_bits=bits)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        for i in range(acc.shape[0]):
            for c in range(n):
                v, t = int(acc[i, c]) + int(bias[c]), int(shift[c]) + 31
                want = min(max(((v * int(mult[c]) + (1 << (t - 1))) >> t) + zp, lo), hi)
                assert int(got[i, c]) == want, (i, c, zp, bits)
    ok = shift >= -6                                                     # golden's domain: t >= 25
    assert np.array_equal(requant_wide_exact(acc[:, ok], mult[ok], shift[ok], out_bits=16),
                          requant_wide(acc[:, ok], mult[ok], shift[ok], out_bits=16))


# -- legality -----------------------------------------------------------------------------------------------------
def test_encoding_round_trip_and_field_errors():
    mm = MatMul("w4a16", "ws", 1, 3, 64, 8, 0x40, 0x800, 0x100, blocks=1)
    assert decode(encode(mm)) == mm and int.from_bytes(encode(mm), "little") >> 14 & 1
    rq = VecRequant(m=2, n=8, src_addr=0, dst_addr=0x40, param_page=2, wide=1, bias=1, bias_addr=0x80)
    assert decode(encode(rq)) == rq and int.from_bytes(encode(rq), "little") >> 11 & 1
    base = int.from_bytes(encode(MatMul("w8a16", "ws", 0, 1, 32, 4, 0, 0x100, 0, blocks=1)), "little")
    for bad, msg in ((dict(mode="int8"), "needs mode w8a16 or w4a16"), (dict(k=48), "k a multiple of 32"),
                     (dict(dataflow="os"), "dataflow ws"), (dict(b_trans=1), "exclusive")):
        kw = dict(mode="w8a16", dataflow="ws", accumulate=0, m=1, k=32, n=4, a_addr=0, b_addr=0x100, acc_addr=0,
                  blocks=1) | bad
        with pytest.raises(ValueError, match=msg):
            MatMul(**kw)
    bad_k = base & ~(0xFFF << 52) | (33 << 52)          # k = 33 in w1[31:20]
    with pytest.raises(ValueError, match="k a multiple of 32"):
        decode(bad_k.to_bytes(16, "little"))


def _one(instr, cfg=CFG):
    from npuforge.spec.isa import Halt
    return run(cfg, [instr, Halt()], np.zeros(64, dtype=np.uint8), [])


def test_illegal_without_block_scaled_and_records_past_the_scratchpad():
    mm = MatMul("w4a16", "ws", 0, 1, 32, 4, 0, 0x100, 0, blocks=1)
    assert _one(mm, PLAIN).status == ErrorCode.ILLEGAL_INSTRUCTION
    assert _one(VecRequant(m=1, n=4, src_addr=0, dst_addr=0x40, param_page=2, wide=1), PLAIN).status == \
        ErrorCode.ILLEGAL_INSTRUCTION
    assert _one(mm).status == ErrorCode.NONE
    # K-packed codes (16 rows x 8-byte words = 128 bytes) fit at the end of the scratchpad; their record row does not
    end = MatMul("w4a16", "ws", 0, 1, 32, 4, 0, CFG.spad_bytes - 128, 0, blocks=1)
    res = _one(end)
    assert res.status == ErrorCode.LOCAL_RANGE and res.fault_addr == CFG.spad_bytes - 128
    assert _one(MatMul("w4a16", "ws", 0, 1, 32, 4, 0, CFG.spad_bytes - 264, 0, blocks=0)).status == ErrorCode.NONE


def test_config_checks():
    with pytest.raises(ConfigError, match="block_scaled needs array.rows dividing 32"):
        NPUConfig(array=ArrayConfig(rows=12, cols=4, precisions=PRECISIONS), block_scaled=True)
    with pytest.raises(ConfigError, match="block_scaled needs 4 \\* array.cols a multiple of the 32-byte"):
        NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=PRECISIONS), axi_data_bits=256, block_scaled=True)
    with pytest.raises(ConfigError, match="block_scaled needs w8a16 or w4a16"):
        NPUConfig(array=ArrayConfig(rows=4, cols=4), block_scaled=True)
    assert "block_scaled" not in PLAIN.to_dict() and CFG.to_dict()["block_scaled"] is True
    assert NPUConfig.from_json(CFG.to_json()) == CFG
    assert CFG.acc_ext_bytes == CFG.acc_bytes // 2 and PLAIN.acc_ext_bytes == 0


def test_plan_refuses_what_the_48_bit_accumulator_cannot_hold():
    assert block_k_max(4) >= 4095 and block_k_max(8) == 1016
    assert plan_gemm(CFG, 1, 992, 4, mode="w8a16", blocks=True, out_bits=16).k == 992
    with pytest.raises(ValueError, match=r"K must be in \[32, 1016\] for block-scaled w8a16"):
        plan_gemm(CFG, 1, 1024, 4, mode="w8a16", blocks=True)
    with pytest.raises(ValueError, match="needs mode w8a16 or w4a16 on an NPU built with block_scaled"):
        plan_gemm(PLAIN, 1, 64, 4, mode="w4a16", blocks=True)
    with pytest.raises(ValueError, match="K a multiple of 32"):
        plan_gemm(CFG, 1, 40, 4, mode="w4a16", blocks=True)
    with pytest.raises(ValueError, match="must be <= 2\\^47 - 1"):
        plan_gemm(CFG, 1, 64, 4, mode="w4a16", blocks=True, acc_bound=1 << 47)


def test_cycle_model_prices_the_record_reads():
    """A block's 4 records (16 bytes on the 4x4 array) load once per block of 32 K values per n-fold, with the
    block's first fold's weights: hidden under long activation streams, exposed in a GEMV. The K-packed codes load
    two K rows per weight beat (the array schedule with row pairs), so a block GEMV beats a plain w4a16 one."""
    from npuforge.gen.perf.cost import MATMUL_OVERHEAD
    from npuforge.gen.perf.model import gemm_cycles
    reads = block_record_reads(CFG)
    assert reads == -(-16 // (CFG.spad_word_bytes * CFG.spad_read_words))
    k, n = 128, 8
    block_folds = (k // 32) * (n // 4)
    for m in (1, 3, 40):
        paired = gemm_cycles(CFG.array, m, k, n, mode="w4a16", dataflow="ws", row_pairs=True).cycles
        plain = matmul_cycles(MatMul("w4a16", "ws", 0, m, k, n, 0, 0x800, 0), CFG)
        blk = matmul_cycles(MatMul("w4a16", "ws", 0, m, k, n, 0, 0x800, 0, blocks=1), CFG)
        base = paired + MATMUL_OVERHEAD
        if m >= 4 + reads:          # m activation beats hide the records: only the first block's read shows
            assert blk == base + reads and base <= plain
        else:                       # short m (decode): every block's records add to its first fold's weight load
            assert base + reads < blk <= base + block_folds * reads
            assert blk < plain      # half the weight beats


def test_program_cycle_model_runs_block_programs():
    """gen.perf.program prices a compiled block-scaled GEMM with the shared MATMUL model (blocks included)."""
    from npuforge.gen.perf.program import program_cycles
    w = _q4_1_weight(8, 64, seed=9)
    lin = _linear(w, seed=9)
    comp, _ = _run_compiled(CFG, _x(2, 64, 9), w, lin)
    plain = [MatMul(i.mode, i.dataflow, i.accumulate, i.m, i.k, i.n, i.a_addr, i.b_addr, i.acc_addr)
             if isinstance(i, MatMul) else i for i in comp.program]
    got = program_cycles(comp.program, CFG)
    assert got.units["matrix"].busy == sum(matmul_cycles(i, CFG) for i in comp.program if isinstance(i, MatMul))
    assert got.units["matrix"].busy != program_cycles(plain, CFG).units["matrix"].busy
