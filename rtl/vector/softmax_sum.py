"""Softmax's first two engines: the row max as the scores enter, then S = sum e_j and Rcp = floor(2^54 / S).

* :class:`SoftmaxRowMax` (stages I1, I2, ``golden.softmax`` step 1): m = max over the unmasked scores of the beats
  the operator accepts (they are stored in the row buffer by the operator). At a row's end, m and the row's
  parameters become the pending :func:`~npuforge.rtl.vector.softmax_exp.SoftmaxStoredRow` record.
* :class:`SoftmaxRowSum` (steps 2-8): takes that record, reads the row back from the buffer (a beat per cycle)
  through a :class:`~npuforge.rtl.vector.softmax_exp.SoftmaxExp`, sums S and divides once per row
  (:func:`~npuforge.rtl.vector.divider.reciprocal_divider`), then hands the row's
  :func:`~npuforge.rtl.vector.softmax_exp.SoftmaxRowConsts` to the output engine.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import record_slot
from npuforge.rtl.vector.divider import reciprocal_divider
from npuforge.rtl.vector.mulpool import forward_multipliers, multiplier_members
from npuforge.rtl.vector.softmax_exp import (EXP_MULTIPLIERS, RCP_BITS, S_BITS, SoftmaxExp, SoftmaxRowConsts,
                                             SoftmaxRowParams, SoftmaxStoredRow, masked_column)
from npuforge.spec.vector_ops import RECIP_BITS

__all__ = ["SoftmaxRowMax", "SoftmaxRowSum"]


class SoftmaxRowMax(wiring.Component):
    """Row max as the beats of a row enter (I1: lanes masked, I2: running max).

    Parameters
    ----------
    lanes, max_row, in_width : int

    Members
    -------
    beat : In(ArrayLayout(signed(in_width), lanes))
        The offered beat's scores.
    base, lane_valid : In(range(max_row + lanes + 1)), In(lanes)
        Column of lane 0, and the lanes inside the row (:class:`~npuforge.rtl.vector.common.RowTracker`).
    keep : In(1)
        The beat is accepted and stored.
    push : In(1)
        With ``keep``: the beat ends a row that will be normalised.
    restart : In(1)
        A dropped row ended: restart the running max.
    params : In(SoftmaxRowParams(max_row))
        Sampled with every beat; the record keeps the values of the row's last beat.
    o : Out(stream.Signature(SoftmaxStoredRow(max_row, in_width)))
        The pending row, valid from the edge after its last beat leaves I1 until taken; the caller's ping-pong
        buffer bounds the rows in flight so that it is taken before the next row ends.
    row_done, row_done_bank : Out(1), Out(1)
        A row's record is written on this edge, and the buffer half its data lies in.
    busy : Out(1)
        A beat is in I1 or a record waits.
    """

    def __init__(self, *, lanes: int, max_row: int, in_width: int):
        self.lanes, self.max_row, self.in_width = lanes, max_row, in_width
        super().__init__({
            "beat": In(data.ArrayLayout(signed(in_width), lanes)),
            "base": In(range(max_row + lanes + 1)),
            "lane_valid": In(lanes),
            "keep": In(1),
            "push": In(1),
            "restart": In(1),
            "params": In(SoftmaxRowParams(max_row=max_row)),
            "o": Out(stream.Signature(SoftmaxStoredRow(max_row=max_row, in_width=in_width))),
            "row_done": Out(1),
            "row_done_bank": Out(1),
            "busy": Out(1),
        })

    #: Up to this many lanes the max compares every pair of candidates at once (one comparator deep, for fmax: the
    #: lanes' compare chain and the running max were the vector unit's critical path); more lanes chain them.
    PARALLEL_LANES = 4

    @staticmethod
    def _parallel_max(m, values, live):
        """The largest of ``values`` whose ``live`` bit is set (the last value must be live): every pair compared
        side by side, then a one-hot select (ties go to the lower index)."""
        n = len(values)
        wins = []
        for i in range(n):
            win = Signal(name=f"max_win_{i}")
            terms = [live[i]]
            for j in range(n):
                if j != i:
                    beats = values[i] >= values[j] if i < j else values[i] > values[j]
                    terms.append(~live[j] | beats)
            m.d.comb += win.eq(Cat(*terms).all())
            wins.append(win)
        # Exactly one winner: an OR of the masked values (a plain expression, no comb If: see rtl.vector.unit).
        result = Signal(values[0].shape(), name="row_max_next")
        picked = [Mux(wins[i], values[i], 0) for i in range(n)]
        combined = picked[0]
        for p in picked[1:]:
            combined = combined | p
        m.d.comb += result.eq(combined)
        return result

    def elaborate(self, platform):
        m = Module()
        lanes, b = self.lanes, self.in_width
        # I1: the beat with unmasked lanes flagged.
        i1_valid, i1_push = Signal(), Signal()
        x1 = [Signal(signed(b), name=f"x1_{k}") for k in range(lanes)]
        live1 = Signal(lanes)  # lane inside the row and not masked
        i1_params = Signal.like(self.params)
        m.d.sync += [i1_valid.eq(self.keep), i1_push.eq(self.keep & self.push), i1_params.eq(self.params)]
        for k in range(lanes):
            masked = masked_column(self.params, self.base + k)
            m.d.sync += [x1[k].eq(self.beat[k]), live1[k].eq(self.lane_valid[k] & ~masked)]

        # I2: running max over the live lanes and the row's max so far.
        lowest = -(1 << (b - 1))
        run_max = Signal(signed(b), init=lowest)
        if lanes <= self.PARALLEL_LANES:
            new_max = self._parallel_max(m, [*x1, run_max], [*live1, Const(1, 1)])
        else:
            # A chain of named signals: each level's value is used twice, and an expression tree would be duplicated
            # at every use (2^lanes nodes) when converted to RTLIL.
            beat_max = Const(lowest, signed(b))
            for k in range(lanes):
                level = Signal(signed(b), name=f"beat_max_{k}")
                m.d.comb += level.eq(Mux(live1[k] & (x1[k] > beat_max), x1[k], beat_max))
                beat_max = level
            new_max = Mux(beat_max > run_max, beat_max, run_max)
        pend = self.o.payload
        with m.If(i1_valid):
            with m.If(i1_push):
                m.d.sync += [run_max.eq(lowest), pend.max.eq(new_max), pend.params.eq(i1_params)]
            with m.Else():
                m.d.sync += run_max.eq(new_max)
        with m.If(self.restart):
            m.d.sync += run_max.eq(lowest)
        record_slot(m, self, done=i1_valid & i1_push, bank=i1_params.bank, busy=i1_valid)
        return m


class SoftmaxRowSum(wiring.Component):
    """S = sum e_j over a stored row, then Rcp = floor(2^54 / S); one row at a time.

    Parameters
    ----------
    lanes, max_row, in_width : int
    steps_per_cycle : int
        Quotient bits per cycle of the divider.

    Members
    -------
    i : In(stream.Signature(SoftmaxStoredRow(max_row, in_width)))
        A stored row; taken while the engine is idle.
    o : Out(stream.Signature(SoftmaxRowConsts(max_row, in_width)))
        The row's m, parameters and Rcp, held until taken.
    read_bank, read_beat : Out(1), Out(range(depth + 1))
        The row buffer word to read (half ``read_bank``, beat ``read_beat``); read every cycle.
    read_data : In(unsigned(lanes * in_width))
        That word, one cycle after its address.
    busy : Out(1)
        A row is being summed or its constants wait.
    mul : with ``shared_multipliers``, its exp pipeline's multiplies (:data:`EXP_MULTIPLIERS`).
    """

    def __init__(self, *, lanes: int, max_row: int, in_width: int, steps_per_cycle: int,
                 shared_multipliers: bool = False):
        self.lanes, self.max_row, self.in_width, self.steps_per_cycle = lanes, max_row, in_width, steps_per_cycle
        self.depth = -(-max_row // lanes)
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = EXP_MULTIPLIERS
        super().__init__({
            "i": In(stream.Signature(SoftmaxStoredRow(max_row=max_row, in_width=in_width))),
            "o": Out(stream.Signature(SoftmaxRowConsts(max_row=max_row, in_width=in_width))),
            "read_bank": Out(1),
            "read_beat": Out(range(self.depth + 1)),
            "read_data": In(unsigned(lanes * in_width)),
            "busy": Out(1),
            **multiplier_members(self),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        row = Signal.like(self.i.payload)       # the row being summed
        t_minus_1 = Signal(range(64))
        m.d.comb += t_minus_1.eq(30 + row.params.shift)  # t - 1 = 30 + exp_shift, in [0, 61]
        beat = Signal(range(self.depth + 1))
        base = Signal(range(self.max_row + lanes + 1))
        issuing, issue_last = Signal(), Signal()
        total = Signal(unsigned(S_BITS))
        rcp = Signal(unsigned(RCP_BITS))
        m.d.comb += [
            issue_last.eq(base + lanes >= row.params.len),
            self.read_bank.eq(row.params.bank),
            self.read_beat.eq(beat),
        ]
        # SR: read data arrives; lane liveness computed at issue time.
        sr_valid, sr_last = Signal(), Signal()
        sr_mask = Signal(lanes)
        m.d.sync += [sr_valid.eq(issuing), sr_last.eq(issuing & issue_last)]
        for k in range(lanes):
            col = base + k
            m.d.sync += sr_mask[k].eq((col >= row.params.len) | masked_column(row.params, col))
        m.submodules.exp = exp = SoftmaxExp(lanes=lanes, in_width=self.in_width, tag_shape=1,
                                            shared_multipliers=self.shared_multipliers)
        forward_multipliers(m, self, exp)
        m.d.comb += [
            exp.en.eq(1), exp.valid_in.eq(sr_valid), exp.x.eq(self.read_data), exp.masked.eq(sr_mask),
            exp.row_max.eq(row.max), exp.mult.eq(row.params.mult), exp.t_minus_1.eq(t_minus_1), exp.tag_in.eq(sr_last),
        ]
        # 2^54 = 2^21 * 2^33: the long division starts from remainder 2^21 < S (S >= 2^22).
        div = reciprocal_divider(m, divisor=total, divisor_width=S_BITS, frac_bits=RECIP_BITS, quotient_bits=RCP_BITS,
                                 steps_per_cycle=self.steps_per_cycle)

        # Taking the constants clears the slot; written before the FSM so that a hand-over on the same edge (allowed
        # while the slot is being taken) wins.
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM(name="sum_fsm") as sum_fsm:
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    m.d.sync += [row.eq(self.i.payload), beat.eq(0), base.eq(0), total.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.sync += [beat.eq(beat + 1), base.eq(base + lanes)]
                with m.If(issue_last):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(exp.valid & exp.tag):
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(div.i.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(div.o.valid):
                    m.d.sync += rcp.eq(div.o.payload.quotient)
                    m.next = "HANDOFF"
            with m.State("HANDOFF"):
                with m.If(~self.o.valid | self.o.ready):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.max.eq(row.max),
                                 self.o.payload.params.eq(row.params), self.o.payload.rcp.eq(rcp)]
                    m.next = "IDLE"
        # Handshakes as continuous assignments of the state (not inside the FSM's `always @*` blocks), so that
        # Icarus evaluates them from time 0.
        m.d.comb += [
            self.i.ready.eq(sum_fsm.ongoing("IDLE")),
            issuing.eq(sum_fsm.ongoing("READ")),
            div.i.valid.eq(sum_fsm.ongoing("DIVIDE")),
            self.busy.eq(~sum_fsm.ongoing("IDLE") | self.o.valid),
        ]
        with m.If(exp.valid):
            m.d.sync += total.eq(total + sum(exp.e[k] for k in range(lanes)))
        return m
