"""Sequential exact integer square root: ``root = floor(sqrt(n))`` for an unsigned ``n``.

Digit-by-digit (restoring) method, one result bit per step, most significant first:

    rem, root = 0, 0
    for each pair of bits p of n, most significant pair first:
        rem   = (rem << 2) | p
        trial = (root << 2) | 1
        if rem >= trial: rem -= trial; root = (root << 1) | 1
        else:            root = root << 1

After ``ceil(width / 2)`` steps ``root == floor(sqrt(n))`` and ``rem == n - root**2`` exactly (no rounding
anywhere), so it equals the golden ``golden.norms.isqrt`` on its whole input range, whatever iteration
the golden model uses internally. ``steps_per_cycle`` steps are unrolled per clock cycle: a unit of
``width`` bits takes ``ceil(ceil(width / 2) / steps_per_cycle)`` compute cycles per root.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ISqrt"]


class ISqrt(wiring.Component):
    """Exact ``floor(sqrt(n))`` of an unsigned ``width``-bit number, sequential.

    Parameters
    ----------
    width : int
        Bit width of the radicand ``n`` (>= 1). The root has ``ceil(width / 2)`` bits.
    steps_per_cycle : int
        Result bits computed per clock cycle (>= 1); more means fewer cycles and a longer
        combinational path.

    Members
    -------
    i : In(stream.Signature(unsigned(width)))
        Radicand. Accepted only while the unit is idle (one root in flight at a time).
    o : Out(stream.Signature(unsigned(ceil(width / 2))))
        Root, held valid until taken.
    """

    def __init__(self, *, width: int, steps_per_cycle: int = 1):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        if not isinstance(steps_per_cycle, int) or steps_per_cycle < 1:
            raise ValueError(f"steps_per_cycle must be an integer >= 1, got {steps_per_cycle!r}")
        self.width = width
        self.root_width = (width + 1) // 2
        self.steps_per_cycle = min(steps_per_cycle, self.root_width)
        self.compute_cycles = -(-self.root_width // self.steps_per_cycle)
        super().__init__({
            "i": In(stream.Signature(unsigned(width))),
            "o": Out(stream.Signature(unsigned(self.root_width))),
        })

    @property
    def latency(self) -> int:
        """Clock edges from the one that accepts ``i`` (counted) until ``o.valid`` is high."""
        return self.compute_cycles + 1

    def elaborate(self, platform):
        m = Module()
        # Leading zero bit pairs leave rem and root at 0, so the radicand is zero-extended to a whole
        # number of cycles' worth of steps: every cycle then does exactly steps_per_cycle steps.
        steps = self.compute_cycles * self.steps_per_cycle
        padded = Signal(2 * steps)
        rem = Signal(steps + 2)
        root = Signal(steps)
        cycles_left = Signal(range(self.compute_cycles + 1))

        rem_c, root_c, padded_c = rem, root, padded
        for k in range(self.steps_per_cycle):
            shifted = Signal(steps + 2, name=f"shifted_{k}")
            trial = Signal(steps + 2, name=f"trial_{k}")
            fits = Signal(name=f"fits_{k}")
            rem_n = Signal(steps + 2, name=f"rem_{k}")
            root_n = Signal(steps, name=f"root_{k}")
            padded_n = Signal(2 * steps, name=f"padded_{k}")
            m.d.comb += [
                shifted.eq(Cat(padded_c[-2:], rem_c)),
                trial.eq(Cat(Const(1, 2), root_c)),
                fits.eq(shifted >= trial),
                rem_n.eq(Mux(fits, shifted - trial, shifted)),
                root_n.eq(Cat(fits, root_c)),
                padded_n.eq(padded_c << 2),
            ]
            rem_c, root_c, padded_c = rem_n, root_n, padded_n

        # The unit accepts a new radicand while idle, or while its root is being taken,
        # so back-to-back roots need no idle cycle in between.
        accept = Signal()
        load = Signal()
        m.d.comb += [self.i.ready.eq(accept), load.eq(accept & self.i.valid)]
        with m.If(load):
            m.d.sync += [
                padded.eq(self.i.payload),
                rem.eq(0),
                root.eq(0),
                cycles_left.eq(self.compute_cycles),
            ]
        # Two state flags instead of an FSM: the handshake outputs are then plain continuous
        # assignments, which event-driven simulators (Icarus) evaluate from time 0 even when the
        # state never changes (an `always @*` block waiting on an unchanged state would stay X).
        running = Signal()
        done = Signal()
        m.d.comb += [
            accept.eq(~running & (~done | self.o.ready)),
            self.o.valid.eq(done),
            self.o.payload.eq(root[:self.root_width]),
        ]
        with m.If(running):
            m.d.sync += [rem.eq(rem_c), root.eq(root_c), padded.eq(padded_c),
                         cycles_left.eq(cycles_left - 1)]
            with m.If(cycles_left == 1):
                m.d.sync += [running.eq(0), done.eq(1)]
        with m.If(done & self.o.ready):
            m.d.sync += done.eq(0)
        with m.If(load):
            m.d.sync += running.eq(1)
        return m
