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

``CTRL.SOFT_RESET`` aborts the DMA (it drains its bursts) and resets the controller, array and requant unit (each
through a register of its own, one cycle after the pulse: rtl.controller.common.ResetTap);
memories keep their contents; the next START waits until the bus is quiet. The CSR's host-issued descriptor
(``DESC_*``, ``CTRL.DESC_ISSUE``) is not connected in this top: DMA runs only from programs.

Bus sharing: the command fetcher (ARID 1, one 16-byte burst at a time) and the DMA (ARID 0) share AR through a
locking arbiter (fetch first); R beats are routed by RID. AW/W/B belong to the DMA. Instructions are fetched and
issued while the DMA, the array and the vector unit run (requant, and the vector sequencer of
``cfg.vector_ops`` -- softmax, layernorm, rmsnorm, act, residual, gate, rope -- through
:class:`rtl.vector.unit.VectorUnit` with ``min(vector_lanes, word bytes)`` lanes; rtl/controller.py). The
scratchpad's two matmul read ports are wide: ``ctrl.read_words`` consecutive words (one operand beat,
rtl.memories.read_words_for) per cycle at any word address, so a 16-byte beat on a 64-bit bus costs one cycle.
With vector operators the scratchpad has a second narrow read port (the sequencer's first operand).
On a ``block_scaled`` NPU (``spec.block_scale``) the accumulator extension, a second SRAM of the accumulator's depth
and banking with 16 bits per int32 element, sits beside the accumulator: block-scaled MATMULs read-modify-write it
with the low words, ``VEC_REQUANT.wide`` reads it with them.

``cfg`` is any object with the :class:`gen.config.npu.NPUConfig` attributes (rtl/ does not import gen/);
``used_masks`` maps each opcode to the bits its fields occupy (``spec.isa.FORMATS``, see gen/build/npu.py).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.axi import AXI4LiteSignature, AXI4Signature, Burst
from npuforge.rtl.controller import Controller
from npuforge.rtl.controller.common import ResetTap
from npuforge.rtl.csr import Csr, CsrConfig
from npuforge.rtl.dma import Dma, DmaConfig
from npuforge.rtl.memories import Accumulator, Scratchpad
from npuforge.spec.dataflow import dataflows_of

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
        self.dataflows = dataflows_of(arr.dataflow)
        if "ws" not in self.dataflows:
            raise ValueError(f"the NPU controller needs a weight-stationary array: array.dataflow must be 'ws' "
                             f"or 'both', got {arr.dataflow!r}")
        # spec.block_scale: the matmul engine's block stage, the wide requant and the accumulator extension.
        self.block_scaled = bool(getattr(cfg, "block_scaled", False))
        self.kv16 = bool(getattr(cfg, "kv16", False))     # MATMUL.b16: the int16 KV cache
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
                          pipeline=arr.mac_pipeline, used_masks=self.used_masks,
                          vector_ops=getattr(cfg, "vector_ops", ()), vector_lanes=getattr(cfg, "vector_lanes", 8),
                          block_scaled=self.block_scaled, kv16=self.kv16)
        # SOFT_RESET: the controller resets each engine through a register of its own (rtl.controller.common.ResetTap),
        # and the DMA's abort comes through one too, so every unit sees the reset in the same cycle.
        m.submodules.ctrl = ctrl
        m.submodules.reset_dma = dma_reset = ResetTap()
        has_vec = ctrl.vec is not None
        # The matmul operand ports read ctrl.read_words consecutive words (one operand beat) per cycle.
        m.submodules.spad = spad = Scratchpad(word_bytes=B, depth=self.spad_words, banks=cfg.spad_banks,
                                              read_ports=2 if has_vec else 1, wide_ports=2,
                                              read_words=ctrl.read_words)
        m.submodules.acc = acc = Accumulator(word_bytes=B, depth=self.acc_words, banks=ctrl.acc_banks)

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
            ctrl.soft_reset.eq(csr.soft_reset), dma_reset.i.eq(csr.soft_reset),
            dma.windows.eq(csr.windows), dma.abort.eq(dma_reset.o),
            dma.desc.valid.eq(ctrl.dma_desc.valid), dma.desc.payload.eq(ctrl.dma_desc.payload),
            ctrl.dma_desc.ready.eq(dma.desc.ready),
            ctrl.dma_done.eq(dma.done), ctrl.dma_error.eq(dma.error), ctrl.dma_fault.eq(dma.fault_addr),
        ]

        # ---- AXI4: DMA owns AW/W/B; AR is arbitrated, R routed by ID (fetch 1, DMA 0) ----
        axi, d_axi, f = self.m_axi, dma.m_axi, ctrl.fetch
        for name in ("awvalid", "awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot",
                     "wvalid", "wdata", "wstrb", "wlast", "bready"):
            m.d.comb += getattr(axi, name).eq(getattr(d_axi, name))
        for name in ("awready", "wready", "bvalid", "bid", "bresp"):
            m.d.comb += getattr(d_axi, name).eq(getattr(axi, name))
        # One fetch burst in flight at a time; it survives a soft reset, so a new fetch never takes stale beats.
        fetch_inflight = Signal()
        f_req = Signal()
        m.d.comb += f_req.eq(f.arvalid & ~fetch_inflight)
        # AR lock: a presented request stays on the bus until its handshake (AXI rule).
        lock_fetch, lock_dma = Signal(), Signal()
        sel_fetch = Signal()
        m.d.comb += sel_fetch.eq(lock_fetch | (~lock_dma & f_req))
        with m.If(axi.arvalid & ~axi.arready):
            m.d.sync += [lock_fetch.eq(sel_fetch), lock_dma.eq(~sel_fetch)]
        with m.Else():
            m.d.sync += [lock_fetch.eq(0), lock_dma.eq(0)]
        with m.If(sel_fetch & axi.arready & f_req):
            m.d.sync += fetch_inflight.eq(1)
        # Qualified by rvalid: RID is undefined (X in simulation) between responses.
        r_fetch = Signal()
        m.d.comb += r_fetch.eq(axi.rvalid & (axi.rid == 1))
        with m.If(r_fetch & axi.rlast):
            m.d.sync += fetch_inflight.eq(0)
        m.d.comb += [
            axi.arvalid.eq(Mux(sel_fetch, f_req, d_axi.arvalid)),
            axi.araddr.eq(Mux(sel_fetch, f.araddr, d_axi.araddr)),
            axi.arlen.eq(Mux(sel_fetch, f.arlen, d_axi.arlen)),
            axi.arsize.eq(Mux(sel_fetch, f.arsize, d_axi.arsize)),
            axi.arburst.eq(Mux(sel_fetch, Burst.INCR, d_axi.arburst)),
            axi.arid.eq(Mux(sel_fetch, 1, d_axi.arid)),
            axi.arcache.eq(Mux(sel_fetch, 0b0011, d_axi.arcache)),
            axi.arprot.eq(Mux(sel_fetch, 0b100, d_axi.arprot)),   # instruction access
            axi.arlock.eq(0),
            f.arready.eq(axi.arready & sel_fetch & ~fetch_inflight),
            d_axi.arready.eq(axi.arready & ~sel_fetch),
            f.rvalid.eq(axi.rvalid & r_fetch), f.rdata.eq(axi.rdata), f.rresp.eq(axi.rresp), f.rlast.eq(axi.rlast),
            d_axi.rvalid.eq(axi.rvalid & ~r_fetch), d_axi.rdata.eq(axi.rdata), d_axi.rresp.eq(axi.rresp),
            d_axi.rlast.eq(axi.rlast), d_axi.rid.eq(axi.rid),
            # Fetch beats are always taken (an orphan of a soft reset is drained).
            axi.rready.eq(Mux(r_fetch, 1, d_axi.rready)),
        ]

        # ---- local memories ----
        dma_acc = ctrl.dma_mem
        lw, lr = dma.local_wr, dma.local_rd
        # The DMA's local write is registered, with the memory it goes to, before the memories and the scratchpad
        # write port's arbitration: it comes from the R beat through the DMA's realignment, and its write-port
        # block reaches back through the vector unit's and the requant's result handshakes. It lands one cycle
        # after the DMA presents it, which is still before the DMA's done (run end, then a done cycle).
        # ISA: a DMA load writes whole local words, bytes past the row as 0.
        wr_addr = Signal.like(lw.addr)
        wr_data = Signal(8 * B)
        spad_dma_wr, acc_dma_wr = Signal(), Signal()
        m.d.sync += [wr_addr.eq(lw.addr),
                     wr_data.eq(Cat(*[Mux(lw.en[i], lw.data[8 * i:8 * i + 8], 0) for i in range(B)])),
                     spad_dma_wr.eq((lw.en != 0) & ~dma_acc), acc_dma_wr.eq((lw.en != 0) & dma_acc)]
        # The DMA's local read request (its store path) is registered in the DMA, and dma_acc is the controller's
        # register: the read ports' arbitration and the engines' rd_block start from flip-flops.
        dma_rd = Signal()
        m.d.comb += dma_rd.eq(lr.en)
        spad_dma_rd = dma_rd & ~dma_acc
        # Scratchpad: wide read ports 0/1 matmul operands; narrow read port 0 DMA store (priority) / requant
        # records; the write port DMA load (priority) / requant results.
        m.d.comb += [
            ctrl.rd_block.eq(spad_dma_rd), ctrl.wr_block.eq(spad_dma_wr),
            spad.wr.addr.eq(Mux(spad_dma_wr, wr_addr, ctrl.spad_wr.addr)),
            spad.wr.data.eq(Mux(spad_dma_wr, wr_data, ctrl.spad_wr.data)),
            spad.wr.en.eq(Mux(spad_dma_wr, (1 << B) - 1, ctrl.spad_wr.en)),
            spad.wide_rd[0].addr.eq(ctrl.a_rd.addr), spad.wide_rd[0].en.eq(ctrl.a_rd.en),
            ctrl.a_rd.data.eq(spad.wide_rd[0].data),
            spad.wide_rd[1].addr.eq(ctrl.w_rd.addr), spad.wide_rd[1].en.eq(ctrl.w_rd.en),
            ctrl.w_rd.data.eq(spad.wide_rd[1].data),
            spad.rd[0].addr.eq(Mux(spad_dma_rd, lr.addr, ctrl.spad_rd.addr)),
            spad.rd[0].en.eq(spad_dma_rd | ctrl.spad_rd.en),
            ctrl.spad_rd.data.eq(spad.rd[0].data),
        ]
        if has_vec:
            # Narrow read port 1: the vector sequencer's first operand and parameters (no other user).
            m.d.comb += [spad.rd[1].addr.eq(ctrl.vec_rd.addr), spad.rd[1].en.eq(ctrl.vec_rd.en),
                         ctrl.vec_rd.data.eq(spad.rd[1].data)]
        # Accumulator: wide port = matmul; narrow read = DMA store (acc) / requant; narrow write = DMA load (acc).
        # The controller never runs an accumulator DMA together with matmul or requant.
        acc_dma_rd = dma_rd & dma_acc
        m.d.comb += [
            acc.wide_rd_addr.eq(ctrl.acc_wide_rd_addr), acc.wide_rd_en.eq(ctrl.acc_wide_rd_en),
            ctrl.acc_wide_rd_data.eq(acc.wide_rd_data),
            acc.wide_wr_addr.eq(ctrl.acc_wide_wr_addr), acc.wide_wr_data.eq(ctrl.acc_wide_wr_data),
            acc.wide_wr_en.eq(ctrl.acc_wide_wr_en),
            acc.wr.addr.eq(wr_addr), acc.wr.data.eq(wr_data), acc.wr.en.eq(Mux(acc_dma_wr, (1 << B) - 1, 0)),
            acc.rd.addr.eq(Mux(acc_dma_rd, lr.addr, ctrl.acc_rd.addr)),
            acc.rd.en.eq(acc_dma_rd | ctrl.acc_rd.en),
            ctrl.acc_rd.data.eq(acc.rd.data),
            lr.data.eq(Mux(dma_acc, acc.rd.data, spad.rd[0].data)),
        ]
        if self.block_scaled:
            # Accumulator extension (spec.block_scale): the high 16 bits of each 48-bit element, same depth and
            # banking as the accumulator (word w holds the extensions of accumulator word w's elements). Only
            # block-scaled MATMULs write it (wide port, beside the accumulator's read-modify-write) and only
            # VEC_REQUANT.wide reads it (narrow port, beside the accumulator's); the DMA never touches it.
            m.submodules.acc_ext = ext = Accumulator(word_bytes=B // 2, depth=self.acc_words, banks=ctrl.acc_banks)
            m.d.comb += [
                ext.wide_rd_addr.eq(ctrl.ext_wide_rd_addr), ext.wide_rd_en.eq(ctrl.ext_wide_rd_en),
                ctrl.ext_wide_rd_data.eq(ext.wide_rd_data),
                ext.wide_wr_addr.eq(ctrl.ext_wide_wr_addr), ext.wide_wr_data.eq(ctrl.ext_wide_wr_data),
                ext.wide_wr_en.eq(ctrl.ext_wide_wr_en),
                ext.wr.addr.eq(0), ext.wr.data.eq(0), ext.wr.en.eq(0),
                ext.rd.addr.eq(ctrl.ext_rd.addr), ext.rd.en.eq(ctrl.ext_rd.en), ctrl.ext_rd.data.eq(ext.rd.data),
            ]
        return m
