"""Compiler: for many shapes, tilings and every mode, isasim(program, image) == golden requant(A @ B) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npuforge.gen.isa.compiler import POISON_BYTE, insert_fences, plan_gemm
from npuforge.gen.isa.gemm_program import compile_gemm
from npuforge.gen.config.array import ArrayConfig
from npuforge.spec.isa import DmaLoad, DmaStore, ErrorCode, Fence, Halt, MatMul, VecRequant, decode_program
from npuforge.gen.isa.isasim import Window, run
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.requant import quantize_multipliers, requantize

BITS = {"int8": (8, 8), "w4a8": (8, 4), "int4": (4, 4)}
# Tiny memories force tiling in every dimension; the odd 3x5 array exercises int4 tile edges; the default NPU.
SMALL = NPUConfig(array=ArrayConfig(rows=4, cols=4, dataflow="both"), spad_bytes=4096, acc_bytes=1024)
ODD = NPUConfig(array=ArrayConfig(rows=3, cols=5, dataflow="both"), spad_bytes=8192, acc_bytes=2048,
                axi_data_bits=32, windows=1)
DEFAULT = NPUConfig()
SHAPES = [(1, 1, 1), (1, 7, 1), (5, 1, 3), (3, 4, 1), (7, 13, 9), (17, 33, 15), (33, 5, 70), (2, 5000, 3),
          (40, 100, 40)]


def _operands(rng, m, k, n, mode, extreme=False):
    a_bits, b_bits = BITS[mode]
    a_lo, b_lo = -(1 << (a_bits - 1)), -(1 << (b_bits - 1))
    if extreme:  # longest-reduction worst case: every product is (-2^(a-1)) * (-2^(b-1))
        a = np.full((m, k), a_lo, np.int8)
        b = np.full((k, n), b_lo, np.int8)
        b[:, ::2] = -b_lo - 1  # and the most negative sums in alternate columns
    else:
        a = rng.integers(a_lo, -a_lo, (m, k)).astype(np.int8)
        b = rng.integers(b_lo, -b_lo, (k, n)).astype(np.int8)
    # Scales that spread the outputs over the int8 range (a few saturate), per channel.
    typical = (k if extreme else np.sqrt(k) / 2) * (-a_lo) * (-b_lo)
    scales = rng.uniform(20, 120, n) / max(typical, 1.0)
    if extreme:
        scales[0] *= 8  # this channel saturates
    mult, shift = quantize_multipliers(scales)
    return a, b, mult, shift


def _check(cfg, m, k, n, mode, *, seed=0, extreme=False, zero_point=0, out_bits=8, **kw):
    rng = np.random.default_rng(seed)
    a, b, mult, shift = _operands(rng, m, k, n, mode, extreme)
    c = compile_gemm(cfg, a, b, mult, shift, mode=mode, zero_point=zero_point, out_bits=out_bits, **kw)
    res = run(cfg, c.program_bytes, c.image, c.windows)
    assert res.status == ErrorCode.NONE, res.message
    # The spec, computed here: exact int64 product, then the golden requantizer.
    expected = requantize(a.astype(np.int64) @ b.astype(np.int64), mult, shift, zero_point=zero_point,
                          out_bits=out_bits)
    np.testing.assert_array_equal(c.read_output(res.memory), expected)
    np.testing.assert_array_equal(c.expected, expected)
    assert c.check(res) == 0
    assert res.stats["macs"] == m * k * n
    return c, res, expected


@pytest.mark.parametrize("mode", list(BITS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_small_npu_all_shapes(shape, mode):
    c, _, expected = _check(SMALL, *shape, mode, seed=sum(shape))
    if expected.size > 30:
        assert np.unique(expected).size > 10  # not a vacuous comparison of saturated values


@pytest.mark.parametrize("mode", list(BITS))
@pytest.mark.parametrize("shape", [(7, 13, 9), (17, 33, 15), (33, 5, 70), (2, 700, 3)], ids=str)
def test_odd_array_single_window_os(shape, mode):
    _check(ODD, *shape, mode, dataflow="os", seed=3)


@pytest.mark.parametrize("mode", list(BITS))
def test_default_npu_encoder_projection(mode):
    """A MiniLM-like projection tile on the default 8x8 NPU."""
    c, res, _ = _check(DEFAULT, 64, 384, 96, mode, seed=5)
    a_bits, b_bits = BITS[mode]
    # Every operand byte is loaded at least once, C is written exactly once.
    assert res.stats["dma_load_bytes"] >= 64 * 384 * a_bits // 8 + 384 * 96 * b_bits // 8
    assert res.stats["dma_store_bytes"] == 64 * 96


@pytest.mark.parametrize("mode", list(BITS))
@pytest.mark.parametrize("order", ["mn", "nm"])
@pytest.mark.parametrize("tiles", [(2, 2, 4), (2, 4, 2), (6, 5, 4), (8, 3, 6), (4, 10, 10)], ids=str)
def test_forced_tilings_and_orders(tiles, order, mode):
    """Every loop order and tiling gives the same bits (int4 tiles split on byte boundaries: even tm, tn)."""
    c, _, _ = _check(SMALL, 11, 10, 13, mode, seed=11, tiles=tiles, order=order)
    assert c.plan.order == order and (c.plan.tm, c.plan.tk, c.plan.tn) == tiles


@pytest.mark.parametrize("order", ["mn", "nm"])
def test_single_element_tiles(order):
    c, _, _ = _check(SMALL, 4, 5, 3, "int8", seed=12, tiles=(1, 1, 1), order=order)
    assert c.plan.tiles == (4, 5, 3)


@pytest.mark.parametrize("mode", list(BITS))
def test_longest_reduction_extremes(mode):
    """Most negative operands over a long K (several K tiles accumulate), saturating and non-saturating columns."""
    c, _, expected = _check(SMALL, 3, 2000, 5, mode, extreme=True)
    assert c.plan.tiles[1] > 1
    assert (expected[:, 0] == -128).all() and np.abs(expected[:, 1:]).min() >= 15


@pytest.mark.parametrize("out_bits,zero_point", [(8, -7), (8, 127), (16, -1000), (16, 32767)])
def test_zero_point_and_int16_output(out_bits, zero_point):
    _check(SMALL, 9, 20, 11, "w4a8", zero_point=zero_point, out_bits=out_bits, seed=2)


def test_image_layout_program_and_windows():
    rng = np.random.default_rng(4)
    a, b, mult, shift = _operands(rng, 17, 33, 15, "int4")
    c = compile_gemm(SMALL, a, b, mult, shift, mode="int4")
    p = c.plan
    prog = bytes(c.image[:len(c.program_bytes)])
    assert decode_program(prog) == c.program and isinstance(c.program[-1], Halt)
    assert (c.image[p.c_base:p.c_base + 17 * 15] == POISON_BYTE).all()
    # int4 A as row pairs: byte (p, j) = A[2p, j] low nibble | A[2p+1, j] high nibble (M = 17: 9 pair rows).
    raw = c.image[p.a_base:p.a_base + 9 * 33].reshape(9, 33)
    lo = ((raw & 0xF) ^ 8).astype(np.int64) - 8
    hi = ((raw >> 4) ^ 8).astype(np.int64) - 8
    np.testing.assert_array_equal(lo, a[0::2])
    np.testing.assert_array_equal(hi[:8], a[1::2])
    assert not hi[8].any()  # the missing row 17 is zero padding
    # int4 B packed along N: byte (k, i) = B[k, 2i] low | B[k, 2i+1] high.
    braw = c.image[p.b_base:p.b_base + 33 * 8].reshape(33, 8)
    np.testing.assert_array_equal(((braw & 0xF) ^ 8).astype(np.int64) - 8, b[:, 0::2])
    np.testing.assert_array_equal((((braw >> 4) ^ 8).astype(np.int64) - 8)[:, :7], b[:, 1::2])
    assert c.windows == [Window(p.a_base, p.c_base - p.a_base, read=True, write=False),
                         Window(p.c_base, 17 * 15, read=False, write=True)]


def test_tiling_properties():
    """The plans used above really tile every dimension and double-buffer: loads run between matmuls."""
    plan = plan_gemm(SMALL, 40, 100, 40, mode="int8")
    assert all(t > 1 for t in plan.tiles)
    for shape in [(33, 5, 70), (2, 5000, 3)]:
        assert max(plan_gemm(SMALL, *shape).tiles) > 1
    rng = np.random.default_rng(0)
    a, b, mult, shift = _operands(rng, 40, 100, 40, "int8")
    prog = compile_gemm(SMALL, a, b, mult, shift).program
    mm = [i for i, x in enumerate(prog) if isinstance(x, MatMul)]
    overlapped = 0
    for i, j in zip(mm, mm[1:]):
        between = prog[i + 1:j]
        loads = [x for x in between if isinstance(x, DmaLoad)]
        drains = [x for x in between if isinstance(x, Fence) and x.matrix == 0]
        if loads and not drains:  # the next tile's data moves while this matmul still runs
            overlapped += 1
    assert overlapped >= len(mm) - 2
    assert [x.accumulate for x in prog if isinstance(x, MatMul)][:2] == [0, 1]  # overwrite, then accumulate


def test_gemv_tiling_is_the_exact_models_fastest():
    """M = 1: the plan is the fastest of every tiling in the exact program model (here there are at most
    GEMV_CANDIDATES of them, so all are ranked), and it computes the golden result."""
    from npuforge.gen.isa.compiler import GEMV_CANDIDATES, lower_gemm
    from npuforge.gen.perf.program import program_cycles
    cfg = NPUConfig(array=ArrayConfig(rows=8, cols=8))
    chosen = plan_gemm(cfg, 1, 24, 40)
    best = program_cycles(lower_gemm(chosen), cfg, harness="fast").cycles
    tried = 0
    for tk in (8, 16, 24):
        for tn in (8, 16, 32, 40):
            for order in ("mn", "nm"):
                forced = plan_gemm(cfg, 1, 24, 40, tiles=(1, tk, tn), order=order)
                assert program_cycles(lower_gemm(forced), cfg, harness="fast").cycles >= best
                tried += 1
    assert tried <= GEMV_CANDIDATES
    _check(cfg, 1, 24, 40, "int8")


def test_fences_are_needed():
    """Removing the compiler's fences makes the simulator report the race (the hazard rule is not vacuous)."""
    rng = np.random.default_rng(1)
    a, b, mult, shift = _operands(rng, 20, 30, 20, "int8")
    c = compile_gemm(SMALL, a, b, mult, shift)
    unfenced = [x for x in c.program if not isinstance(x, Fence)]
    res = run(SMALL, unfenced, c.image, c.windows)
    assert res.status == ErrorCode.HAZARD
    assert insert_fences(SMALL, unfenced) == c.program


