"""LayerNorm and RMSNorm over rows, bit for bit ``golden.norms.layernorm`` / ``golden.norms.rmsnorm``.

Per row of D = ``row_len`` signed ``in_width``-bit elements (the golden kernel, steps 1-7)::

    s1 = sum x_i,  s2 = sum x_i^2                                   (LayerNorm; RMSNorm takes s1 = 0)
    V_e = ((D*s2 - s1^2) << f) + eps_term                            < 2^62, f = var_frac_bits (even, <= 28)
    k = (62 - bitlength(V_e)) // 2,  N = V_e << 2k                   N in [2^60, 2^62)
    S = isqrt(N),  Rcp = floor(2^61 / S)  (Rcp = 0 when V_e = 0)     31 / 32 bit
    y_i = (c_i * Rcp + 2^(h-1)) >> h,  c_i = D*x_i - s1,  h = 45 - f/2 - k   (y_i = 0 when V_e = 0)
    out_i = clamp((y_i * G_i + B_i + 2^(T-1)) >> T),  T = 16 + gamma_shift
    G_i signed (out_width + 8) bit, B_i signed (out_width + 40) bit

The hardware regroups ``c_i * Rcp = x_i * (D*Rcp) - s1*Rcp`` (an integer identity), so per row it computes
``A = D*Rcp`` and ``K = 2^(h-1) - s1*Rcp`` once and per element only ``(x_i*A + K) >> h``: one narrow-by-wide
product per lane. The last rounding uses ``(w + 2^(T-1)) >> T == ((w >> (T-1)) + 1) >> 1``.

With ``in_width = 32`` the operator also runs the int32 residual stream's norm (``golden.models.intops.norm_wide``)
when its ``wide`` port is set: the input engine tracks m = max |x_i|; at the row end the row is read back once, each
x_i shifted right by k = max(0, bitlength(m) - 15) (rounded half up, clamped to int16) while s1 and s2 accumulate,
and ``eps_term`` is the entry k of an 18-entry table (``eps_we`` / ``eps_addr`` / ``eps_data``); the output engine
applies the same shift. Without ``wide`` the rows must lie in the int16 range and the statistics accumulate as they
enter, as for the narrower widths.

Structure: rows enter into one half of a ping-pong row buffer (``amaranth.lib.memory.Memory``) while s1/s2
accumulate; at the row end a small sequential unit (shared by the whole row) computes V_e, k, the exact
:class:`~rtl.vector.isqrt.ISqrt` and the :class:`~rtl.vector.divider.Divider` reciprocal; then the row is read
back through a 5-stage pipeline while the next row enters the other half. Sustained rate per row about
``row_len / (ceil(row_len / lanes) + row_cycles / 2)`` elements per cycle in a stream of rows.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat, check_lanes, check_max_row, \
    row_len_shape, saturate, sticky_error, with_control
from npuforge.rtl.vector.divider import Divider
from npuforge.rtl.vector.isqrt import ISqrt

__all__ = ["LayerNorm", "RMSNorm", "NORM_MAX_D", "GAMMA_SHIFT_MIN", "GAMMA_SHIFT_MAX", "EPS_TERM_BITS",
           "VAR_FRAC_BITS_MAX", "LayerNormParamWord", "RMSNormParamWord"]

# Longest row, the run-time windows of gamma_shift / eps_term / var_frac_bits (even), the fraction bits: one
# definition shared with golden.norms.
from npuforge.spec.vector_ops import (EPS_TERM_BITS, GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, NORM_EPS_SHIFTS, NORM_FRAC_BITS,
                                      NORM_MAX_D, NORM_RECIP_FRAC_BITS as RECIP_FRAC_BITS, NORM_WIDE_IN_BITS,
                                      NORM_WIDE_ROW_BITS, VAR_FRAC_BITS_MAX)

#: V_e < 2^62; N = V_e << 2k is normalised into [2^60, 2^62).
VE_BITS = 62


def LayerNormParamWord(out_width: int = 8) -> data.StructLayout:
    """Per-channel LayerNorm word: G (signed out_width + 8) in the low bits, then B (signed out_width + 40)."""
    return data.StructLayout({"gamma": signed(out_width + 8), "beta": signed(out_width + 40)})


def RMSNormParamWord(out_width: int = 8) -> data.StructLayout:
    """Per-channel RMSNorm word: G (signed out_width + 8)."""
    return data.StructLayout({"gamma": signed(out_width + 8)})


class _RowNorm(wiring.Component):
    centred = True
    param_layout = staticmethod(LayerNormParamWord)

    def __init__(self, *, lanes: int, max_row: int = 4096, in_width: int = 8, out_width: int = 8,
                 steps_per_cycle: int | None = None):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if max_row > NORM_MAX_D:
            raise ValueError(f"max_row must be <= {NORM_MAX_D} (golden.norms.NORM_MAX_D), got {max_row!r}")
        if in_width not in (8, 16, NORM_WIDE_ROW_BITS):
            raise ValueError(f"in_width must be 8 or 16 (golden input_bits), or 32 (the int32 residual stream's "
                             f"norm_wide), got {in_width!r}")
        if out_width not in (8, 16):
            raise ValueError(f"out_width must be 8 or 16 (golden out_bits), got {out_width!r}")
        if steps_per_cycle is None:
            # Enough root/quotient bits per cycle that the per-row computation stays below the
            # time a 384-element row takes to stream through `lanes` lanes.
            steps_per_cycle = max(1, lanes // 4)
        if not isinstance(steps_per_cycle, int) or steps_per_cycle < 1:
            raise ValueError(f"steps_per_cycle must be an integer >= 1, got {steps_per_cycle!r}")
        self.in_width = in_width
        self.out_width = out_width
        self.wide_rows = in_width == NORM_WIDE_ROW_BITS
        #: width of the values the statistics see: int16 after the pre-shift of an int32 row
        self.stat_width = NORM_WIDE_IN_BITS if self.wide_rows else in_width
        self.steps_per_cycle = steps_per_cycle
        self.depth = -(-max_row // lanes)  # beats per row buffer half
        wide_ports = {"wide": In(1), "eps_we": In(1), "eps_addr": In(range(NORM_EPS_SHIFTS)),
                      "eps_data": In(unsigned(EPS_TERM_BITS))} if self.wide_rows else {}
        if out_width == 16:
            # int8 results from a 16-bit-output operator (G / B written sign-extended into the wider fields).
            wide_ports["out8"] = In(1)
        super().__init__(with_control({
            **wide_ports,
            "i": In(stream.Signature(VecBeat(in_width, lanes))),
            "o": Out(stream.Signature(VecBeat(out_width, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "eps_term": In(unsigned(EPS_TERM_BITS)),
            "var_frac_bits": In(unsigned(5)),
            "gamma_shift": In(signed(6)),
            "param_we": In(1),
            "param_addr": In(unsigned(max_row.bit_length())),
            "param_data": In(self.param_layout(out_width)),
        }))

    @property
    def row_cycles(self) -> int:
        """Cycles of the per-row sequential computation (stats to row constants), without stalls."""
        s = self.steps_per_cycle
        sqrt_latency = -(-(VE_BITS // 2) // s) + 1   # ISqrt(width=62).latency
        div_latency = -(-32 // s) + 1                # Divider(dividend_width=32).latency
        # IDLE hand-over, products, variance, shift, SQRT issue, then CONSTANTS
        return 5 + sqrt_latency + div_latency

    def elaborate(self, platform):
        m = Module()
        lanes, depth, b = self.lanes, self.depth, self.in_width
        sb = self.stat_width
        lane_bits = (lanes - 1).bit_length()
        addr_bits = max(1, (depth - 1).bit_length())

        def buffer_addr(bank, beat):
            # Half `bank` of the row buffer starts at word bank * depth (depth need not be a power of 2).
            return Mux(bank, beat + depth, beat)
        d_bits = self.max_row.bit_length()
        s1_shape = signed(sb + d_bits + 1)
        s2_shape = unsigned(2 * sb + d_bits)
        wide = self.wide_rows

        def pre_shift(x, k):
            """norm_wide's pre-shift: clamp((x + 2^(k-1)) >> k) into int16 (x itself for k = 0)."""
            shifted = Mux(k == 0, x, ((x >> (k - 1).as_unsigned()[:5]) + 1) >> 1)
            return saturate(shifted, NORM_WIDE_IN_BITS)

        # ---------------------------------------------------------------- parameters (gamma/beta)
        addr_bad = Signal()
        m.d.comb += addr_bad.eq(self.param_addr >= self.max_row)
        param_rd = []
        param_ports = []
        for k in range(lanes):
            mem = Memory(shape=self.param_layout(self.out_width), depth=depth, init=[])
            m.submodules[f"params{k}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            sel = (self.param_addr[:lane_bits] == k) if lane_bits else Const(1)
            m.d.comb += [
                wp.addr.eq(self.param_addr >> lane_bits),
                wp.data.eq(self.param_data),
                wp.en.eq(self.param_we & ~addr_bad & sel),
            ]
            param_rd.append(rp.data)
            param_ports.append(rp)

        # ---------------------------------------------------------------- input side
        m.submodules.tracker = tracker = RowTracker(lanes=lanes, max_row=self.max_row)
        row_mem = Memory(shape=unsigned(lanes * b), depth=2 * depth, init=[])
        m.submodules.row_mem = row_mem
        row_wp = row_mem.write_port()
        row_rp = row_mem.read_port()
        stat_rp = row_mem.read_port() if wide else None   # the wide rows' statistics pass

        bank_full = Signal(2)   # a complete row waits in (or is read from) that buffer half
        wr_bank = Signal()
        fire = Signal()
        shift_bad = Signal()
        m.d.comb += [
            shift_bad.eq((self.gamma_shift < GAMMA_SHIFT_MIN) | (self.gamma_shift > GAMMA_SHIFT_MAX)
                         | self.var_frac_bits[0] | (self.var_frac_bits > VAR_FRAC_BITS_MAX)),
            self.i.ready.eq(~bank_full.bit_select(wr_bank, 1)),
            fire.eq(self.i.valid & self.i.ready),
            tracker.row_len.eq(self.row_len),
            tracker.fire.eq(fire),
            tracker.last.eq(self.i.payload.last),
        ]
        keep = Signal()  # the beat belongs to a row that will be normalised
        m.d.comb += keep.eq(fire & ~tracker.drop & ~shift_bad)
        # A bad gamma_shift / var_frac_bits anywhere in the row drops the whole row (checked on every beat).
        row_shift_bad = Signal()
        with m.If(fire):
            m.d.sync += row_shift_bad.eq(Mux(self.i.payload.last, 0, row_shift_bad | shift_bad))
        m.d.comb += [
            row_wp.addr.eq(buffer_addr(wr_bank, (tracker.base >> lane_bits)[:addr_bits])),
            row_wp.data.eq(self.i.payload.data.as_value()),
            row_wp.en.eq(keep),
        ]
        with m.If(fire & self.i.payload.last):
            m.d.sync += wr_bank.eq(wr_bank ^ (keep & ~row_shift_bad))

        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            (fire & tracker.bad_len, ErrorCode.ROW_LEN),
            (fire & tracker.framing, ErrorCode.ROW_FRAMING),
            (fire & shift_bad, ErrorCode.BAD_PARAM),
            (self.param_we & addr_bad, ErrorCode.PARAM_ADDR),
        ])

        # Stage I1: the beat with lanes past the row end zeroed, and its squares (and, wide, |x|).
        i1_valid, i1_push = Signal(), Signal()
        x1 = [Signal(signed(sb), name=f"x1_{k}") for k in range(lanes)]
        sq1 = [Signal(unsigned(2 * sb), name=f"sq1_{k}") for k in range(lanes)]
        ax1 = [Signal(unsigned(b), name=f"ax1_{k}") for k in range(lanes)] if wide else []
        m.d.sync += [i1_valid.eq(keep),
                     i1_push.eq(keep & self.i.payload.last & ~row_shift_bad)]
        for k in range(lanes):
            # Without `wide` the values lie in the statistics' range (the low bits are the value).
            xk = Mux(tracker.lane_valid[k], self.i.payload.data[k][:sb].as_signed(), 0)
            m.d.sync += [x1[k].eq(xk), sq1[k].eq(xk * xk)]
            if wide:
                xw = self.i.payload.data[k]
                m.d.sync += ax1[k].eq(Mux(tracker.lane_valid[k], Mux(xw < 0, -xw, xw), 0))
        # Row parameters travel with the row's statistics (sampled on every beat; kept from the last).
        i1_len = Signal.like(self.row_len)
        i1_eps = Signal.like(self.eps_term)
        i1_shift = Signal.like(self.gamma_shift)
        i1_frac = Signal.like(self.var_frac_bits)
        i1_bank = Signal()
        i1_wide = Signal()
        i1_out8 = Signal()
        m.d.sync += i1_out8.eq(self.out8 if self.out_width == 16 else 0)
        m.d.sync += [i1_len.eq(self.row_len), i1_eps.eq(self.eps_term), i1_shift.eq(self.gamma_shift),
                     i1_frac.eq(self.var_frac_bits), i1_bank.eq(wr_bank), i1_wide.eq(self.wide if wide else 0)]

        # Stage I2: accumulate; at the row end hand the statistics to the row computation.
        s1_acc = Signal(s1_shape)
        s2_acc = Signal(s2_shape)
        beat_s1 = sum(x1) if self.centred else 0
        beat_s2 = sum(sq1)
        pend_valid = Signal()
        pend_s1, pend_s2 = Signal(s1_shape), Signal(s2_shape)
        pend_len, pend_eps, pend_shift, pend_bank = (Signal.like(i1_len), Signal.like(i1_eps),
                                                     Signal.like(i1_shift), Signal())
        pend_frac = Signal.like(i1_frac)
        pend_wide, pend_out8 = Signal(), Signal()
        # wide: the row's max |x| (unsigned 32 bit: |-2^31| included), a chain of named levels (see softmax).
        max_acc, pend_max = Signal(unsigned(b)), Signal(unsigned(b))
        beat_max = Const(0, unsigned(b))
        for k, ax in enumerate(ax1):
            level = Signal(unsigned(b), name=f"beat_absmax_{k}")
            m.d.comb += level.eq(Mux(ax > beat_max, ax, beat_max))
            beat_max = level
        new_max = Mux(beat_max > max_acc, beat_max, max_acc)
        with m.If(i1_valid):
            with m.If(i1_push):
                m.d.sync += [s1_acc.eq(0), s2_acc.eq(0), max_acc.eq(0),
                             pend_s1.eq(s1_acc + beat_s1), pend_s2.eq(s2_acc + beat_s2), pend_max.eq(new_max),
                             pend_len.eq(i1_len), pend_eps.eq(i1_eps), pend_shift.eq(i1_shift), pend_out8.eq(i1_out8),
                             pend_frac.eq(i1_frac), pend_wide.eq(i1_wide),
                             pend_bank.eq(i1_bank)]
                m.d.sync += bank_full.bit_select(i1_bank, 1).eq(1)
            with m.Else():
                m.d.sync += [s1_acc.eq(s1_acc + beat_s1), s2_acc.eq(s2_acc + beat_s2), max_acc.eq(new_max)]
        # A dropped row (error) still resets the accumulators at its last beat.
        with m.If(fire & self.i.payload.last & ~(keep & ~row_shift_bad)):
            m.d.sync += [s1_acc.eq(0), s2_acc.eq(0), max_acc.eq(0)]
        # wide: the eps term of every pre-shift k (golden.models.intops.eps_table).
        eps_by_shift = [Signal(unsigned(EPS_TERM_BITS), name=f"eps_k{j}") for j in range(NORM_EPS_SHIFTS)] \
            if wide else []
        for j, reg in enumerate(eps_by_shift):
            with m.If(self.eps_we & (self.eps_addr == j)):
                m.d.sync += reg.eq(self.eps_data)

        # ---------------------------------------------------------------- per-row computation
        m.submodules.isqrt = sqrt = ISqrt(width=VE_BITS, steps_per_cycle=self.steps_per_cycle)
        m.submodules.divider = div = Divider(dividend_width=32, divisor_width=31,
                                             steps_per_cycle=self.steps_per_cycle)
        w_s1, w_s2 = Signal(s1_shape), Signal(s2_shape)
        w_len, w_eps, w_shift, w_bank = Signal.like(pend_len), Signal.like(pend_eps), Signal.like(pend_shift), Signal()
        w_frac = Signal.like(pend_frac)
        w_wide, w_max, w_out8 = Signal(), Signal.like(pend_max), Signal()
        w_pre = Signal(range(NORM_EPS_SHIFTS))             # wide: the row's pre-shift k
        p_ds2 = Signal(unsigned(2 * sb + 2 * d_bits))
        p_s1s1 = Signal(unsigned(2 * (sb + d_bits)))
        v_e = Signal(unsigned(VE_BITS))
        k_norm = Signal(range(32))
        rcp = Signal(unsigned(32))
        bitlen = Signal(range(VE_BITS + 1))
        for bit in range(VE_BITS):
            with m.If(v_e[bit]):
                m.d.comb += bitlen.eq(bit + 1)

        cst_valid = Signal()
        cst_a = Signal(unsigned(d_bits + 32))              # A = D * Rcp
        cst_k = Signal(signed(64))                         # K = 2^(h-1) - s1 * Rcp
        cst_h = Signal(range(64))                          # h = 45 - f/2 - k, in [1, 45]
        cst_t1 = Signal(range(32))                         # T - 1 = 15 + gamma_shift, in [0, 31]
        cst_len = Signal.like(pend_len)
        cst_bank = Signal()
        cst_pre = Signal.like(w_pre)
        cst_out8 = Signal()
        take_cst = Signal()

        m.d.comb += [
            sqrt.i.payload.eq(v_e << (k_norm << 1)),
            div.i.payload.dividend.eq(0),
            div.i.payload.dividend_high.eq(1 << (RECIP_FRAC_BITS - 32)),
            div.i.payload.divisor.eq(sqrt.o.payload),
            div.o.ready.eq(1),
        ]
        computing = Signal()
        # h - 1 = 44 - f/2 - k >= 0 whenever V_e > 0; with V_e = 0 the row's K is 0 and h is unused.
        h_minus_1 = Signal(range(64))
        m.d.comb += h_minus_1.eq(RECIP_FRAC_BITS - NORM_FRAC_BITS - 1 - (w_frac >> 1) - k_norm)
        stats = None
        if wide:
            stats = self._stats_logic(m, stat_rp=stat_rp, buffer_addr=buffer_addr, pre_shift=pre_shift,
                                      w=dict(s1=w_s1, s2=w_s2, len=w_len, eps=w_eps, bank=w_bank, wide=w_wide,
                                             max=w_max, pre=w_pre), eps_by_shift=eps_by_shift, addr_bits=addr_bits)
            stats_states = lambda st: self._stats_states(m, st)   # noqa: E731
        with m.FSM(name="row_fsm") as row_fsm:
            with m.State("IDLE"):
                with m.If(pend_valid & ~cst_valid):
                    m.d.sync += [w_s1.eq(pend_s1), w_s2.eq(pend_s2), w_len.eq(pend_len), w_eps.eq(pend_eps),
                                 w_shift.eq(pend_shift), w_bank.eq(pend_bank), w_frac.eq(pend_frac),
                                 w_out8.eq(pend_out8),
                                 w_wide.eq(pend_wide), w_max.eq(pend_max), w_pre.eq(0),
                                 pend_valid.eq(0)]
                    m.next = "PRE_SHIFT" if wide else "PRODUCTS"
            if wide:
                stats_states(stats)
            with m.State("PRODUCTS"):
                m.d.sync += p_ds2.eq(w_len * w_s2)
                if self.centred:
                    m.d.sync += p_s1s1.eq(w_s1 * w_s1)
                m.next = "VARIANCE"
            with m.State("VARIANCE"):
                # V = D*s2 - s1^2 >= 0 (Cauchy-Schwarz), so the unsigned difference is exact.
                m.d.sync += v_e.eq(((p_ds2 - p_s1s1)[:len(p_ds2)] << w_frac) + w_eps)
                m.next = "SHIFT"
            with m.State("SHIFT"):
                m.d.sync += k_norm.eq((VE_BITS - bitlen) >> 1)
                m.next = "SQRT"
            with m.State("SQRT"):
                with m.If(sqrt.i.ready):
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(div.o.valid):
                    # S = 0 only when V_e = 0 (a constant row without eps): golden takes Rcp = 0.
                    m.d.sync += rcp.eq(Mux(div.o.payload.div_by_zero, 0, div.o.payload.quotient))
                    m.next = "CONSTANTS"
            with m.State("CONSTANTS"):
                s1_rcp = w_s1 * rcp if self.centred else 0
                m.d.sync += [
                    cst_valid.eq(1),
                    cst_a.eq(w_len * rcp),
                    cst_k.eq(Mux(v_e == 0, 0, (Const(1, 64) << h_minus_1) - s1_rcp)),
                    cst_h.eq(h_minus_1 + 1),
                    cst_t1.eq(NORM_FRAC_BITS - 1 + w_shift),
                    cst_out8.eq(w_out8),
                    cst_len.eq(w_len),
                    cst_bank.eq(w_bank),
                    cst_pre.eq(w_pre),
                ]
                m.next = "IDLE"
        # Handshakes as continuous assignments of the state (not inside the FSM's `always @*` blocks),
        # so that Icarus evaluates them from time 0.
        m.d.comb += [
            computing.eq(~row_fsm.ongoing("IDLE")),
            sqrt.i.valid.eq(row_fsm.ongoing("SQRT")),
            div.i.valid.eq(row_fsm.ongoing("DIVIDE") & sqrt.o.valid),
            sqrt.o.ready.eq(row_fsm.ongoing("DIVIDE") & div.i.ready),
        ]
        with m.If(take_cst):
            m.d.sync += cst_valid.eq(0)
        # After the row FSM, so that a hand-over and a new row end on the same edge keep the new row.
        with m.If(i1_valid & i1_push):
            m.d.sync += pend_valid.eq(1)

        # ---------------------------------------------------------------- output side
        adv = Signal()  # every output pipeline stage moves one step
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        out_active = Signal()
        cur_a, cur_k, cur_h, cur_t1 = Signal.like(cst_a), Signal.like(cst_k), Signal.like(cst_h), Signal.like(cst_t1)
        cur_len, cur_bank, cur_pre, cur_out8 = Signal.like(cst_len), Signal(), Signal.like(cst_pre), Signal()
        rd_beat = Signal(range(depth + 1))
        rd_base = Signal(range(self.max_row + lanes + 1))
        m.d.comb += take_cst.eq(~out_active & cst_valid)
        with m.If(take_cst):
            m.d.sync += cur_out8.eq(cst_out8)
            m.d.sync += [out_active.eq(1), cur_a.eq(cst_a), cur_k.eq(cst_k), cur_h.eq(cst_h), cur_t1.eq(cst_t1),
                         cur_len.eq(cst_len), cur_bank.eq(cst_bank), cur_pre.eq(cst_pre), rd_beat.eq(0),
                         rd_base.eq(0)]
        issue = Signal()
        rd_last = Signal()
        m.d.comb += [
            issue.eq(out_active & adv),
            rd_last.eq(rd_base + lanes >= cur_len),
            row_rp.addr.eq(buffer_addr(cur_bank, rd_beat[:addr_bits])),
            row_rp.en.eq(adv),
        ]
        for rp in param_ports:
            m.d.comb += [rp.addr.eq(rd_beat), rp.en.eq(adv)]
        with m.If(issue):
            m.d.sync += [rd_beat.eq(rd_beat + 1), rd_base.eq(rd_base + lanes)]
            with m.If(rd_last):
                # The last read is issued on this edge: the buffer half may take the next row.
                m.d.sync += [out_active.eq(0), bank_full.bit_select(cur_bank, 1).eq(0)]

        # O1: row data and gamma/beta arrive from the memories. The row constants travel down the
        # pipeline with each beat: the next row's constants are loaded as soon as the last read issues.
        o1_valid, o1_last = Signal(), Signal()
        o1_keep = Signal(lanes)
        o1_a, o1_k, o1_h, o1_t1 = Signal.like(cur_a), Signal.like(cur_k), Signal.like(cur_h), Signal.like(cur_t1)
        o1_pre, o1_out8 = Signal.like(cur_pre), Signal()
        with m.If(adv):
            m.d.sync += [o1_valid.eq(issue), o1_last.eq(rd_last),
                         o1_a.eq(cur_a), o1_k.eq(cur_k), o1_h.eq(cur_h), o1_t1.eq(cur_t1), o1_pre.eq(cur_pre),
                         o1_out8.eq(cur_out8)]
            for k in range(lanes):
                m.d.sync += o1_keep[k].eq(rd_base + k < cur_len)
        # wide: the same pre-shift as the statistics pass (k = 0 without `wide`: the value's low bits).
        x_o1 = [pre_shift(row_rp.data[k * b:(k + 1) * b].as_signed(), o1_pre) if wide
                else row_rp.data[k * b:(k + 1) * b].as_signed() for k in range(lanes)]

        # O2: p = x*A + K (signed 64 bit; |c*Rcp| < 2^60).
        o2_valid, o2_last, o2_keep = Signal(), Signal(), Signal(lanes)
        p2 = [Signal(signed(64), name=f"p2_{k}") for k in range(lanes)]
        g_shape, b_shape = signed(self.out_width + 8), signed(self.out_width + 40)
        g2 = [Signal(g_shape, name=f"g2_{k}") for k in range(lanes)]
        b2 = [Signal(b_shape, name=f"b2_{k}") for k in range(lanes)]
        o2_h, o2_t1, o2_out8 = Signal.like(cur_h), Signal.like(cur_t1), Signal()
        with m.If(adv):
            m.d.sync += [o2_valid.eq(o1_valid), o2_last.eq(o1_last), o2_keep.eq(o1_keep),
                         o2_h.eq(o1_h), o2_t1.eq(o1_t1), o2_out8.eq(o1_out8)]
            for k in range(lanes):
                m.d.sync += [p2[k].eq(x_o1[k] * o1_a + o1_k), g2[k].eq(param_rd[k].gamma)]
                if self.centred:
                    m.d.sync += b2[k].eq(param_rd[k].beta)

        # O3: y = p >> h, the normalised value in Q.16 (|y| < 2^23).
        o3_valid, o3_last, o3_keep = Signal(), Signal(), Signal(lanes)
        y3 = [Signal(signed(25), name=f"y3_{k}") for k in range(lanes)]
        g3 = [Signal(g_shape, name=f"g3_{k}") for k in range(lanes)]
        b3 = [Signal(b_shape, name=f"b3_{k}") for k in range(lanes)]
        o3_t1, o3_out8 = Signal.like(cur_t1), Signal()
        with m.If(adv):
            m.d.sync += [o3_valid.eq(o2_valid), o3_last.eq(o2_last), o3_keep.eq(o2_keep), o3_t1.eq(o2_t1),
                         o3_out8.eq(o2_out8)]
            for k in range(lanes):
                m.d.sync += [y3[k].eq(p2[k] >> o2_h), g3[k].eq(g2[k]), b3[k].eq(b2[k])]

        # O4: w = y*G + B (signed out_width + 41 bit).
        o4_valid, o4_last, o4_keep = Signal(), Signal(), Signal(lanes)
        w4 = [Signal(signed(self.out_width + 42), name=f"w4_{k}") for k in range(lanes)]
        o4_t1, o4_out8 = Signal.like(cur_t1), Signal()
        with m.If(adv):
            m.d.sync += [o4_valid.eq(o3_valid), o4_last.eq(o3_last), o4_keep.eq(o3_keep), o4_t1.eq(o3_t1),
                         o4_out8.eq(o3_out8)]
            for k in range(lanes):
                m.d.sync += w4[k].eq(y3[k] * g3[k] + b3[k])

        # O5 (output register): one round-half-up by 2^T, saturation, zero lanes past the row end.
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(o4_valid), self.o.payload.last.eq(o4_last)]
            for k in range(lanes):
                rounded = ((w4[k] >> o4_t1) + 1) >> 1
                y = saturate(rounded, self.out_width)
                if self.out_width == 16:
                    y = Mux(o4_out8, saturate(rounded, 8), y)
                m.d.sync += self.o.payload.data[k].eq(y & o4_keep[k].replicate(self.out_width))

        m.d.comb += self.busy.eq(~tracker.first | i1_valid | pend_valid | computing | cst_valid | out_active
                                 | o1_valid | o2_valid | o3_valid | o4_valid | self.o.valid)
        return m


    def _stats_logic(self, m, *, stat_rp, buffer_addr, pre_shift, w, eps_by_shift, addr_bits):
        """wide rows (norm_wide): k from the row's max |x|, eps = table[k], then s1 / s2 of the pre-shifted row read
        back from the buffer (a beat per cycle; the data arrives the cycle after its read). Returns the signals the
        row FSM's states (:meth:`_stats_states`) drive."""
        lanes, b = self.lanes, self.in_width
        bitlen = Signal(range(b + 1))
        for bit in range(b):
            with m.If(w["max"][bit]):
                m.d.comb += bitlen.eq(bit + 1)
        st_beat = Signal(range(self.depth + 1))
        st_base = Signal(range(self.max_row + lanes + 1))
        st_v, st_base1 = Signal(), Signal.like(st_base)
        issue = Signal()
        m.d.comb += [stat_rp.addr.eq(buffer_addr(w["bank"], st_beat[:addr_bits])), stat_rp.en.eq(1)]
        m.d.sync += [st_v.eq(issue), st_base1.eq(st_base)]
        xs = [Signal(signed(self.stat_width), name=f"st_x_{k}") for k in range(lanes)]
        for k in range(lanes):
            x = stat_rp.data[k * b:(k + 1) * b].as_signed()
            m.d.comb += xs[k].eq(Mux(st_base1 + k < w["len"], pre_shift(x, w["pre"]), 0))
        with m.If(st_v):
            m.d.sync += [w["s1"].eq(w["s1"] + sum(xs) if self.centred else 0),
                         w["s2"].eq(w["s2"] + sum(x * x for x in xs))]
        return dict(w=w, bitlen=bitlen, eps_by_shift=eps_by_shift, st_beat=st_beat, st_base=st_base, issue=issue)

    def _stats_states(self, m, st):
        """The row FSM's states of the wide rows' statistics pass (then PRODUCTS)."""
        w, bitlen, eps_by_shift = st["w"], st["bitlen"], st["eps_by_shift"]
        st_beat, st_base, issue, lanes = st["st_beat"], st["st_base"], st["issue"], self.lanes
        with m.State("PRE_SHIFT"):
            # Without `wide` (a narrow row through the wide operator) the entry-time statistics stand.
            with m.If(~w["wide"]):
                m.next = "PRODUCTS"
            with m.Else():
                pre = Mux(bitlen > NORM_WIDE_IN_BITS - 1, bitlen - (NORM_WIDE_IN_BITS - 1), 0)
                eps = Const(0, unsigned(EPS_TERM_BITS))
                for j, reg in enumerate(eps_by_shift):
                    eps = Mux(pre == j, reg, eps)
                m.d.sync += [w["pre"].eq(pre), w["eps"].eq(eps), w["s1"].eq(0), w["s2"].eq(0), st_beat.eq(0),
                             st_base.eq(0)]
                m.next = "STATS"
        with m.State("STATS"):
            m.d.comb += issue.eq(1)
            m.d.sync += [st_beat.eq(st_beat + 1), st_base.eq(st_base + lanes)]
            with m.If(st_base + lanes >= w["len"]):
                m.next = "STATS_DRAIN"
        with m.State("STATS_DRAIN"):
            m.next = "PRODUCTS"


