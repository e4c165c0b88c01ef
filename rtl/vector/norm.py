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

RMSNorm built for int32 rows and int16 results also runs the token scale only (``vec.rmsnorm`` flags bit 2,
``golden.models.intops.token_shift(x, 16)``) when its ``token`` port is set with a ``wide`` row: the row's k is
found as above, the statistics pass, square root and division are skipped, and the output stage passes the
pre-shifted int16 values through (the row constants A = 1, K = 0, h = 0, T = 1 and G = 2 make every stage the
identity). ``token_k`` carries the row's k beside each of its output beats. The parameter memory and the header
ports are not used (their checks are skipped for such a row).

Structure: rows enter into one half of a ping-pong row buffer (``amaranth.lib.memory.Memory``) while
:class:`~npuforge.rtl.vector.norm_stats.NormStatistics` accumulates s1/s2; at the row end
:class:`~npuforge.rtl.vector.norm_rsqrt.NormRowConstants` (sequential, shared by the whole row) computes V_e, k, the
exact isqrt and reciprocal and the row constants A, K, h; then the row is read back
(:class:`~npuforge.rtl.vector.norm_output.NormRowReader`) through
:class:`~npuforge.rtl.vector.norm_output.NormNormalise` and :class:`~npuforge.rtl.vector.norm_output.NormAffine`
(a 5-stage pipeline) while the next row enters the other half. This module holds the memories, the input
handshake, the error checks and the wiring. Sustained rate per row about
``row_len / (ceil(row_len / lanes) + row_cycles / 2)`` elements per cycle in a stream of rows.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, VecBeat, check_lanes, check_max_row, \
    default_steps_per_cycle, row_len_shape, row_errors, sticky_error, store_rows, with_control
from npuforge.rtl.vector.norm_output import NormAffine, NormNormalise, NormRowReader
from npuforge.rtl.vector.norm_rsqrt import NormRowConstants, row_cycles
from npuforge.rtl.vector.norm_stats import NormStatistics, wide_pre_shift

__all__ = ["LayerNorm", "RMSNorm", "NORM_MAX_D", "GAMMA_SHIFT_MIN", "GAMMA_SHIFT_MAX", "EPS_TERM_BITS",
           "VAR_FRAC_BITS_MAX", "LayerNormParamWord", "RMSNormParamWord"]

