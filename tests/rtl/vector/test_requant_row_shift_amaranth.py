"""The requant unit's per-row shift (``row_shift``, VEC_REQUANT.row_shift: the per-token scale of the ``-pt``
schemes) on the Amaranth simulator: row r requantized with total shift 31 + shift[c] - k_r, against
``golden.models.intops.requant_wide(acc, M, shift - k)`` (int32 accumulators) and ``gen.isa.isasim.requant_wide_exact``
(48-bit inputs of a ``wide`` unit), bit for bit: k_r = 0 and 16, total shifts 1 and 62, int32 extremes (-2^31 * the
largest multiplier), int8 / int16 / int32 outputs with zero points, 1 .. 4 lanes, more rows than a bias group holds
bytes, random stalls; with ``row_shift_en`` low the same instance is the plain requant."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.isasim import requant_wide_exact
from npuforge.golden.models.intops import requant_wide
from npuforge.golden.requant import requantize
from npuforge.rtl.vector.requant import Requant
from npuforge.sim.tb.vector_params import beats_to_row
from npuforge.spec.vector_ops import ROW_SHIFT_MAX, SHIFT_MAX, SHIFT_MIN
from tests.rtl.vector.test_requant_amaranth import INT32_MAX, INT32_MIN, run_requant


def _shifts_and_ks(channels, rows, rng):
    """Per-channel shifts and per-row k with 31 + shift - k in [1, 62] everywhere and both ends reached."""
    k = rng.integers(0, ROW_SHIFT_MAX + 1, rows)
    k[:3] = [0, ROW_SHIFT_MAX, 1]
    lo = SHIFT_MIN + int(k.max())              # t >= 1 for the largest k
    shift = rng.integers(lo, SHIFT_MAX + 1, channels)
    shift[:2] = [lo, SHIFT_MAX]                # t = 1 on the row with the largest k, t = 62 on a row with k = 0
    return shift, k


def _rows_out(out, lanes, channels, rows, width):
    per_row = -(-channels // lanes)
    assert len(out) == per_row * rows
    got = []
    for r in range(rows):
        row, tail = beats_to_row(out[r * per_row:(r + 1) * per_row], width, lanes, channels)
        assert all(x == 0 for x in tail)
        got.append(row)
    return got


@pytest.mark.parametrize("lanes,out_bits,zero_point", [(1, 8, 3), (2, 16, -7), (4, 32, 100), (4, 16, 0)])
def test_row_shift_int32_equals_requant_wide(lanes, out_bits, zero_point):
    rng = np.random.default_rng(lanes * 7 + out_bits)
    channels, rows = 9, 21                     # 21 rows: more k bytes than one bias group of 4 lanes bytes
    shift, k = _shifts_and_ks(channels, rows, rng)
    mult = rng.integers(1 << 30, 1 << 31, channels, dtype=np.int64)
    mult[0] = (1 << 31) - 1
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, (rows, channels), dtype=np.int64)
    acc[:, 0] = INT32_MIN                       # the largest product, at t = 1 (saturates) and t = 62
    acc[0, 1], acc[1, 1] = INT32_MAX, INT32_MIN
    dut = Requant(lanes=lanes, max_row=64, out_width=32, row_shift=True)
    out, error, _, _ = run_requant(dut, params=(mult, shift), rows=acc.tolist(), row_len=channels,
                                   zero_point=zero_point, out_bits=out_bits, stall=0.3, seed=lanes, row_k=k)
    assert not error
    want = requant_wide_exact(acc, mult, shift[None, :] - k[:, None], zero_point=zero_point, out_bits=out_bits)
    if zero_point == 0:      # the golden kernel of linear_apply(token_bits=16) itself
        assert np.array_equal(want, requant_wide(acc, mult, shift[None, :] - k[:, None], out_bits=out_bits))
    assert _rows_out(out, lanes, channels, rows, 32) == want.tolist()
    # t spans [1, 62] (both ends)
    t = 31 + shift[None, :] - k[:, None]
    assert t.min() == 1 and t.max() == 62


def test_row_shift_wide_inputs_equal_requant_wide_exact():
    rng = np.random.default_rng(3)
    lanes, channels, rows = 2, 7, 6
    shift, k = _shifts_and_ks(channels, rows, rng)
    mult = rng.integers(1 << 30, 1 << 31, channels, dtype=np.int64)
    v = rng.integers(-(1 << 47), 1 << 47, (rows, channels), dtype=np.int64)
    v[0, :2] = [-(1 << 47), (1 << 47) - 1]
    v[1] >>= 20                                 # int32-sized values beside wide ones
    lo = ((v & 0xFFFFFFFF) ^ (1 << 31)) - (1 << 31)
    dut = Requant(lanes=lanes, max_row=64, out_width=32, wide=True, row_shift=True)
    out, error, _, _ = run_requant(dut, params=(mult, shift), rows=lo.tolist(), row_len=channels, out_bits=32,
                                   stall=0.2, seed=9, hi=(v >> 32).tolist(), row_k=k)
    assert not error
    want = requant_wide_exact(v, mult, shift[None, :] - k[:, None], out_bits=32)
    assert _rows_out(out, lanes, channels, rows, 32) == want.tolist()


def test_row_shift_off_is_the_plain_requant():
    rng = np.random.default_rng(4)
    lanes, channels = 4, 10
    mult = rng.integers(1 << 30, 1 << 31, channels, dtype=np.int64)
    shift = rng.integers(SHIFT_MIN, SHIFT_MAX + 1, channels)
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, (3, channels), dtype=np.int64)
    dut = Requant(lanes=lanes, max_row=64, out_width=32, row_shift=True)
    out, error, _, _ = run_requant(dut, params=(mult, shift), rows=acc.tolist(), row_len=channels, out_bits=16)
    assert not error
    want = requantize(acc.astype(np.int32), mult, shift, out_bits=16)
    assert _rows_out(out, lanes, channels, 3, 32) == want.tolist()
