"""Test top for the DMA: CSR + DMA + a scratchpad ``Memory``; used only by the tests and the bench.

A command reaches the DMA from the CSR (DESC_* registers + CTRL.DESC_ISSUE, which wins) or from the
``desc`` stream port. The testbench seeds and inspects the scratchpad through the ``dbg_wr`` /
``dbg_rd`` ports (same word layout as the DMA's: word ``a`` holds local bytes ``a*B .. a*B+B-1``,
little-endian).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.axi import AXI4LiteSignature, AXI4Signature
from npuforge.rtl.csr import Csr, CsrConfig
from npuforge.rtl.dma import DMA_DESCRIPTOR, Dma, DmaConfig, LocalReadSignature, LocalWriteSignature

__all__ = ["DmaHarness"]


class DmaHarness(wiring.Component):
    """Members: ``s_axil`` (registers), ``m_axi`` (external memory), ``desc`` (command stream),
    ``irq``, ``dma_busy``/``dma_done`` (for cycle measurements), ``dbg_wr``/``dbg_rd`` (scratchpad)."""

    def __init__(self, config: DmaConfig = DmaConfig()):
        self.config = config
        aw, dw = config.local_addr_width, config.data_width
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=dw, id_width=4)),
            "desc": In(stream.Signature(DMA_DESCRIPTOR)),
            "irq": Out(1),
            "dma_busy": Out(1),
            "dma_done": Out(1),
            "dbg_wr": In(LocalWriteSignature(aw, dw)),
            "dbg_rd": In(LocalReadSignature(aw, dw)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        hw_config = (c.data_width // 8) | (c.n_windows << 8) | (c.max_outstanding << 16)
        m.submodules.csr = csr = Csr(CsrConfig(n_windows=c.n_windows, hw_config=hw_config))
        m.submodules.dma = dma = Dma(c)
        m.submodules.spad = spad = memory.Memory(shape=c.data_width, depth=c.local_depth, init=[])

        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        wiring.connect(m, dma.m_axi, wiring.flipped(self.m_axi))

        # CSR-issued descriptors take priority over the stream port.
        with m.If(csr.desc.valid):
            m.d.comb += [dma.desc.valid.eq(1), dma.desc.payload.eq(csr.desc.payload),
                         csr.desc.ready.eq(dma.desc.ready)]
        with m.Else():
            m.d.comb += [dma.desc.valid.eq(self.desc.valid), dma.desc.payload.eq(self.desc.payload),
                         self.desc.ready.eq(dma.desc.ready)]

        m.d.comb += [
            dma.windows.eq(csr.windows),
            dma.abort.eq(csr.soft_reset),
            csr.busy.eq(dma.busy), csr.done.eq(dma.done), csr.error.eq(dma.error),
            csr.fault_addr.eq(dma.fault_addr), csr.mem_stall.eq(dma.bus_stall),
            csr.rd_bytes.eq(dma.rd_bytes), csr.wr_bytes.eq(dma.wr_bytes),
            csr.macs.eq(0), csr.ring_tail.eq(0),
            self.irq.eq(csr.irq), self.dma_busy.eq(dma.busy), self.dma_done.eq(dma.done),
        ]

        dma_wp = spad.write_port(granularity=8)
        dbg_wp = spad.write_port(granularity=8)
        dma_rp = spad.read_port()
        dbg_rp = spad.read_port()
        m.d.comb += [
            dma_wp.addr.eq(dma.local_wr.addr), dma_wp.data.eq(dma.local_wr.data), dma_wp.en.eq(dma.local_wr.en),
            dma_rp.addr.eq(dma.local_rd.addr), dma_rp.en.eq(dma.local_rd.en), dma.local_rd.data.eq(dma_rp.data),
            dbg_wp.addr.eq(self.dbg_wr.addr), dbg_wp.data.eq(self.dbg_wr.data), dbg_wp.en.eq(self.dbg_wr.en),
            dbg_rp.addr.eq(self.dbg_rd.addr), dbg_rp.en.eq(self.dbg_rd.en), self.dbg_rd.data.eq(dbg_rp.data),
        ]
        return m
