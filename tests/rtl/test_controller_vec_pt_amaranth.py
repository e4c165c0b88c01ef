"""The -pt schemes' two vector forms on the controller's vector sequencer (VecEngine) alone, Amaranth simulator,
Python scratchpad model with DMA stealing the shared ports (tests/rtl/test_controller_vec_engine_amaranth.py's
harness): vec.rmsnorm flags 7 (token scale only: int16 rows = golden token_shift(x, 16), the k_r bytes at src2, the
bytes around them untouched, no parameter block read) and vec.gate flags 5 (the exact int32 product of int16
operands, the record not read: a record that would be BAD_PARAM is ignored), on 4- and 8-byte words with lanes
narrower than the word. The same forms on the whole NPU: tests/rtl/npu/test_npu_pt_cocotb.py."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.golden.models.intops import token_shift
from npuforge.spec.vector_ops import GATE_PRODUCT_FLAGS, RMSNORM_FLAGS
from tests.rtl.test_controller_vec_engine_amaranth import _NEW_OPS, _engine_run

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def _token_rows(m, n, rng):
    x = rng.integers(I32_MIN, I32_MAX + 1, (m, n))
    x[0] = rng.integers(-(1 << 15) + 1, 1 << 15, n)
    x[0, 3] = (1 << 15) - 1                              # k = 0 at the int16 edge
    x[1, :] = 0
    x[1, 2] = 1 << 15                                    # k = 1
    x[2, 5] = I32_MIN                                    # k = 17
    x[3, 1] = I32_MAX                                    # k = 16 (unless the row holds -2^31)
    x[3] = np.where(x[3] == I32_MIN, 0, x[3])
    return x


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_token_scale(word_bytes, lanes):
    rng = np.random.default_rng(60 + lanes * word_bytes)
    m, n = 5, 11
    x = _token_rows(m, n, rng)
    want, k = token_shift(x, 16)
    assert [int(v) for v in k[:4, 0]] == [0, 1, 17, 16]
    spad = []
    out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "rmsnorm", m, n, x, None, b"",
                                                       flags=RMSNORM_FLAGS, ops=_NEW_OPS, spad_out=spad)
    assert error == 0, code
    np.testing.assert_array_equal(out[:, :2 * n].copy().view("<i2"), want)
    assert not out[:, 2 * n:].any(), "row tails must be written 0"
    before, after, src2 = spad
    assert list(after[src2:src2 + m]) == [int(v) for v in k[:, 0]]
    assert after[src2 - 8:src2] == before[src2 - 8:src2] and after[src2 + m:src2 + m + 8] == before[src2 + m:
                                                                                                  src2 + m + 8]


@pytest.mark.parametrize("word_bytes,lanes", [(8, 8), (8, 2), (4, 4), (4, 1)])
def test_vec_engine_exact_gate_product(word_bytes, lanes):
    rng = np.random.default_rng(70 + lanes * word_bytes)
    m, n = 3, 9
    a = rng.integers(-(1 << 15), 1 << 15, (m, n))
    b = rng.integers(-(1 << 15), 1 << 15, (m, n))
    a[0, :3], b[0, :3] = [-32768, -32768, 32767], [-32768, 32767, 32767]
    block = bytes(8)                                    # multiplier 0: BAD_PARAM if the record were read
    out, _, (error, code, fault, cycles) = _engine_run(word_bytes, lanes, "gate", m, n, a, b, block,
                                                       flags=GATE_PRODUCT_FLAGS)
    assert error == 0, code
    np.testing.assert_array_equal(out[:, :4 * n].copy().view("<i4"), a * b)
    assert not out[:, 4 * n:].any(), "row tails must be written 0"
