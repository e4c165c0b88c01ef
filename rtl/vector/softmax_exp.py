"""Softmax's integer exp pipeline and the records its engines hand over (``golden.softmax`` steps 2-6).

:class:`SoftmaxExp` turns a beat of scores x into e = exp((x - m) * scale) in Q1.22, eight registered stages per lane
and the multipliers' own :data:`~npuforge.rtl.vector.mulpool.MUL_LATENCY` stages before E2 and E5 (twelve in all)::

    E0  x registered (it comes straight from the row buffer's block RAM)
    E1  d = min(m - x, 2^31 - 1)
    E2  p = d * M                                       M = exp_multiplier (unsigned 31 bit)
    E3  u = min((p + 2^(t-1)) >> t, 2^20 - 1)           in two stages, k = t - 1:
    E3a   s = (p >> k) mod 2^21,  sat = p >= (2^21 - 1) << k    (the clamp's test, beside the shift)
    E3b   u = 2^20 - 1 if sat else (s + 1) >> 1
    E4  n = u >> 15,  g = u & 0x7FFF,  b = EXP_C1 + ((EXP_C2 * g) >> 15)
    E5  P = 2^15 + ((g * b) >> 15)
    E6  e = (((P << 8) >> n) + 1) >> 1                  0 for a masked column

Both the sum engine (:class:`~npuforge.rtl.vector.softmax_sum.SoftmaxRowSum`) and the output engine
(:class:`~npuforge.rtl.vector.softmax_output.SoftmaxNormalise`) run one, so e_j is recomputed rather than stored.

The layouts :func:`SoftmaxRowParams` (a row's run-time values), :func:`SoftmaxStoredRow` (a stored row and its max) and
:func:`SoftmaxRowConsts` (plus its reciprocal) are the hand-overs between the engines; :func:`masked_column` is the
causal / padding mask all three engines apply.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import row_len_shape
from npuforge.rtl.vector.mulpool import MUL_LATENCY, MulSpec, delay_stages, multiplier_members, multiplier_ports, \
    multiply, stages_hold
from npuforge.spec.vector_ops import D_MAX, EXP_C1, EXP_C2, EXP_FRAC_BITS, U_MAX

__all__ = ["SoftmaxExp", "SoftmaxRowParams", "SoftmaxStoredRow", "SoftmaxRowConsts", "masked_column",
           "E_BITS", "S_BITS", "RCP_BITS", "EXP_MULTIPLIERS"]

#: e_j is Q1.22 (<= 2^22); S <= SOFTMAX_MAX_LEN * 2^22 fits 36 bits; Rcp <= 2^32 fits 33 bits.
E_BITS = 23
S_BITS = 36
RCP_BITS = 33
#: E3's clamp: (p >> k) >= SAT_S = 2^21 - 1 gives u = U_MAX; (2^21 - 1) << k passes a 62-bit p for k > SAT_MAX_K.
SAT_S = 2 * U_MAX + 1
SAT_MAX_K = 41

#: The multiplies of one lane of :class:`SoftmaxExp`: d * M (E2) and g * b (E5).
EXP_MULTIPLIERS = (MulSpec("dm", unsigned(31), unsigned(31)), MulSpec("gb", unsigned(15), signed(17)))


def SoftmaxRowParams(*, max_row: int) -> data.StructLayout:
    """The run-time values that travel with one row: L (``len``), ``mult`` / ``shift`` (exp_multiplier /
    exp_shift), the causal mask (``causal``, ``qpos`` = query_pos), the padding mask (``pad``, ``valid_len``),
    ``q15`` (Q0.15 output) and the row buffer half ``bank`` the row waits in."""
    return data.StructLayout({"len": row_len_shape(max_row), "mult": unsigned(31), "shift": signed(7), "causal": 1,
                              "qpos": unsigned(32), "pad": 1, "valid_len": unsigned(16), "q15": 1, "bank": 1})


def SoftmaxStoredRow(*, max_row: int, in_width: int) -> data.StructLayout:
    """A row stored in the row buffer: m = max over its unmasked scores, and its :func:`SoftmaxRowParams`."""
    return data.StructLayout({"max": signed(in_width), "params": SoftmaxRowParams(max_row=max_row)})


def SoftmaxRowConsts(*, max_row: int, in_width: int) -> data.StructLayout:
    """A summed row: m, its parameters and Rcp = floor(2^54 / S) (unsigned ``RCP_BITS``)."""
    return data.StructLayout({"max": signed(in_width), "params": SoftmaxRowParams(max_row=max_row),
                              "rcp": unsigned(RCP_BITS)})


def masked_column(params, col):
    """Column ``col`` is masked: causal (``col > qpos``) or padding (``col >= valid_len``); ``params`` is a
    :func:`SoftmaxRowParams` view."""
    return (params.causal & (col > params.qpos)) | (params.pad & (col >= params.valid_len))


class SoftmaxExp(wiring.Component):
    """Exp pipeline of :attr:`STAGES` stages, ``lanes`` scores per beat (stages E0-E6 of the module docstring, E3 in
    two, and the multipliers' stages before E2 and E5).

    Parameters
    ----------
    lanes : int
    in_width : int
        Score width (8, 16 or 32).
    tag_shape : shape
        What travels alongside each beat, delayed by the same :attr:`STAGES` stages.

    Members
    -------
    en : In(1)
        Every stage moves one step (the caller's back-pressure).
    valid_in, x, masked : In(1), In(ArrayLayout(signed(in_width), lanes)), In(lanes)
        The beat entering E0, and the lanes whose e is forced to 0.
    row_max, mult, t_minus_1 : In(signed(in_width)), In(unsigned(31)), In(range(64))
        m, M and t - 1 = 30 + exp_shift of the entering beat's row (carried through the stages with it).
    tag_in : In(tag_shape)
    valid, e, tag : Out(1), Out(ArrayLayout(unsigned(E_BITS), lanes)), Out(tag_shape)
        The beat leaving E6: e_j in Q1.22 and its tag.
    busy : Out(1)
        A beat is in one of the stages.
    mul : with ``shared_multipliers``, the products ``dm`` (E2: d * M) and ``gb`` (E5: g * b) come from the
        vector unit's shared multipliers (:mod:`rtl.vector.mulpool`).
    """

    STAGES = 8 + 2 * MUL_LATENCY

    def __init__(self, *, lanes: int, in_width: int, tag_shape, shared_multipliers: bool = False):
        self.lanes, self.in_width = lanes, in_width
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = EXP_MULTIPLIERS
        super().__init__({
            "en": In(1),
            "valid_in": In(1),
            "x": In(data.ArrayLayout(signed(in_width), lanes)),
            "masked": In(lanes),
            "row_max": In(signed(in_width)),
            "mult": In(unsigned(31)),
            "t_minus_1": In(range(64)),
            "tag_in": In(tag_shape),
            "valid": Out(1),
            "e": Out(data.ArrayLayout(unsigned(E_BITS), lanes)),
            "tag": Out(tag_shape),
            "busy": Out(1),
            **multiplier_members(self),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes

        def pipe_carry(sigs, stage):
            out = []
            for j, s in enumerate(sigs):
                r = Signal.like(s, name=f"c{j}_s{stage}")
                m.d.sync += r.eq(s)
                out.append(r)
            return out

        carried = [Value.cast(self.tag_in), self.row_max, self.mult, self.t_minus_1]
        with m.If(self.en):
            # E0: the beat registered as it enters. x comes straight from the row buffer's block RAM read port, whose
            # clock-to-output (a DP16KD without its output register) and E1's subtract and clamp behind it were the
            # vector unit's critical path (issue #16): nothing combinational now sits between the RAM and a register.
            v0, mk0 = Signal(), Signal(lanes)
            x0 = Signal.like(self.x, name="x0")
            m.d.sync += [v0.eq(self.valid_in), mk0.eq(self.masked), x0.eq(self.x)]
            c0 = pipe_carry(carried, 0)
            # E1: d = min(m - x, 2^31 - 1); masked lanes keep a flag and produce 0 at the end.
            v1, mk1 = Signal(), Signal(lanes)
            d1 = [Signal(unsigned(31), name=f"d1_{k}") for k in range(lanes)]
            m.d.sync += [v1.eq(v0), mk1.eq(mk0)]
            for k in range(lanes):
                diff = c0[1] - x0[k]
                m.d.sync += d1[k].eq(Mux(diff > D_MAX, D_MAX, diff))
            c1 = pipe_carry(c0, 1)
        # The products are built (or taken from the unit's shared multipliers) outside the enable: m.d.comb. The
        # beat's other values travel beside the multiplier's MUL_LATENCY stages.
        mul_dm, mul_gb = multiplier_ports(self, "dm"), multiplier_ports(self, "gb")
        prod_dm = [multiply(m, mul_dm[k], d1[k], c1[-2], en=self.en, name=f"mul_dm_{k}") for k in range(lanes)]
        beside_dm = delay_stages(m, self.en, [v1, mk1, *c1], name="mul_dm")
        v1m, mk1m, *c1m = beside_dm[-1]
        with m.If(self.en):
            # E2: product d * M (unsigned 62 bit); beside it the clamp's threshold (2^21 - 1) << k of the beat's k =
            # t - 1, the same for every lane (no 62-bit p reaches it past k = 41: sat is then never set).
            v2, mk2 = Signal(), Signal(lanes)
            p2 = [Signal(unsigned(62), name=f"p2_{k}") for k in range(lanes)]
            m.d.sync += [v2.eq(v1m), mk2.eq(mk1m)]
            for k in range(lanes):
                m.d.sync += p2[k].eq(prod_dm[k])
            c2 = pipe_carry(c1m, 2)
            shift_k = c1m[-1]
            sat_threshold2, sat_never2 = Signal(unsigned(62)), Signal()
            m.d.sync += [sat_threshold2.eq(Const(SAT_S, 21) << shift_k), sat_never2.eq(shift_k > SAT_MAX_K)]
            # E3a: s = (p >> k) mod 2^21 and sat = p >= (2^21 - 1) << k, i.e. (p >> k) >= 2^21 - 1, the values whose
            # rounding (s + 1) >> 1 passes U_MAX. The shift and the rounding add are two stages for fmax (issue #16).
            v3a, mk3a = Signal(), Signal(lanes)
            s3a = [Signal(unsigned(21), name=f"s3a_{k}") for k in range(lanes)]
            sat3a = Signal(lanes)
            m.d.sync += [v3a.eq(v2), mk3a.eq(mk2)]
            for k in range(lanes):
                m.d.sync += [s3a[k].eq((p2[k] >> c2[-1])[:21]),
                             sat3a[k].eq(~sat_never2 & (p2[k] >= sat_threshold2))]
            c3a = pipe_carry(c2, 3)
            # E3b: u = min(round(p / 2^t), 2^20 - 1) = U_MAX if sat else (s + 1) >> 1 (s <= 2^21 - 2 there).
            v3, mk3 = Signal(), Signal(lanes)
            u3 = [Signal(unsigned(20), name=f"u3_{k}") for k in range(lanes)]
            m.d.sync += [v3.eq(v3a), mk3.eq(mk3a)]
            for k in range(lanes):
                m.d.sync += u3[k].eq(Mux(sat3a[k], U_MAX, (s3a[k] + 1) >> 1))
            c3 = pipe_carry(c3a, 4)
            # E4: n = u >> 15, g = u & 0x7FFF, b = C1 + ((C2 * g) >> 15).
            v4, mk4 = Signal(), Signal(lanes)
            n4 = [Signal(unsigned(5), name=f"n4_{k}") for k in range(lanes)]
            g4 = [Signal(unsigned(15), name=f"g4_{k}") for k in range(lanes)]
            b4 = [Signal(signed(17), name=f"b4_{k}") for k in range(lanes)]
            m.d.sync += [v4.eq(v3), mk4.eq(mk3)]
            for k in range(lanes):
                g = u3[k][:EXP_FRAC_BITS]
                m.d.sync += [n4[k].eq(u3[k][EXP_FRAC_BITS:]), g4[k].eq(g),
                             b4[k].eq(EXP_C1 + ((Const(EXP_C2, 13) * g) >> EXP_FRAC_BITS))]
            c4 = pipe_carry(c3, 5)
        prod_gb = [multiply(m, mul_gb[k], g4[k], b4[k], en=self.en, name=f"mul_gb_{k}") for k in range(lanes)]
        beside_gb = delay_stages(m, self.en, [v4, mk4, *n4, *c4], name="mul_gb")
        v4m, mk4m, *rest = beside_gb[-1]
        n4m, c4m = rest[:lanes], rest[lanes:]
        with m.If(self.en):
            # E5: P = 2^15 + ((g * b) >> 15), floor shift of a signed product.
            v5, mk5 = Signal(), Signal(lanes)
            p5 = [Signal(unsigned(16), name=f"P5_{k}") for k in range(lanes)]
            n5 = [Signal(unsigned(5), name=f"n5_{k}") for k in range(lanes)]
            m.d.sync += [v5.eq(v4m), mk5.eq(mk4m)]
            for k in range(lanes):
                m.d.sync += [p5[k].eq((1 << EXP_FRAC_BITS) + (prod_gb[k] >> EXP_FRAC_BITS)), n5[k].eq(n4m[k])]
            c5 = pipe_carry(c4m, 6)
            # E6: e = (((P << 8) >> n) + 1) >> 1, 0 when masked.
            m.d.sync += [self.valid.eq(v5), self.tag.eq(c5[0])]
            for k in range(lanes):
                e = ((Cat(Const(0, 8), p5[k]) >> n5[k]) + 1) >> 1
                m.d.sync += self.e[k].eq(Mux(mk5[k], 0, e))
        m.d.comb += self.busy.eq(v0 | v1 | v2 | v3a | v3 | v4 | v5 | self.valid | stages_hold(beside_dm + beside_gb))
        return m
