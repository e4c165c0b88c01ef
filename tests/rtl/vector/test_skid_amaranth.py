"""The vector unit's output buffer (rtl.vector.skid.SkidBuffer) on the Amaranth simulator: every beat out once and
in order under random valid / ready patterns, a beat a cycle one cycle late when nothing stalls, and i.ready a
register (unchanged when o.ready changes within a cycle)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from npuforge.rtl.vector.skid import SkidBuffer


def _run(p_valid, p_ready, seed, beats=300):
    dut = SkidBuffer(unsigned(16))
    rng = random.Random(seed)
    sent, got, log = [], [], []

    async def tb(ctx):
        pending = None
        cycle = 0
        while len(got) < beats and cycle < 20 * beats:
            if pending is None and len(sent) < beats and rng.random() < p_valid:
                pending = rng.randrange(1 << 16)
            ctx.set(dut.i.valid, pending is not None)
            ctx.set(dut.i.payload, pending or 0)
            ready = rng.random() < p_ready
            # i.ready is a register: the same whatever o.ready is in this cycle.
            ctx.set(dut.o.ready, not ready)
            other = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, ready)
            i_ready = ctx.get(dut.i.ready)
            assert i_ready == other, cycle
            o_valid = ctx.get(dut.o.valid)
            if o_valid and ready:
                got.append(ctx.get(dut.o.payload))
            log.append((pending is not None and i_ready, o_valid, o_valid and ready, ctx.get(dut.o.payload)))
            if pending is not None and i_ready:
                sent.append(pending)
                pending = None
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return sent, got, log


@pytest.mark.parametrize("p_valid,p_ready,seed", [(1.0, 0.5, 1), (0.5, 1.0, 2), (0.7, 0.3, 3), (0.9, 0.9, 4),
                                                  (0.2, 0.2, 5)])
def test_every_beat_once_in_order(p_valid, p_ready, seed):
    sent, got, log = _run(p_valid, p_ready, seed)
    assert len(got) == 300
    assert got == sent[:len(got)]
    # o.valid never drops, nor its payload changes, before the beat is taken.
    for (_, valid, taken, payload), (_, valid_next, _, payload_next) in zip(log, log[1:]):
        if valid and not taken:
            assert valid_next and payload_next == payload


def test_full_rate_one_cycle_late():
    _, _, log = _run(1.0, 1.0, 6, beats=50)
    taken_in = [t for t, _, _, _ in log]
    taken_out = [t for _, _, t, _ in log]
    # Nothing stalls: a beat in every cycle, each out the cycle after it went in.
    assert all(taken_in[:50]) and not taken_out[0] and all(taken_out[1:51])
