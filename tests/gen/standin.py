"""A tiny stand-in array for generator/synthesis plumbing tests while gen.build.units.build_array is absent."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class StandInArray(wiring.Component):
    """rows x cols int8 MACs with registered operands and a stream-shaped interface."""

    def __init__(self, cfg):
        self.n = cfg.rows * cfg.cols
        self.acc_width = cfg.acc_width
        super().__init__({
            "a": In(stream.Signature(data.ArrayLayout(signed(8), self.n))),
            "w": In(data.ArrayLayout(signed(8), self.n)),
            "mode": In(2),
            "o": Out(stream.Signature(data.ArrayLayout(signed(cfg.acc_width), self.n))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.n):
            ra, rw, p = Signal(signed(8)), Signal(signed(8)), Signal(signed(16))
            m.d.sync += [ra.eq(self.a.payload[i]), rw.eq(self.w[i]), p.eq(ra * rw),
                         self.o.payload[i].eq(self.o.payload[i] + p)]
        m.d.comb += [self.a.ready.eq(1), self.error.eq(self.mode == 3)]
        m.d.sync += self.o.valid.eq(self.a.valid)
        return m
