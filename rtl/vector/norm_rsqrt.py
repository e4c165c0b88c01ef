"""The norms' per-row unit: from a row's statistics to the constants that normalise it (``golden.norms`` steps 2-6).

Sequential, shared by the whole row (one row at a time)::

    V_e = ((D*s2 - s1^2) << f) + eps_term                    < 2^62
    k = (62 - bitlength(V_e)) // 2,  S = isqrt(V_e << 2k)     exact (ISqrt)
    Rcp = floor(2^61 / S)                                      exact (Divider), 0 when V_e = 0
    A = D*Rcp,  K = 2^(h-1) - s1*Rcp,  h = 45 - f/2 - k        (K = 0 when V_e = 0)
    T - 1 = 15 + gamma_shift

so the output stage computes ``y_i = (x_i*A + K) >> h`` per element (:class:`~npuforge.rtl.vector.norm_output.NormNormalise`).

For an int32 row with ``wide`` set (``golden.models.intops.norm_wide``) it first picks the pre-shift
k_pre = max(0, bitlength(max |x|) - 15) and eps_term = ``eps_table[k_pre]``, then reads the row back from the
operator's row buffer once (one beat per cycle, ``stat_beat`` / ``stat_bank`` / ``stat_data``) and sums the
pre-shifted values into s1, s2 (the entry sums are not used for such a row). A row with ``token`` set (the token
scale only, ``vec.rmsnorm`` flags bit 2) stops after the pre-shift: its constants make the output stage pass the
pre-shifted value through (A = 1, K = 0, h = 0, T = 1; the operator feeds G = 2, so y = x and
(2y + 1) >> 1 = y) and carry k_pre out with the row.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.divider import reciprocal_divider
from npuforge.rtl.vector.isqrt import ISqrt
from npuforge.rtl.vector.common import row_len_shape
from npuforge.rtl.vector.norm_stats import NormRowStats, wide_pre_shift
from npuforge.spec.vector_ops import (EPS_TERM_BITS, NORM_EPS_SHIFTS, NORM_FRAC_BITS,
                                      NORM_RECIP_FRAC_BITS as RECIP_FRAC_BITS, NORM_WIDE_IN_BITS)

__all__ = ["NormRowConstants", "NormRowConsts", "VE_BITS", "row_cycles"]

#: V_e < 2^62; N = V_e << 2k is normalised into [2^60, 2^62).
VE_BITS = 62


def row_cycles(steps_per_cycle: int) -> int:
    """Cycles of the per-row computation (statistics to row constants), without stalls and without the int32
    rows' statistics pass."""
    sqrt_latency = -(-(VE_BITS // 2) // steps_per_cycle) + 1   # ISqrt(width=62).latency
    div_latency = -(-32 // steps_per_cycle) + 1                # Divider(dividend_width=32).latency
    # IDLE hand-over, products, variance, shift, SQRT issue, then CONSTANTS
    return 5 + sqrt_latency + div_latency


def NormRowConsts(*, max_row: int) -> data.StructLayout:
    """A row's normalisation constants: A = D*Rcp (unsigned), K (signed 64), h in [1, 45], T - 1 in [0, 31], and
    what the read-back needs: D, the buffer half, the int32 pre-shift k_pre, ``out8`` and ``token`` (the token scale
    only: the output stage passes the pre-shifted row through)."""
    d_bits = max_row.bit_length()
    return data.StructLayout({"a": unsigned(d_bits + 32), "k": signed(64), "h": range(64), "t1": range(32),
                              "len": row_len_shape(max_row), "bank": 1, "pre": range(NORM_EPS_SHIFTS), "out8": 1,
                              "token": 1})


class NormRowConstants(wiring.Component):
    """Per-row constants of LayerNorm / RMSNorm, one row at a time.

    Parameters
    ----------
    lanes, max_row, in_width, stat_width : int
        As :class:`~npuforge.rtl.vector.norm_stats.NormStatistics`.
    centred : bool
        LayerNorm (s1 used) or RMSNorm (s1 = 0).
    wide_rows : bool
        int32 rows: adds the eps table, the pre-shift and the statistics pass over the row buffer.
    steps_per_cycle : int
        Square-root and quotient bits per cycle.

    Members
    -------
    i : In(stream.Signature(NormRowStats(...)))
        A finished row's statistics; taken when the unit is idle and its previous constants have been taken.
    o : Out(stream.Signature(NormRowConsts(max_row)))
        The row's constants, held until taken.
    eps_we, eps_addr, eps_data : In(1), In(range(18)), In(unsigned(61))       (``wide_rows`` only)
        Write entry ``eps_addr`` of the eps table (eps_term of each pre-shift k).
    stat_bank, stat_beat : Out(1), Out(range(depth + 1))                       (``wide_rows`` only)
        The row buffer word to read (half ``stat_bank``, beat ``stat_beat``); read every cycle.
    stat_data : In(unsigned(lanes * in_width))                                 (``wide_rows`` only)
        That word, one cycle after its address.
    busy : Out(1)
        A row is being computed or its constants wait.
    """

    def __init__(self, *, lanes: int, max_row: int, in_width: int, stat_width: int, centred: bool,
                 wide_rows: bool, steps_per_cycle: int):
        self.lanes, self.max_row, self.in_width, self.stat_width = lanes, max_row, in_width, stat_width
        self.centred, self.wide_rows, self.steps_per_cycle = centred, wide_rows, steps_per_cycle
        self.depth = -(-max_row // lanes)
        wide_ports = {"eps_we": In(1), "eps_addr": In(range(NORM_EPS_SHIFTS)), "eps_data": In(unsigned(EPS_TERM_BITS)),
                      "stat_bank": Out(1), "stat_beat": Out(range(self.depth + 1)),
                      "stat_data": In(unsigned(lanes * in_width))} if wide_rows else {}
        super().__init__({
            "i": In(stream.Signature(NormRowStats(in_width=in_width, stat_width=stat_width, max_row=max_row))),
            "o": Out(stream.Signature(NormRowConsts(max_row=max_row))),
            **wide_ports,
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sb, d_bits = self.stat_width, self.max_row.bit_length()
        m.submodules.isqrt = sqrt = ISqrt(width=VE_BITS, steps_per_cycle=self.steps_per_cycle)
        w = Signal.like(self.i.payload)                    # the row being computed
        w_pre = Signal(range(NORM_EPS_SHIFTS))             # int32 rows: the pre-shift k_pre
        p_ds2 = Signal(unsigned(2 * sb + 2 * d_bits))
        p_s1s1 = Signal(unsigned(2 * (sb + d_bits)))
        v_e = Signal(unsigned(VE_BITS))
        k_norm = Signal(range(32))
        rcp = Signal(unsigned(32))
        bitlen = Signal(range(VE_BITS + 1))
        for bit in range(VE_BITS):
            with m.If(v_e[bit]):
                m.d.comb += bitlen.eq(bit + 1)
        m.d.comb += sqrt.i.payload.eq(v_e << (k_norm << 1))
        div = reciprocal_divider(m, divisor=sqrt.o.payload, divisor_width=31, frac_bits=RECIP_FRAC_BITS,
                                 quotient_bits=32, steps_per_cycle=self.steps_per_cycle)
        # h - 1 = 44 - f/2 - k >= 0 whenever V_e > 0; with V_e = 0 the row's K is 0 and h is unused.
        h_minus_1 = Signal(range(64))
        m.d.comb += h_minus_1.eq(RECIP_FRAC_BITS - NORM_FRAC_BITS - 1 - (w.params.frac >> 1) - k_norm)
        cst = self.o.payload
        stats_pass = self._statistics_pass(m, w, w_pre) if self.wide_rows else None
        with m.FSM(name="row_fsm") as row_fsm:
            with m.State("IDLE"):
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [w.eq(self.i.payload), w_pre.eq(0)]
                    m.next = "PRE_SHIFT" if self.wide_rows else "PRODUCTS"
            if self.wide_rows:
                self._statistics_pass_states(m, w, w_pre, **stats_pass)
            with m.State("PRODUCTS"):
                m.d.sync += p_ds2.eq(w.params.len * w.s2)
                if self.centred:
                    m.d.sync += p_s1s1.eq(w.s1 * w.s1)
                m.next = "VARIANCE"
            with m.State("VARIANCE"):
                # V = D*s2 - s1^2 >= 0 (Cauchy-Schwarz), so the unsigned difference is exact.
                m.d.sync += v_e.eq(((p_ds2 - p_s1s1)[:len(p_ds2)] << w.params.frac) + w.params.eps)
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
                s1_rcp = w.s1 * rcp if self.centred else 0
                token = w.params.token if self.wide_rows else Const(0, 1)
                m.d.sync += [
                    self.o.valid.eq(1),
                    cst.a.eq(Mux(token, 1, w.params.len * rcp)),
                    cst.k.eq(Mux((v_e == 0) | token, 0, (Const(1, 64) << h_minus_1) - s1_rcp)),
                    cst.h.eq(Mux(token, 0, h_minus_1 + 1)),
                    cst.t1.eq(Mux(token, 0, NORM_FRAC_BITS - 1 + w.params.shift)),
                    cst.token.eq(token),
                    cst.out8.eq(w.params.out8),
                    cst.len.eq(w.params.len),
                    cst.bank.eq(w.params.bank),
                    cst.pre.eq(w_pre),
                ]
                m.next = "IDLE"
        # Handshakes as continuous assignments of the state (not inside the FSM's `always @*` blocks),
        # so that Icarus evaluates them from time 0.
        m.d.comb += [
            self.i.ready.eq(row_fsm.ongoing("IDLE") & ~self.o.valid),
            self.busy.eq(~row_fsm.ongoing("IDLE") | self.o.valid),
            sqrt.i.valid.eq(row_fsm.ongoing("SQRT")),
            div.i.valid.eq(row_fsm.ongoing("DIVIDE") & sqrt.o.valid),
            sqrt.o.ready.eq(row_fsm.ongoing("DIVIDE") & div.i.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _statistics_pass(self, m, w, w_pre):
        """The datapath of an int32 row's statistics pass: the eps table, bitlength(max |x|), the read-back counters and
        s1 / s2 of the pre-shifted row read back from the buffer (a beat per cycle; the data arrives the cycle after
        its read). Returns what the states (:meth:`_statistics_pass_states`) drive."""
        lanes, b = self.lanes, self.in_width
        # The eps term of every pre-shift k (golden.models.intops.eps_table).
        eps_by_shift = [Signal(unsigned(EPS_TERM_BITS), name=f"eps_k{j}") for j in range(NORM_EPS_SHIFTS)]
        for j, reg in enumerate(eps_by_shift):
            with m.If(self.eps_we & (self.eps_addr == j)):
                m.d.sync += reg.eq(self.eps_data)
        bitlen = Signal(range(b + 1))
        for bit in range(b):
            with m.If(w.max[bit]):
                m.d.comb += bitlen.eq(bit + 1)
        st_beat = Signal(range(self.depth + 1))
        st_base = Signal(range(self.max_row + lanes + 1))
        st_v, st_base1 = Signal(), Signal.like(st_base)
        issue = Signal()
        m.d.comb += [self.stat_bank.eq(w.params.bank), self.stat_beat.eq(st_beat)]
        m.d.sync += [st_v.eq(issue), st_base1.eq(st_base)]
        xs = [Signal(signed(self.stat_width), name=f"st_x_{k}") for k in range(lanes)]
        for k in range(lanes):
            x = self.stat_data[k * b:(k + 1) * b].as_signed()
            m.d.comb += xs[k].eq(Mux(st_base1 + k < w.params.len, wide_pre_shift(x, w_pre), 0))
        with m.If(st_v):
            m.d.sync += [w.s1.eq(w.s1 + sum(xs) if self.centred else 0),
                         w.s2.eq(w.s2 + sum(x * x for x in xs))]
        return dict(eps_by_shift=eps_by_shift, bitlen=bitlen, st_beat=st_beat, st_base=st_base, issue=issue)

    def _statistics_pass_states(self, m, w, w_pre, *, eps_by_shift, bitlen, st_beat, st_base, issue):
        """The row FSM's states of the int32 rows' statistics pass (then PRODUCTS)."""
        lanes = self.lanes
        with m.State("PRE_SHIFT"):
            # Without `wide` (a narrow row through the wide operator) the entry-time statistics stand.
            with m.If(~w.params.wide & ~w.params.token):
                m.next = "PRODUCTS"
            with m.Else():
                pre = Mux(bitlen > NORM_WIDE_IN_BITS - 1, bitlen - (NORM_WIDE_IN_BITS - 1), 0)
                eps = Const(0, unsigned(EPS_TERM_BITS))
                for j, reg in enumerate(eps_by_shift):
                    eps = Mux(pre == j, reg, eps)
                m.d.sync += [w_pre.eq(pre), w.params.eps.eq(eps), w.s1.eq(0), w.s2.eq(0), st_beat.eq(0),
                             st_base.eq(0)]
                # The token scale only needs k_pre: no statistics, square root or division.
                m.next = "STATS"
                with m.If(w.params.token):
                    m.next = "CONSTANTS"
        with m.State("STATS"):
            m.d.comb += issue.eq(1)
            m.d.sync += [st_beat.eq(st_beat + 1), st_base.eq(st_base + lanes)]
            with m.If(st_base + lanes >= w.params.len):
                m.next = "STATS_DRAIN"
        with m.State("STATS_DRAIN"):
            m.next = "PRODUCTS"
