"""rtl.vector.elementwise.GateMul built 16 bits wide (the Llama layers' SwiGLU: int16 silu(gate) x int16 up) on the
Amaranth simulator vs ``golden.elementwise.gate_mul``, bit for bit: the int16 extremes paired (-32768 x -32768 =
2^30, the largest product), products of +-2^15 rounded at p / 2^16 (ties, half up), the requant shift at both ends
(-30 saturating, 31 rounding to 0 / +-1), int16 and int8 results, rows of 1 .. 9 elements with tails, random stalls;
int8 operands on the same instance; an illegal shift or out_bits flags BAD_PARAM and drains the row."""

from __future__ import annotations

import numpy as np
import pytest

from npuforge.golden.elementwise import GateParams, gate_mul, gate_params
from npuforge.rtl.vector.common import ErrorCode
from npuforge.rtl.vector.elementwise import GateMul
from tests.rtl.vector.test_residual_wide_amaranth import LANES, _run


def _operands(n, bits, rng):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a, b = rng.integers(lo, hi + 1, n), rng.integers(lo, hi + 1, n)
    edges = [(lo, lo), (lo, hi), (hi, lo), (hi, hi), (256, 128), (-256, 128), (1, -1), (0, lo)]
    if bits == 8:
        edges[4:6] = [(16, 8), (-16, 8)]                 # products +-2^7
    for i, (x, y) in enumerate(edges[:n]):
        a[i], b[i] = x, y
    return a, b


@pytest.mark.parametrize("params", [
    gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -9, out_bits=16),
    GateParams(multiplier=1 << 30, shift=15, out_bits=16),            # y = p / 2^16: +-2^15 are ties
    GateParams(multiplier=(1 << 31) - 1, shift=31, out_bits=16),
    GateParams(multiplier=1 << 30, shift=-30, out_bits=16),           # saturates
    gate_params(2.0 ** -12, 2.0 ** -10, 2.0 ** -2, out_bits=8),
], ids=["swiglu16", "ties", "shift31", "shift-30", "to_int8"])
def test_gate16_like_golden(params):
    rng = np.random.default_rng(params.shift + 40)
    dut = GateMul(lanes=LANES, max_row=64, in_width=16, out_width=16)
    rows, settings, want = [], [], []
    for n in (9, 1, 4, 8, 5):
        for bits in (16, 8):                                 # int8 operands on the same instance
            a, b = _operands(n, bits, rng)
            rows.append((a.tolist(), b.tolist()))
            settings.append({"multiplier": params.multiplier, "shift": params.shift, "out_bits": params.out_bits})
            want.append(gate_mul(a.astype(np.int16), b.astype(np.int16), params).tolist())
    got, errors = _run(dut, rows, settings, seed=params.multiplier % 97)
    assert errors == []
    assert got == want


def test_gate16_bad_param_drains():
    dut = GateMul(lanes=LANES, max_row=64, in_width=16, out_width=16)
    a, b = [-32768, 32767, 5], [-32768, -32768, 7]
    good = {"multiplier": 1 << 30, "shift": 0, "out_bits": 16}
    rows = [(a, b)] * 4
    settings = [dict(good, shift=32, _bad=1), dict(good, out_bits=32, _bad=1), good, dict(good, out_bits=8)]
    got, errors = _run(dut, rows, settings, seed=3)
    assert errors == [(1, ErrorCode.BAD_PARAM)] * 2
    p16, p8 = GateParams(1 << 30, 0, out_bits=16), GateParams(1 << 30, 0, out_bits=8)
    aa, bb = np.array(a, np.int16), np.array(b, np.int16)
    assert got == [gate_mul(aa, bb, p16).tolist(), gate_mul(aa, bb, p8).tolist()]


def test_gate_exact_product_int32():
    """``exact`` (vec.gate flags bit 2): the int32 product a * b of int16 operands, every extreme (-32768 * -32768 =
    2^30, -32768 * 32767), random rows with tails; the multiplier / shift ports are ignored (an out-of-range shift
    is not BAD_PARAM); out_bits other than 32 with exact, and 32 without, flag BAD_PARAM and drain the row; the
    requantized int16 gate still runs on the same instance afterwards."""
    rng = np.random.default_rng(71)
    dut = GateMul(lanes=LANES, max_row=64, in_width=16, out_width=32)
    rows, settings, want = [], [], []
    for n in (9, 1, 4, 8, 5, 13):
        a, b = _operands(n, 16, rng)
        rows.append((a.tolist(), b.tolist()))
        settings.append({"exact": 1, "multiplier": 0, "shift": 40 if n % 2 else 0, "out_bits": 32})
        want.append((a.astype(np.int64) * b.astype(np.int64)).tolist())
    bad_rows = [([-32768, 5], [-32768, 7])] * 2
    bad = [{"exact": 1, "multiplier": 1 << 30, "shift": 0, "out_bits": 16, "_bad": 1},
           {"exact": 0, "multiplier": 1 << 30, "shift": 0, "out_bits": 32, "_bad": 1}]
    after = ([-32768, 32767, 3], [-32768, -32768, 3])
    p16 = GateParams(1 << 30, 15, out_bits=16)
    got, errors = _run(dut, rows + bad_rows + [after], settings + bad + [
        {"exact": 0, "multiplier": p16.multiplier, "shift": p16.shift, "out_bits": 16}], seed=5)
    assert errors == [(1, ErrorCode.BAD_PARAM)] * 2
    assert got[:len(rows)] == want
    assert max(abs(v) for row in want for v in row) == 1 << 30
    aa, bb = (np.array(v, np.int16) for v in after)
    assert got[len(rows)] == gate_mul(aa, bb, p16).tolist()
