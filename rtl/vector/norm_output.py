"""The norms' output side: read a row back, normalise it, apply gamma/beta and the output rounding.

Three components, a pipeline that moves one step on every cycle its ``en`` is high (the operator drives
``en = ~o.valid | o.ready``, so the whole output side stalls together):

* :class:`NormRowReader` takes a row's constants, issues one row-buffer / parameter-memory read per step and
  delivers each beat's constants with the read data (stage O1);
* :class:`NormNormalise` computes ``y_i = (x_i*A + K) >> h`` (stages O2, O3; ``golden.norms`` step 6 regrouped as
  ``c_i*Rcp = x_i*(D*Rcp) - s1*Rcp``);
* :class:`NormAffine` computes ``out_i = clamp((y_i*G_i + B_i + 2^(T-1)) >> T)`` (stages O4, O5; step 7), with the
  last rounding as ``((w >> (T-1)) + 1) >> 1``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import saturate
from npuforge.rtl.vector.norm_rsqrt import NormRowConsts

__all__ = ["NormRowReader", "NormNormalise", "NormAffine", "Y_WIDTH"]

#: Width of the normalised value y in Q.16 (|y| < 2^23, rounded half up).
Y_WIDTH = 25


class NormRowReader(wiring.Component):
    """Reads one row at a time back from the row buffer, a beat per ``en`` step (stage O1).

    Parameters
    ----------
    lanes, max_row : int

    Members
    -------
    i : In(stream.Signature(NormRowConsts(max_row)))
        The next row's constants; taken as soon as the previous row's last read has issued.
    en : In(1)
        The output pipeline moves one step.
    read_bank, read_beat : Out(1), Out(range(depth + 1))
        The beat to read (row-buffer half, beat index, also the parameter-memory address); the memories are read
        with ``en`` as their enable, their data is valid with O1.
    release : Out(1)
        The row's last read issues on this edge: its buffer half may take a new row.
    valid, last, keep : Out(1), Out(1), Out(lanes)
        O1: a beat's read data arrives now; it is the row's last; its lanes inside the row.
    cst : Out(NormRowConsts(max_row))
        O1: the beat's row constants (they travel down the pipeline with each beat).
    busy : Out(1)
        A row is being read or a beat is in O1.
    """

    def __init__(self, *, lanes: int, max_row: int):
        self.lanes, self.max_row = lanes, max_row
        self.depth = -(-max_row // lanes)
        super().__init__({
            "i": In(stream.Signature(NormRowConsts(max_row=max_row))),
            "en": In(1),
            "read_bank": Out(1),
            "read_beat": Out(range(self.depth + 1)),
            "release": Out(1),
            "valid": Out(1),
            "last": Out(1),
            "keep": Out(lanes),
            "cst": Out(NormRowConsts(max_row=max_row)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        active = Signal()
        cur = Signal.like(self.i.payload)
        rd_base = Signal(range(self.max_row + lanes + 1))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [active.eq(1), cur.eq(self.i.payload), self.read_beat.eq(0), rd_base.eq(0)]
        issue, rd_last = Signal(), Signal()
        m.d.comb += [
            self.i.ready.eq(~active),
            issue.eq(active & self.en),
            rd_last.eq(rd_base + lanes >= cur.len),
            self.read_bank.eq(cur.bank),
            self.release.eq(issue & rd_last),
        ]
        with m.If(issue):
            m.d.sync += [self.read_beat.eq(self.read_beat + 1), rd_base.eq(rd_base + lanes)]
            with m.If(rd_last):
                m.d.sync += active.eq(0)
        with m.If(self.en):
            m.d.sync += [self.valid.eq(issue), self.last.eq(rd_last), self.cst.eq(cur)]
            for k in range(lanes):
                m.d.sync += self.keep[k].eq(rd_base + k < cur.len)
        m.d.comb += self.busy.eq(active | self.valid)
        return m


class NormNormalise(wiring.Component):
    """``y_i = (x_i*A + K) >> h`` per lane, two pipeline stages (O2: the signed 64-bit product-sum, O3: the shift).

    ``tag`` rides along unchanged (the operator's gamma/beta, keep and last), so it leaves with its beat's y.

    Parameters
    ----------
    lanes : int
    x_width : int
        Signed width of x (the statistics' width: 8, 16, or 16 after an int32 row's pre-shift).
    a_shape : Shape
        Shape of A = D*Rcp (unsigned bit_length(max_row) + 32).
    tag_shape : ShapeLike
        What travels with the beat.

    Members
    -------
    en : In(1)
        Every stage moves one step.
    valid_in, x, a, k, h, tag_in : In
        One beat: x (lanes x signed x_width), the row's A, K (signed 64) and h (in [1, 45]).
    valid, y, tag : Out
        The beat two steps later: y (lanes x signed 25, Q.16), and its tag. Valid for |x*A + K| < 2^63 and
        |y| < 2^24 (the operator's rows: |c*Rcp| < 2^60, |y| < 2^23).
    busy : Out(1)
        A beat is in O2 or O3.
    """

    def __init__(self, *, lanes: int, x_width: int, a_shape, tag_shape):
        self.lanes = lanes
        super().__init__({
            "en": In(1),
            "valid_in": In(1),
            "x": In(data.ArrayLayout(signed(x_width), lanes)),
            "a": In(a_shape),
            "k": In(signed(64)),
            "h": In(range(64)),
            "tag_in": In(tag_shape),
            "valid": Out(1),
            "y": Out(data.ArrayLayout(signed(Y_WIDTH), lanes)),
            "tag": Out(tag_shape),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # O2: p = x*A + K (signed 64 bit; |c*Rcp| < 2^60).
        o2_valid, o2_h, o2_tag = Signal(), Signal.like(self.h), Signal.like(self.tag_in)
        p2 = [Signal(signed(64), name=f"p2_{k}") for k in range(self.lanes)]
        with m.If(self.en):
            m.d.sync += [o2_valid.eq(self.valid_in), o2_h.eq(self.h), o2_tag.eq(self.tag_in)]
            for k in range(self.lanes):
                m.d.sync += p2[k].eq(self.x[k] * self.a + self.k)
        # O3: y = p >> h, the normalised value in Q.16.
        with m.If(self.en):
            m.d.sync += [self.valid.eq(o2_valid), self.tag.eq(o2_tag)]
            for k in range(self.lanes):
                m.d.sync += self.y[k].eq(p2[k] >> o2_h)
        m.d.comb += self.busy.eq(o2_valid | self.valid)
        return m


class NormAffine(wiring.Component):
    """``out_i = clamp((y_i*G_i + B_i + 2^(T-1)) >> T)`` per lane, two pipeline stages (O4: the affine sum,
    O5: the output register with one round-half-up by 2^T, saturation, lanes past the row end zeroed).

    Parameters
    ----------
    lanes : int
    out_width : int
        8 or 16; G is signed out_width + 8, B signed out_width + 40, w = y*G + B signed out_width + 42.
    side_width : int
        Width of ``side_in`` / ``side``, a per-beat value that leaves with its beat (0: no such ports).

    Members
    -------
    en : In(1)
        Every stage moves one step.
    valid_in, last_in, keep_in : In(1), In(1), In(lanes)
        One beat: whether it exists, is the row's last, which lanes lie inside the row.
    y : In(ArrayLayout(signed(25), lanes))
        The normalised values (Q.16).
    gamma, beta : In(ArrayLayout(signed(out_width + 8), lanes)), In(ArrayLayout(signed(out_width + 40), lanes))
    t1 : In(range(32))
        T - 1 = 15 + gamma_shift.
    out8 : In(1)
        Saturate to int8 instead (a 16-bit operator's int8 results; ignored when out_width = 8).
    valid, last, data : Out(1), Out(1), Out(ArrayLayout(signed(out_width), lanes))
        The beat two steps later (O5, registered).
    side_in, side : In(side_width), Out(side_width)
        Only with ``side_width``: a value offered with the beat, and the same value beside it on ``data``.
    busy : Out(1)
        A beat is in O4 or O5.
    """

    def __init__(self, *, lanes: int, out_width: int, side_width: int = 0):
        self.lanes, self.out_width, self.side_width = lanes, out_width, side_width
        side = {"side_in": In(side_width), "side": Out(side_width)} if side_width else {}
        super().__init__({
            **side,
            "en": In(1),
            "valid_in": In(1),
            "last_in": In(1),
            "keep_in": In(lanes),
            "y": In(data.ArrayLayout(signed(Y_WIDTH), lanes)),
            "gamma": In(data.ArrayLayout(signed(out_width + 8), lanes)),
            "beta": In(data.ArrayLayout(signed(out_width + 40), lanes)),
            "t1": In(range(32)),
            "out8": In(1),
            "valid": Out(1),
            "last": Out(1),
            "data": Out(data.ArrayLayout(signed(out_width), lanes)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, ow = self.lanes, self.out_width
        # O4: w = y*G + B (signed out_width + 41 bit).
        o4_valid, o4_last, o4_keep = Signal(), Signal(), Signal(lanes)
        o4_t1, o4_out8 = Signal.like(self.t1), Signal()
        w4 = [Signal(signed(ow + 42), name=f"w4_{k}") for k in range(lanes)]
        if self.side_width:
            o4_side = Signal(self.side_width)
            with m.If(self.en):
                m.d.sync += [o4_side.eq(self.side_in), self.side.eq(o4_side)]
        with m.If(self.en):
            m.d.sync += [o4_valid.eq(self.valid_in), o4_last.eq(self.last_in), o4_keep.eq(self.keep_in),
                         o4_t1.eq(self.t1), o4_out8.eq(self.out8)]
            for k in range(lanes):
                m.d.sync += w4[k].eq(self.y[k] * self.gamma[k] + self.beta[k])
        # O5 (output register): one round-half-up by 2^T, saturation, zero lanes past the row end.
        with m.If(self.en):
            m.d.sync += [self.valid.eq(o4_valid), self.last.eq(o4_last)]
            for k in range(lanes):
                rounded = ((w4[k] >> o4_t1) + 1) >> 1
                y = saturate(rounded, ow)
                if ow == 16:
                    y = Mux(o4_out8, saturate(rounded, 8), y)
                m.d.sync += self.data[k].eq(y & o4_keep[k].replicate(ow))
        m.d.comb += self.busy.eq(o4_valid | self.valid)
        return m
