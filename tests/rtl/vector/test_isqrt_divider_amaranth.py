"""Sequential ISqrt and Divider units on the Amaranth simulator vs the golden ``isqrt`` / ``reciprocal``.

The square root is checked exhaustively over all 16-bit radicands, and at the widths the norm
operators use with every boundary k^2 - 1, k^2 (k up to the top of the range), the maximum, and
random values. The divider is checked as the golden reciprocal floor(2^R / d) over every divisor of
a 12-bit range, plus random and boundary general divisions (quotient and remainder). Cycle counts
(fixed latency, back-to-back issue) and output back-pressure are asserted too: they are simulated,
hence deterministic.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from npuforge.golden.norms import isqrt as golden_isqrt, reciprocal as golden_reciprocal
from npuforge.rtl.vector.divider import Divider
from npuforge.rtl.vector.isqrt import ISqrt


def run_parallel(units, operands, set_operand, get_result):
    """Feed ``operands`` to ``units`` side by side (P at a time), return the results in order.

    Every unit is issued on the same edge and must present its result exactly ``latency`` cycles
    later; sharing one testbench between P copies amortises the simulator's per-cycle cost.
    """
    m = Module()
    for k, u in enumerate(units):
        m.submodules[f"unit{k}"] = u
    latency = units[0].latency
    results = []

    async def testbench(ctx):
        for u in units:
            ctx.set(u.o.ready, 1)
            ctx.set(u.i.valid, 1)
        for base in range(0, len(operands), len(units)):
            chunk = operands[base:base + len(units)]
            for u, op in zip(units, chunk):
                set_operand(ctx, u, op)
            for u in units:
                assert ctx.get(u.i.ready), "unit not ready for back-to-back issue"
            await ctx.tick().repeat(latency - 1)
            for u in units:
                assert not ctx.get(u.o.valid), "result earlier than the documented latency"
            await ctx.tick()
            for u, _ in zip(units, chunk):
                assert ctx.get(u.o.valid), "result later than the documented latency"
                results.append(get_result(ctx, u))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def isqrt_results(width, steps_per_cycle, radicands, parallel=64):
    units = [ISqrt(width=width, steps_per_cycle=steps_per_cycle) for _ in range(parallel)]
    return run_parallel(units, radicands,
                        lambda ctx, u, n: ctx.set(u.i.payload, n),
                        lambda ctx, u: ctx.get(u.o.payload))


def divider_results(dividend_width, divisor_width, steps_per_cycle, pairs, parallel=32):
    units = [Divider(dividend_width=dividend_width, divisor_width=divisor_width,
                     steps_per_cycle=steps_per_cycle) for _ in range(parallel)]

    def set_operand(ctx, u, ops):
        ctx.set(u.i.payload.dividend, ops[0])
        ctx.set(u.i.payload.divisor, ops[1])
        ctx.set(u.i.payload.dividend_high, ops[2] if len(ops) > 2 else 0)

    def get_result(ctx, u):
        p = u.o.payload
        return (ctx.get(p.quotient), ctx.get(p.remainder), ctx.get(p.div_by_zero), ctx.get(p.overflow))

    return run_parallel(units, pairs, set_operand, get_result)


def assert_all_equal(inputs, got, expected, what):
    bad = [(x, g, e) for x, g, e in zip(inputs, got, expected) if g != e]
    assert len(got) == len(expected)
    assert not bad, f"{len(bad)} {what} mismatches, first (input, rtl, golden): {bad[:5]}"


@pytest.mark.parametrize("half", [0, 1])
def test_isqrt_exhaustive_16bit(half):
    radicands = list(range(half << 15, (half + 1) << 15))
    got = isqrt_results(16, 1, radicands)
    assert_all_equal(radicands, got, [int(golden_isqrt(n)) for n in radicands], "isqrt")


def boundary_radicands(width, rng, n_random):
    top = (1 << width) - 1
    kmax = golden_isqrt(top)
    ks = {1, 2, 3, kmax, kmax - 1} | {rng.randrange(1, kmax + 1) for _ in range(n_random // 4)}
    ks |= {1 << j for j in range(width // 2)} | {(1 << j) - 1 for j in range(1, width // 2 + 1)}
    values = {0, 1, 2, 3, top, top - 1}
    for k in ks:
        values |= {v for v in (k * k - 1, k * k, k * k + 1, (k + 1) * (k + 1) - 1) if 0 <= v <= top}
    values |= {rng.randrange(top + 1) for _ in range(n_random)}
    values |= {1 << j for j in range(width)} | {(1 << j) - 1 for j in range(1, width + 1)}
    return sorted(values)


# 62 bits with 1 and 4 steps per cycle: the norms' unit (radicand N < 2^62); 31/3: a ragged last cycle.
@pytest.mark.parametrize("width,steps_per_cycle", [(62, 1), (62, 4), (31, 3)])
def test_isqrt_boundaries_and_random(width, steps_per_cycle):
    rng = random.Random(width * 100 + steps_per_cycle)
    radicands = boundary_radicands(width, rng, 200)
    got = isqrt_results(width, steps_per_cycle, radicands)
    assert_all_equal(radicands, got, [int(golden_isqrt(n)) for n in radicands], "isqrt")


@pytest.mark.parametrize("frac_bits,steps_per_cycle", [(24, 5)])
def test_reciprocal_every_12bit_divisor(frac_bits, steps_per_cycle):
    """floor(2^frac_bits / d) for every d in [1, 4095] (dividend_width = frac_bits + 1)."""
    divisors = list(range(1, 1 << 12))
    got = divider_results(frac_bits + 1, 12, steps_per_cycle, [(1 << frac_bits, d) for d in divisors], parallel=64)
    expected = [(int(golden_reciprocal(d, frac_bits)), (1 << frac_bits) % d, 0, 0) for d in divisors]
    assert_all_equal(divisors, got, expected, "reciprocal")


def test_divider_random_and_boundaries():
    rng = random.Random(7)
    nw, dw = 33, 20
    pairs = [(n, d) for n in (0, 1, (1 << nw) - 1, 1 << (nw - 1)) for d in (1, 2, 3, (1 << dw) - 1, 1 << (dw - 1))]
    pairs += [(rng.randrange(1 << nw), rng.randrange(1, 1 << dw)) for _ in range(400)]
    pairs += [(rng.randrange(1 << nw), rng.randrange(1, 64)) for _ in range(100)]
    # Quotients right at a boundary: n = q*d - 1, q*d, q*d + d - 1.
    for _ in range(100):
        d = rng.randrange(1, 1 << dw)
        q = rng.randrange(1, ((1 << nw) - 1) // d + 1)
        pairs += [(v, d) for v in (q * d - 1, q * d, q * d + d - 1) if v < (1 << nw)]
    got = divider_results(nw, dw, 3, pairs)
    assert_all_equal(pairs, got, [(n // d, n % d, 0, 0) for n, d in pairs], "division")


def test_norm_reciprocal_with_high_part():
    """The norms' Rcp = floor(2^61 / S), S in [2^30, 2^31): dividend_high = 2^29, 32 zero dividend bits."""
    rng = random.Random(61)
    lo, hi = 1 << 30, (1 << 31) - 1
    divisors = sorted({lo, lo + 1, lo + 2, hi, hi - 1, 3 << 29, (lo + hi) // 2}
                      | {rng.randrange(lo, hi + 1) for _ in range(500)})
    got = divider_results(32, 31, 4, [(0, s, 1 << 29) for s in divisors])
    expected = [(int(golden_reciprocal(s, 61)), (1 << 61) % s, 0, 0) for s in divisors]
    assert_all_equal(divisors, got, expected, "2^61 reciprocal")


def test_divider_bad_operands_flag_and_recover():
    ops = [(12345, 0), (100, 7), ((1 << 16) - 1, 0), (1 << 16, 3), (5, 9, 9), (5, 9, 200), (5, 9, 8)]
    got = divider_results(17, 8, 2, ops, parallel=1)
    assert got == [(0, 0, 1, 0), (14, 2, 0, 0), (0, 0, 1, 0), ((1 << 16) // 3, (1 << 16) % 3, 0, 0),
                   (0, 0, 0, 1), (0, 0, 0, 1), (((8 << 17) + 5) // 9, ((8 << 17) + 5) % 9, 0, 0)]


def test_units_hold_result_under_backpressure():
    """A result stays valid and unchanged while o.ready is low; the next operand waits."""
    dut = ISqrt(width=20, steps_per_cycle=2)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i.payload, 1000)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        ctx.set(dut.i.payload, 99999)
        await ctx.tick().repeat(dut.latency + 5)
        # Held: valid, first root, and the second radicand not taken.
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == golden_isqrt(1000)
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        # Taking the result and issuing the next radicand happen on the same edge.
        assert ctx.get(dut.i.ready)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(dut.latency - 2)
        assert not ctx.get(dut.o.valid)
        await ctx.tick()
        seen.append(ctx.get(dut.o.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [golden_isqrt(99999)]


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(width=8, steps_per_cycle=0), dict(width="16")])
def test_isqrt_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError, match="must be an integer"):
        ISqrt(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(dividend_width=0, divisor_width=8),
                                    dict(dividend_width=8, divisor_width=-1),
                                    dict(dividend_width=8, divisor_width=8, steps_per_cycle=0)])
def test_divider_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        Divider(**kwargs)
