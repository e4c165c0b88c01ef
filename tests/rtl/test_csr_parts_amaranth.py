"""The CSR's parts on the Amaranth simulator: the AXI4-Lite register port (one write and one read in flight, the
register file's answer and SLVERR registered and held until taken), the performance counters (increments every
cycle, clear, a LO read latches the matching HI half) and the CTRL pulses (SOFT_RESET registered; a write with
SOFT_RESET starts and issues nothing). The whole register file is tested in tests/rtl/npu/test_csr_cocotb.py."""

from __future__ import annotations


from npuforge.rtl.axi import Resp
from npuforge.rtl.csr import CTRL, REG, AxiLiteRegisterPort, Csr, PerfCounters, STATUS
from tests.conftest import simulate


def test_register_port_write_and_read_responses():
    dut = AxiLiteRegisterPort()
    bus = dut.s_axil
    seen = []

    async def bench(ctx):
        # A write to word 5 with wstrb 0b0011, the register file calls it unmapped: SLVERR, held until bready.
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.awaddr, 5 << 2)
        ctx.set(bus.wdata, 0xCAFE)
        ctx.set(bus.wstrb, 0b0011)
        ctx.set(dut.w_err, 1)
        seen.append(("w", ctx.get(dut.w_en), ctx.get(dut.w_addr), ctx.get(dut.w_data), ctx.get(dut.w_strb)))
        await ctx.tick()
        ctx.set(dut.w_err, 0)
        # While the response waits, the next write is not taken.
        seen.append(("w busy", ctx.get(dut.w_en), ctx.get(bus.awready), ctx.get(bus.bvalid), ctx.get(bus.bresp)))
        await ctx.tick()
        ctx.set(bus.bready, 1)
        seen.append(("b", ctx.get(bus.bvalid), ctx.get(bus.bresp)))
        await ctx.tick()
        ctx.set(bus.bready, 0)
        seen.append(("w2", ctx.get(dut.w_en)))                              # the second write is taken now
        await ctx.tick()
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        seen.append(("b2", ctx.get(bus.bvalid), ctx.get(bus.bresp)))      # mapped: OKAY
        # A read of word 9: the register file's value, registered.
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.araddr, 9 << 2)
        ctx.set(dut.r_data, 0x1234)
        seen.append(("r", ctx.get(dut.r_en), ctx.get(dut.r_addr)))
        await ctx.tick()
        ctx.set(dut.r_data, 0)
        seen.append(("r busy", ctx.get(dut.r_en), ctx.get(bus.rvalid), ctx.get(bus.rdata), ctx.get(bus.rresp)))

    simulate(dut, bench)
    assert seen == [("w", 1, 5, 0xCAFE, 0b0011), ("w busy", 0, 0, 1, Resp.SLVERR.value),
                    ("b", 1, Resp.SLVERR.value), ("w2", 1), ("b2", 1, Resp.OKAY.value), ("r", 1, 9),
                    ("r busy", 0, 1, 0x1234, Resp.OKAY.value)]


def test_counters_count_clear_and_latch_hi():
    dut = PerfCounters(increments={"A": 1, "B": 32})
    got = []

    async def bench(ctx):
        ctx.set(dut.inc.A, 1)
        ctx.set(dut.inc.B, 0xC000_0000)
        for _ in range(3):
            await ctx.tick()                     # 3 increments taken (registered: 2 of them added so far)
        ctx.set(dut.inc.A, 0)
        ctx.set(dut.inc.B, 0)
        ctx.set(dut.rd_index, 0)
        got.append(ctx.get(dut.rd_data))         # A.LO one cycle behind its inputs: 2
        await ctx.tick()                         # A = 3, B = 3 * 0xC0000000 = 0x2_4000_0000
        ctx.set(dut.rd_index, 3)                 # B.HI before any LO read: the latch is 0
        got.append(ctx.get(dut.rd_data))
        ctx.set(dut.rd_index, 2)
        ctx.set(dut.rd_en, 1)
        got.append(ctx.get(dut.rd_data))         # B.LO, latches B.HI
        await ctx.tick()
        ctx.set(dut.rd_en, 0)
        ctx.set(dut.inc.B, 0xC000_0000)          # B moves on; the latched HI stays
        await ctx.tick()
        ctx.set(dut.rd_index, 3)
        got.append(ctx.get(dut.rd_data))
        ctx.set(dut.rd_index, 0)
        got.append(ctx.get(dut.rd_data))         # A.LO
        ctx.set(dut.inc.A, 1)                    # registered at this tick, not yet added ...
        await ctx.tick()
        ctx.set(dut.clear, 1)                    # ... the clear drops it, and this cycle's increment
        await ctx.tick()
        ctx.set(dut.clear, 0)
        got.append(ctx.get(dut.rd_data))
        await ctx.tick()
        ctx.set(dut.inc.A, 0)
        got.append(ctx.get(dut.rd_data))         # the increment after the clear is still in the register
        await ctx.tick()
        got.append(ctx.get(dut.rd_data))         # and counted now

    simulate(dut, bench)
    assert got == [2, 0, 0x4000_0000, 2, 3, 0, 0, 1]


