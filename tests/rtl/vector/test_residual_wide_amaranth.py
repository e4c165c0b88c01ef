"""rtl.vector.elementwise.ResidualAdd with ``wide`` (the int32 residual stream) on the Amaranth simulator vs
``golden.models.intops.residual_add_wide``, bit for bit: int32 / int16 / int8 ``a`` requantized (every total shift
1..62 over the int32 extremes, the identity M = 2^30, T = 30), ``b`` int16 / int32, saturation both ways, int16
and int32 outputs, rows of 1 .. 3 beats with tails, random stalls; the narrow (int8) mode on the same instance;
illegal run-time values (M below 2^30, b_multiplier set, out_bits 8 in wide mode, 32 in narrow mode, shift 0)
flag BAD_PARAM and drain the row, never hang."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from npuforge.golden.elementwise import ResidualParams, residual_add
from npuforge.golden.models.intops import IDENTITY_REQUANT, residual_add_wide
from npuforge.rtl.vector.common import ErrorCode
from npuforge.rtl.vector.elementwise import ResidualAdd

LANES = 4
I32 = (-(1 << 31), (1 << 31) - 1)


def _run(dut, rows, settings, *, seed=0):
    """Stream rows (list of (a, b) int lists) with per-row port ``settings``; return (rows out, error, code)."""
    rng = random.Random(seed)
    out_rows, result = [], {}

    async def tb(ctx):
        for (a, b), ports in zip(rows, settings):
            for name, v in ports.items():
                if not name.startswith("_"):
                    ctx.set(getattr(dut, name), v)
            ctx.set(dut.row_len, len(a))
            beats = [(a[i:i + LANES], b[i:i + LANES]) for i in range(0, len(a), LANES)]
            got, sent, idle = [], 0, 0
            expect_out = not ports.get("_bad")
            while sent < len(beats) or (expect_out and len(got) < len(beats)):
                send = sent < len(beats) and rng.random() < 0.75
                ctx.set(dut.a.valid, send)
                ctx.set(dut.b.valid, send)
                if send:
                    la, lb = beats[sent]
                    for k in range(LANES):
                        ctx.set(dut.a.payload.data[k], la[k] if k < len(la) else 0)
                        ctx.set(dut.b.payload.data[k], lb[k] if k < len(lb) else 0)
                    ctx.set(dut.a.payload.last, sent == len(beats) - 1)
                    ctx.set(dut.b.payload.last, sent == len(beats) - 1)
                ready = rng.random() < 0.75
                ctx.set(dut.o.ready, ready)
                fired = send and ctx.get(dut.a.ready)
                if ready and ctx.get(dut.o.valid):
                    got.append(([ctx.get(dut.o.payload.data[k]) for k in range(LANES)], ctx.get(dut.o.payload.last)))
                await ctx.tick()
                sent += fired
                idle += 1
                assert idle < 2000, "hang"
            ctx.set(dut.a.valid, 0)
            ctx.set(dut.b.valid, 0)
            for _ in range(8):
                ctx.set(dut.o.ready, 1)
                if ctx.get(dut.o.valid):
                    got.append(([ctx.get(dut.o.payload.data[k]) for k in range(LANES)], ctx.get(dut.o.payload.last)))
                await ctx.tick()
            if expect_out:
                assert [last for _, last in got] == [i == len(beats) - 1 for i in range(len(beats))], "last flags"
                flat = [v for lanes, _ in got for v in lanes]
                assert not any(flat[len(a):]), "tail lanes must be 0"
                out_rows.append(flat[:len(a)])
            else:
                assert not got, "a dropped row produced output"
                result.setdefault("errors", []).append((ctx.get(dut.error), ctx.get(dut.error_code)))
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out_rows, result.get("errors", [])


def _edge(n, lo, hi, rng):
    v = rng.integers(lo, hi + 1, n)
    v[:min(n, 3)] = [lo, hi, 0][:min(n, 3)]
    return v


def test_wide_residual_vs_golden():
    dut = ResidualAdd(lanes=LANES, max_row=64, in_width=32, out_width=32)
    rng = np.random.default_rng(5)
    rows, settings, want = [], [], []
    cases = [(32, 32, 32, IDENTITY_REQUANT), (16, 32, 32, (1_500_000_000, 3)), (32, 16, 16, (1 << 30, 0)),
             (8, 16, 16, (2_000_000_000, -20)), (32, 32, 16, ((1 << 31) - 1, 31)), (16, 16, 32, (1 << 30, -30))]
    for t_total in range(1, 63):
        cases.append((32, 32, 32 if t_total % 2 else 16, (int(rng.integers(1 << 30, 1 << 31)), t_total - 31)))
    for i, (a_bits, b_bits, out_bits, (mult, shift)) in enumerate(cases):
        n = [1, 3, 4, 5, 11][i % 5]
        a = _edge(n, -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1, rng)
        b = _edge(n, -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1, rng)[::-1].copy()
        rows.append(([int(v) for v in a], [int(v) for v in b]))
        settings.append(dict(wide=1, a_multiplier=mult, b_multiplier=0, shift=31 + shift, out_bits=out_bits))
        want.append([int(v) for v in residual_add_wide(a, b, mult, shift, out_bits=out_bits)])
    # The narrow (int8) residual on the same instance, rows interleaved with the wide ones.
    p = ResidualParams(a_multiplier=1_200_000_000, b_multiplier=900_000_000, shift=33)
    for n in (1, 7):
        a, b = _edge(n, -128, 127, rng), _edge(n, -128, 127, rng)
        rows.append(([int(v) for v in a], [int(v) for v in b]))
        settings.append(dict(wide=0, a_multiplier=p.a_multiplier, b_multiplier=p.b_multiplier, shift=p.shift,
                             out_bits=8))
        want.append([int(v) for v in residual_add(a.astype(np.int8), b.astype(np.int8), p)])
    got, errors = _run(dut, rows, settings, seed=1)
    assert not errors
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, (i, settings[i], rows[i], g, w)


@pytest.mark.parametrize("ports", [
    dict(wide=1, a_multiplier=(1 << 30) - 1, b_multiplier=0, shift=30, out_bits=32),   # M not normalised
    dict(wide=1, a_multiplier=1 << 30, b_multiplier=1, shift=30, out_bits=32),         # b multiplier set
    dict(wide=1, a_multiplier=1 << 30, b_multiplier=0, shift=30, out_bits=8),          # no int8 residual stream
    dict(wide=0, a_multiplier=1 << 30, b_multiplier=1 << 30, shift=30, out_bits=32),   # narrow mode: 8 / 16 only
    dict(wide=1, a_multiplier=1 << 30, b_multiplier=0, shift=0, out_bits=16),          # T = 0
])
def test_wide_residual_bad_parameters_drain(ports):
    dut = ResidualAdd(lanes=LANES, max_row=64, in_width=32, out_width=32)
    rows = [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([7, -7], [1, 1])]
    good = dict(wide=1, a_multiplier=1 << 30, b_multiplier=0, shift=30, out_bits=32)
    got, errors = _run(dut, rows, [{**ports, "_bad": 1}, good], seed=2)
    assert errors == [(1, ErrorCode.BAD_PARAM)]
    assert got == [[8, -6]]                      # the next row after clear is exact
