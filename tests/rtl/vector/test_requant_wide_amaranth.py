"""The requant unit built ``wide`` (block-scaled NPUs, spec.block_scale) on the Amaranth simulator: 48-bit inputs
(int32 low word + the accumulator extension's 16 bits) with an int32 bias against
``gen.isa.isasim.requant_wide_exact`` (VEC_REQUANT.wide's semantics), every shift of the window (so t < 25 with
values past 2^31 saturate), both 48-bit extremes, int8 / int16 / int32 outputs, zero points and random stalls; with
``wide_en`` low the same unit equals ``golden.requant.requantize`` in the int32 path's cycles.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.gen.isa.isasim import requant_wide_exact
from npuforge.rtl.vector.requant import Requant
from npuforge.sim.tb.vector_params import beats_to_row
from tests.rtl.vector.test_requant_amaranth import INT32_MAX, INT32_MIN, boundary_params, check_rows, run_requant

W48_MIN, W48_MAX = -(1 << 47), (1 << 47) - 1


def _split(v: np.ndarray):
    """48-bit values -> (int32 low words, int16 high parts)."""
    lo = ((v & 0xFFFFFFFF) ^ (1 << 31)) - (1 << 31)
    return lo, v >> 32


@pytest.mark.parametrize("lanes,out_bits,zero_point,bias", [(1, 8, 0, False), (4, 16, -7, True),
                                                             (2, 32, 100, True), (4, 8, -128, False)])
def test_wide_inputs_equal_requant_wide_exact(lanes, out_bits, zero_point, bias):
    rng = np.random.default_rng(lanes * 10 + out_bits)
    channels = 62                                   # every shift of the window once
    mult, shift = boundary_params(channels, rng)
    b = rng.integers(INT32_MIN, INT32_MAX + 1, size=channels, dtype=np.int64) if bias else None
    if bias:
        b[:3] = [INT32_MIN, INT32_MAX, 0]
    rows = []
    for scale in (47, 40, 33, 31, 20):              # magnitudes from the full 48 bits down to int32-sized
        rows.append(rng.integers(-(1 << scale), 1 << scale, size=channels, dtype=np.int64))
    rows[0][:4] = [W48_MIN, W48_MAX, -1, 1 << 31]
    v = np.array(rows)
    lo, hi = _split(v)
    dut = Requant(lanes=lanes, max_row=64, out_width=32, wide=True)
    out, error, _, _ = run_requant(dut, params=(mult, shift), rows=lo.tolist(), row_len=channels,
                                   zero_point=zero_point, out_bits=out_bits, stall=0.3, seed=lanes, bias=b,
                                   hi=hi.tolist())
    assert not error
    want = requant_wide_exact(v, mult, shift, bias=b, zero_point=zero_point, out_bits=out_bits)
    per_row = -(-channels // lanes)
    for r in range(len(rows)):
        got, tail = beats_to_row(out[r * per_row:(r + 1) * per_row], 32, lanes, channels)
        assert got == [int(x) for x in want[r]], f"row {r}"
        assert all(x == 0 for x in tail)
    # both saturation directions and unsaturated values occur
    top = (1 << (out_bits - 1)) - 1
    assert (want == top).any() and (want == -top - 1).any() and (np.abs(want.astype(np.int64)) < top).any()


def test_wide_unit_int32_path_equals_requantize_in_the_same_cycles():
    rng = np.random.default_rng(5)
    channels, lanes = 62, 4
    mult, shift = boundary_params(channels, rng)
    rows = [rng.integers(INT32_MIN, INT32_MAX + 1, size=channels, dtype=np.int64).tolist() for _ in range(3)]
    rows[0][:2] = [INT32_MIN, INT32_MAX]
    runs = []
    for wide in (False, True):
        dut = Requant(lanes=lanes, max_row=64, out_width=16, wide=wide)
        out, error, _, res = run_requant(dut, params=(mult, shift), rows=rows, row_len=channels, zero_point=3,
                                         out_bits=16, stall=0.2, seed=9)
        assert not error
        check_rows(out, rows, mult, shift, lanes=lanes, zero_point=3, out_bits=16, out_width=16)
        runs.append((out, res["in_cycles"], res["out_cycles"]))
    assert runs[0] == runs[1]
