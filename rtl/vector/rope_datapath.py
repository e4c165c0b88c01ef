"""RoPE's datapath behind the input stage: the rotation of a beat pair and the re-ordering of the two output halves.

* :class:`RopeRotator` (the multipliers' :data:`~npuforge.rtl.vector.mulpool.MUL_LATENCY` stages, stages 2, 3)
  rotates one beat of x[:h] with its partner beat of x[h:]::

      lo_i = (x1_i*c_i - x2_i*s_i + 2^(F-1)) >> F,   hi_i = (x2_i*c_i + x1_i*s_i + 2^(F-1)) >> F

  (``golden.elementwise.rope`` before saturation; the round-half-up as ``((v >> (F-1)) + 1) >> 1``).
* :class:`RopeReorder` (stage 4 and the output) saturates each pair, sends the ``lo`` beats of a row at once and
  queues its ``hi`` beats, then sends them after the row's last ``lo`` beat, so a row leaves as out[:h], out[h:].

Both are stages of a pipeline whose stages advance independently: a stage takes a new beat when the next stage
takes its beat or it holds none, so bubbles close up while the output waits; the multipliers' stages and stage 2
advance together (the multiplier blocks have one clock enable), as one stage of the pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import VecBeat, saturate
from npuforge.rtl.vector.mulpool import MulSpec, delay_stages, multiplier_members, multiplier_ports, multiply, \
    stages_hold

__all__ = ["RopeRotator", "RopeReorder", "rotated_width", "rotator_multipliers"]

_OUT1, _DRAIN, _DISCARD = 0, 1, 2


def rotated_width(in_width: int) -> int:
    """Signed width of a rotated, rounded value before saturation: in_width x 16 products, one bit for the sum."""
    return in_width + 16 + 1


def rotator_multipliers(in_width: int) -> tuple:
    """The multiplies of one lane of :class:`RopeRotator`: x1 * cos, x2 * sin, x2 * cos, x1 * sin."""
    return tuple(MulSpec(name, signed(in_width), signed(16)) for name in ("x1c", "x2s", "x2c", "x1s"))


class RopeRotator(wiring.Component):
    """Rotates a beat pair (the four multiplies' MUL_LATENCY stages and stage 2, advancing together: the four
    products; stage 3: the two sums and the rounding shift).

    Parameters
    ----------
    lanes, in_width : int

    Members
    -------
    valid_in, out_in, end_in : In(1)
        Stage 1 holds an item: a beat pair (``out_in``) and/or the row's end (``end_in``; without ``out_in`` an
        aborted row's end token, which carries no data).
    x1, x2 : In(ArrayLayout(signed(in_width), lanes))
        The beat of x[:h] and its partner beat of x[h:].
    cos, sin : In(ArrayLayout(signed(16), lanes))
        The table entries of the beat's lanes (Q1.frac_bits).
    frac_bits : In(4)
        F, 1..14; stable while a row is in flight.
    accept : Out(1)
        The multipliers take stage 1's item on this edge (when ``valid_in``) or stage 2 is free: stage 1 may
        advance.
    ready : In(1)
        The next stage takes stage 3's item on this edge.
    valid, out, end : Out(1)
        Stage 3 holds an item, with these flags.
    lo, hi : Out(ArrayLayout(signed(rotated_width(in_width)), lanes))
        The rotated, rounded beat pair.
    busy : Out(1)
        The multipliers' stages, stage 2 or 3 hold an item.
    mul : with ``shared_multipliers``, the four products ``x1c``, ``x2s``, ``x2c``, ``x1s`` come from the vector
        unit's shared multipliers (:mod:`rtl.vector.mulpool`).
    """

    def __init__(self, *, lanes: int, in_width: int, shared_multipliers: bool = False):
        self.lanes, self.in_width = lanes, in_width
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = rotator_multipliers(in_width)
        rot = data.ArrayLayout(signed(rotated_width(in_width)), lanes)
        super().__init__({
            "valid_in": In(1), "out_in": In(1), "end_in": In(1),
            "x1": In(data.ArrayLayout(signed(in_width), lanes)),
            "x2": In(data.ArrayLayout(signed(in_width), lanes)),
            "cos": In(data.ArrayLayout(signed(16), lanes)),
            "sin": In(data.ArrayLayout(signed(16), lanes)),
            "frac_bits": In(4),
            "accept": Out(1),
            "ready": In(1),
            "valid": Out(1), "out": Out(1), "end": Out(1),
            "lo": Out(rot),
            "hi": Out(rot),
            "busy": Out(1),
            **multiplier_members(self),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, pw = self.lanes, self.in_width + 16
        v2, adv2, adv3 = Signal(), Signal(), Signal()
        m.d.comb += [adv3.eq(self.ready | ~self.valid), adv2.eq(adv3 | ~v2), self.accept.eq(adv2)]
        # Stage 2: the four products.
        out2, end2 = Signal(), Signal()
        prods = [[Signal(signed(pw), name=f"p{j}_{k}") for j in range(4)] for k in range(lanes)]
        # The products are built (or taken from the unit's shared multipliers) outside the enable: m.d.comb. The
        # item's flags travel beside the multipliers' MUL_LATENCY stages, which advance with stage 2.
        operands = {"x1c": (self.x1, self.cos), "x2s": (self.x2, self.sin), "x2c": (self.x2, self.cos),
                    "x1s": (self.x1, self.sin)}
        products = []
        for spec in self.multipliers:
            ports, (x, t) = multiplier_ports(self, spec.name), operands[spec.name]
            products.append([multiply(m, ports[k], x[k], t[k], en=adv2, name=f"mul_{spec.name}_{k}")
                             for k in range(lanes)])
        beside = delay_stages(m, adv2, [self.valid_in, self.out_in, self.end_in], name="mul")
        with m.If(adv2):
            m.d.sync += [v2.eq(beside[-1][0]), out2.eq(beside[-1][1]), end2.eq(beside[-1][2])]
            for k in range(lanes):
                m.d.sync += [prods[k][j].eq(products[j][k]) for j in range(4)]
        # Stage 3: sums and the single rounding shift.
        f_m1 = Signal(4)
        m.d.comb += f_m1.eq(self.frac_bits - 1)
        with m.If(adv3):
            m.d.sync += [self.valid.eq(v2), self.out.eq(out2), self.end.eq(end2)]
            for k in range(lanes):
                p = prods[k]
                m.d.sync += [self.lo[k].eq((((p[0] - p[1]) >> f_m1) + 1) >> 1),
                             self.hi[k].eq((((p[2] + p[3]) >> f_m1) + 1) >> 1)]
        m.d.comb += self.busy.eq(stages_hold(beside) | v2 | self.valid)
        return m


class RopeReorder(wiring.Component):
    """Saturates rotated beat pairs and sends a row as its ``lo`` beats, then its queued ``hi`` beats (stage 4).

    Parameters
    ----------
    lanes, in_width : int
    out_width : int
        8 or 16.
    max_half_beats : int
        Beats of the longest half row (the ``hi`` queue holds that many and one end token).

    Members
    -------
    valid_in, out_in, end_in, lo, hi : In
        An item of :class:`RopeRotator`; ``end_in`` without ``out_in`` (an aborted row) throws the row's queued
        ``hi`` beats away.
    ready : Out(1)
        The item is taken on this edge.
    out_bits : In(5)
        8 or 16: saturate to int8 or int16 (16 only with ``out_width == 16``).
    o : Out(stream.Signature(VecBeat(out_width, lanes)))
    busy : Out(1)
        A ``lo`` beat waits or a row's ``hi`` beats are being sent or thrown away.
    """

    def __init__(self, *, lanes: int, in_width: int, out_width: int, max_half_beats: int):
        self.lanes, self.out_width, self.max_half_beats = lanes, out_width, max_half_beats
        rot = data.ArrayLayout(signed(rotated_width(in_width)), lanes)
        super().__init__({
            "valid_in": In(1), "out_in": In(1), "end_in": In(1),
            "lo": In(rot),
            "hi": In(rot),
            "ready": Out(1),
            "out_bits": In(5),
            "o": Out(stream.Signature(VecBeat(out_width, lanes))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, ow = self.lanes, self.out_width
        mode = Signal(2)
        o1_valid, o1_end = Signal(), Signal()
        m.d.comb += self.ready.eq((mode == _OUT1) & (~o1_valid | self.o.ready))

        def sat(v, k, tag):
            y8 = saturate(v, 8)
            if ow == 8:
                return y8
            y = Signal(signed(16), name=f"{tag}_{k}")
            m.d.comb += y.eq(y8)
            with m.If(self.out_bits == 16):
                m.d.comb += y.eq(saturate(v, 16))
            return y

        # x'[:h] beat into the output register, x'[h:] beat into the FIFO.
        m.submodules.second_half = fifo = SyncFIFOBuffered(width=lanes * ow + 1, depth=self.max_half_beats + 1)
        o1_data = Signal(lanes * ow)
        with m.If(self.ready):
            m.d.sync += [o1_valid.eq(self.valid_in & self.out_in), o1_end.eq(self.valid_in & self.end_in)]
            m.d.sync += o1_data.eq(Cat(*(sat(self.lo[k], k, "ylo") for k in range(lanes))))
            with m.If(self.valid_in & self.end_in & ~self.out_in):
                m.d.sync += mode.eq(_DISCARD)
        m.d.comb += [
            fifo.w_data.eq(Cat(*(sat(self.hi[k], k, "yhi") for k in range(lanes)), self.end_in)),
            fifo.w_en.eq(self.ready & self.valid_in & self.out_in),
        ]

        # Output: first halves from the register, then the queued second half of the row.
        # Plain muxes rather than a Switch: they become continuous assignments, which event-driven
        # simulators (Icarus) evaluate at time 0 even when no input of the process ever changes.
        draining = Signal()
        m.d.comb += [
            draining.eq(mode == _DRAIN),
            self.o.valid.eq(Mux(draining, fifo.r_rdy, o1_valid & (mode == _OUT1))),
            self.o.payload.eq(Mux(draining, fifo.r_data, Cat(o1_data, 0))),
            # An aborted row's queued second half is thrown away (DISCARD), nothing more is sent.
            fifo.r_en.eq(Mux(draining, self.o.ready, mode == _DISCARD)),
        ]
        with m.Switch(mode):
            with m.Case(_OUT1):
                with m.If(o1_valid & self.o.ready & o1_end):
                    m.d.sync += mode.eq(_DRAIN)
            with m.Case(_DRAIN):
                with m.If(fifo.r_rdy & self.o.ready & fifo.r_data[-1]):
                    m.d.sync += mode.eq(_OUT1)
            with m.Case(_DISCARD):
                with m.If(fifo.level == 0):
                    m.d.sync += mode.eq(_OUT1)
        m.d.comb += self.busy.eq(o1_valid | (mode != _OUT1))
        return m