class LayerNorm(_RowNorm):
    """Integer LayerNorm over rows (``golden.norms.layernorm``), ``lanes`` elements per beat.

    Parameters
    ----------
    lanes : int
        Elements per beat (power of two).
    max_row : int
        Longest row (<= 8192); the row buffer holds two rows of it.
    in_width, out_width : int
        Element widths, 8 or 16 (golden ``input_bits`` / ``out_bits``).
    steps_per_cycle : int or None
        Square-root and quotient bits per cycle of the per-row unit (default ``max(1, lanes // 4)``).

    Members
    -------
    i : In(stream.Signature(VecBeat(in_width, lanes)))
    o : Out(stream.Signature(VecBeat(out_width, lanes)))
    row_len : In(row_len_shape(max_row))
        D, 1 .. max_row (golden ``params.dim``).
    eps_term : In(unsigned(61))
        golden ``eps_term``. Sampled with the row's beats, like ``var_frac_bits`` and ``gamma_shift``.
    var_frac_bits : In(unsigned(5))
        golden ``var_frac_bits``, even, <= 28; otherwise the row is dropped with BAD_PARAM.
    gamma_shift : In(signed(6))
        golden ``gamma_shift`` in [-15, 16]; outside it the row is dropped with BAD_PARAM.
    param_we, param_addr, param_data : In(1), In(unsigned(bit_length(max_row))), In(LayerNormParamWord(out_width))
        Write channel ``param_addr``'s G (``gamma_q``) and B (``beta_q``). An address >= max_row sets
        PARAM_ADDR and is ignored. The memory is read while a row leaves: do not rewrite it then.
    clear, error, error_code, busy
        See :mod:`rtl.vector.common`. ROW_LEN, ROW_FRAMING, BAD_PARAM drop the row (drained, no output).
    """
    centred = True
    param_layout = staticmethod(LayerNormParamWord)


class RMSNorm(_RowNorm):
    """Integer RMSNorm over rows (``golden.norms.rmsnorm``): LayerNorm without centring and without beta.

    Same parameters and members as :class:`LayerNorm`, except ``param_data`` is an
    :func:`RMSNormParamWord` (G only).
    """
    centred = False
    param_layout = staticmethod(RMSNormParamWord)