def test_compiled_program_faults():
    rng = np.random.default_rng(2)
    a, b, mult, shift = _operands(rng, 6, 7, 8, "w4a8")
    c = compile_gemm(SMALL, a, b, mult, shift, mode="w4a8")
    p = c.plan
    # No windows: the first load is refused, at A's address; nothing is written.
    res = run(SMALL, c.program_bytes, c.image, [])
    assert (res.status, res.pc, res.fault_addr) == (ErrorCode.DMA_WINDOW, 0, p.a_base)
    np.testing.assert_array_equal(res.memory, c.image)
    # C's window one byte short: the last store faults at the last byte of its extent.
    short = [c.windows[0], Window(p.c_base, 6 * 8 - 1, read=False, write=True)]
    res = run(SMALL, c.program_bytes, c.image, short)
    assert res.status == ErrorCode.DMA_WINDOW and isinstance(c.program[res.pc], DmaStore)
    assert res.fault_addr == p.c_base + 6 * 8 - 1
    # A corrupted instruction word in the command stream.
    prog = bytearray(c.program_bytes)
    prog[16 * 3] = 0x00
    res = run(SMALL, bytes(prog), c.image, c.windows)
    assert (res.status, res.pc) == (ErrorCode.ILLEGAL_INSTRUCTION, 3)
    # A requant record out of range in the image.
    image = c.image.copy()
    image[p.p_base:p.p_base + 8] = 0
    res = run(SMALL, c.program_bytes, image, c.windows)
    assert res.status == ErrorCode.BAD_PARAM and isinstance(c.program[res.pc], VecRequant)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(mode="int2"), r"mode must be one of int8, w4a8, int4, w8a16, w4a16, got 'int2'"),
    (dict(cfg=NPUConfig(array=ArrayConfig(precisions=("int8",)))), r"mode 'w4a8' is not built into this NPU"),
    (dict(dataflow="os"), r"dataflow must be one this NPU runs \(ws\), got 'os'"),
    (dict(out_bits=4), r"out_bits must be 8, 16 or 32"),
    (dict(tiles=(0, 1, 1)), r"tm must be an integer in \[1, 4095\], got 0"),
    (dict(tiles=(3, 3, 2), mode="int4"), r"tm must be even when M is split in mode int4"),
    (dict(tiles=(4, 4, 3)), r"tn must be even when N is split in mode w4a8"),
    (dict(tiles=(64, 64, 64)), r"need \d+ scratchpad and \d+ accumulator bytes"),
    (dict(order="km"), r"order must be 'mn' or 'nm', got 'km'"),
])
def test_plan_errors(kwargs, pattern):
    cfg = kwargs.pop("cfg", NPUConfig(spad_bytes=4096, acc_bytes=1024))
    kwargs.setdefault("mode", "w4a8")
    with pytest.raises(ValueError, match=pattern):
        plan_gemm(cfg, 16, 16, 16, **kwargs)


