"""Two-operand elementwise operators: residual add with rescale, SwiGLU gate multiply.

Exactly ``golden.elementwise``:

* :class:`ResidualAdd` (``residual_add``)::

      y = clamp((a * a_multiplier + b * b_multiplier + 2^(shift-1)) >> shift)     shift = T in [1, 62]

  products in_width x 31 bit -> signed in_width + 31 bits, their sum one bit wider. With ``wide`` (the int32
  residual stream, ``golden.models.intops.residual_add_wide``, built with ``in_width = out_width = 32``)::

      y = clamp(clamp((a * a_multiplier + 2^(T-1)) >> T) + b)       b_multiplier = 0, out_bits 16 or 32
* :class:`GateMul` (``gate_mul``)::

      p = a * b                                              signed 2 * in_width - 1 bits
      y = clamp(((p * multiplier + 2^(t-1)) >> t))           t = 31 + shift, shift in [-30, 31]

  With ``exact`` (``vec.gate`` flags bit 2, ``spec.vector_ops.GATE_OUT32``; built with ``out_width = 32``) the
  result is the exact product ``p`` as int32: the requant runs with multiplier 2^30 and shift -1, which is the
  identity ((p * 2^30 + 2^29) >> 30 = p), so the exact product costs no datapath of its own.

Both round once, half up, with an arithmetic shift computed as ``((x >> (t-1)) + 1) >> 1`` (equal to
``(x + 2^(t-1)) >> t`` for all integers), then saturate to int8 or int16 (``out_bits``).

Streams ``a`` and ``b`` are joined: a beat is taken only when both are valid, and ``a.last`` frames
the row (``b.last`` must agree, else ROW_FRAMING). One beat (``lanes`` element pairs) per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat, check_lanes, check_max_row, \
    row_len_shape, saturate, sticky_error, with_control
from npuforge.rtl.vector.mulpool import MulSpec, delay_stages, multiplier_members, multiplier_ports, multiply, \
    stages_hold

__all__ = ["ResidualAdd", "GateMul", "round_half_up_shift"]


def round_half_up_shift(value, shift_minus_1):
    """``(value + 2^(s-1)) >> s`` (arithmetic) for s = shift_minus_1 + 1 >= 1, without a variable constant."""
    return ((value >> shift_minus_1) + 1) >> 1


class _TwoOperandOp(wiring.Component):
    """Shared front end: joined ``a``/``b`` streams, row bookkeeping, errors, stall-all pipeline."""

    WIDTHS = (8, 16)

    def __init__(self, *, lanes, max_row, in_width, out_width, params, shared_multipliers=False):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        allowed = " or ".join(str(w) for w in self.WIDTHS)
        if in_width not in self.WIDTHS:
            raise ValueError(f"in_width must be {allowed}, got {in_width!r}")
        if out_width not in self.WIDTHS:
            raise ValueError(f"out_width must be {allowed}, got {out_width!r}")
        self.in_width, self.out_width = in_width, out_width
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = self.multiplies()
        super().__init__(with_control({
            "a": In(stream.Signature(VecBeat(in_width, lanes))),
            "b": In(stream.Signature(VecBeat(in_width, lanes))),
            "o": Out(stream.Signature(VecBeat(out_width, lanes))),
            "row_len": In(row_len_shape(max_row)),
            **params,
            "out_bits": In(6),
            **multiplier_members(self),
        }))

    def front_end(self, m, bad_param, out_bits_ok=None):
        """Join, track, flag; return (advance, fire, keep-this-beat, lane_valid) signals. ``out_bits_ok``: the legal
        ``out_bits`` values (default 8 and, with ``out_width`` 16, 16)."""
        m.submodules.tracker = tracker = RowTracker(lanes=self.lanes, max_row=self.max_row)
        advance, fire, both = Signal(), Signal(), Signal()
        bad_out = Signal()
        if out_bits_ok is None:
            out_bits_ok = (self.out_bits == 8) | ((self.out_bits == 16) if self.out_width >= 16 else 0)
        m.d.comb += bad_out.eq(~out_bits_ok)
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            both.eq(self.a.valid & self.b.valid),
            # Ready waits for both valids (allowed: ready may depend on valid), so a and b move together.
            self.a.ready.eq(advance & both),
            self.b.ready.eq(advance & both),
            fire.eq(advance & both),
            tracker.row_len.eq(self.row_len),
            tracker.fire.eq(fire),
            tracker.last.eq(self.a.payload.last),
        ]
        mismatch = Signal()
        m.d.comb += mismatch.eq(self.a.payload.last != self.b.payload.last)
        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            (fire & tracker.bad_len, ErrorCode.ROW_LEN),
            (fire & (tracker.framing | mismatch), ErrorCode.ROW_FRAMING),
            (fire & (bad_out | bad_param), ErrorCode.BAD_PARAM),
        ])
        keep = Signal()
        m.d.comb += keep.eq(fire & ~tracker.drop & ~mismatch & ~bad_out & ~bad_param)
        return advance, fire, keep, tracker.lane_valid

    def output_stage(self, m, advance, valid, last, lane_valid, values):
        """Saturate ``values`` (one per lane) to out_bits into the output register; tail lanes 0."""
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid), self.o.payload.last.eq(last)]
            for k, v in enumerate(values):
                y8 = saturate(v, 8)
                if self.out_width >= 16:
                    y = Signal(signed(self.out_width), name=f"y_{k}")
                    m.d.comb += y.eq(y8)
                    with m.If(self.out_bits == 16):
                        m.d.comb += y.eq(saturate(v, 16))
                    if self.out_width == 32:
                        with m.If(self.out_bits == 32):
                            m.d.comb += y.eq(saturate(v, 32))
                else:
                    y = y8
                m.d.sync += self.o.payload.data[k].eq(y & lane_valid[k].replicate(self.out_width))


class ResidualAdd(_TwoOperandOp):
    """Residual add of two streams with different scales (``golden.elementwise.residual_add``), or with ``wide``
    the residual stream's add (``golden.models.intops.residual_add_wide``: ``a`` requantized, then ``b`` added).

    Members
    -------
    a, b : In(stream.Signature(VecBeat(in_width, lanes)))   in_width 8, 16 or 32
    o : Out(stream.Signature(VecBeat(out_width, lanes)))    out_width 8, 16 or 32
    row_len : In(row_len_shape(max_row))
    a_multiplier, b_multiplier : In(unsigned(31))
    shift : In(6)
        Total right shift T, 1..62 (ResidualParams.shift); 0 or 63 sets BAD_PARAM.
    wide : In(1)
        The residual stream's add: a_multiplier must be a normalised Q31 (>= 2^30) and b_multiplier 0, else
        BAD_PARAM.
    out_bits : In(6)
        8 or 16 (16 needs ``out_width >= 16``); with ``wide`` 16 or 32 (32 needs ``out_width == 32``).
    clear, error, error_code, busy : see :mod:`rtl.vector.common`.
    """

    LATENCY = 9
    WIDTHS = (8, 16, 32)

    def __init__(self, *, lanes: int, max_row: int = 4096, in_width: int = 8, out_width: int = 8,
                 shared_multipliers: bool = False):
        super().__init__(lanes=lanes, max_row=max_row, in_width=in_width, out_width=out_width, params={
            "a_multiplier": In(unsigned(31)),
            "b_multiplier": In(unsigned(31)),
            "shift": In(6),
            "wide": In(1),
        }, shared_multipliers=shared_multipliers)

    def multiplies(self):
        """Per lane: ``a * a_multiplier`` and ``b * b_multiplier`` (:mod:`rtl.vector.mulpool`)."""
        return (MulSpec("a", signed(self.in_width), unsigned(31)), MulSpec("b", signed(self.in_width), unsigned(31)))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        bad_param = Signal()
        wide_bad = self.wide & (~self.a_multiplier[30] | (self.b_multiplier != 0))
        m.d.comb += bad_param.eq((self.shift == 0) | (self.shift > 62) | wide_bad)
        ob = self.out_bits
        narrow_ok = (ob == 8) | ((ob == 16) if self.out_width >= 16 else 0)
        wide_ok = ((ob == 16) if self.out_width >= 16 else 0) | ((ob == 32) if self.out_width == 32 else 0)
        advance, fire, keep, lane_valid = self.front_end(m, bad_param, Mux(self.wide, wide_ok, narrow_ok))
        shift_m1 = Signal(range(62))  # T - 1
        m.d.comb += shift_m1.eq(self.shift - 1)

        # Stage 1: operands.
        v1, last1, lv1 = Signal(), Signal(), Signal(lanes)
        a1 = [Signal(signed(self.in_width), name=f"a1_{k}") for k in range(lanes)]
        b1 = [Signal(signed(self.in_width), name=f"b1_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v1.eq(keep), last1.eq(self.a.payload.last), lv1.eq(lane_valid)]
            m.d.sync += [a1[k].eq(self.a.payload.data[k]) for k in range(lanes)]
            m.d.sync += [b1[k].eq(self.b.payload.data[k]) for k in range(lanes)]
        # Stage 2: the two products (in_width x 31 -> in_width + 31 bits, signed), MUL_LATENCY stages after the
        # operands (the multipliers' own registers; the beat's flags and b travel beside them).
        v2, last2, lv2 = Signal(), Signal(), Signal(lanes)
        pw = self.in_width + 31
        pa2 = [Signal(signed(pw), name=f"pa2_{k}") for k in range(lanes)]
        pb2 = [Signal(signed(pw), name=f"pb2_{k}") for k in range(lanes)]
        mul_a, mul_b = multiplier_ports(self, "a"), multiplier_ports(self, "b")
        prod_a = [multiply(m, mul_a[k], a1[k], self.a_multiplier, en=advance, name=f"mul_a_{k}")
                  for k in range(lanes)]
        prod_b = [multiply(m, mul_b[k], b1[k], self.b_multiplier, en=advance, name=f"mul_b_{k}")
                  for k in range(lanes)]
        beside = delay_stages(m, advance, [v1, last1, lv1, *b1], name="mul")
        vm, lastm, lvm, *bm = beside[-1]
        with m.If(advance):
            m.d.sync += [v2.eq(vm), last2.eq(lastm), lv2.eq(lvm)]
            for k in range(lanes):
                m.d.sync += [pa2[k].eq(prod_a[k]), pb2[k].eq(prod_b[k])]
        # Stages 3-6 split the output for fmax (one wide carry chain or shifter per stage): the sum (wide: a's
        # product alone), the shift by T - 1, the rounding add, the saturation to int32 (wide: to out_bits). b
        # travels along for the wide add.
        pipe = [(v2, last2, lv2)]

        def stage(n, values, width, name):
            """One more registered stage: ``values`` (one per lane) into ``width``-bit registers."""
            v, last, lv = Signal(name=f"v{n}"), Signal(name=f"last{n}"), Signal(lanes, name=f"lv{n}")
            regs = [Signal(signed(width), name=f"{name}{n}_{k}") for k in range(lanes)]
            with m.If(advance):
                m.d.sync += [v.eq(pipe[-1][0]), last.eq(pipe[-1][1]), lv.eq(pipe[-1][2])]
                m.d.sync += [r.eq(x) for r, x in zip(regs, values)]
            pipe.append((v, last, lv))
            return regs

        s3 = stage(3, [pa2[k] + Mux(self.wide, 0, pb2[k]) for k in range(lanes)], pw + 1, "s")
        t4 = stage(4, [s3[k] >> shift_m1 for k in range(lanes)], pw + 1, "t")
        r5 = stage(5, [(t4[k] + 1) >> 1 for k in range(lanes)], pw + 1, "r")
        # Saturating to int32 first changes no narrow result (clamp to 8 or 16 bits of a clamp to 32 bits).
        c6 = []
        for k in range(lanes):
            ya = saturate(r5[k], 32)
            if self.out_width >= 16:
                ya = Mux(self.wide & (self.out_bits == 16), saturate(r5[k], 16), ya)
            c6.append(ya)
        c6 = stage(6, c6, 32, "c")
        b_delay = [bm]
        for n in range(2, 7):
            b_delay.append([Signal(signed(self.in_width), name=f"b{n}_{k}") for k in range(lanes)])
            with m.If(advance):
                m.d.sync += [b_delay[-1][k].eq(b_delay[-2][k]) for k in range(lanes)]
        b6 = b_delay[-1]
        busy = v1 | self.o.valid | stages_hold(beside)
        for valid, _, _ in pipe:
            busy = busy | valid
        m.d.comb += self.busy.eq(busy)
        # Stage 7: saturation into the output register (wide: the saturated requantized a plus b, saturated).
        values = [Mux(self.wide, c6[k] + b6[k], c6[k]) for k in range(lanes)]
        v6, last6, lv6 = pipe[-1]
        self.output_stage(m, advance, v6, last6, lv6, values)
        return m


class GateMul(_TwoOperandOp):
    """SwiGLU gate ``a * b`` requantized with a Q31 multiplier (``golden.elementwise.gate_mul``), or with ``exact``
    the exact product (int32 results).

    Members
    -------
    a, b, o, row_len, out_bits, clear, error, error_code, busy : as :class:`ResidualAdd` (``out_width`` 8, 16 or
        32; ``out_bits`` 8 or 16, with ``exact`` 32, else BAD_PARAM).
    multiplier : In(unsigned(31))
    shift : In(signed(7))
        Requant shift, -30..31 (total right shift 31 + shift in 1..62); else BAD_PARAM. Both ignored with ``exact``.
    exact : In(1)
        The exact product ``a * b`` (``out_bits`` 32; needs ``out_width = 32`` and, for the product to fit,
        ``in_width`` <= 16).
    """

    LATENCY = 9
    WIDTHS = (8, 16, 32)

    def __init__(self, *, lanes: int, max_row: int = 4096, in_width: int = 8, out_width: int = 8,
                 shared_multipliers: bool = False):
        if in_width == 32:
            raise ValueError(f"in_width must be 8 or 16, got {in_width!r}")
        super().__init__(lanes=lanes, max_row=max_row, in_width=in_width, out_width=out_width, params={
            "multiplier": In(unsigned(31)),
            "shift": In(signed(7)),
            "exact": In(1),
        }, shared_multipliers=shared_multipliers)

    def multiplies(self):
        """Per lane: ``p = a * b`` and ``p * multiplier`` (:mod:`rtl.vector.mulpool`)."""
        return (MulSpec("ab", signed(self.in_width), signed(self.in_width)),
                MulSpec("requant", signed(2 * self.in_width), unsigned(31)))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        # The exact product is the identity requant of p: multiplier 2^30, shift -1 (t = 30).
        multiplier, shift = Signal(unsigned(31)), Signal(signed(7))
        m.d.comb += [multiplier.eq(Mux(self.exact, 1 << 30, self.multiplier)),
                     shift.eq(Mux(self.exact, -1, self.shift))]
        bad_shift = Signal()
        m.d.comb += bad_shift.eq((shift < -30) | (shift > 31))
        ob = self.out_bits
        narrow_ok = (ob == 8) | ((ob == 16) if self.out_width >= 16 else 0)
        exact_ok = (ob == 32) if self.out_width == 32 else 0
        advance, fire, keep, lane_valid = self.front_end(m, bad_shift, Mux(self.exact, exact_ok, narrow_ok))
        shift_m1 = Signal(range(62))  # t - 1 = 30 + shift
        m.d.comb += shift_m1.eq(shift + 30)

        v1, last1, lv1 = Signal(), Signal(), Signal(lanes)
        a1 = [Signal(signed(self.in_width), name=f"a1_{k}") for k in range(lanes)]
        b1 = [Signal(signed(self.in_width), name=f"b1_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v1.eq(keep), last1.eq(self.a.payload.last), lv1.eq(lane_valid)]
            m.d.sync += [a1[k].eq(self.a.payload.data[k]) for k in range(lanes)]
            m.d.sync += [b1[k].eq(self.b.payload.data[k]) for k in range(lanes)]
        # Stage 2: p = a * b, MUL_LATENCY stages after the operands (the beat's flags travel beside the multiplier).
        v2, last2, lv2 = Signal(), Signal(), Signal(lanes)
        p2 = [Signal(signed(2 * self.in_width), name=f"p2_{k}") for k in range(lanes)]
        mul_ab, mul_requant = multiplier_ports(self, "ab"), multiplier_ports(self, "requant")
        prod_ab = [multiply(m, mul_ab[k], a1[k], b1[k], en=advance, name=f"mul_ab_{k}") for k in range(lanes)]
        beside_ab = delay_stages(m, advance, [v1, last1, lv1], name="mul_ab")
        with m.If(advance):
            m.d.sync += [v2.eq(beside_ab[-1][0]), last2.eq(beside_ab[-1][1]), lv2.eq(beside_ab[-1][2])]
            m.d.sync += [p2[k].eq(prod_ab[k]) for k in range(lanes)]
        # Stage 3: p * multiplier, MUL_LATENCY stages after p.
        v3, last3, lv3 = Signal(), Signal(), Signal(lanes)
        q3 = [Signal(signed(2 * self.in_width + 31), name=f"q3_{k}") for k in range(lanes)]
        prod_requant = [multiply(m, mul_requant[k], p2[k], multiplier, en=advance, name=f"mul_requant_{k}")
                        for k in range(lanes)]
        beside_rq = delay_stages(m, advance, [v2, last2, lv2], name="mul_requant")
        with m.If(advance):
            m.d.sync += [v3.eq(beside_rq[-1][0]), last3.eq(beside_rq[-1][1]), lv3.eq(beside_rq[-1][2])]
            m.d.sync += [q3[k].eq(prod_requant[k]) for k in range(lanes)]
        # Stage 4: single rounding shift.
        v4, last4, lv4 = Signal(), Signal(), Signal(lanes)
        r4 = [Signal(signed(2 * self.in_width + 31), name=f"r4_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v4.eq(v3), last4.eq(last3), lv4.eq(lv3)]
            m.d.sync += [r4[k].eq(round_half_up_shift(q3[k], shift_m1)) for k in range(lanes)]
        m.d.comb += self.busy.eq(v1 | v2 | v3 | v4 | self.o.valid | stages_hold(beside_ab + beside_rq))
        self.output_stage(m, advance, v4, last4, lv4, r4)
        return m
