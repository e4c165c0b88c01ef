"""AXI4-Lite control/status register file of the NPU (register map: docs/registers.md).

32-bit registers on a 12-bit byte address space. Writes honour ``wstrb`` byte lanes on read/write
registers; unmapped addresses answer SLVERR (writes are then ignored, reads return 0).

:class:`Csr` is the register file (decode and state); :class:`AxiLiteRegisterPort` holds the AXI4-Lite handshakes
and :class:`PerfCounters` the 64-bit performance counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.axi import AXI4LiteSignature, Resp
from npuforge.rtl.dma import DMA_DESCRIPTOR, WINDOW

__all__ = ["CsrConfig", "Csr", "AxiLiteRegisterPort", "PerfCounters", "REG", "CTRL", "STATUS", "IRQ", "COUNTERS", "ID_VALUE",
           "window_reg", "counter_reg"]

ID_VALUE = 0x4E505531  # "NPU1"

#: Register byte addresses.
REG = {
    "ID": 0x000,
    "HW_CONFIG": 0x004,
    "CTRL": 0x008,
    "STATUS": 0x00C,
    "FAULT_ADDR": 0x010,
    "IRQ_STATUS": 0x014,
    "DESC_EXT_ADDR": 0x020,
    "DESC_EXT_STRIDE": 0x024,
    "DESC_LOCAL_ADDR": 0x028,
    "DESC_SHAPE": 0x02C,      # rows [15:0], row_bytes [31:16]
    "DESC_DIR": 0x030,        # bit 0: 0 LOAD, 1 STORE
    "RING_BASE": 0x040,
    "RING_SIZE": 0x044,
    "RING_HEAD": 0x048,
    "RING_TAIL": 0x04C,
}
WINDOW_BASE = 0x100   # window i: BASE at 0x100 + 16 i, SIZE +4, PERM +8 (bit 0 read, bit 1 write)
COUNTER_BASE = 0x200  # counter k: LO at 0x200 + 8 k, HI +4

#: CTRL bits (START, SOFT_RESET, DESC_ISSUE, CLEAR_COUNTERS are write-1 pulses and read as 0).
CTRL = {"START": 0, "SOFT_RESET": 1, "IRQ_EN": 2, "DESC_ISSUE": 3, "CLEAR_COUNTERS": 4}
#: STATUS bits / fields.
STATUS = {"BUSY": 0, "DONE": 1, "ERROR": 2, "ERROR_CODE_SHIFT": 8}
#: IRQ_STATUS bits (write 1 to clear).
IRQ = {"DONE": 0, "ERROR": 1}
#: 64-bit performance counters in address order.
COUNTERS = ("BUSY_CYCLES", "STALL_CYCLES", "MACS", "BYTES_READ", "BYTES_WRITTEN")


def window_reg(i: int, field: str) -> int:
    return WINDOW_BASE + 16 * i + {"BASE": 0, "SIZE": 4, "PERM": 8}[field]


def counter_reg(name: str, half: str = "LO") -> int:
    return COUNTER_BASE + 8 * COUNTERS.index(name) + {"LO": 0, "HI": 4}[half]


@dataclass(frozen=True)
class CsrConfig:
    """n_windows: address windows (1..16); macs_width: bits of the per-cycle MAC count input (1..32);
    hw_config: 32-bit constant read at HW_CONFIG (the integrator encodes its parameters there)."""
    n_windows: int = 4
    macs_width: int = 16
    hw_config: int = 0

    def __post_init__(self):
        if not isinstance(self.n_windows, int) or not 1 <= self.n_windows <= 16:
            raise ValueError(f"n_windows must be an integer in [1, 16], got {self.n_windows!r}")
        if not isinstance(self.macs_width, int) or not 1 <= self.macs_width <= 32:
            raise ValueError(f"macs_width must be an integer in [1, 32], got {self.macs_width!r}")
        if not isinstance(self.hw_config, int) or not 0 <= self.hw_config < 1 << 32:
            raise ValueError(f"hw_config must be an integer in [0, 2**32), got {self.hw_config!r}")


class AxiLiteRegisterPort(wiring.Component):
    """AXI4-Lite subordinate handshakes in front of a register file of 32-bit registers.

    One write (AW and W taken together) and one read in flight; each response is registered and held until taken.
    The register file decodes combinationally: on ``w_en`` it applies the write and says whether the address is
    mapped (``w_err``); ``r_data`` / ``r_err`` answer ``r_addr`` in the cycle of ``r_en``.

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=12, data_width=32))
    w_en : Out(1)
        A write is taken this cycle: ``w_addr`` (word address), ``w_data``, ``w_strb`` (byte enables).
    w_err : In(1)
        The write's address is unmapped: SLVERR (the register file ignores the write).
    r_en : Out(1)
        A read is taken this cycle, of word address ``r_addr``.
    r_data, r_err : In(32), In(1)
        Its value (0 when unmapped) and SLVERR.
    """

    def __init__(self):
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "w_en": Out(1), "w_addr": Out(10), "w_data": Out(32), "w_strb": Out(4), "w_err": In(1),
            "r_en": Out(1), "r_addr": Out(10), "r_data": In(32), "r_err": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.s_axil
        bvalid = Signal()
        bresp = Signal(2)
        m.d.comb += [bus.bvalid.eq(bvalid), bus.bresp.eq(bresp),
                     self.w_en.eq(bus.awvalid & bus.wvalid & ~bvalid), bus.awready.eq(self.w_en),
                     bus.wready.eq(self.w_en),
                     self.w_addr.eq(bus.awaddr[2:]), self.w_data.eq(bus.wdata), self.w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        with m.If(self.w_en):
            m.d.sync += [bvalid.eq(1), bresp.eq(Mux(self.w_err, Resp.SLVERR, Resp.OKAY))]

        rvalid = Signal()
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [bus.rvalid.eq(rvalid), bus.rdata.eq(rdata), bus.rresp.eq(rresp), bus.arready.eq(~rvalid),
                     self.r_en.eq(bus.arvalid & ~rvalid), self.r_addr.eq(bus.araddr[2:])]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(self.r_en):
            m.d.sync += [rvalid.eq(1), rresp.eq(Mux(self.r_err, Resp.SLVERR, Resp.OKAY)), rdata.eq(self.r_data)]
        return m


class PerfCounters(wiring.Component):
    """64-bit performance counters, one per name, each adding its increment every cycle, read as 32-bit halves.

    Reading a counter's LO half latches its HI half, so a LO-then-HI read pair is one consistent 64-bit value.
    The increments are registered before the 64-bit adders (they come from deep logic: the DMA's row-end
    compares, the controller's status), so a cycle's increment shows in the counter one cycle later than
    without the register: a read sees the increments up to two cycles before it.

    Parameters
    ----------
    increments : dict of str -> int
        Counter name -> bits of its per-cycle increment, in register order.

    Members
    -------
    inc : In(StructLayout(increments))
    clear : In(1)
        Every counter restarts at 0 (this cycle's increments, and the registered ones of the cycle before, are
        dropped).
    rd_en, rd_index : In(1), In(range(2 * len(increments)))
        A read of half ``rd_index`` (counter ``rd_index // 2``, LO when even) is taken this cycle.
    rd_data : Out(32)
        That half (HI: the value latched by the last LO read).
    """

    def __init__(self, *, increments: dict):
        self.names = tuple(increments)
        super().__init__({
            "inc": In(data.StructLayout(increments)),
            "clear": In(1),
            "rd_en": In(1),
            "rd_index": In(range(2 * len(increments))),
            "rd_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        counters = [Signal(64, name=f"cnt_{n.lower()}") for n in self.names]
        hi_shadow = Signal(32)   # HI half latched by the read of the matching LO half
        inc = Signal.like(self.inc)   # the increments, registered: the adders start from a flip-flop
        with m.If(self.clear):
            m.d.sync += inc.eq(0)
        with m.Else():
            m.d.sync += inc.eq(self.inc)
        for name, cnt in zip(self.names, counters):
            with m.If(self.clear):
                m.d.sync += cnt.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + getattr(inc, name))
        with m.Switch(self.rd_index):
            for k, cnt in enumerate(counters):
                with m.Case(2 * k):
                    m.d.comb += self.rd_data.eq(cnt[:32])
                    with m.If(self.rd_en):
                        m.d.sync += hi_shadow.eq(cnt[32:])
                with m.Case(2 * k + 1):
                    m.d.comb += self.rd_data.eq(hi_shadow)
        return m


class Csr(wiring.Component):
    """Control/status registers behind an AXI4-Lite subordinate port.

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=12, data_width=32))
    start, soft_reset : Out(1)
        One-cycle pulses on a CTRL write (START for the controller; SOFT_RESET for every engine, registered: the
        cycle after the write). A write with SOFT_RESET set starts and issues nothing (START, DESC_ISSUE dropped).
    irq : Out(1)
        Level: ``IRQ_EN & (IRQ_STATUS != 0)``.
    desc : Out(stream.Signature(DMA_DESCRIPTOR))
        The DESC_* registers, offered once per CTRL.DESC_ISSUE until accepted.
    windows : Out(ArrayLayout(WINDOW, n_windows))
    ring_base, ring_size, ring_head : Out(32); ring_tail : In(32)
        Command-queue ring buffer (byte address, bytes, producer / consumer byte offsets).
    busy, done, error, fault_addr : In
        Engine status: ``done`` is a pulse that latches ``error`` (4 bit, 0 = none) and ``fault_addr``.
    mem_stall, macs, rd_bytes, wr_bytes : In
        Per-cycle increments of the performance counters (``busy`` counts BUSY_CYCLES).
    """

    def __init__(self, config: CsrConfig = CsrConfig()):
        self.config = config
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "start": Out(1),
            "soft_reset": Out(1),
            "irq": Out(1),
            "desc": Out(stream.Signature(DMA_DESCRIPTOR)),
            "windows": Out(data.ArrayLayout(WINDOW, config.n_windows)),
            "ring_base": Out(32),
            "ring_size": Out(32),
            "ring_head": Out(32),
            "ring_tail": In(32),
            "busy": In(1),
            "done": In(1),
            "error": In(4),
            "fault_addr": In(32),
            "mem_stall": In(1),
            "macs": In(config.macs_width),
            "rd_bytes": In(16),
            "wr_bytes": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.port = port = AxiLiteRegisterPort()
        wiring.connect(m, wiring.flipped(self.s_axil), port.s_axil)
        m.submodules.counters = counters = PerfCounters(increments=dict(zip(COUNTERS, (
            1, 1, c.macs_width, 16, 16))))
        m.d.comb += [counters.inc.eq(Cat(self.busy, self.mem_stall, self.macs, self.rd_bytes, self.wr_bytes))]

        # ---- state ----
        irq_en = Signal()
        st_done = Signal()
        st_error = Signal()
        st_code = Signal(4)
        st_fault = Signal(32)
        irq_pending = Signal(2)
        desc_regs = {k: Signal(32, name=k.lower()) for k in
                     ("DESC_EXT_ADDR", "DESC_EXT_STRIDE", "DESC_LOCAL_ADDR", "DESC_SHAPE")}
        desc_dir = Signal(1)
        desc_valid = Signal()
        soft_reset = Signal()             # the registered SOFT_RESET pulse (register writes below)
        ring = {k: Signal(32, name=k.lower()) for k in ("RING_BASE", "RING_SIZE", "RING_HEAD")}
        win_base = [Signal(32, name=f"win{i}_base") for i in range(c.n_windows)]
        win_size = [Signal(32, name=f"win{i}_size") for i in range(c.n_windows)]
        win_perm = [Signal(2, name=f"win{i}_perm") for i in range(c.n_windows)]

        m.d.comb += [
            self.ring_base.eq(ring["RING_BASE"]), self.ring_size.eq(ring["RING_SIZE"]),
            self.ring_head.eq(ring["RING_HEAD"]),
            self.irq.eq(irq_en & (irq_pending != 0)),
            self.desc.valid.eq(desc_valid & ~soft_reset),
            self.desc.payload.ext_addr.eq(desc_regs["DESC_EXT_ADDR"]),
            self.desc.payload.ext_stride.eq(desc_regs["DESC_EXT_STRIDE"]),
            self.desc.payload.local_addr.eq(desc_regs["DESC_LOCAL_ADDR"]),
            self.desc.payload.rows.eq(desc_regs["DESC_SHAPE"][:16]),
            self.desc.payload.row_bytes.eq(desc_regs["DESC_SHAPE"][16:]),
            self.desc.payload.direction.eq(desc_dir),
        ]
        for i in range(c.n_windows):
            m.d.comb += [self.windows[i].base.eq(win_base[i]), self.windows[i].size.eq(win_size[i]),
                         self.windows[i].read.eq(win_perm[i][0]), self.windows[i].write.eq(win_perm[i][1])]
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += desc_valid.eq(0)

        # ---- engine status ----
        with m.If(self.done):
            # STATUS describes the last finished command; IRQ_STATUS.ERROR stays until cleared.
            m.d.sync += [st_done.eq(1), st_error.eq(self.error != 0), st_code.eq(self.error),
                         st_fault.eq(self.fault_addr), irq_pending[IRQ["DONE"]].eq(1)]
            with m.If(self.error != 0):
                m.d.sync += irq_pending[IRQ["ERROR"]].eq(1)

        # ---- register writes ----
        wdata, wstrb = port.w_data, port.w_strb

        def merged(old):
            """``old`` with the bytes selected by ``wstrb`` replaced by ``wdata``."""
            width = len(old)
            return Cat(*[Mux(wstrb[b], wdata[8 * b:8 * b + 8], old[8 * b:8 * b + 8])
                         for b in range(4)])[:width]

        ctrl_w = Signal(32)
        m.d.comb += ctrl_w.eq(Mux(wstrb[0], wdata, 0))  # pulses live in byte 0
        # SOFT_RESET is registered: the pulse reaches every engine's reset (a large fan-out) from a flip-flop, not
        # from the write's decode, and takes effect (here too) the cycle after the write. A write that sets it
        # drops START and DESC_ISSUE: nothing is started or issued that the reset would cut off a cycle later.
        # Two writes are at least two cycles apart (the B response), so no later write meets the pulse.
        ctrl_write = Signal()
        resetting = ctrl_w[CTRL["SOFT_RESET"]]
        with m.If(port.w_en):
            with m.Switch(port.w_addr):
                with m.Case(REG["CTRL"] >> 2):
                    m.d.comb += [
                        self.start.eq(ctrl_w[CTRL["START"]] & ~resetting),
                        counters.clear.eq(ctrl_w[CTRL["CLEAR_COUNTERS"]]),
                        ctrl_write.eq(1),
                    ]
                    with m.If(wstrb[0]):
                        m.d.sync += irq_en.eq(wdata[CTRL["IRQ_EN"]])
                    with m.If(~resetting & (ctrl_w[CTRL["START"]] | ctrl_w[CTRL["DESC_ISSUE"]])):
                        m.d.sync += [st_done.eq(0), st_error.eq(0), st_code.eq(0), st_fault.eq(0)]
                    with m.If(~resetting & ctrl_w[CTRL["DESC_ISSUE"]]):
                        m.d.sync += desc_valid.eq(1)
                with m.Case(REG["IRQ_STATUS"] >> 2):
                    m.d.sync += irq_pending.eq(irq_pending & ~Mux(wstrb[0], wdata[:2], 0))
                for name, sig in [*desc_regs.items(), *ring.items()]:
                    with m.Case(REG[name] >> 2):
                        m.d.sync += sig.eq(merged(sig))
                with m.Case(REG["DESC_DIR"] >> 2):
                    m.d.sync += desc_dir.eq(merged(desc_dir))
                for i in range(c.n_windows):
                    for field, sig in (("BASE", win_base[i]), ("SIZE", win_size[i]), ("PERM", win_perm[i])):
                        with m.Case(window_reg(i, field) >> 2):
                            m.d.sync += sig.eq(merged(sig))
                # Read-only registers: the write is ignored, the response is OKAY.
                ro = [REG[k] >> 2 for k in ("ID", "HW_CONFIG", "STATUS", "FAULT_ADDR", "RING_TAIL")]
                ro += [(COUNTER_BASE >> 2) + k for k in range(2 * len(COUNTERS))]
                with m.Case(*ro):
                    pass
                with m.Default():
                    m.d.comb += port.w_err.eq(1)
        m.d.sync += soft_reset.eq(ctrl_write & resetting)
        m.d.comb += self.soft_reset.eq(soft_reset)
        with m.If(soft_reset):
            m.d.sync += [st_done.eq(0), st_error.eq(0), st_code.eq(0), st_fault.eq(0),
                         irq_pending.eq(0), desc_valid.eq(0)]
            m.d.comb += counters.clear.eq(1)

        # ---- register reads ----
        m.d.comb += counters.rd_index.eq(port.r_addr - (COUNTER_BASE >> 2))
        with m.Switch(port.r_addr):
            values = {
                "ID": Const(ID_VALUE, 32),
                "HW_CONFIG": Const(c.hw_config, 32),
                "CTRL": irq_en << CTRL["IRQ_EN"],
                "STATUS": Cat(self.busy, st_done, st_error, Const(0, 5), st_code),
                "FAULT_ADDR": st_fault,
                "IRQ_STATUS": irq_pending,
                "DESC_DIR": desc_dir,
                "RING_TAIL": self.ring_tail,
                **desc_regs, **ring,
            }
            for name, value in values.items():
                with m.Case(REG[name] >> 2):
                    m.d.comb += port.r_data.eq(value)
            for i in range(c.n_windows):
                for field, sig in (("BASE", win_base[i]), ("SIZE", win_size[i]), ("PERM", win_perm[i])):
                    with m.Case(window_reg(i, field) >> 2):
                        m.d.comb += port.r_data.eq(sig)
            with m.Case(*[(COUNTER_BASE >> 2) + k for k in range(2 * len(COUNTERS))]):
                m.d.comb += [port.r_data.eq(counters.rd_data), counters.rd_en.eq(port.r_en)]
            with m.Default():
                m.d.comb += port.r_err.eq(1)
        return m
