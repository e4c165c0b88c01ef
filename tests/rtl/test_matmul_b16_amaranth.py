"""MatmulEngine with MATMUL.b16 (an int16 B read one byte plane per MATMUL: the int16 K / V caches) on the Amaranth
simulator with the Python memory models of tests/rtl/test_matmul_blocks_amaranth.py: int16 B [k, n] (P.V) and B^T
[n, k] (Q.K^T, b_trans) with every low-byte edge case and the int16 extremes, the high plane then the low plane
accumulating into the 48-bit result, bit-exact against the exact product; one plane alone against A @ (D s + O);
ragged m, k, n, several k- and n-folds; a plain w8a16 MATMUL and a b_trans int8 one after them on the same engine."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.layout import pack_a_tile
from npuforge.rtl.controller.matmul import MatmulEngine
from npuforge.spec.block_scale import B16_PLANES, b16_plane
from tests.rtl.test_matmul_blocks_amaranth import (A_BASE, ACC_AW, B_BASE, PRECISIONS, SPAD_AW, WORD_BYTES,
                                                   result48, run, wrap48)


def engine(rows=4, cols=4):
    return MatmulEngine(word_bytes=WORD_BYTES, spad_aw=SPAD_AW, acc_aw=ACC_AW, rows=rows, cols=cols,
                        precisions=PRECISIONS, dataflows=("ws",), pipeline=2, blocks=True, kv16=True)


def int16_values(rng, shape):
    v = rng.integers(-(1 << 15), 1 << 15, size=shape)
    edges = np.array([-(1 << 15), (1 << 15) - 1, -1, 0, 127, 128, 255, 256, -128, -129, -256, 0x7F80, -0x7F81])
    flat = v.reshape(-1)
    flat[:min(flat.size, len(edges))] = edges[:flat.size]
    return v


def image(rows_a, rows_b):
    """A rows at A_BASE and the stored B rows at B_BASE (uint8 rows), row tails 0xA5 (never read as data)."""
    B = WORD_BYTES
    img = np.zeros((1 << SPAD_AW) * B, dtype=np.uint8)
    for base, rows in ((A_BASE * B, rows_a), (B_BASE * B, rows_b)):
        stride = -(-rows.shape[1] // B) * B
        for i, r in enumerate(rows):
            off = base + i * stride
            img[off:off + len(r)] = r
            img[off + len(r):off + stride] = 0xA5
    return img


def int16_rows(b):
    return np.ascontiguousarray(b.astype("<i2")).view(np.uint8)


CASES = [  # (m, k, n)
    (1, 8, 4), (5, 13, 6), (3, 40, 9), (6, 7, 3),
]


@pytest.mark.parametrize("b_trans", [0, 1])
@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 8)])
def test_b16_planes_bit_exact(rows, cols, b_trans):
    dut = engine(rows, cols)
    rng = np.random.default_rng(10 * rows + b_trans)
    jobs, want, acc_word = [], [], 0
    for m, k, n in CASES:
        x, b = int16_values(rng, (m, k)), int16_values(rng, (k, n))
        img = image(pack_a_tile(x, 16), int16_rows(b.T if b_trans else b))
        for plane in (1, 2):
            jobs.append(("w8a16", int(plane == 2), 0, x, b, img, acc_word, dict(b_trans=b_trans, b16=plane, n=n)))
        want.append((acc_word, m, n, wrap48(x @ b)))
        acc_word += m * -(-4 * n // WORD_BYTES)
        # one plane alone: A @ (D s + O)
        d, o = B16_PLANES[2]
        jobs.append(("w8a16", 0, 0, x, b, img, acc_word, dict(b_trans=b_trans, b16=2, n=n)))
        want.append((acc_word, m, n, x @ (d * b16_plane(b, 2) + o)))
        acc_word += m * -(-4 * n // WORD_BYTES)
    # a plain w8a16 MATMUL (int8 B, b16 = 0) after them: the block stage and the weight path back to normal
    x8, b8 = int16_values(rng, (3, 12)), rng.integers(-128, 128, size=(12, 5))
    stored = b8.T if b_trans else b8
    jobs.append(("w8a16", 0, 0, x8, b8, image(pack_a_tile(x8, 16), stored.astype(np.int8).view(np.uint8)), acc_word,
                 dict(b_trans=b_trans, b16=0, n=5)))
    acc, ext, cycles = run(dut, jobs)
    for aw, m, n, w in want:
        assert np.array_equal(result48(acc, ext, aw, m, n), w), (rows, b_trans, m, n)
    E = WORD_BYTES // 4
    stride = -(-4 * 5 // WORD_BYTES)
    plain = np.stack([acc.reshape(-1)[(acc_word + i * stride) * E:(acc_word + i * stride) * E + 5] for i in range(3)])
    assert np.array_equal(plain, x8 @ b8)
    assert any(np.abs(w).max() >= 1 << 31 for *_, w in want)      # the extension carries real bits
