"""Softmax's exp pipeline (rtl.vector.softmax_exp.SoftmaxExp) on the Amaranth simulator: e_j of every lane against
golden.softmax's steps 2-6 (golden._exp_terms on a two-column row [m, x], whose second e is e_j), over random scores
and parameters, the clamp of u at its boundary (E3: p >> (t - 1) = 2^21 - 2 and 2^21 - 1), the largest shifts (t - 1
past 41, where the clamp's threshold leaves 62 bits), d at its 31-bit clamp and masked lanes; the beats leave after
SoftmaxExp.STAGES cycles, in order, with their tags."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from npuforge.golden.softmax import SoftmaxParams, _exp_terms
from npuforge.rtl.vector.softmax_exp import SoftmaxExp
from npuforge.spec.vector_ops import D_MAX, EXP_SHIFT_MAX, EXP_SHIFT_MIN

LANES, IN_WIDTH = 4, 32


def golden_e(m, x, mult, shift):
    """e of score x in a row whose max is m (golden steps 2-6)."""
    e, _ = _exp_terms(np.array([[m, x]], dtype=np.int64), SoftmaxParams(IN_WIDTH, mult, shift), False, 0, None)
    return int(e[0, 1])


def _beats(rng):
    lo, hi = -(1 << (IN_WIDTH - 1)), (1 << (IN_WIDTH - 1)) - 1
    beats = []
    for b in range(120):
        shift = rng.choice([EXP_SHIFT_MIN, EXP_SHIFT_MAX, 10, 11, 12, 30, rng.randint(EXP_SHIFT_MIN, EXP_SHIFT_MAX)])
        mult = rng.choice([(1 << 31) - 1, 1 << 30, rng.randrange(1 << 30, 1 << 31)])
        m = rng.choice([hi, 0, rng.randint(lo, hi)])
        k = 30 + shift
        xs = []
        for _ in range(LANES):
            kind = rng.random()
            if kind < 0.3 and b % 2:
                # d * M at the clamp's boundary: (d * M) >> k = 2^21 - 2 or 2^21 - 1 (and one above), when a d <= m - lo
                # reaches it.
                target = ((1 << 21) - rng.choice([2, 1, 0])) << k
                d = min(-(-target // mult), D_MAX)
            elif kind < 0.4:
                d = rng.choice([0, 1, D_MAX, D_MAX + 5])
            else:
                d = rng.randrange(1 << rng.randint(1, 32))
            xs.append(max(lo, min(hi, m - d)))
        masked = [rng.random() < 0.15 for _ in range(LANES)]
        beats.append((m, mult, shift, xs, masked))
    return beats


@pytest.mark.parametrize("seed", [1, 2])
def test_exp_against_golden(seed):
    rng = random.Random(seed)
    dut = SoftmaxExp(lanes=LANES, in_width=IN_WIDTH, tag_shape=unsigned(8))
    beats = _beats(rng)
    got = []

    async def tb(ctx):
        ctx.set(dut.en, 1)
        cycle, entered = 0, {}
        for b in range(len(beats) + SoftmaxExp.STAGES + 1):
            if b < len(beats):
                m, mult, shift, xs, masked = beats[b]
                ctx.set(dut.valid_in, 1)
                ctx.set(dut.row_max, m)
                ctx.set(dut.mult, mult)
                ctx.set(dut.t_minus_1, 30 + shift)
                ctx.set(dut.masked, sum(1 << k for k in range(LANES) if masked[k]))
                ctx.set(dut.tag_in, b)
                for k in range(LANES):
                    ctx.set(dut.x[k], xs[k])
                entered[b] = cycle
            else:
                ctx.set(dut.valid_in, 0)
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.valid):
                tag = ctx.get(dut.tag)
                got.append((tag, cycle - entered[tag], [ctx.get(dut.e[k]) for k in range(LANES)]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert [tag for tag, _, _ in got] == list(range(len(beats)))
    assert {latency for _, latency, _ in got} == {SoftmaxExp.STAGES}
    for (tag, _, e), (m, mult, shift, xs, masked) in zip(got, beats):
        want = [0 if masked[k] else golden_e(m, xs[k], mult, shift) for k in range(LANES)]
        assert e == want, (tag, m, mult, shift, xs, masked)
