"""Command fetch: 16-byte commands from the ring buffer through an AXI4 read channel, one at a time."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import log2
from npuforge.spec.isa import INSTR_BYTES

__all__ = ["FetchSignature", "CommandFetch"]


class FetchSignature(wiring.Signature):
    """The read half of an AXI4 manager (driver view), used by the command fetcher."""

    def __init__(self, data_width: int):
        super().__init__({
            "arvalid": Out(1), "arready": In(1), "araddr": Out(32), "arlen": Out(8), "arsize": Out(3),
            "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        })


class CommandFetch(wiring.Component):
    """Fetches the command at ``ring_base + tail`` (16-byte aligned) as one burst of 16 bytes and holds it.

    ``valid`` rises ``decode_cycles`` after the last beat (the DECODE state): the controller registers the
    decoder's checks of ``command`` meanwhile, so the decode logic (range products, the check chain) is a path of its
    own.

    ``start`` sets ``tail`` to 0 and fetches; a held command (``valid``) stays until ``next`` (``tail`` advances by
    16 modulo ``ring_size`` and the next command is fetched) or ``stop``. Reaching ``ring_head`` is ``overrun``
    (one cycle; fetching stops). ``rewind`` sets ``tail`` to ``rewind_tail`` (the faulting instruction's offset).

    The AR request comes from registers (issue #16): ``tail == ring_head`` and the command's address are computed
    a cycle ahead, for the tail the ADDR state will hold (0 after ``start``, the next tail with ``next``), so
    ``arvalid`` / ``araddr`` and the DMA's AR arbitration behind them start from flip-flops, at no cycle's cost. A
    ``ring_head`` (or ``ring_base``) written while the fetcher waits in ADDR is seen one cycle later.

    Members
    -------
    start, next, stop, rewind : In(1)   pulses (``next`` / ``stop`` only while ``valid``)
    rewind_tail : In(32)
    ring_base, ring_size, ring_head : In(32)
    tail : Out(32)          byte offset of the command fetched or held
    bus : Out(FetchSignature(8 * word_bytes))
    valid : Out(1); command : Out(128)   the held command
    bus_error : Out(1)      a beat of the held command came with an error response
    addr : Out(32)          the held command's byte address
    overrun : Out(1)        the ring holds no further command
    """

    def __init__(self, *, word_bytes: int, decode_cycles: int = 1):
        self.B = word_bytes
        self.decode_cycles = decode_cycles
        super().__init__({
            "start": In(1), "next": In(1), "stop": In(1), "rewind": In(1), "rewind_tail": In(32),
            "ring_base": In(32), "ring_size": In(32), "ring_head": In(32),
            "tail": Out(32),
            "bus": Out(FetchSignature(8 * word_bytes)),
            "valid": Out(1), "command": Out(8 * INSTR_BYTES), "bus_error": Out(1), "addr": Out(32),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB = self.B, log2(self.B)
        ir = Signal(8 * INSTR_BYTES)
        tail = Signal(32)
        bus_err = Signal()
        m.d.comb += [self.command.eq(ir), self.tail.eq(tail), self.bus_error.eq(bus_err)]
        # Registered a cycle ahead for the tail of the next cycle (see the class docstring): the address of the
        # command at `tail` and "`tail` is the ring's head".
        fetch_addr, at_head = Signal(32), Signal()
        base = self.ring_base & ~(INSTR_BYTES - 1)
        m.d.sync += [fetch_addr.eq(base + tail), at_head.eq(tail == self.ring_head)]
        m.d.comb += self.addr.eq(fetch_addr)
        beats = max(1, INSTR_BYTES // B)
        beat = Signal(range(beats + 1))
        wait = Signal(range(max(2, self.decode_cycles)))     # cycles spent in DECODE
        bus = self.bus
        m.d.comb += [bus.araddr.eq(fetch_addr if B <= INSTR_BYTES else fetch_addr & ~(B - 1)),
                     bus.arlen.eq(beats - 1), bus.arsize.eq(LB)]
        next_tail = Signal(32)
        m.d.comb += next_tail.eq(Mux(tail + INSTR_BYTES >= self.ring_size, 0, tail + INSTR_BYTES))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tail.eq(0), fetch_addr.eq(base), at_head.eq(self.ring_head == 0)]
                    m.next = "ADDR"
            with m.State("ADDR"):
                with m.If(at_head):
                    m.d.comb += self.overrun.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += bus.arvalid.eq(1)
                    with m.If(bus.arready):
                        m.d.sync += [beat.eq(0), bus_err.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    if B <= INSTR_BYTES:
                        m.d.sync += ir.word_select(beat, 8 * B).eq(bus.rdata)
                    else:
                        m.d.sync += ir.eq(bus.rdata.word_select(fetch_addr[log2(INSTR_BYTES):LB], 8 * INSTR_BYTES))
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(bus.rresp != 0):
                        m.d.sync += bus_err.eq(1)
                    with m.If(bus.rlast):
                        m.next = "DECODE"
            with m.State("DECODE"):
                # ``decode_cycles`` cycles for the decoder's registered checks (rtl.controller.decode, top): the
                # command is complete in ``command`` from here on.
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == self.decode_cycles - 1):
                    m.d.sync += wait.eq(0)
                    m.next = "HOLD"
            with m.State("HOLD"):
                m.d.comb += self.valid.eq(1)
                with m.If(self.next):
                    m.d.sync += [tail.eq(next_tail), fetch_addr.eq(base + next_tail),
                                 at_head.eq(next_tail == self.ring_head)]
                    m.next = "ADDR"
                with m.Elif(self.stop):
                    m.next = "IDLE"
        with m.If(self.rewind):
            m.d.sync += tail.eq(self.rewind_tail)
        return m