def test_compile_input_errors():
    with pytest.raises(ValueError, match=r"K must be in \[1, 131071\] for mode int8"):
        plan_gemm(DEFAULT, 1, 131072, 1)
    assert plan_gemm(DEFAULT, 1, 131071, 1).tiles[1] > 1
    with pytest.raises(ValueError, match=r"K must be >= 1|M must be an integer >= 1"):
        plan_gemm(DEFAULT, 0, 1, 1)
    a = np.zeros((2, 3), np.int8)
    b = np.zeros((3, 4), np.int8)
    with pytest.raises(ValueError):  # the golden model names the bad operand
        compile_gemm(DEFAULT, a, np.full((3, 4), 8, np.int8), [2**30] * 4, [0] * 4, mode="w4a8")
    with pytest.raises(ValueError, match="multiplier must be in"):
        compile_gemm(DEFAULT, a, b, [5] * 4, [0] * 4)
    with pytest.raises(ValueError, match="per-channel vectors"):
        compile_gemm(DEFAULT, a, b, 2**30, 0)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 24), k=st.integers(1, 40), n=st.integers(1, 24), mode=st.sampled_from(list(BITS)),
       order=st.sampled_from(["mn", "nm", None]), dataflow=st.sampled_from(["ws", "os"]), seed=st.integers(0, 99))
