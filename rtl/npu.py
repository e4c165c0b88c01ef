"""NPU top: controller + PE array + requant + scratchpad + accumulator + DMA + CSR behind standard buses.

Ports (flat AXI member names, so cocotbext-axi binds them with ``bus_separator="__"``)
    ``m_axi``  AXI4 manager (``m_axi__arvalid`` ...), ``axi_data_bits`` wide: command fetch and DMA.
    ``s_axil`` AXI4-Lite subordinate, 12-bit addresses, 32-bit data: the registers of :mod:`rtl.csr`
               (docs/registers.md).
    ``irq``    level interrupt (``CTRL.IRQ_EN`` and a pending DONE/ERROR in ``IRQ_STATUS``).

Host sequence: write the address windows and ``RING_BASE``/``RING_SIZE``/``RING_HEAD`` (program bytes), then
``CTRL.START``; wait for ``irq`` / ``STATUS.DONE``; ``STATUS.ERROR_CODE`` is the ISA error code (0 after HALT),
``FAULT_ADDR`` the fault address, ``RING_TAIL`` = 16 x index of the HALT or faulting instruction. The
performance counters count BUSY_CYCLES (controller busy), STALL_CYCLES (DMA transfer cycles with no data beat),
MACS (useful multiply-accumulates), BYTES_READ/BYTES_WRITTEN (DMA payload bytes).

``CTRL.SOFT_RESET`` aborts the DMA (it drains its bursts) and resets the controller, array and requant unit;
memories keep their contents; the next START waits until the bus is quiet. The CSR's host-issued descriptor
(``DESC_*``, ``CTRL.DESC_ISSUE``) is not connected in this top: DMA runs only from programs.

Bus sharing: the command fetcher and the DMA share AR/R. The fetcher only asks while the DMA is idle and owns R
from its AR handshake to ``rlast``; AW/W/B belong to the DMA.

``cfg`` is any object with the :class:`gen.npu_config.NPUConfig` attributes (rtl/ does not import gen/);
``used_masks`` maps each opcode to the bits its fields occupy (``gen.isa.FORMATS``, see gen/npu_build.py).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4Signature, Burst
from .controller import Controller
from .csr import Csr, CsrConfig
from .dma import Dma, DmaConfig
from .memories import Accumulator, Scratchpad

__all__ = ["NPU"]


class NPU(wiring.Component):
    """The NPU (see the module docstring).

    Members
    -------
    m_axi : Out(AXI4Signature(addr_width=32, data_width=cfg.axi_data_bits, id_width=4))
    s_axil : In(AXI4LiteSignature(addr_width=12, data_width=32))
    irq : Out(1)
    """

    def __init__(self, cfg, *, used_masks: dict):
        self.cfg = cfg
        self.B = cfg.axi_data_bits // 8
        self.spad_words = cfg.spad_bytes // self.B
        self.acc_words = cfg.acc_bytes // self.B
        arr = cfg.array
        self.dataflows = ("ws", "os") if arr.dataflow == "both" else (arr.dataflow,)
        if "ws" not in self.dataflows:
            raise ValueError(f"the NPU controller needs a weight-stationary array: array.dataflow must be 'ws' "
                             f"or 'both', got {arr.dataflow!r}")
        self.used_masks = dict(used_masks)
        self.hw_config = self.B | (cfg.windows << 8) | ((arr.rows & 0xFF) << 16) | ((arr.cols & 0xFF) << 24)
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=cfg.axi_data_bits, id_width=4)),
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, B = self.cfg, self.B
        arr = cfg.array
        m.submodules.csr = csr = Csr(CsrConfig(n_windows=cfg.windows, macs_width=16, hw_config=self.hw_config))
        dma_cfg = DmaConfig(data_width=cfg.axi_data_bits, local_depth=max(self.spad_words, self.acc_words),
                            n_windows=cfg.windows, max_outstanding=4)
        m.submodules.dma = dma = Dma(dma_cfg)
        ctrl = Controller(word_bytes=B, spad_words=self.spad_words, acc_words=self.acc_words, rows=arr.rows,
                          cols=arr.cols, precisions=arr.precisions, dataflows=self.dataflows,
                          pipeline=arr.mac_pipeline, used_masks=self.used_masks)
        m.submodules.ctrl = ResetInserter(csr.soft_reset)(ctrl)
        m.submodules.spad = spad = Scratchpad(word_bytes=B, depth=self.spad_words, banks=cfg.spad_banks)
        m.submodules.acc = acc = Accumulator(word_bytes=B, depth=self.acc_words)

        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        m.d.comb += [
            self.irq.eq(csr.irq),
            ctrl.start.eq(csr.start),
            ctrl.ring_base.eq(csr.ring_base), ctrl.ring_size.eq(csr.ring_size), ctrl.ring_head.eq(csr.ring_head),
            csr.ring_tail.eq(ctrl.ring_tail),
            csr.busy.eq(ctrl.busy), csr.done.eq(ctrl.done), csr.error.eq(ctrl.error),
            csr.fault_addr.eq(ctrl.fault_addr),
            csr.mem_stall.eq(dma.bus_stall), csr.macs.eq(ctrl.macs),
            csr.rd_bytes.eq(dma.rd_bytes), csr.wr_bytes.eq(dma.wr_bytes),
            csr.desc.ready.eq(0),
            dma.windows.eq(csr.windows), dma.abort.eq(csr.soft_reset),
            dma.desc.valid.eq(ctrl.dma_desc.valid), dma.desc.payload.eq(ctrl.dma_desc.payload),
            ctrl.dma_desc.ready.eq(dma.desc.ready),
            ctrl.dma_busy.eq(dma.busy), ctrl.dma_done.eq(dma.done), ctrl.dma_error.eq(dma.error),
            ctrl.dma_fault.eq(dma.fault_addr),
        ]

        # ---- AXI4: DMA owns AW/W/B; AR/R shared with the command fetcher ----
        axi, d_axi, f = self.m_axi, dma.m_axi, ctrl.fetch
        for name in ("awvalid", "awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot",
                     "wvalid", "wdata", "wstrb", "wlast", "bready"):
            m.d.comb += getattr(axi, name).eq(getattr(d_axi, name))
        for name in ("awready", "wready", "bvalid", "bid", "bresp"):
            m.d.comb += getattr(d_axi, name).eq(getattr(axi, name))
        fetch_owner = Signal()            # R belongs to the fetcher until its rlast (survives a soft reset)
        fetch_ar = Signal()
        m.d.comb += fetch_ar.eq(f.arvalid & ~fetch_owner)
        with m.If(fetch_ar & axi.arready):
            m.d.sync += fetch_owner.eq(1)
        with m.If(fetch_owner & axi.rvalid & axi.rlast):
            m.d.sync += fetch_owner.eq(0)
        m.d.comb += [
            axi.arvalid.eq(Mux(fetch_ar, 1, d_axi.arvalid & ~fetch_owner)),
            axi.araddr.eq(Mux(fetch_ar, f.araddr, d_axi.araddr)),
            axi.arlen.eq(Mux(fetch_ar, f.arlen, d_axi.arlen)),
            axi.arsize.eq(Mux(fetch_ar, f.arsize, d_axi.arsize)),
            axi.arburst.eq(Mux(fetch_ar, Burst.INCR, d_axi.arburst)),
            axi.arid.eq(Mux(fetch_ar, 0, d_axi.arid)),
            axi.arcache.eq(Mux(fetch_ar, 0b0011, d_axi.arcache)),
            axi.arprot.eq(Mux(fetch_ar, 0b100, d_axi.arprot)),   # instruction access
            axi.arlock.eq(0),
            f.arready.eq(axi.arready & ~fetch_owner),
            d_axi.arready.eq(axi.arready & ~fetch_ar & ~fetch_owner),
            f.rvalid.eq(axi.rvalid & fetch_owner), f.rdata.eq(axi.rdata), f.rresp.eq(axi.rresp),
            f.rlast.eq(axi.rlast),
            d_axi.rvalid.eq(axi.rvalid & ~fetch_owner), d_axi.rdata.eq(axi.rdata), d_axi.rresp.eq(axi.rresp),
            d_axi.rlast.eq(axi.rlast), d_axi.rid.eq(axi.rid),
            # A fetch orphaned by a soft reset is still drained.
            axi.rready.eq(Mux(fetch_owner, 1, d_axi.rready)),
        ]

        # ---- local memories: the DMA (selected memory) or the controller's engines ----
        dma_acc = ctrl.dma_mem
        lw, lr = dma.local_wr, dma.local_rd
        # ISA: a DMA load writes whole local words, bytes past the row as 0.
        wr_data = Cat(*[Mux(lw.en[i], lw.data[8 * i:8 * i + 8], 0) for i in range(B)])
        wr_any = lw.en != 0
        for mem, ctrl_wr, ctrl_rd, sel in ((spad, ctrl.spad_wr, ctrl.spad_rd, ~dma_acc),
                                           (acc, ctrl.acc_wr, ctrl.acc_rd, dma_acc)):
            dma_wr = wr_any & sel
            dma_rd = lr.en & sel
            m.d.comb += [
                mem.wr.addr.eq(Mux(dma_wr, lw.addr, ctrl_wr.addr)),
                mem.wr.data.eq(Mux(dma_wr, wr_data, ctrl_wr.data)),
                mem.wr.en.eq(Mux(dma_wr, (1 << B) - 1, ctrl_wr.en)),
                mem.rd.addr.eq(Mux(dma_rd, lr.addr, ctrl_rd.addr)),
                mem.rd.en.eq(dma_rd | ctrl_rd.en),
                ctrl_rd.data.eq(mem.rd.data),
            ]
        # The DMA's store path reads the memory it was started on.
        m.d.comb += lr.data.eq(Mux(dma_acc, acc.rd.data, spad.rd.data))
        return m