# Longest row, the run-time windows of gamma_shift / eps_term / var_frac_bits (even), the fraction bits: one
# definition shared with golden.norms.
from npuforge.spec.vector_ops import (EPS_TERM_BITS, GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, NORM_EPS_SHIFTS, NORM_MAX_D,
                                      NORM_WIDE_IN_BITS, NORM_WIDE_ROW_BITS, VAR_FRAC_BITS_MAX)


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
        self.in_width = in_width
        self.out_width = out_width
        self.wide_rows = in_width == NORM_WIDE_ROW_BITS
        #: width of the values the statistics see: int16 after the pre-shift of an int32 row
        self.stat_width = NORM_WIDE_IN_BITS if self.wide_rows else in_width
        self.steps_per_cycle = default_steps_per_cycle(steps_per_cycle, lanes=lanes)
        self.depth = -(-max_row // lanes)  # beats per row buffer half
        #: the token scale only (token_shift into int16): RMSNorm of int32 rows with int16 results
        self.token_scale = self.wide_rows and out_width == NORM_WIDE_IN_BITS and not self.centred
        wide_ports = {"wide": In(1), "eps_we": In(1), "eps_addr": In(range(NORM_EPS_SHIFTS)),
                      "eps_data": In(unsigned(EPS_TERM_BITS))} if self.wide_rows else {}
        if self.token_scale:
            wide_ports.update({"token": In(1), "token_k": Out(range(NORM_EPS_SHIFTS))})
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
        return row_cycles(self.steps_per_cycle)

    def elaborate(self, platform):
        m = Module()
        lanes, depth, b = self.lanes, self.depth, self.in_width
        lane_bits = (lanes - 1).bit_length()
        addr_bits = max(1, (depth - 1).bit_length())
        wide = self.wide_rows

        def buffer_addr(bank, beat):
            # Half `bank` of the row buffer starts at word bank * depth (depth need not be a power of 2).
            return Mux(bank, beat[:addr_bits] + depth, beat[:addr_bits])

        # ---------------------------------------------------------------- memories
        # Per-lane gamma/beta: channel c in memory c % lanes, word c // lanes.
        addr_bad = Signal()
        m.d.comb += addr_bad.eq(self.param_addr >= self.max_row)
        param_ports = []
        for k in range(lanes):
            mem = Memory(shape=self.param_layout(self.out_width), depth=depth, init=[])
            m.submodules[f"params{k}"] = mem
            wp = mem.write_port()
            param_ports.append(mem.read_port())
            sel = (self.param_addr[:lane_bits] == k) if lane_bits else Const(1)
            m.d.comb += [
                wp.addr.eq(self.param_addr >> lane_bits),
                wp.data.eq(self.param_data),
                wp.en.eq(self.param_we & ~addr_bad & sel),
            ]
        # The ping-pong row buffer: a row enters one half while the other is read back.
        row_mem = Memory(shape=unsigned(lanes * b), depth=2 * depth, init=[])
        m.submodules.row_mem = row_mem
        row_wp = row_mem.write_port()
        row_rp = row_mem.read_port()

        # ---------------------------------------------------------------- input side
        shift_bad = Signal()
        token = self.token if self.token_scale else Const(0, 1)
        # The token scale only reads no header: its gamma_shift / var_frac_bits are not checked.
        m.d.comb += shift_bad.eq(((self.gamma_shift < GAMMA_SHIFT_MIN) | (self.gamma_shift > GAMMA_SHIFT_MAX)
                                  | self.var_frac_bits[0] | (self.var_frac_bits > VAR_FRAC_BITS_MAX)) & ~token)
        rows = store_rows(m, self, write_port=row_wp, buffer_addr=buffer_addr, param_bad=shift_bad)
        tracker, fire, bank_full = rows.tracker, rows.fire, rows.bank_full

        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            *row_errors(fire, tracker),
            (fire & shift_bad, ErrorCode.BAD_PARAM),
            (self.param_we & addr_bad, ErrorCode.PARAM_ADDR),
        ])

        # ---------------------------------------------------------------- statistics, row constants
        m.submodules.stats = stats = NormStatistics(lanes=lanes, max_row=self.max_row, in_width=b,
                                                    stat_width=self.stat_width, centred=self.centred, track_max=wide)
        m.d.comb += [
            stats.beat.eq(self.i.payload.data),
            stats.lane_valid.eq(tracker.lane_valid),
            stats.keep.eq(rows.keep),
            stats.push.eq(rows.push),
            # A dropped row (error) still restarts the sums at its last beat.
            stats.restart.eq(rows.row_end & ~rows.push),
            stats.params.len.eq(self.row_len),
            stats.params.eps.eq(self.eps_term),
            stats.params.shift.eq(self.gamma_shift),
            stats.params.frac.eq(self.var_frac_bits),
            stats.params.bank.eq(rows.wr_bank),
            stats.params.wide.eq(self.wide if wide else 0),
            stats.params.out8.eq(self.out8 if self.out_width == 16 else 0),
            stats.params.token.eq(token),
        ]
        with m.If(stats.row_done):
            m.d.sync += bank_full.bit_select(stats.row_done_bank, 1).eq(1)
        m.submodules.row_constants = row_cst = NormRowConstants(
            lanes=lanes, max_row=self.max_row, in_width=b, stat_width=self.stat_width, centred=self.centred,
            wide_rows=wide, steps_per_cycle=self.steps_per_cycle)
        wiring.connect(m, stats.o, row_cst.i)
        if wide:
            stat_rp = row_mem.read_port()   # the int32 rows' statistics pass
            m.d.comb += [
                row_cst.eps_we.eq(self.eps_we), row_cst.eps_addr.eq(self.eps_addr),
                row_cst.eps_data.eq(self.eps_data),
                stat_rp.addr.eq(buffer_addr(row_cst.stat_bank, row_cst.stat_beat)), stat_rp.en.eq(1),
                row_cst.stat_data.eq(stat_rp.data),
            ]

        # ---------------------------------------------------------------- output side
        adv = Signal()  # every output pipeline stage moves one step
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        m.submodules.reader = reader = NormRowReader(lanes=lanes, max_row=self.max_row)
        wiring.connect(m, row_cst.o, reader.i)
        m.d.comb += [
            reader.en.eq(adv),
            row_rp.addr.eq(buffer_addr(reader.read_bank, reader.read_beat)),
            row_rp.en.eq(adv),
        ]
        for rp in param_ports:
            m.d.comb += [rp.addr.eq(reader.read_beat), rp.en.eq(adv)]
        with m.If(reader.release):
            m.d.sync += bank_full.bit_select(reader.read_bank, 1).eq(0)

        # O1 -> O3: the row data (an int32 row pre-shifted as in its statistics pass) normalised; gamma/beta ride along.
        g_shape, b_shape = signed(self.out_width + 8), signed(self.out_width + 40)
        tag = data.StructLayout({"last": 1, "keep": lanes, "t1": range(32), "out8": 1, "pre": range(NORM_EPS_SHIFTS),
                                 "gamma": data.ArrayLayout(g_shape, lanes), "beta": data.ArrayLayout(b_shape, lanes)})
        m.submodules.normalise = norm = NormNormalise(lanes=lanes, x_width=self.stat_width,
                                                      a_shape=reader.cst.a.shape(), tag_shape=tag)
        m.d.comb += [
            norm.en.eq(adv), norm.valid_in.eq(reader.valid),
            norm.a.eq(reader.cst.a), norm.k.eq(reader.cst.k), norm.h.eq(reader.cst.h),
            norm.tag_in.last.eq(reader.last), norm.tag_in.keep.eq(reader.keep),
            norm.tag_in.t1.eq(reader.cst.t1), norm.tag_in.out8.eq(reader.cst.out8),
            norm.tag_in.pre.eq(reader.cst.pre),
        ]
        for k, rp in enumerate(param_ports):
            x = row_rp.data[k * b:(k + 1) * b].as_signed()
            # The token scale only: G = 2 with A = 1, K = 0, h = 0, T = 1 passes the pre-shifted x through.
            m.d.comb += [norm.x[k].eq(wide_pre_shift(x, reader.cst.pre) if wide else x),
                         norm.tag_in.gamma[k].eq(Mux(reader.cst.token, 2, rp.data.gamma) if self.token_scale
                                                 else rp.data.gamma)]
            if self.centred:
                m.d.comb += norm.tag_in.beta[k].eq(rp.data.beta)

        # O4 -> O5: gamma/beta, the output rounding and saturation.
        m.submodules.affine = affine = NormAffine(lanes=lanes, out_width=self.out_width,
                                                  side_width=len(self.token_k) if self.token_scale else 0)
        if self.token_scale:
            m.d.comb += [affine.side_in.eq(norm.tag.pre), self.token_k.eq(affine.side)]
        m.d.comb += [
            affine.en.eq(adv), affine.valid_in.eq(norm.valid), affine.y.eq(norm.y),
            affine.last_in.eq(norm.tag.last), affine.keep_in.eq(norm.tag.keep), affine.t1.eq(norm.tag.t1),
            affine.out8.eq(norm.tag.out8), affine.gamma.eq(norm.tag.gamma), affine.beta.eq(norm.tag.beta),
            self.o.valid.eq(affine.valid), self.o.payload.last.eq(affine.last), self.o.payload.data.eq(affine.data),
        ]

        m.d.comb += self.busy.eq(~tracker.first | stats.busy | row_cst.busy | reader.busy | norm.busy | affine.busy)
        return m


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