def test_random_shapes(m, k, n, mode, order, dataflow, seed):
    _check(SMALL, m, k, n, mode, seed=seed, order=order, dataflow=dataflow)


def test_double_buffers_in_different_banks():
    """With room, slot 0 of A/B/output sits in the lower half of the scratchpad and slot 1 in the upper half."""
    cfg = NPUConfig(spad_bytes=65536, spad_banks=2, acc_bytes=16384)
    plan = plan_gemm(cfg, 16, 64, 16)
    for s0, s1 in (plan.a_slots, plan.b_slots, plan.out_slots):
        assert s0 < 32768 <= s1
    c, _, _ = _check(cfg, 16, 64, 40, "int8", tiles=(8, 16, 8))
    assert c.plan.a_slots[1] >= 32768
    one_bank = NPUConfig(spad_bytes=65536, spad_banks=1, acc_bytes=16384)
    assert plan_gemm(one_bank, 16, 64, 16).a_slots[1] < 32768


# -- bias before the requant (VEC_REQUANT.bias) ---------------------------------------------------------------------
@pytest.mark.parametrize("cfg, shape, weight_bits", [(SMALL, (7, 13, 9), 8), (ODD, (17, 33, 15), 8),
                                                     (SMALL, (5, 24, 11), 4)])
def test_bias_linear_equals_golden_layer(cfg, shape, weight_bits):
    """A real golden Linear (float weight and bias -> golden.layers.quantize_linear): the compiled program on the ISA
    simulator equals golden.layers.linear_int, which adds the bias to the int32 accumulator before the requant."""
    from npuforge.golden.layers import linear_int, quantize_linear
    m, k, n = shape
    rng = np.random.default_rng(m * k * n)
    w = rng.normal(0, 0.2, (n, k))
    b = rng.normal(0, 2.0, n)
    layer = quantize_linear(w, b, 0.05, 0.1, weight_bits=weight_bits)
    x = rng.integers(-128, 128, (m, k)).astype(np.int8)
    mode = "int8" if weight_bits == 8 else "w4a8"
    c = compile_gemm(cfg, x, layer.weight.q.T, layer.multiplier, layer.shift, mode=mode, bias=layer.bias)
    assert c.plan.bias and any(isinstance(i, VecRequant) and i.bias for i in c.program)
    res = run(cfg, c.program_bytes, c.image, c.windows)
    assert res.ok, res.message
    want = linear_int(x, layer)
    np.testing.assert_array_equal(c.read_output(res.memory), want)
    # The bias matters: without it the output differs.
    plain = requantize(x.astype(np.int64) @ layer.weight.q.T.astype(np.int64), layer.multiplier, layer.shift)
    assert (plain != want).any()