def test_ctrl_pulses_soft_reset_registered_and_exclusive():
    """Every CTRL pulse combination with and without SOFT_RESET: ``start`` pulses in the write's cycle unless
    SOFT_RESET is set; ``soft_reset`` pulses once, the cycle after the write; DESC_ISSUE offers the descriptor
    unless SOFT_RESET is set; the soft reset clears STATUS.DONE (set by a done in the write's cycle) and a pending
    descriptor, and keeps IRQ_EN as written."""
    dut = Csr()
    bus = dut.s_axil
    bits = {name: 1 << CTRL[name] for name in ("START", "SOFT_RESET", "DESC_ISSUE", "IRQ_EN")}
    log = []

    async def write(ctx, addr, value, done=0):
        """One AXI4-Lite write; per cycle from the handshake on: (start, soft_reset, desc.valid)."""
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.bready, 1)
        ctx.set(dut.done, done)
        seen = []
        for cycle in range(4):
            assert cycle or ctx.get(bus.awready)
            seen.append((ctx.get(dut.start), ctx.get(dut.soft_reset), ctx.get(dut.desc.valid)))
            await ctx.tick()
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
            ctx.set(dut.done, 0)
        return seen

    async def read(ctx, addr):
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.araddr, addr)
        ctx.set(bus.rready, 1)
        await ctx.tick()
        ctx.set(bus.arvalid, 0)
        value = ctx.get(bus.rdata)
        await ctx.tick()
        return value

    async def bench(ctx):
        for combo in ("START", "DESC_ISSUE", "START|DESC_ISSUE"):
            value = sum(bits[n] for n in combo.split("|"))
            for reset in (0, 1):
                # A pending descriptor from before: the soft reset withdraws it, a plain write keeps it.
                log.append((combo, reset, await write(ctx, REG["CTRL"], bits["DESC_ISSUE"])))
                seen = await write(ctx, REG["CTRL"], value | reset * bits["SOFT_RESET"] | bits["IRQ_EN"],
                                   done=1)
                status = await read(ctx, REG["STATUS"])
                log.append((combo, reset, seen, status >> STATUS["DONE"] & 1, await read(ctx, REG["CTRL"])))
                ctx.set(dut.desc.ready, 1)          # take whatever is offered before the next case
                await ctx.tick()
                ctx.set(dut.desc.ready, 0)

    simulate(dut, bench)
    expect = []
    for combo in ("START", "DESC_ISSUE", "START|DESC_ISSUE"):
        start = int("START" in combo)
        for reset in (0, 1):
            expect.append((combo, reset, [(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 1)]))
            if reset:
                # start dropped; the reset one cycle after the write withdraws the descriptor and clears DONE.
                expect.append((combo, 1, [(0, 0, 1), (0, 1, 0), (0, 0, 0), (0, 0, 0)], 0, bits["IRQ_EN"]))
            else:
                expect.append((combo, 0, [(start, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 1)],
                               int("START" not in combo and "DESC_ISSUE" not in combo), bits["IRQ_EN"]))
    assert log == expect
