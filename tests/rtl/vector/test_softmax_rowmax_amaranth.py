"""Softmax's row max (rtl.vector.softmax_sum.SoftmaxRowMax) on the Amaranth simulator: the max over the live lanes
of a row's beats, against Python's max, with the all-pairs form (up to PARALLEL_LANES lanes) and the compare chain
(more lanes), extreme values, ties and beats without a live lane."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from npuforge.rtl.vector.softmax_sum import SoftmaxRowMax


@pytest.mark.parametrize("lanes,in_width", [(1, 8), (2, 32), (4, 16), (8, 8)])
def test_row_max_of_live_lanes(lanes, in_width):
    dut = SoftmaxRowMax(lanes=lanes, max_row=64, in_width=in_width)
    rng = random.Random(lanes * 100 + in_width)
    lo, hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    rows = []
    for r in range(40):
        beats = []
        for _ in range(rng.randint(1, 4)):
            pool = [lo, hi, 0, -1, lo + 1] if r % 3 == 0 else [rng.randint(lo, hi)]
            values = [rng.choice(pool) if r % 3 == 0 else rng.randint(lo, hi) for _ in range(lanes)]
            live = [rng.random() < 0.7 for _ in range(lanes)]
            beats.append((values, live))
        rows.append(beats)
    got = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for beats in rows:
            for j, (values, live) in enumerate(beats):
                for k in range(lanes):
                    ctx.set(dut.beat[k], values[k])
                ctx.set(dut.lane_valid, sum(1 << k for k in range(lanes) if live[k]))
                ctx.set(dut.keep, 1)
                ctx.set(dut.push, j == len(beats) - 1)
                await ctx.tick()
                if ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload.max))
            ctx.set(dut.keep, 0)
            ctx.set(dut.push, 0)
        for _ in range(4):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload.max))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    want = [max([v for values, live in beats for v, ok in zip(values, live) if ok], default=lo) for beats in rows]
    # o stays valid for one cycle per row here (always taken): one record per row, in order.
    assert got == want
