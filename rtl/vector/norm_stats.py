"""The norms' row statistics accumulator: s1 = sum x_i, s2 = sum x_i^2 (and max |x_i| of an int32 row) as beats enter.

Steps 1 of ``golden.norms`` (and the max |x| that picks ``golden.models.intops.norm_wide``'s pre-shift), computed in
two pipeline stages on the beats the operator accepts:

* I1 registers every lane of the offered beat (lanes past the row end zeroed), its square and, for int32 rows, |x|;
* I2 adds them to the running sums. At a row's end the sums and the row's parameters (sampled with the row's beats,
  kept from its last beat) become the pending :func:`NormRowStats` record ``o`` and the sums restart.

The record layouts :func:`NormRowParams` / :func:`NormRowStats` are the hand-over to
:class:`~npuforge.rtl.vector.norm_rsqrt.NormRowConstants`; :func:`wide_pre_shift` is the int32 rows' pre-shift that
both the statistics pass and the output stage apply.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import record_slot, row_len_shape, saturate
from npuforge.spec.vector_ops import EPS_TERM_BITS, NORM_WIDE_IN_BITS

__all__ = ["NormRowParams", "NormRowStats", "NormStatistics", "stat_shapes", "wide_pre_shift"]


def wide_pre_shift(x, k):
    """norm_wide's pre-shift of one int32 element: clamp((x + 2^(k-1)) >> k) into int16 (x itself for k = 0)."""
    shifted = Mux(k == 0, x, ((x >> (k - 1).as_unsigned()[:5]) + 1) >> 1)
    return saturate(shifted, NORM_WIDE_IN_BITS)


def stat_shapes(*, stat_width: int, max_row: int):
    """Shapes of s1 (signed) and s2 (unsigned) for ``stat_width``-bit values and rows up to ``max_row`` elements."""
    d_bits = max_row.bit_length()
    return signed(stat_width + d_bits + 1), unsigned(2 * stat_width + d_bits)


def NormRowParams(*, max_row: int) -> data.StructLayout:
    """The run-time values that travel with one row: D (``len``), ``eps`` (eps_term), ``shift`` (gamma_shift),
    ``frac`` (var_frac_bits), the row buffer half ``bank`` it waits in, ``wide`` (int32 row: pre-shift it),
    ``out8`` (int8 results from a 16-bit-output operator) and ``token`` (the token scale only: the pre-shifted row is
    the result)."""
    return data.StructLayout({"len": row_len_shape(max_row), "eps": unsigned(EPS_TERM_BITS), "shift": signed(6),
                              "frac": unsigned(5), "bank": 1, "wide": 1, "out8": 1, "token": 1})


def NormRowStats(*, in_width: int, stat_width: int, max_row: int) -> data.StructLayout:
    """One finished row's statistics: s1, s2, max |x| (unsigned ``in_width``; 0 unless int32 rows) and its
    :func:`NormRowParams`."""
    s1_shape, s2_shape = stat_shapes(stat_width=stat_width, max_row=max_row)
    return data.StructLayout({"s1": s1_shape, "s2": s2_shape, "max": unsigned(in_width),
                              "params": NormRowParams(max_row=max_row)})


