"""The PE array's control components on the Amaranth simulator: the weight banks alternate and hold a finished tile
until it retires, the two-entry output queue passes every beat once and in order under random stalls when its
producer obeys ``has_room``, and the output-stationary drain sends ``rows`` rows per captured tile and holds the next
tile end until then. The array itself is tested in test_array_amaranth.py and tests/sim/test_array_cocotb.py."""

from __future__ import annotations

import random

import pytest

from npuforge.rtl.array_control import EnableCopies, OsDrainControl, OutputQueue, WeightBanks
from tests.conftest import simulate


def test_weight_banks_double_buffer():
    rows = 3
    dut = WeightBanks(rows=rows)
    trace = []

    async def bench(ctx):
        async def step(load=0, retire=0):
            ctx.set(dut.load, load)
            ctx.set(dut.retire, retire)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.retire, 0)
            trace.append((ctx.get(dut.load_bank), ctx.get(dut.load_row), ctx.get(dut.load_free),
                          ctx.get(dut.compute_bank), ctx.get(dut.compute_ready)))
        for _ in range(rows):
            await step(load=1)             # tile 0 fills bank 0
        for _ in range(rows):
            await step(load=1)             # tile 1 fills bank 1 while bank 0 computes
        await step(retire=1)               # tile 0 retires: bank 0 free, bank 1 computes
        await step(load=1)                 # tile 2 starts filling bank 0

    simulate(dut, bench)
    assert trace[rows - 1] == (1, 0, 1, 0, 1)           # bank 0 ready, next rows go to bank 1
    assert trace[2 * rows - 1] == (0, 0, 0, 0, 1)       # both full: no bank takes weights
    assert trace[2 * rows] == (0, 0, 1, 1, 1)           # tile 0 retired
    assert trace[2 * rows + 1] == (0, 1, 1, 1, 1)


@pytest.mark.parametrize("groups", [1, 4])
def test_output_queue_loses_and_repeats_nothing(groups):
    """Every beat once and in order, and a stalled head keeps its payload (the stream rule), with the payload in
    one slice and in four slices with their own pointer copies."""
    dut = OutputQueue(shape=16, groups=groups)
    rng = random.Random(2)
    got, sent = [], []

    async def bench(ctx):
        room, n = 1, 0
        stalled = None
        for _ in range(600):
            push = room and rng.random() < 0.8       # the producer stops when the queue had no room
            ready = rng.random() < 0.5
            ctx.set(dut.push, push)
            # Distinct data with bits in every slice: n times an odd constant, modulo 2^16 (a bijection).
            ctx.set(dut.data, (n * 0x9E37) & 0xFFFF)
            ctx.set(dut.last, n % 5 == 4)
            ctx.set(dut.o.ready, ready)
            head = (ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.last))
            if stalled is not None:
                assert ctx.get(dut.o.valid) and head == stalled
            stalled = head if ctx.get(dut.o.valid) and not ready else None
            if ready and ctx.get(dut.o.valid):
                got.append(head)
            room = ctx.get(dut.has_room)
            if push:
                sent.append(((n * 0x9E37) & 0xFFFF, int(n % 5 == 4)))
                n += 1
            await ctx.tick()
        ctx.set(dut.push, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(3):
            if ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.last)))
            await ctx.tick()

    simulate(dut, bench)
    assert got == sent and len(sent) > 200


def test_os_drain_sends_rows_and_holds_the_next_tile_end():
    rows = 3
    dut = OsDrainControl(rows=rows)
    trace = []

    async def bench(ctx):
        ctx.set(dut.tile_end, 1)
        await ctx.tick()
        ctx.set(dut.tile_end, 0)
        trace.append(("end", ctx.get(dut.end_pending), ctx.get(dut.shadow_full)))
        ctx.set(dut.capture, 1)
        await ctx.tick()
        ctx.set(dut.capture, 0)
        drained = []
        for ready in (0, 1, 0, 1, 1, 1):
            ctx.set(dut.ready, ready)
            if ctx.get(dut.drain):
                drained.append(ctx.get(dut.drain_row))
            trace.append(("drain", ctx.get(dut.end_pending), ctx.get(dut.shadow_full)))
            await ctx.tick()
        trace.append(("done", ctx.get(dut.end_pending), ctx.get(dut.shadow_full)))
        trace.append(("rows", drained))

    simulate(dut, bench)
    assert trace[0] == ("end", 1, 0)
    assert all(t[1:] == (1, 1) for t in trace[1:6])
    assert trace[-2] == ("done", 0, 0)
    assert trace[-1] == ("rows", list(range(rows)))


def test_enable_copies_equal_the_single_counter_enable():
    """Every copy of the distributed ws enable (three groups, each with its own occupancy counter) equals, in every
    cycle, the enable registered from the output queue's own ``has_room``, under random results and stalls."""
    from amaranth import Elaboratable, Module, Signal

    class Top(Elaboratable):
        def __init__(self):
            self.push_req, self.ready = Signal(), Signal()
            self.queue = OutputQueue(shape=8)
            self.en_ref = Signal(init=1)
            self.copies = []

        def elaborate(self, platform):
            m = Module()
            m.submodules.queue = q = self.queue
            en = EnableCopies(m, push_req=self.push_req, ready=self.ready, platform=platform)
            self.copies = [en.copy(f"{g}_{i}", g) for g in ("ctl", "row0", "col3") for i in range(2)]
            m.d.comb += [q.push.eq(self.en_ref & self.push_req), q.o.ready.eq(self.ready)]
            m.d.sync += self.en_ref.eq(q.has_room)
            return m

    dut = Top()
    rng = random.Random(4)
    seen = []

    async def bench(ctx):
        for _ in range(400):
            ctx.set(dut.push_req, rng.random() < 0.7)
            ctx.set(dut.ready, rng.random() < 0.4)
            ref = ctx.get(dut.en_ref)
            seen.append(ref)
            assert [ctx.get(c) for c in dut.copies] == [ref] * len(dut.copies)
            await ctx.tick()

    simulate(dut, bench)
    assert 50 < sum(seen) < 350  # the enable both held and dropped
