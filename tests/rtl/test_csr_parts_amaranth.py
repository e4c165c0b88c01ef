"""The CSR's parts on the Amaranth simulator: the AXI4-Lite register port (one write and one read in flight, the
register file's answer and SLVERR registered and held until taken) and the performance counters (increments every
cycle, clear, a LO read latches the matching HI half). The whole register file is tested in
tests/rtl/npu/test_csr_cocotb.py."""

from __future__ import annotations


from npuforge.rtl.axi import Resp
from npuforge.rtl.csr import AxiLiteRegisterPort, PerfCounters
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
