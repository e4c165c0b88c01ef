"""The command fetcher (rtl.controller.fetch.CommandFetch) alone on Amaranth's simulator: its AR request comes from
registers (issue #16), and the ring walk (addresses, wrap, overrun at ``ring_head``) is unchanged."""

from __future__ import annotations

from amaranth.sim import Simulator

from npuforge.rtl.controller.fetch import CommandFetch

B = 8          # bus bytes: two beats a command


def _run(bench_body):
    dut = CommandFetch(word_bytes=B, decode_cycles=2)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        await bench_body(ctx, dut)
    sim.add_testbench(bench)
    sim.run()


async def _serve(ctx, dut, log):
    """Take the AR request, return two beats; log (araddr, the held command's tail)."""
    while not ctx.get(dut.bus.arvalid):
        await ctx.tick()
    addr = ctx.get(dut.bus.araddr)
    ctx.set(dut.bus.arready, 1)
    await ctx.tick()
    ctx.set(dut.bus.arready, 0)
    for k in range(2):
        ctx.set(dut.bus.rvalid, 1)
        ctx.set(dut.bus.rdata, addr + k)
        ctx.set(dut.bus.rlast, k == 1)
        await ctx.tick()
    ctx.set(dut.bus.rvalid, 0)
    while not ctx.get(dut.valid):
        await ctx.tick()
    log.append((addr, ctx.get(dut.tail)))


def test_fetch_walks_the_ring_and_overruns_at_its_head():
    log, overrun = [], []

    async def bench(ctx, dut):
        ctx.set(dut.ring_base, 0x1008)        # 16-byte aligned down: 0x1000
        ctx.set(dut.ring_size, 48)
        ctx.set(dut.ring_head, 32)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(2):
            await _serve(ctx, dut, log)
            ctx.set(dut.next, 1)
            await ctx.tick()
            ctx.set(dut.next, 0)
        for _ in range(3):
            overrun.append(ctx.get(dut.overrun))
            assert not ctx.get(dut.bus.arvalid)
            await ctx.tick()

    _run(bench)
    assert log == [(0x1000, 0), (0x1010, 16)]
    assert overrun == [1, 0, 0]


def test_fetch_ar_request_is_registered():
    """In ADDR, ``arvalid`` and ``araddr`` do not follow ``ring_head`` / ``ring_base`` in the same cycle (they come
    from registers); a head written onto the tail is an overrun one cycle later."""
    seen = []

    async def bench(ctx, dut):
        ctx.set(dut.ring_base, 0x2000)
        ctx.set(dut.ring_size, 64)
        ctx.set(dut.ring_head, 48)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.bus.arvalid) and ctx.get(dut.bus.araddr) == 0x2000
        # No arready: the request waits. The head moves onto the tail and the base moves, mid-cycle.
        ctx.set(dut.ring_head, 0)
        ctx.set(dut.ring_base, 0x3000)
        seen.append((ctx.get(dut.bus.arvalid), ctx.get(dut.bus.araddr), ctx.get(dut.overrun)))
        await ctx.tick()
        seen.append((ctx.get(dut.bus.arvalid), ctx.get(dut.overrun)))

    _run(bench)
    assert seen == [(1, 0x2000, 0), (0, 1)]