class NormStatistics(wiring.Component):
    """Row statistics as the beats of a row enter (stages I1, I2).

    Parameters
    ----------
    lanes, max_row : int
    in_width : int
        Width of the entering elements (8, 16 or 32).
    stat_width : int
        Width of the values the sums see: ``in_width``, or 16 for int32 rows (their entry sums are used only for a
        row without ``wide``, whose values lie in the int16 range: the low 16 bits are the value).
    centred : bool
        LayerNorm (s1 accumulated) or RMSNorm (s1 = 0).
    track_max : bool
        Track max |x| over the whole ``in_width`` (the int32 rows' pre-shift).

    Members
    -------
    beat : In(ArrayLayout(signed(in_width), lanes))
        The offered beat's elements.
    lane_valid : In(lanes)
        Element k is inside the row (others count as 0).
    keep : In(1)
        The beat is accepted and belongs to a row that will be normalised.
    push : In(1)
        With ``keep``: the beat ends a row that will be normalised.
    restart : In(1)
        A dropped row ended (error): restart the sums.
    params : In(NormRowParams(max_row))
        Sampled every cycle; the record keeps the values of the row's last beat.
    o : Out(stream.Signature(NormRowStats(...)))
        The pending row record, valid from the edge after its last beat leaves I2 until taken. The caller bounds the
        rows in flight (the operator's ping-pong buffer) so that a record is taken before the next row ends.
    row_done, row_done_bank : Out(1), Out(1)
        A row's record is written on this edge, and the buffer half its data lies in.
    busy : Out(1)
        A beat is in I1 or a record waits.
    """

    def __init__(self, *, lanes: int, max_row: int, in_width: int, stat_width: int, centred: bool, track_max: bool):
        self.lanes, self.max_row, self.in_width, self.stat_width = lanes, max_row, in_width, stat_width
        self.centred, self.track_max = centred, track_max
        super().__init__({
            "beat": In(data.ArrayLayout(signed(in_width), lanes)),
            "lane_valid": In(lanes),
            "keep": In(1),
            "push": In(1),
            "restart": In(1),
            "params": In(NormRowParams(max_row=max_row)),
            "o": Out(stream.Signature(NormRowStats(in_width=in_width, stat_width=stat_width, max_row=max_row))),
            "row_done": Out(1),
            "row_done_bank": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, b, sb = self.lanes, self.in_width, self.stat_width
        s1_shape, s2_shape = stat_shapes(stat_width=sb, max_row=self.max_row)

        # I1: the beat with lanes past the row end zeroed, and its squares (and, int32 rows, |x|).
        i1_valid, i1_push = Signal(), Signal()
        x1 = [Signal(signed(sb), name=f"x1_{k}") for k in range(lanes)]
        sq1 = [Signal(unsigned(2 * sb), name=f"sq1_{k}") for k in range(lanes)]
        ax1 = [Signal(unsigned(b), name=f"ax1_{k}") for k in range(lanes)] if self.track_max else []
        i1_params = Signal.like(self.params)
        m.d.sync += [i1_valid.eq(self.keep), i1_push.eq(self.keep & self.push), i1_params.eq(self.params)]
        for k in range(lanes):
            xk = Mux(self.lane_valid[k], self.beat[k][:sb].as_signed(), 0)
            m.d.sync += [x1[k].eq(xk), sq1[k].eq(xk * xk)]
            if self.track_max:
                xw = self.beat[k]
                m.d.sync += ax1[k].eq(Mux(self.lane_valid[k], Mux(xw < 0, -xw, xw), 0))

        # I2: accumulate; at the row end the sums become the pending record.
        s1_acc, s2_acc = Signal(s1_shape), Signal(s2_shape)
        beat_s1 = sum(x1) if self.centred else 0
        beat_s2 = sum(sq1)
        # max |x| (unsigned in_width: |-2^31| included), a chain of named levels (see softmax).
        max_acc = Signal(unsigned(b))
        beat_max = Const(0, unsigned(b))
        for k, ax in enumerate(ax1):
            level = Signal(unsigned(b), name=f"beat_absmax_{k}")
            m.d.comb += level.eq(Mux(ax > beat_max, ax, beat_max))
            beat_max = level
        new_max = Mux(beat_max > max_acc, beat_max, max_acc)
        pend = self.o.payload
        with m.If(i1_valid):
            with m.If(i1_push):
                m.d.sync += [s1_acc.eq(0), s2_acc.eq(0), max_acc.eq(0),
                             pend.s1.eq(s1_acc + beat_s1), pend.s2.eq(s2_acc + beat_s2), pend.max.eq(new_max),
                             pend.params.eq(i1_params)]
            with m.Else():
                m.d.sync += [s1_acc.eq(s1_acc + beat_s1), s2_acc.eq(s2_acc + beat_s2), max_acc.eq(new_max)]
        with m.If(self.restart):
            m.d.sync += [s1_acc.eq(0), s2_acc.eq(0), max_acc.eq(0)]
        record_slot(m, self, done=i1_valid & i1_push, bank=i1_params.bank, busy=i1_valid)
        return m
