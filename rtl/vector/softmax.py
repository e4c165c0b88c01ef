"""Integer softmax over rows, bit for bit ``golden.softmax.softmax`` (I-BERT exp, one division per row).

Per row of L = ``row_len`` signed ``in_width``-bit scores x_j (golden kernel, steps 1-9)::

    m   = max over unmasked x_j
    d_j = min(m - x_j, 2^31 - 1)
    u_j = min((d_j * M + 2^(t-1)) >> t, 2^20 - 1)            M = exp_multiplier, t = 31 + exp_shift
    n_j = u_j >> 15,  g_j = u_j & 0x7FFF
    P_j = 2^15 + ((g_j * (EXP_C1 + ((EXP_C2 * g_j) >> 15))) >> 15)
    e_j = (((P_j << 8) >> n_j) + 1) >> 1                     0 for masked columns
    S   = sum e_j,  Rcp = floor(2^54 / S)                    one exact division per row
    q_j = (255 * e_j * Rcp + 2^53) >> 54                     uint8 probability in units of 1/255
    with ``q15``: q_j = min((e_j * (Rcp >> 1) + 2^37) >> 38, 2^15 - 1)   Q0.15 (golden ``softmax_q15``;
                                                             Rcp >> 1 = floor(2^53 / S), no second division)

Causal mask: with ``causal`` set, column j is masked when j > ``query_pos`` (golden: j > i + row_offset, so
``query_pos`` = i + row_offset of the row). Padding mask: with ``pad`` set, column j is masked when j >=
``valid_len`` (golden ``mask``: BERT padding keys); ``valid_len = 0`` would mask every column and drops the row
with BAD_PARAM. Rounding steps ``(v + 2^(s-1)) >> s`` are computed as
``((v >> (s-1)) + 1) >> 1`` (equal for all integers).

Structure: three engines over a ping-pong row buffer (``amaranth.lib.memory.Memory`` with one write and two
read ports): the input engine stores the row and finds m; the sum engine reads it back through an exp
pipeline, sums S and runs the shared sequential :class:`~rtl.vector.divider.Divider`; the output engine reads it
again, recomputes e_j (cheaper than storing it) and normalises, while the next rows enter and get summed.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat, check_lanes, check_max_row, \
    row_len_shape, sticky_error, with_control
from npuforge.rtl.vector.divider import Divider

__all__ = ["Softmax", "SOFTMAX_MAX_LEN", "EXP_C1", "EXP_C2", "EXP_SHIFT_MIN", "EXP_SHIFT_MAX"]

# The golden kernel's constants (longest row, exp polynomial, clamps, reciprocal bits, the ``exp_shift`` window
# with t = 31 + exp_shift in [1, 62]): one definition shared with golden.softmax.
from npuforge.spec.vector_ops import (D_MAX, EXP_C1, EXP_C2, EXP_FRAC_BITS, EXP_SHIFT_MAX, EXP_SHIFT_MIN, RECIP_BITS,
                                      RECIP_Q15_BITS, SOFTMAX_MAX_LEN, SOFTMAX_OUT_MAX as OUT_MAX, SOFTMAX_Q15_MAX,
                                      U_MAX)

#: e_j is Q1.22 (<= 2^22); S <= SOFTMAX_MAX_LEN * 2^22 fits 36 bits; Rcp <= 2^32 fits 33 bits.
E_BITS = 23
S_BITS = 36
RCP_BITS = 33


class _ExpPipe:
    """Six pipeline stages per lane from a score x to e = exp((x - m) * scale) in Q1.22 (golden steps 2-6).

    ``en`` advances every stage; ``carry`` signals travel alongside (delayed by the same 6 stages).
    """

    STAGES = 6

    def __init__(self, m, *, name, lanes, in_width, en, valid, xs, masked, row_max, mult, t_minus_1, carry):
        def reg(shape, label):
            return Signal(shape, name=f"{name}_{label}")

        def pipe_carry(sigs, stage):
            out = []
            for j, s in enumerate(sigs):
                r = Signal.like(s, name=f"{name}_c{j}_s{stage}")
                m.d.sync += r.eq(s)
                out.append(r)
            return out

        v = valid
        carried = list(carry) + [row_max, mult, t_minus_1]
        with m.If(en):
            # E1: d = min(m - x, 2^31 - 1); masked lanes keep a flag and produce 0 at the end.
            v1 = reg(1, "v1")
            m.d.sync += v1.eq(v)
            d1 = [reg(unsigned(31), f"d1_{k}") for k in range(lanes)]
            mk1 = reg(lanes, "mask1")
            m.d.sync += mk1.eq(masked)
            for k in range(lanes):
                diff = row_max - xs[k]
                m.d.sync += d1[k].eq(Mux(diff > D_MAX, D_MAX, diff))
            c1 = pipe_carry(carried, 1)
            # E2: product d * M (unsigned 62 bit).
            v2 = reg(1, "v2")
            m.d.sync += v2.eq(v1)
            p2 = [reg(unsigned(62), f"p2_{k}") for k in range(lanes)]
            mk2 = reg(lanes, "mask2")
            m.d.sync += mk2.eq(mk1)
            for k in range(lanes):
                m.d.sync += p2[k].eq(d1[k] * c1[-2])
            c2 = pipe_carry(c1, 2)
            # E3: u = min(round(p / 2^t), 2^20 - 1).
            v3 = reg(1, "v3")
            m.d.sync += v3.eq(v2)
            u3 = [reg(unsigned(20), f"u3_{k}") for k in range(lanes)]
            mk3 = reg(lanes, "mask3")
            m.d.sync += mk3.eq(mk2)
            for k in range(lanes):
                rounded = ((p2[k] >> c2[-1]) + 1) >> 1
                m.d.sync += u3[k].eq(Mux(rounded > U_MAX, U_MAX, rounded))
            c3 = pipe_carry(c2, 3)
            # E4: n = u >> 15, g = u & 0x7FFF, b = C1 + ((C2 * g) >> 15).
            v4 = reg(1, "v4")
            m.d.sync += v4.eq(v3)
            n4 = [reg(unsigned(5), f"n4_{k}") for k in range(lanes)]
            g4 = [reg(unsigned(15), f"g4_{k}") for k in range(lanes)]
            b4 = [reg(signed(17), f"b4_{k}") for k in range(lanes)]
            mk4 = reg(lanes, "mask4")
            m.d.sync += mk4.eq(mk3)
            for k in range(lanes):
                g = u3[k][:EXP_FRAC_BITS]
                m.d.sync += [n4[k].eq(u3[k][EXP_FRAC_BITS:]), g4[k].eq(g),
                             b4[k].eq(EXP_C1 + ((Const(EXP_C2, 13) * g) >> EXP_FRAC_BITS))]
            c4 = pipe_carry(c3, 4)
            # E5: P = 2^15 + ((g * b) >> 15), floor shift of a signed product.
            v5 = reg(1, "v5")
            m.d.sync += v5.eq(v4)
            p5 = [reg(unsigned(16), f"P5_{k}") for k in range(lanes)]
            n5 = [reg(unsigned(5), f"n5_{k}") for k in range(lanes)]
            mk5 = reg(lanes, "mask5")
            m.d.sync += mk5.eq(mk4)
            for k in range(lanes):
                m.d.sync += [p5[k].eq((1 << EXP_FRAC_BITS) + ((g4[k] * b4[k]) >> EXP_FRAC_BITS)),
                             n5[k].eq(n4[k])]
            c5 = pipe_carry(c4, 5)
            # E6: e = (((P << 8) >> n) + 1) >> 1, 0 when masked.
            v6 = reg(1, "v6")
            m.d.sync += v6.eq(v5)
            e6 = [reg(unsigned(E_BITS), f"e6_{k}") for k in range(lanes)]
            for k in range(lanes):
                e = ((Cat(Const(0, 8), p5[k]) >> n5[k]) + 1) >> 1
                m.d.sync += e6[k].eq(Mux(mk5[k], 0, e))
            c6 = pipe_carry(c5, 6)
        self.valid = v6
        self.e = e6
        n_carry = len(carry)
        self.carry = c6[:n_carry]
        self.row_max, self.mult, self.t_minus_1 = c6[n_carry:]


class Softmax(wiring.Component):
    """Integer softmax over rows (``golden.softmax.softmax``), ``lanes`` scores per beat.

    Parameters
    ----------
    lanes : int
        Elements per beat (power of two).
    max_row : int
        Longest row (<= 8192); the row buffer holds two rows of it.
    in_width : int
        Score width, 8, 16 or 32 (golden ``input_bits``).
    steps_per_cycle : int or None
        Quotient bits per cycle of the per-row divider (default ``max(1, lanes // 4)``).

    Members
    -------
    i : In(stream.Signature(VecBeat(in_width, lanes)))
    o : Out(stream.Signature(VecBeat(16, lanes)))
        Probabilities q in [0, 255] (units of 1/255), zero-extended into signed 16-bit lanes; with ``q15``,
        Q0.15 codes in [0, 2^15 - 1].
    row_len : In(row_len_shape(max_row))
        L, 1 .. max_row.
    exp_multiplier : In(unsigned(31)), exp_shift : In(signed(7))
        golden ``SoftmaxParams.exp_multiplier`` / ``exp_shift``; exp_shift outside [-30, 31] drops the row
        with BAD_PARAM.
    causal : In(1), query_pos : In(unsigned(32))
        With ``causal``, columns j > ``query_pos`` are masked (golden ``causal=True``, query_pos = row index +
        ``row_offset``).
    pad : In(1), valid_len : In(unsigned(16))
        With ``pad``, columns j >= ``valid_len`` are masked; ``valid_len = 0`` drops the row with BAD_PARAM.
    q15 : In(1)
        Q0.15 int16 output (golden ``softmax_q15``) instead of uint8 in units of 1/255.
    clear, error, error_code, busy
        See :mod:`rtl.vector.common`. ROW_LEN, ROW_FRAMING, BAD_PARAM drop the row (drained, no output).

    All scalar ports are sampled with the row's beats and travel with the row.
    """

    def __init__(self, *, lanes: int, max_row: int = 4096, in_width: int = 16, steps_per_cycle: int | None = None):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if max_row > SOFTMAX_MAX_LEN:
            raise ValueError(f"max_row must be <= {SOFTMAX_MAX_LEN} (golden.softmax.SOFTMAX_MAX_LEN), got {max_row!r}")
        if in_width not in (8, 16, 32):
            raise ValueError(f"in_width must be 8, 16 or 32 (golden input_bits), got {in_width!r}")
        if steps_per_cycle is None:
            steps_per_cycle = max(1, lanes // 4)
        if not isinstance(steps_per_cycle, int) or steps_per_cycle < 1:
            raise ValueError(f"steps_per_cycle must be an integer >= 1, got {steps_per_cycle!r}")
        self.in_width = in_width
        self.out_width = 16
        self.steps_per_cycle = steps_per_cycle
        self.depth = -(-max_row // lanes)
        super().__init__(with_control({
            "i": In(stream.Signature(VecBeat(in_width, lanes))),
            "o": Out(stream.Signature(VecBeat(16, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "exp_multiplier": In(unsigned(31)),
            "exp_shift": In(signed(7)),
            "causal": In(1),
            "query_pos": In(unsigned(32)),
            "pad": In(1),
            "valid_len": In(unsigned(16)),
            "q15": In(1),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes, depth, b = self.lanes, self.depth, self.in_width
        lane_bits = (lanes - 1).bit_length()
        addr_bits = max(1, (depth - 1).bit_length())

        def buffer_addr(bank, beat):
            # Half `bank` of the row buffer starts at word bank * depth (depth need not be a power of 2).
            return Mux(bank, beat + depth, beat)
        pos_shape = range(self.max_row + lanes + 1)

        # ---------------------------------------------------------------- input engine: store, row max
        m.submodules.tracker = tracker = RowTracker(lanes=lanes, max_row=self.max_row)
        m.submodules.row_mem = row_mem = Memory(shape=unsigned(lanes * b), depth=2 * depth, init=[])
        row_wp = row_mem.write_port()
        sum_rp = row_mem.read_port()
        out_rp = row_mem.read_port()

        bank_full = Signal(2)
        wr_bank = Signal()
        fire = Signal()
        shift_bad = Signal()
        m.d.comb += [
            # An exp shift outside t in [1, 62], or a padding mask that leaves no column.
            shift_bad.eq((self.exp_shift < EXP_SHIFT_MIN) | (self.exp_shift > EXP_SHIFT_MAX)
                         | (self.pad & (self.valid_len == 0))),
            self.i.ready.eq(~bank_full.bit_select(wr_bank, 1)),
            fire.eq(self.i.valid & self.i.ready),
            tracker.row_len.eq(self.row_len),
            tracker.fire.eq(fire),
            tracker.last.eq(self.i.payload.last),
        ]
        keep = Signal()
        m.d.comb += keep.eq(fire & ~tracker.drop & ~shift_bad)
        row_param_bad = Signal()
        with m.If(fire):
            m.d.sync += row_param_bad.eq(Mux(self.i.payload.last, 0, row_param_bad | shift_bad))
        m.d.comb += [
            row_wp.addr.eq(buffer_addr(wr_bank, (tracker.base >> lane_bits)[:addr_bits])),
            row_wp.data.eq(self.i.payload.data.as_value()),
            row_wp.en.eq(keep),
        ]
        push_now = Signal()
        m.d.comb += push_now.eq(keep & self.i.payload.last & ~row_param_bad)
        with m.If(fire & self.i.payload.last):
            m.d.sync += wr_bank.eq(wr_bank ^ push_now)

        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            (fire & tracker.bad_len, ErrorCode.ROW_LEN),
            (fire & tracker.framing, ErrorCode.ROW_FRAMING),
            (fire & shift_bad, ErrorCode.BAD_PARAM),
        ])

        # I1: the beat with unmasked lanes flagged; I2: running max.
        i1_valid, i1_push = Signal(), Signal()
        x1 = [Signal(signed(b), name=f"x1_{k}") for k in range(lanes)]
        live1 = Signal(lanes)  # lane inside the row and not masked
        m.d.sync += [i1_valid.eq(keep), i1_push.eq(push_now)]
        for k in range(lanes):
            col = tracker.base + k
            masked = (self.causal & (col > self.query_pos)) | (self.pad & (col >= self.valid_len))
            m.d.sync += [x1[k].eq(self.i.payload.data[k]), live1[k].eq(tracker.lane_valid[k] & ~masked)]
        row_params = [self.row_len, self.exp_multiplier, self.exp_shift, self.causal, self.query_pos, self.pad,
                      self.valid_len, self.q15]
        i1_params = [Signal.like(s, name=f"i1_{s.name}") for s in row_params]
        i1_bank = Signal()
        m.d.sync += [d.eq(s) for d, s in zip(i1_params, row_params)]
        m.d.sync += i1_bank.eq(wr_bank)

        lowest = -(1 << (b - 1))
        # A chain of named signals: each level's value is used twice, and an expression tree would be
        # duplicated at every use (2^lanes nodes) when converted to RTLIL.
        beat_max = Const(lowest, signed(b))
        for k in range(lanes):
            level = Signal(signed(b), name=f"beat_max_{k}")
            m.d.comb += level.eq(Mux(live1[k] & (x1[k] > beat_max), x1[k], beat_max))
            beat_max = level
        run_max = Signal(signed(b), init=lowest)
        pend_valid = Signal()
        pend_max = Signal(signed(b))
        pend_params = [Signal.like(s, name=f"pend_{s.name}") for s in row_params]
        pend_bank = Signal()
        new_max = Mux(beat_max > run_max, beat_max, run_max)
        with m.If(i1_valid):
            with m.If(i1_push):
                m.d.sync += [run_max.eq(lowest), pend_max.eq(new_max), pend_bank.eq(i1_bank)]
                m.d.sync += [d.eq(s) for d, s in zip(pend_params, i1_params)]
                m.d.sync += bank_full.bit_select(i1_bank, 1).eq(1)
            with m.Else():
                m.d.sync += run_max.eq(new_max)
        with m.If(fire & self.i.payload.last & ~push_now):
            m.d.sync += run_max.eq(lowest)

        # ---------------------------------------------------------------- sum engine: S, then Rcp
        m.submodules.divider = div = Divider(dividend_width=RCP_BITS, divisor_width=S_BITS,
                                             steps_per_cycle=self.steps_per_cycle)
        s_max = Signal(signed(b))
        s_params = [Signal.like(s, name=f"sum_{s.name}") for s in row_params]
        s_len, s_mult, s_shift, s_causal, s_qpos, s_pad, s_valid, _ = s_params
        s_bank = Signal()
        s_t1 = Signal(range(64))
        m.d.comb += s_t1.eq(30 + s_shift)  # t - 1 = 30 + exp_shift, in [0, 61]
        s_beat = Signal(range(depth + 1))
        s_base = Signal(pos_shape)
        s_issuing = Signal()
        s_total = Signal(unsigned(S_BITS))
        s_rcp = Signal(unsigned(RCP_BITS))
        s_issue_last = Signal()
        m.d.comb += [
            s_issue_last.eq(s_base + lanes >= s_len),
            sum_rp.addr.eq(buffer_addr(s_bank, s_beat[:addr_bits])),
            sum_rp.en.eq(1),
        ]
        # SR: read data arrives; lane liveness computed at issue time.
        sr_valid, sr_last = Signal(), Signal()
        sr_mask = Signal(lanes)
        m.d.sync += [sr_valid.eq(s_issuing), sr_last.eq(s_issuing & s_issue_last)]
        for k in range(lanes):
            col = s_base + k
            m.d.sync += sr_mask[k].eq((col >= s_len) | (s_causal & (col > s_qpos)) | (s_pad & (col >= s_valid)))
        sum_xs = [sum_rp.data[k * b:(k + 1) * b].as_signed() for k in range(lanes)]
        sum_exp = _ExpPipe(m, name="sexp", lanes=lanes, in_width=b, en=Const(1), valid=sr_valid, xs=sum_xs,
                           masked=sr_mask, row_max=s_max, mult=s_mult, t_minus_1=s_t1, carry=[sr_last])
        beat_sum = sum(sum_exp.e)

        cst_valid = Signal()
        cst_max = Signal(signed(b))
        cst_params = [Signal.like(s, name=f"cst_{s.name}") for s in row_params]
        cst_bank = Signal()
        cst_rcp = Signal(unsigned(RCP_BITS))
        take_cst = Signal()
        summing = Signal()

        m.d.comb += [
            div.i.payload.dividend.eq(0),
            # 2^54 = 2^21 * 2^33: the long division starts from remainder 2^21 < S (S >= 2^22).
            div.i.payload.dividend_high.eq(1 << (RECIP_BITS - RCP_BITS)),
            div.i.payload.divisor.eq(s_total),
            div.o.ready.eq(1),
        ]
        # Taking the constants clears the slot; written before the sum FSM so that a hand-over on the
        # same edge (allowed while the slot is being taken) wins.
        with m.If(take_cst):
            m.d.sync += cst_valid.eq(0)
        with m.FSM(name="sum_fsm") as sum_fsm:
            with m.State("IDLE"):
                with m.If(pend_valid):
                    m.d.sync += [s_max.eq(pend_max), s_bank.eq(pend_bank), pend_valid.eq(0),
                                 s_beat.eq(0), s_base.eq(0), s_total.eq(0)]
                    m.d.sync += [d.eq(s) for d, s in zip(s_params, pend_params)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.sync += [s_beat.eq(s_beat + 1), s_base.eq(s_base + lanes)]
                with m.If(s_issue_last):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(sum_exp.valid & sum_exp.carry[0]):
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(div.i.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(div.o.valid):
                    m.d.sync += s_rcp.eq(div.o.payload.quotient)
                    m.next = "HANDOFF"
            with m.State("HANDOFF"):
                with m.If(~cst_valid | take_cst):
                    m.d.sync += [cst_valid.eq(1), cst_max.eq(s_max), cst_bank.eq(s_bank), cst_rcp.eq(s_rcp)]
                    m.d.sync += [d.eq(s) for d, s in zip(cst_params, s_params)]
                    m.next = "IDLE"
        # Handshakes as continuous assignments of the state (not inside the FSM's `always @*` blocks),
        # so that Icarus evaluates them from time 0.
        m.d.comb += [
            summing.eq(~sum_fsm.ongoing("IDLE")),
            s_issuing.eq(sum_fsm.ongoing("READ")),
            div.i.valid.eq(sum_fsm.ongoing("DIVIDE")),
        ]
        with m.If(sum_exp.valid):
            m.d.sync += s_total.eq(s_total + beat_sum)
        # After the FSM: a new row end on the same edge as a hand-over keeps the new row.
        with m.If(i1_valid & i1_push):
            m.d.sync += pend_valid.eq(1)

        # ---------------------------------------------------------------- output engine: normalise
        adv = Signal()
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        out_active = Signal()
        c_max = Signal(signed(b))
        c_params = [Signal.like(s, name=f"out_{s.name}") for s in row_params]
        c_len, c_mult, c_shift, c_causal, c_qpos, c_pad, c_valid, c_q15 = c_params
        c_bank = Signal()
        c_rcp = Signal(unsigned(RCP_BITS))
        c_t1 = Signal(range(64))
        m.d.comb += c_t1.eq(30 + c_shift)
        rd_beat = Signal(range(depth + 1))
        rd_base = Signal(pos_shape)
        m.d.comb += take_cst.eq(~out_active & cst_valid)
        with m.If(take_cst):
            m.d.sync += [out_active.eq(1), c_max.eq(cst_max), c_bank.eq(cst_bank), c_rcp.eq(cst_rcp),
                         rd_beat.eq(0), rd_base.eq(0)]
            m.d.sync += [d.eq(s) for d, s in zip(c_params, cst_params)]
        issue = Signal()
        rd_last = Signal()
        m.d.comb += [
            issue.eq(out_active & adv),
            rd_last.eq(rd_base + lanes >= c_len),
            out_rp.addr.eq(buffer_addr(c_bank, rd_beat[:addr_bits])),
            out_rp.en.eq(adv),
        ]
        with m.If(issue):
            m.d.sync += [rd_beat.eq(rd_beat + 1), rd_base.eq(rd_base + lanes)]
            with m.If(rd_last):
                m.d.sync += [out_active.eq(0), bank_full.bit_select(c_bank, 1).eq(0)]

        # OR: read data arrives; the row constants travel with each beat.
        or_valid, or_last, or_q15 = Signal(), Signal(), Signal()
        or_mask, or_keep = Signal(lanes), Signal(lanes)
        or_max, or_mult, or_t1, or_rcp = Signal.like(c_max), Signal.like(c_mult), Signal.like(c_t1), Signal.like(c_rcp)
        with m.If(adv):
            m.d.sync += [or_valid.eq(issue), or_last.eq(rd_last), or_max.eq(c_max), or_mult.eq(c_mult),
                         or_t1.eq(c_t1), or_rcp.eq(c_rcp), or_q15.eq(c_q15)]
            for k in range(lanes):
                col = rd_base + k
                m.d.sync += [or_keep[k].eq(col < c_len),
                             or_mask[k].eq((col >= c_len) | (c_causal & (col > c_qpos))
                                           | (c_pad & (col >= c_valid)))]
        out_xs = [out_rp.data[k * b:(k + 1) * b].as_signed() for k in range(lanes)]
        out_exp = _ExpPipe(m, name="oexp", lanes=lanes, in_width=b, en=adv, valid=or_valid, xs=out_xs,
                           masked=or_mask, row_max=or_max, mult=or_mult, t_minus_1=or_t1,
                           carry=[or_last, or_keep, or_rcp, or_q15])
        x_last, x_keep, x_rcp, x_q15 = out_exp.carry

        # Q1: e * Rcp (unsigned 56 bit); Q0.15 output: e * floor(2^53 / S), floor(2^53 / S) = Rcp >> 1.
        q1_valid, q1_last, q1_keep, q1_q15 = Signal(), Signal(), Signal(lanes), Signal()
        q1 = [Signal(unsigned(E_BITS + RCP_BITS), name=f"q1_{k}") for k in range(lanes)]
        with m.If(adv):
            m.d.sync += [q1_valid.eq(out_exp.valid), q1_last.eq(x_last), q1_keep.eq(x_keep), q1_q15.eq(x_q15)]
            for k in range(lanes):
                m.d.sync += q1[k].eq(out_exp.e[k] * Mux(x_q15, x_rcp >> 1, x_rcp))
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

        exp_busy = Signal()
        m.d.comb += exp_busy.eq(out_exp.valid | q1_valid)
        m.d.comb += self.busy.eq(~tracker.first | i1_valid | pend_valid | summing | cst_valid | out_active
                                 | or_valid | exp_busy | self.o.valid)
        return m