def _biased_reference(acc, bias, mult, shift, zero_point, out_bits):
    """Python integers: clamp(floor((acc + bias) * M / 2^t + 1/2) + zp), t = 31 + shift (no width limits)."""
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    out = np.zeros(acc.shape, np.int64)
    for (i, j), v in np.ndenumerate(acc):
        t = 31 + int(shift[j])
        p = (int(v) + int(bias[j])) * int(mult[j])
        out[i, j] = min(hi, max(lo, ((p + (1 << (t - 1))) >> t) + zero_point))
    return out


@pytest.mark.parametrize("out_bits, zero_point", [(8, -3), (16, 100)])
def test_bias_extremes_33_bit_sum(out_bits, zero_point):
    """int32 extremes of bias with the longest all-extreme reduction: acc + bias leaves the int32 range and the
    program keeps the 33rd bit (python-integer reference)."""
    m, k, n = 3, 600, 6
    a = np.full((m, k), -128, np.int8)
    b = np.full((k, n), -128, np.int8)
    b[:, 1::2] = 127
    a[1] = 127
    bias = np.array([2**31 - 1, -2**31, -2**31, 2**31 - 1, 0, -12345], np.int64)
    mult, shift = quantize_multipliers(np.full(n, 2.0 ** -26) * np.array([1, 1.5, 3, 0.7, 1, 1]))
    c = compile_gemm(SMALL, a, b, mult, shift, bias=bias, out_bits=out_bits, zero_point=zero_point)
    res = run(SMALL, c.program_bytes, c.image, c.windows)
    assert res.ok, res.message
    acc = a.astype(np.int64) @ b.astype(np.int64)
    assert (np.abs(acc + bias) > 2**31).any()
    want = _biased_reference(acc, bias, mult, shift, zero_point, out_bits)
    np.testing.assert_array_equal(c.read_output(res.memory), want)
    assert len(np.unique(want)) > 4   # not everything saturates


def test_bias_plan_rejects_what_does_not_fit_and_keeps_no_bias_encoding():
    rng = np.random.default_rng(1)
    a, b, mult, shift = _operands(rng, 9, 20, 11, "int8")
    plain = compile_gemm(SMALL, a, b, mult, shift)
    assert all(isinstance(i, VecRequant) and not i.bias and not i.bias_addr
               for i in plain.program if isinstance(i, VecRequant))
    with pytest.raises(ValueError, match="bias"):
        compile_gemm(SMALL, a, b, mult, shift, bias=np.zeros(10, np.int64))      # wrong length
    with pytest.raises(ValueError, match="bias"):
        compile_gemm(SMALL, a, b, mult, shift, bias=np.full(11, 2**31))           # not int32


# -- B^T (MATMUL.b_trans): Q.K^T with K stored [T, d] ---------------------------------------------------------------
@pytest.mark.parametrize("cfg, shape, tiles", [(SMALL, (1, 1, 1), None), (SMALL, (7, 13, 9), None),
                                                (SMALL, (9, 40, 23), (4, 8, 8)), (ODD, (5, 33, 17), None),
                                                (DEFAULT, (3, 64, 70), None)])
