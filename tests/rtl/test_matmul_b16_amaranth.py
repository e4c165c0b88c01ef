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


def test_b16_decoder_equals_the_isa_simulator():
    """rtl.controller.Decoder on a kv16 NPU against the ISA simulator's outcome of each instruction alone: legal b16
    forms issue (ws, w8a16, with and without b_trans, accumulate), code 3 / an int8 mode / blocks / os with it are
    ILLEGAL_INSTRUCTION, an int16 B (2n-byte rows) or B^T (2k-byte rows) one word past the scratchpad LOCAL_RANGE at
    b_addr beside one that ends exactly at its end; on a block_scaled NPU without kv16 every b16 != 0 is ILLEGAL."""
    from npuforge.gen.build.npu import used_masks
    from npuforge.gen.config.array import ArrayConfig
    from npuforge.gen.config.npu import NPUConfig
    from npuforge.rtl.controller import Decoder
    from npuforge.spec.isa import ErrorCode, MatMul
    from tests.rtl.test_controller_decode_amaranth import run_decoder
    from tests.rtl.test_controller_decode_blocks_amaranth import ACC, PRECISIONS, SPAD, _isa_outcome, _w

    def cfg(kv16):
        return NPUConfig(array=ArrayConfig(rows=4, cols=4, precisions=PRECISIONS), spad_bytes=SPAD, spad_banks=2,
                         acc_bytes=ACC, axi_data_bits=64, windows=2, vector_ops=(), block_scaled=True, kv16=kv16)

    def decode(words, kv16):
        dut = Decoder(word_bytes=8, spad_words=SPAD // 8, acc_words=ACC // 8, precisions=PRECISIONS,
                      dataflows=("ws",), used_masks=used_masks(cfg(kv16)), block_scaled=True, kv16=kv16)
        return run_decoder(dut, words)

    def isa(word, kv16):
        import tests.rtl.test_controller_decode_blocks_amaranth as blocks_test
        saved = blocks_test._cfg
        blocks_test._cfg = lambda _: cfg(kv16)
        try:
            return _isa_outcome(word, True)
        finally:
            blocks_test._cfg = saved

    def mm(k, n, b_addr, **kw):
        return MatMul("w8a16", "ws", kw.pop("acc", 0), kw.pop("m", 3), k, n, 0, b_addr, 0, **kw)
    legal = [_w(mm(13, 6, 0x400, b16=1)), _w(mm(13, 6, 0x400, b16=2, acc=1)), _w(mm(40, 9, 0x800, b16=1, b_trans=1)),
             _w(mm(4, 64, SPAD - 64 * 8, b16=2, b_trans=1)),     # 64 B^T rows of one word: ends at the end
             _w(mm(8, 4, SPAD - 8 * 8, b16=1))]                 # 8 B rows of 2 * 4 bytes: ends at the end
    over = [_w(mm(4, 65, SPAD - 64 * 8, b16=2, b_trans=1)), _w(mm(9, 4, SPAD - 8 * 8, b16=1)),
            _w(mm(8, 5, SPAD - 8 * 8, b16=1))]
    base = _w(mm(13, 6, 0x400, b16=1))
    illegal = [base | 1 << 16, (base & ~(3 << 8)) | 0, base | 1 << 14, base | 1 << 10]
    words = legal + over + illegal
    want = [isa(w, True) for w in words]
    assert want[:len(legal)] == [(ErrorCode.NONE, 0)] * len(legal)
    assert [c for c, _ in want[len(legal):len(legal) + len(over)]] == [ErrorCode.LOCAL_RANGE] * len(over)
    assert [c for c, _ in want[-len(illegal):]] == [ErrorCode.ILLEGAL_INSTRUCTION] * len(illegal)
    assert decode(words, True) == want
    plain = legal[:3]
    assert decode(plain, False) == [(ErrorCode.ILLEGAL_INSTRUCTION, 0)] * 3 == [isa(w, False) for w in plain]
