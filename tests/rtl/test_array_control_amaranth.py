"""The PE array's control components on the Amaranth simulator: the weight banks alternate and hold a finished tile
until it retires, the two-entry output queue passes every beat once and in order under random stalls when its
producer obeys ``has_room``, and the output-stationary drain sends ``rows`` rows per captured tile and holds the next
tile end until then. The array itself is tested in test_array_amaranth.py and tests/sim/test_array_cocotb.py."""

from __future__ import annotations

import random


from npuforge.rtl.array_control import OsDrainControl, OutputQueue, WeightBanks
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


def test_output_queue_loses_and_repeats_nothing():
    dut = OutputQueue(shape=16)
    rng = random.Random(2)
    got, sent = [], []

    async def bench(ctx):
        room, n = 1, 0
        for _ in range(600):
            push = room and rng.random() < 0.8       # the producer stops when the queue had no room
            ready = rng.random() < 0.5
            ctx.set(dut.push, push)
            ctx.set(dut.data, n)
            ctx.set(dut.last, n % 5 == 4)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.last)))
            room = ctx.get(dut.has_room)
            if push:
                sent.append((n, int(n % 5 == 4)))
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