def test_b_transposed_scores_equal_golden_q_kt(cfg, shape, tiles):
    """compile_gemm(b_trans=True) takes K [t_kv, d] as stored: ISA simulator == golden requant(q @ k.T), with the
    extremes (-128 x -128 over the whole reduction, and -128 x 127) in the first rows."""
    t_q, d, t_kv = shape
    rng = np.random.default_rng(t_q * d + t_kv)
    q = rng.integers(-128, 128, (t_q, d)).astype(np.int8)
    k = rng.integers(-128, 128, (t_kv, d)).astype(np.int8)
    q[0], k[0], k[-1] = -128, -128, 127
    mult, shift = quantize_multipliers(np.full(t_kv, 30.0 / (np.sqrt(d) * 128 * 128)))
    c = compile_gemm(cfg, q, k, mult, shift, b_trans=True, tiles=tiles)
    assert all(i.b_trans for i in c.program if isinstance(i, MatMul))
    res = run(cfg, c.program_bytes, c.image, c.windows)
    assert res.ok, res.message
    want = requantize(q.astype(np.int64) @ k.T.astype(np.int64), mult, shift)
    np.testing.assert_array_equal(c.read_output(res.memory), want)
    # K stays [t_kv, d] row-major in DRAM: the image holds it byte for byte.
    np.testing.assert_array_equal(c.image[c.plan.b_base:c.plan.b_base + k.size], k.view(np.uint8).ravel())


def test_b_transposed_refused_where_undefined():
    rng = np.random.default_rng(2)
    a, b, mult, shift = _operands(rng, 4, 8, 6, "w4a8")
    with pytest.raises(ValueError, match="b_trans"):
        compile_gemm(SMALL, a, b.T, mult, shift, mode="w4a8", b_trans=True)
    with pytest.raises(ValueError, match="b_trans"):
        compile_gemm(SMALL, a, b.T, mult, shift, dataflow="os", b_trans=True)


# -- int32 requant output (VEC_REQUANT.out32): the int32 score / residual formats ----------------------------------
@pytest.mark.parametrize("cfg", [SMALL, ODD])
def test_int32_output_scores_like_golden_llama(cfg):
    """Q.K^T requantized to int32 (golden.models.llama: scores = requant_wide(q . k^T, out_bits=32) at 2^-16) with
    K as stored, a bias, and scales that leave int32 on some channels (saturation at +-2^31)."""
    from npuforge.golden.models.intops import requant_wide
    rng = np.random.default_rng(11)
    t_q, d, t_kv = 6, 40, 13
    q = rng.integers(-128, 128, (t_q, d)).astype(np.int8)
    k = rng.integers(-128, 128, (t_kv, d)).astype(np.int8)
    q[0], k[0] = -128, -128
    scales = np.full(t_kv, 2.0 ** 16 / (8 * np.sqrt(d) * 30))
    scales[1] = 2.0 ** 20      # saturates the largest score (40 * 2^14 * 2^20 > 2^31)
    mult, shift = quantize_multipliers(scales)
    c = compile_gemm(cfg, q, k, mult, shift, b_trans=True, out_bits=32, zero_point=-300)
    assert all(i.out32 and not i.out16 for i in c.program if isinstance(i, VecRequant))
    res = run(cfg, c.program_bytes, c.image, c.windows)
    assert res.ok, res.message
    acc = q.astype(np.int64) @ k.T.astype(np.int64)
    want = requantize(acc, mult, shift, zero_point=-300, out_bits=32)     # clamp(round(acc * M / 2^t) - 300)
    # ... which is golden.models' int32 score requant when the zero point is 0
    np.testing.assert_array_equal(requantize(acc, mult, shift, out_bits=32),
                                  requant_wide(acc, mult, shift, out_bits=32))
    got = c.read_output(res.memory)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.dtype("<i4") and (got == 2**31 - 1).any() and (np.abs(got) > 2**15).any()
    assert (want[:, 1] == 2**31 - 1).any()
