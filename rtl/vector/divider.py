"""Sequential exact unsigned divider: ``quotient = floor(n / divisor)``, ``remainder = n mod divisor``.

The dividend is ``n = dividend_high * 2**dividend_width + dividend`` with ``dividend_high < divisor`` (so the
quotient fits ``dividend_width`` bits), as in a CPU's double-width divide. ``dividend_high`` is the long
division's starting remainder: it lets a wide dividend such as the norms' 2^61 be divided in only as many
steps as the quotient has bits (2^61 / S with S >= 2^30 is ``dividend_high = 2^29, dividend = 0`` over 32 bits).

Restoring long division, one quotient bit per step, most significant dividend bit first:

    rem, q = dividend_high, 0
    for each bit b of dividend, most significant first:
        rem = (rem << 1) | b
        if rem >= divisor: rem -= divisor; q = (q << 1) | 1
        else:              q = q << 1

The result is exact (no rounding), so with ``dividend = 2**frac_bits`` it is the golden
``golden.norms.reciprocal(d, frac_bits) = floor(2**frac_bits / d)``. ``steps_per_cycle`` steps are unrolled
per clock cycle: ``ceil(dividend_width / steps_per_cycle)`` compute cycles per division, whatever the operands.
A zero divisor gives ``div_by_zero = 1``, ``dividend_high >= divisor`` gives ``overflow = 1``; either way
quotient and remainder are 0 and the latency is unchanged (no hang).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Divider", "reciprocal_divider"]


class Divider(wiring.Component):
    """Exact unsigned division of a ``dividend_width``-bit number by a ``divisor_width``-bit one.

    Parameters
    ----------
    dividend_width : int
        Bits of the dividend and of the quotient (>= 1).
    divisor_width : int
        Bits of the divisor and of the remainder (>= 1).
    steps_per_cycle : int
        Quotient bits produced per clock cycle (>= 1).

    Members
    -------
    i : In(stream.Signature(StructLayout({"dividend": dividend_width, "divisor": divisor_width,
                                          "dividend_high": divisor_width})))
        Operands; accepted while idle or while the previous result is taken (one division in flight).
    o : Out(stream.Signature(StructLayout({"quotient": dividend_width, "remainder": divisor_width,
                                           "div_by_zero": 1, "overflow": 1})))
        Result, held valid until taken.
    """

    def __init__(self, *, dividend_width: int, divisor_width: int, steps_per_cycle: int = 1):
        for name, value in (("dividend_width", dividend_width), ("divisor_width", divisor_width),
                            ("steps_per_cycle", steps_per_cycle)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.dividend_width = dividend_width
        self.divisor_width = divisor_width
        self.steps_per_cycle = min(steps_per_cycle, dividend_width)
        self.compute_cycles = -(-dividend_width // self.steps_per_cycle)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "dividend": unsigned(dividend_width), "divisor": unsigned(divisor_width),
                "dividend_high": unsigned(divisor_width)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "quotient": unsigned(dividend_width), "remainder": unsigned(divisor_width),
                "div_by_zero": 1, "overflow": 1}))),
        })

    @property
    def latency(self) -> int:
        """Clock edges from the one that accepts ``i`` (counted) until ``o.valid`` is high."""
        return self.compute_cycles + 1

    def elaborate(self, platform):
        m = Module()
        # When steps_per_cycle does not divide dividend_width, the first cycle skips its first `pad`
        # steps (a leading zero step is not neutral once dividend_high is non-zero); the dividend is
        # loaded left-aligned so the remaining steps of that cycle take its top bits.
        steps = self.compute_cycles * self.steps_per_cycle
        pad = steps - self.dividend_width
        first_cycle = Signal()
        dw = self.divisor_width
        dividend = Signal(steps)
        divisor = Signal(dw)
        rem = Signal(dw)
        quotient = Signal(steps)
        div_by_zero = Signal()
        overflow = Signal()
        cycles_left = Signal(range(self.compute_cycles + 1))

        rem_c, q_c, n_c = rem, quotient, dividend
        for k in range(self.steps_per_cycle):
            # rem < divisor < 2**dw, so the shifted remainder needs one more bit.
            shifted = Signal(dw + 1, name=f"shifted_{k}")
            fits = Signal(name=f"fits_{k}")
            rem_n = Signal(dw, name=f"rem_{k}")
            q_n = Signal(steps, name=f"quotient_{k}")
            n_n = Signal(steps, name=f"dividend_{k}")
            m.d.comb += [
                shifted.eq(Cat(n_c[-1], rem_c)),
                fits.eq(shifted >= divisor),
                rem_n.eq(Mux(fits, shifted - divisor, shifted)),
                q_n.eq(Cat(fits, q_c)),
                n_n.eq(n_c << 1),
            ]
            if k < pad:
                with m.If(first_cycle):
                    m.d.comb += [rem_n.eq(rem_c), q_n.eq(q_c), n_n.eq(n_c)]
            rem_c, q_c, n_c = rem_n, q_n, n_n

        # The unit accepts a new operand while idle, or while its result is being taken,
        # so back-to-back divisions need no idle cycle in between.
        accept = Signal()
        load = Signal()
        m.d.comb += [self.i.ready.eq(accept), load.eq(accept & self.i.valid)]
        with m.If(load):
            m.d.sync += [
                dividend.eq(self.i.payload.dividend << pad),
                first_cycle.eq(1),
                divisor.eq(self.i.payload.divisor),
                rem.eq(self.i.payload.dividend_high),
                quotient.eq(0),
                div_by_zero.eq(self.i.payload.divisor == 0),
                overflow.eq((self.i.payload.divisor != 0) &
                            (self.i.payload.dividend_high >= self.i.payload.divisor)),
                cycles_left.eq(self.compute_cycles),
            ]
        # Two state flags instead of an FSM: the handshake outputs are then plain continuous
        # assignments, which event-driven simulators (Icarus) evaluate from time 0 even when the
        # state never changes (an `always @*` block waiting on an unchanged state would stay X).
        running = Signal()
        done = Signal()
        bad = Signal()
        m.d.comb += [
            accept.eq(~running & (~done | self.o.ready)),
            self.o.valid.eq(done),
            bad.eq(div_by_zero | overflow),
            # Bad operands run the same number of cycles (fixed latency) but report 0s.
            self.o.payload.quotient.eq(Mux(bad, 0, quotient[:self.dividend_width])),
            self.o.payload.remainder.eq(Mux(bad, 0, rem)),
            self.o.payload.div_by_zero.eq(div_by_zero),
            self.o.payload.overflow.eq(overflow),
        ]
        with m.If(running):
            m.d.sync += [rem.eq(rem_c), quotient.eq(q_c), dividend.eq(n_c), first_cycle.eq(0),
                         cycles_left.eq(cycles_left - 1)]
            with m.If(cycles_left == 1):
                m.d.sync += [running.eq(0), done.eq(1)]
        with m.If(done & self.o.ready):
            m.d.sync += done.eq(0)
        with m.If(load):
            m.d.sync += running.eq(1)
        return m


def reciprocal_divider(m, *, divisor, divisor_width: int, frac_bits: int, quotient_bits: int,
                       steps_per_cycle: int) -> Divider:
    """A :class:`Divider` (submodule ``divider`` of ``m``) wired to compute Rcp = floor(2^frac_bits / divisor).

    The dividend 2^frac_bits is ``dividend_high = 2^(frac_bits - quotient_bits)`` over ``quotient_bits`` zero bits, so
    the division takes only ``quotient_bits`` steps; it is exact for ``divisor > 2^(frac_bits - quotient_bits)`` (a
    smaller non-zero divisor reports ``overflow``). ``o.ready`` is tied high: the caller drives ``i.valid`` and takes
    ``o.payload.quotient`` on the cycle ``o.valid`` is high (the norms' 2^61 / S and softmax's 2^54 / S).
    """
    m.submodules.divider = div = Divider(dividend_width=quotient_bits, divisor_width=divisor_width,
                                         steps_per_cycle=steps_per_cycle)
    m.d.comb += [
        div.i.payload.dividend.eq(0),
        div.i.payload.dividend_high.eq(1 << (frac_bits - quotient_bits)),
        div.i.payload.divisor.eq(divisor),
        div.o.ready.eq(1),
    ]
    return div
