"""MatmulEngine with MATMUL.b_trans (B stored [n, k] row-major: Q.K^T with K as stored) on the Amaranth simulator
with the Python scratchpad and accumulator models of tests/rtl/test_matmul_os_amaranth.py: bit-exact against
golden ``gemm_mode(a, b)`` in int8 and w8a16 for ragged shapes (k, n not multiples of the array, several k- and
n-folds, K above the transposer's chunk), edge values and an ``accumulate`` chain; a B^T MATMUL costs the same
cycles as the [k, n] one plus a constant (the first chunk's fill), so the weight rows flow at one per cycle.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.golden.gemm import gemm_mode
from tests.rtl.test_matmul_a16_amaranth import B_WIDE, SPAD_AW, engine, spad_image, wide_operands
from tests.rtl.test_matmul_os_amaranth import WORD_BYTES, acc_result, run_engine


def transposed_image(a, b, mode):
    """The scratchpad of spad_image with B replaced by B^T [n, k]: n rows of k bytes at the word stride (row
    padding dirty, as the DMA never guarantees more than zeros past the row)."""
    img = spad_image(a, b, mode)
    k, n = b.shape
    stride = -(-k // WORD_BYTES) * WORD_BYTES
    bt = (b.T & 255).astype(np.uint8)
    base = B_WIDE * WORD_BYTES
    img[base:base + max(k * -(-n // WORD_BYTES) * WORD_BYTES, n * stride)] = 0x5A
    for i, row in enumerate(bt):
        img[base + i * stride:base + i * stride + k] = row
    return img


SHAPES = [(1, 1, 1), (5, 7, 6), (4, 8, 4), (9, 17, 11), (3, 1, 9), (2, 13, 8), (1, 24, 13)]


@pytest.mark.parametrize("mode", ["int8", "w8a16"])
def test_b_trans_matches_golden(mode):
    dut = engine()
    assert dut.has_bt
    jobs, expect, acc_word = [], [], 0
    for i, (m, k, n) in enumerate(SHAPES):
        a, b = wide_operands(m, k, n, "w8a16", seed=30 * i + 1)
        if mode == "int8":
            a = np.clip(a >> 8, -128, 127)
            a.flat[:2] = [-128, 127][:a.size]
            a[-1, :] = -128
        jobs.append((mode, "ws", 0, a, b, transposed_image(a, b, mode), acc_word, 1))
        expect.append((acc_word, gemm_mode(a, b, mode)))
        acc_word += m * -(-4 * n // WORD_BYTES)
    acc, _ = run_engine(dut, jobs, b_base=B_WIDE)
    for (acc_word, want), job in zip(expect, jobs):
        assert np.array_equal(acc_result(acc, acc_word, *want.shape), want), (mode, want.shape)


def test_b_trans_accumulate_chain_and_mixed_with_plain_b():
    """K split over three MATMULs (B^T, plain B, B^T; accumulate 0, 1, 1) sums to the whole product."""
    dut = engine()
    m, k, n = 5, 21, 6
    a, b = wide_operands(m, k, n, "w8a16", seed=3)
    cuts = (0, 8, 13, k)
    jobs = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        aa, bb = a[:, lo:hi], b[lo:hi]
        trans = i != 1
        img = transposed_image(aa, bb, "w8a16") if trans else spad_image(aa, bb, "w8a16")
        jobs.append(("w8a16", "ws", int(i > 0), aa, bb, img, 0, int(trans)))
    acc, _ = run_engine(dut, jobs, b_base=B_WIDE)
    assert np.array_equal(acc_result(acc, 0, m, n), gemm_mode(a, b, "w8a16"))


@pytest.mark.parametrize("m", [1, 8])
def test_b_trans_costs_a_constant_over_plain_b(m):
    """Same MATMUL from B [k, n] and from B^T [n, k]: the cycle difference is the transposer's fill latency, the
    same for a GEMV (m = 1, weight-row bound) and m = 8 (activation bound), whatever the number of folds."""
    dut = engine()
    diffs = []
    for k, n in ((16, 16), (32, 24)):
        a, b = wide_operands(m, k, n, "w8a16", seed=k + n)
        a = np.clip(a >> 8, -128, 127)
        cyc = []
        for trans in (0, 1):
            img = transposed_image(a, b, "int8") if trans else spad_image(a, b, "int8")
            acc, stats = run_engine(dut, [("int8", "ws", 0, a, b, img, 0, trans)], b_base=B_WIDE)
            assert np.array_equal(acc_result(acc, 0, m, n), gemm_mode(a, b, "int8"))
            cyc.append(stats[0][0])
        diffs.append(cyc[1] - cyc[0])
    assert diffs[0] == diffs[1] and 0 <= diffs[0] <= 4, diffs
