"""MatmulEngine in the 16-bit-activation modes (w8a16, w4a16) on the Amaranth simulator with the Python scratchpad
and accumulator models of tests/rtl/test_matmul_os_amaranth.py: A as little-endian int16 rows of 2k bytes and B
as int8 (w8a16) or packed int4 (w4a16) rows (``gen.isa.layout``), bit-exact against ``golden.gemm.gemm_mode`` for
ragged shapes, edge values, ``accumulate`` chains and K at the mode's int32 limit; the 8-bit modes still exact on
the same (16-bit-activation) engine; one activation beat per cycle (the busy-cycle difference of two MATMULs that
differ only in m is the array model's, gen.perf.model).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.layout import a_tile_shape, b_tile_shape, pack_a_tile
from npuforge.golden.gemm import MODES, gemm_mode, max_reduction_length
from npuforge.golden.quant import pack_int4
from tests.rtl.test_matmul_os_amaranth import (A_BASE, WORD_BYTES, acc_result, make_engine, operands,
                                               run_engine)

ALL_MODES = ("int8", "w4a8", "int4", "w8a16", "w4a16")
SPAD_AW = 12            # 32 KiB: room for an A tile of K = 511 int16 values
B_WIDE = 2048           # scratchpad word of B


def wide_operands(m, k, n, mode, seed):
    """Random A int16 / B int8 or int4 with every extreme present and an all-extreme longest reduction."""
    rng = np.random.default_rng(seed)
    a_bits, b_bits = MODES[mode]
    a_lo, a_hi = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    b_lo, b_hi = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    a = rng.integers(a_lo, a_hi + 1, size=(m, k))
    b = rng.integers(b_lo, b_hi + 1, size=(k, n))
    a.flat[:min(a.size, 4)] = [a_lo, a_hi, 0, -1][:min(a.size, 4)]
    b.flat[:min(b.size, 4)] = [b_lo, b_hi, 0, -1][:min(b.size, 4)]
    a[-1, :] = a_lo          # C[-1, -1] = K * lo * lo: the largest product sum of the mode
    b[:, -1] = b_lo
    return a, b


def spad_image(a, b, mode, *, spad_aw=SPAD_AW):
    """Scratchpad bytes in gen.isa.layout's layout, rows at word strides; row padding is not zero."""
    B = WORD_BYTES
    m, k = a.shape
    n = b.shape[1]
    a_bits, b_bits = MODES[mode]
    a_rows = pack_a_tile(a, a_bits)
    assert a_rows.shape == a_tile_shape(m, k, a_bits)
    b_rows = (b & 255).astype(np.uint8) if b_bits == 8 else np.stack([pack_int4(r) for r in b])
    assert b_rows.shape == b_tile_shape(k, n, b_bits)
    img = np.zeros((1 << spad_aw) * B, dtype=np.uint8)
    for base, rows in ((A_BASE, a_rows), (B_WIDE, b_rows)):
        stride = -(-rows.shape[1] // B) * B
        assert base * B + len(rows) * stride <= img.size
        for i, r in enumerate(rows):
            off = base * B + i * stride
            img[off:off + len(r)] = r
            img[off + len(r):off + stride] = 0xA5
    return img


def engine(rows=4, cols=4, dataflows=("ws",)):
    return make_engine(rows=rows, cols=cols, dataflows=dataflows, precisions=ALL_MODES, spad_aw=SPAD_AW)


SHAPES = [(1, 1, 1), (5, 7, 6), (4, 8, 4), (9, 17, 11), (3, 1, 9), (2, 13, 8)]


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_wide_modes_match_golden_ragged_and_edges(mode):
    dut = engine()
    assert dut.read_words == 1 and dut.a_beat_bytes == 8   # 4 int16 on an 8-byte word: one read per beat
    jobs, expect, acc_word = [], [], 0
    for i, (m, k, n) in enumerate(SHAPES):
        a, b = wide_operands(m, k, n, mode, seed=20 * i + len(mode))
        jobs.append((mode, "ws", 0, a, b, spad_image(a, b, mode), acc_word))
        expect.append((acc_word, gemm_mode(a, b, mode), m * k * n))
        acc_word += m * -(-4 * n // WORD_BYTES)
    acc, stats = run_engine(dut, jobs, b_base=B_WIDE)
    for (acc_word, want, macs), (_, got_macs), job in zip(expect, stats, jobs):
        m, n = want.shape
        assert np.array_equal(acc_result(acc, acc_word, m, n), want), (mode, m, n)
        assert got_macs == macs, (mode, got_macs, macs)


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_wide_accumulate_chain_and_k_limit(mode):
    """K split over three MATMULs (accumulate 0, 1, 1) over a dirty accumulator; one MATMUL at the mode's K limit
    with all-extreme operands (w8a16: 511 x (-32768) x (-128) = 2^31 - 2^22, the int32 bound)."""
    dut = engine()
    m, k, n = 5, 21, 6
    a, b = wide_operands(m, k, n, mode, seed=3)
    cuts = (0, 8, 13, k)
    jobs = [(mode, "ws", int(i > 0), a[:, lo:hi], b[lo:hi], spad_image(a[:, lo:hi], b[lo:hi], mode), 0)
            for i, (lo, hi) in enumerate(zip(cuts, cuts[1:]))]
    k_lim = min(max_reduction_length(*MODES[mode]), 511 if mode == "w8a16" else 24)   # w4a16: 8191 is too slow
    a_l = np.full((2, k_lim), -32768)
    b_l = np.full((k_lim, 3), -128 if mode == "w8a16" else -8)
    a_l[1, ::2] = 32767
    acc_l = 64
    jobs.append((mode, "ws", 0, a_l, b_l, spad_image(a_l, b_l, mode), acc_l))
    rng = np.random.default_rng(9)
    dirty = rng.integers(-(1 << 31), 1 << 31, size=((1 << 9), WORD_BYTES // 4))
    acc, _ = run_engine(dut, jobs, acc_init=dirty.copy(), b_base=B_WIDE)
    assert np.array_equal(acc_result(acc, 0, m, n), gemm_mode(a, b, mode))
    want = gemm_mode(a_l, b_l, mode)
    if mode == "w8a16":
        assert k_lim == 511 and want[0, 0] == 511 * 32768 * 128 <= (1 << 31) - 1
    assert np.array_equal(acc_result(acc, acc_l, 2, 3), want)


def test_eight_bit_modes_unchanged_on_a_wide_engine():
    """The 16-bit-activation engine feeds 8-bit activations as bits 7..0 of each array word."""
    dut = engine()
    jobs, expect, acc_word = [], [], 0
    for i, mode in enumerate(("int8", "w4a8", "int4")):
        m, k, n = 7, 11, 9
        a, b = operands(m, k, n, mode, seed=40 + i)
        from tests.rtl.test_matmul_os_amaranth import spad_image as spad_image8
        jobs.append((mode, "ws", 0, a, b, spad_image8(a, b, mode, spad_aw=SPAD_AW, b_base=B_WIDE), acc_word))
        expect.append((acc_word, gemm_mode(a, b, mode)))
        acc_word += m * -(-4 * n // WORD_BYTES)
    acc, _ = run_engine(dut, jobs, b_base=B_WIDE)
    for (acc_word, want), job in zip(expect, jobs):
        assert np.array_equal(acc_result(acc, acc_word, *want.shape), want), job[0]


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_one_activation_beat_per_cycle(mode):
    """8x8 engine on 8-byte words: a 16-byte int16 beat is one 2-word read, so m rows more cost m cycles per fold."""
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.perf.model import gemm_cycles

    dut = engine(rows=8, cols=8)
    assert dut.read_words == 2 and dut.a_beat_bytes == 16
    k, n = 16, 16
    cycles = []
    for m in (8, 40):
        a, b = wide_operands(m, k, n, mode, seed=m)
        _, stats = run_engine(dut, [(mode, "ws", 0, a, b, spad_image(a, b, mode), 0)], b_base=B_WIDE)
        cycles.append(stats[0][0])
    arr = ArrayConfig(rows=8, cols=8, precisions=ALL_MODES)
    model = gemm_cycles(arr, 40, k, n, mode=mode).cycles - gemm_cycles(arr, 8, k, n, mode=mode).cycles
    assert model == 2 * 2 * 32
    assert cycles[1] - cycles[0] == model, cycles


@pytest.mark.parametrize("mode", ["w8a16", "w4a16"])
def test_wide_modes_output_stationary_match_golden_and_ws(mode):
    """dataflow=os: the transposer's chunks hold word_bytes / 2 int16 k values (k > chunk, ragged m/n, several
    m- and n-tiles); same accumulator contents as ws on the same engine."""
    dut = engine(dataflows=("ws", "os"))
    jobs, expect, acc_word = [], [], 0
    for i, (m, k, n) in enumerate([(1, 1, 1), (5, 7, 6), (9, 17, 11), (3, 1, 9), (2, 13, 8)]):
        a, b = wide_operands(m, k, n, mode, seed=60 + i)
        img = spad_image(a, b, mode)
        for df in ("os", "ws"):
            jobs.append((mode, df, 0, a, b, img, acc_word))
            expect.append((acc_word, gemm_mode(a, b, mode), m * k * n))
            acc_word += m * -(-4 * n // WORD_BYTES)
    acc, stats = run_engine(dut, jobs, b_base=B_WIDE)
    for (acc_word, want, macs), (_, got_macs), job in zip(expect, stats, jobs):
        m, n = want.shape
        assert np.array_equal(acc_result(acc, acc_word, m, n), want), (job[:2], m, n)
        assert got_macs == macs, (job[:2], got_macs, macs)


@pytest.mark.parametrize("precisions", [("int8", "w8a16"), ("int8", "w4a16")], ids=lambda p: "+".join(p))
def test_minimal_builds_one_weight_lane(precisions):
    """An engine with int8 and one 16-bit-activation mode only (one product lane, no w4a8/int4 logic), both
    dataflows: the wide mode and int8 exact."""
    dut = make_engine(rows=4, cols=4, dataflows=("ws", "os"), precisions=precisions, spad_aw=SPAD_AW)
    assert dut.lanes == 1 and not dut.narrow
    jobs, expect, acc_word = [], [], 0
    for mode in precisions:
        for df in ("ws", "os"):
            m, k, n = 6, 11, 10
            if mode == "int8":
                a, b = operands(m, k, n, mode, seed=7)
            else:
                a, b = wide_operands(m, k, n, mode, seed=8)
            jobs.append((mode, df, 0, a, b, spad_image(a, b, mode), acc_word))
            expect.append((acc_word, gemm_mode(a, b, mode)))
            acc_word += m * -(-4 * n // WORD_BYTES)
    acc, _ = run_engine(dut, jobs, b_base=B_WIDE)
    for (acc_word, want), job in zip(expect, jobs):
        assert np.array_equal(acc_result(acc, acc_word, *want.shape), want), job[:2]
