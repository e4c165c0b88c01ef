"""Softmax's output engine: a summed row read back from the row buffer and normalised (``golden.softmax`` step 9).

Per beat, after a read stage (OR) and the recomputed exp (:class:`~npuforge.rtl.vector.softmax_exp.SoftmaxExp`),
with Q1's product :data:`~npuforge.rtl.vector.mulpool.MUL_LATENCY` stages after e (the multiplier's registers)::

    Q1   p_j = e_j * Rcp                       (q15: e_j * (Rcp >> 1), Rcp >> 1 = floor(2^53 / S))
    out  q_j = (255 * p_j + 2^53) >> 54        uint8 in units of 1/255
         q15: min((p_j + 2^37) >> 38, 2^15 - 1)
         0 for lanes past the row end

Every stage moves when the output register is empty or taken (``o.ready``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import VecBeat
from npuforge.rtl.vector.mulpool import MulSpec, delay_stages, forward_multipliers, multiplier_members, \
    multiplier_ports, multiply, stages_hold
from npuforge.rtl.vector.softmax_exp import (E_BITS, EXP_MULTIPLIERS, RCP_BITS, SoftmaxExp, SoftmaxRowConsts,
                                             masked_column)
from npuforge.spec.vector_ops import RECIP_BITS, RECIP_Q15_BITS, SOFTMAX_Q15_MAX

__all__ = ["SoftmaxNormalise"]


class SoftmaxNormalise(wiring.Component):
    """Reads a summed row back and streams its probabilities out, one row at a time.

    Parameters
    ----------
    lanes, max_row, in_width : int

    Members
    -------
    i : In(stream.Signature(SoftmaxRowConsts(max_row, in_width)))
        A summed row; taken when the previous row has been read.
    o : Out(stream.Signature(VecBeat(16, lanes)))
        The operator's output (see :class:`~npuforge.rtl.vector.softmax.Softmax`).
    read_bank, read_beat, read_en : Out(1), Out(range(depth + 1)), Out(1)
        The row buffer word to read (half ``read_bank``, beat ``read_beat``), when ``read_en``.
    read_data : In(unsigned(lanes * in_width))
        That word, one enabled cycle after its address.
    release, release_bank : Out(1), Out(1)
        The row's last beat is read on this edge: buffer half ``release_bank`` is free.
    busy : Out(1)
        A row is being read or a beat is in the pipeline.
    mul : with ``shared_multipliers``, its exp pipeline's multiplies (:data:`EXP_MULTIPLIERS`) and ``erc``, the
        Q1 product e * Rcp (:mod:`rtl.vector.mulpool`).
    """

    #: Per lane: the exp pipeline's multiplies and e * Rcp (Q1).
    MULTIPLIERS = EXP_MULTIPLIERS + (MulSpec("erc", unsigned(E_BITS), unsigned(RCP_BITS)),)

    def __init__(self, *, lanes: int, max_row: int, in_width: int, shared_multipliers: bool = False):
        self.lanes, self.max_row, self.in_width = lanes, max_row, in_width
        self.depth = -(-max_row // lanes)
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = self.MULTIPLIERS
        super().__init__({
            "i": In(stream.Signature(SoftmaxRowConsts(max_row=max_row, in_width=in_width))),
            "o": Out(stream.Signature(VecBeat(16, lanes))),
            "read_bank": Out(1),
            "read_beat": Out(range(self.depth + 1)),
            "read_en": Out(1),
            "read_data": In(unsigned(lanes * in_width)),
            "release": Out(1),
            "release_bank": Out(1),
            "busy": Out(1),
            **multiplier_members(self),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        adv = Signal()  # every stage moves one step
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        active = Signal()
        row = Signal.like(self.i.payload)  # the row being read
        t_minus_1 = Signal(range(64))
        m.d.comb += t_minus_1.eq(30 + row.params.shift)
        rd_beat = Signal(range(self.depth + 1))
        rd_base = Signal(range(self.max_row + lanes + 1))
        m.d.comb += self.i.ready.eq(~active)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [active.eq(1), row.eq(self.i.payload), rd_beat.eq(0), rd_base.eq(0)]
        issue, rd_last = Signal(), Signal()
        m.d.comb += [
            issue.eq(active & adv),
            rd_last.eq(rd_base + lanes >= row.params.len),
            self.read_bank.eq(row.params.bank),
            self.read_beat.eq(rd_beat),
            self.read_en.eq(adv),
            self.release.eq(issue & rd_last),
            self.release_bank.eq(row.params.bank),
        ]
        with m.If(issue):
            m.d.sync += [rd_beat.eq(rd_beat + 1), rd_base.eq(rd_base + lanes)]
            with m.If(rd_last):
                m.d.sync += active.eq(0)

        # OR: read data arrives; the row constants travel with each beat.
        or_valid, or_last, or_q15 = Signal(), Signal(), Signal()
        or_mask, or_keep = Signal(lanes), Signal(lanes)
        or_max, or_mult, or_t1, or_rcp = (Signal.like(row.max), Signal.like(row.params.mult), Signal.like(t_minus_1),
                                          Signal.like(row.rcp))
        with m.If(adv):
            m.d.sync += [or_valid.eq(issue), or_last.eq(rd_last), or_max.eq(row.max), or_mult.eq(row.params.mult),
                         or_t1.eq(t_minus_1), or_rcp.eq(row.rcp), or_q15.eq(row.params.q15)]
            for k in range(lanes):
                col = rd_base + k
                m.d.sync += [or_keep[k].eq(col < row.params.len),
                             or_mask[k].eq((col >= row.params.len) | masked_column(row.params, col))]
        tag = data.StructLayout({"last": 1, "keep": lanes, "rcp": unsigned(RCP_BITS), "q15": 1})
        m.submodules.exp = exp = SoftmaxExp(lanes=lanes, in_width=self.in_width, tag_shape=tag,
                                            shared_multipliers=self.shared_multipliers)
        forward_multipliers(m, self, exp)
        m.d.comb += [
            exp.en.eq(adv), exp.valid_in.eq(or_valid), exp.x.eq(self.read_data), exp.masked.eq(or_mask),
            exp.row_max.eq(or_max), exp.mult.eq(or_mult), exp.t_minus_1.eq(or_t1),
            exp.tag_in.last.eq(or_last), exp.tag_in.keep.eq(or_keep), exp.tag_in.rcp.eq(or_rcp),
            exp.tag_in.q15.eq(or_q15),
        ]

        # Q1: e * Rcp (unsigned 56 bit); Q0.15 output: e * floor(2^53 / S), floor(2^53 / S) = Rcp >> 1.
        q1_valid, q1_last, q1_keep, q1_q15 = Signal(), Signal(), Signal(lanes), Signal()
        q1 = [Signal(unsigned(E_BITS + RCP_BITS), name=f"q1_{k}") for k in range(lanes)]
        mul_erc = multiplier_ports(self, "erc")
        prod_erc = [multiply(m, mul_erc[k], exp.e[k], Mux(exp.tag.q15, exp.tag.rcp >> 1, exp.tag.rcp), en=adv,
                             name=f"mul_erc_{k}") for k in range(lanes)]
        beside = delay_stages(m, adv, [exp.valid, exp.tag.last, exp.tag.keep, exp.tag.q15], name="mul_erc")
        with m.If(adv):
            m.d.sync += [q1_valid.eq(beside[-1][0]), q1_last.eq(beside[-1][1]), q1_keep.eq(beside[-1][2]),
                         q1_q15.eq(beside[-1][3])]
            for k in range(lanes):
                m.d.sync += q1[k].eq(prod_erc[k])
        # Output register: q = (255 * e * Rcp + 2^53) >> 54, or min((e * Rcp15 + 2^37) >> 38, 2^15 - 1).
        q15_shift = RECIP_Q15_BITS - 15
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(q1_valid), self.o.payload.last.eq(q1_last)]
            for k in range(lanes):
                scaled = (q1[k] << 8) - q1[k]
                q = ((scaled >> (RECIP_BITS - 1)) + 1) >> 1
                q15 = ((q1[k] >> (q15_shift - 1)) + 1) >> 1
                q15 = Mux(q15 > SOFTMAX_Q15_MAX, SOFTMAX_Q15_MAX, q15)
                m.d.sync += self.o.payload.data[k].eq(Mux(q1_keep[k], Mux(q1_q15, q15[:16], q[:9]), 0))

        # exp.busy, not exp.valid: a beat inside E0-E5 is in flight too (the unit must not switch operators then).
        m.d.comb += self.busy.eq(active | or_valid | exp.busy | stages_hold(beside) | q1_valid | self.o.valid)
        return m
