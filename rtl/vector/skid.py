"""A two-entry skid buffer: a stream register whose ``ready`` towards the producer is a flip-flop.

:class:`SkidBuffer` sits between a producer and a consumer of one stream (``i`` -> ``o``). Both of its outputs are
registers: ``o.valid`` / ``o.payload`` come from its output register and ``i.ready`` is "the skid register is empty",
so no combinational path crosses it, neither valid forwards nor ready backwards. It passes a beat a cycle (the output
register and the skid register behind it), every beat one cycle later than without it, in order.

Transfer rules (``amaranth.lib.stream``): a beat moves on ``i`` when ``i.valid & i.ready`` and on ``o`` when
``o.valid & o.ready``; ``o.valid`` never drops before its beat is taken.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two-entry stream buffer with registered ``o.valid``, ``o.payload`` and ``i.ready``.

    Parameters
    ----------
    shape : shape
        The payload of both streams.

    Members
    -------
    i : In(stream.Signature(shape))
        Beats from the producer; ``i.ready`` is high while the skid register is empty.
    o : Out(stream.Signature(shape))
        The same beats, in order, one cycle later at the earliest.
    busy : Out(1)
        A beat is held (``o.valid``).
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # The output register (o.valid, o.payload) and the skid register behind it, which catches the beat that
        # entered while the output was stalled (i.ready, registered, was still high).
        skid_valid = Signal()
        skid = Signal(self.shape)
        m.d.comb += [self.i.ready.eq(~skid_valid), self.busy.eq(self.o.valid)]
        taken_in = self.i.valid & ~skid_valid
        with m.If(~self.o.valid | self.o.ready):
            # The output register is free (or given up now): refill it from the skid register, else from i.
            m.d.sync += [self.o.valid.eq(skid_valid | self.i.valid),
                         self.o.payload.eq(Mux(skid_valid, skid, self.i.payload)),
                         skid_valid.eq(0)]
        with m.Elif(taken_in):
            m.d.sync += [skid_valid.eq(1), skid.eq(self.i.payload)]
        return m
