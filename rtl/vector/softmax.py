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
read ports): the input engine stores the row while :class:`~npuforge.rtl.vector.softmax_sum.SoftmaxRowMax` finds m;
the sum engine :class:`~npuforge.rtl.vector.softmax_sum.SoftmaxRowSum` reads it back through an exp pipeline
(:class:`~npuforge.rtl.vector.softmax_exp.SoftmaxExp`), sums S and divides once; the output engine
:class:`~npuforge.rtl.vector.softmax_output.SoftmaxNormalise` reads it again, recomputes e_j (cheaper than storing it)
and normalises, while the next rows enter and get summed. This module holds the row buffer, the input handshake, the
error checks and the wiring.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Mux, Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, VecBeat, check_lanes, check_max_row, \
    default_steps_per_cycle, row_len_shape, row_errors, sticky_error, store_rows, with_control
from npuforge.rtl.vector.mulpool import forward_multipliers, multiplier_members
from npuforge.rtl.vector.softmax_exp import EXP_MULTIPLIERS
from npuforge.rtl.vector.softmax_output import SoftmaxNormalise
from npuforge.rtl.vector.softmax_sum import SoftmaxRowMax, SoftmaxRowSum

__all__ = ["Softmax", "SOFTMAX_MAX_LEN", "EXP_C1", "EXP_C2", "EXP_SHIFT_MIN", "EXP_SHIFT_MAX"]

# The golden kernel's longest row, exp polynomial and ``exp_shift`` window (t = 31 + exp_shift in [1, 62]): one
# definition shared with golden.softmax.
from npuforge.spec.vector_ops import EXP_C1, EXP_C2, EXP_SHIFT_MAX, EXP_SHIFT_MIN, SOFTMAX_MAX_LEN


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
    mul
        With ``shared_multipliers`` (inside the vector unit): the multiplies of the sum engine's exp (``sum_dm``,
        ``sum_gb``) and of the output engine (``out_dm``, ``out_gb``, ``out_erc``) come from the unit's shared
        multipliers (:mod:`rtl.vector.mulpool`); standalone the operator builds them.

    All scalar ports are sampled with the row's beats and travel with the row.
    """

    def __init__(self, *, lanes: int, max_row: int = 4096, in_width: int = 16, steps_per_cycle: int | None = None,
                 shared_multipliers: bool = False):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if max_row > SOFTMAX_MAX_LEN:
            raise ValueError(f"max_row must be <= {SOFTMAX_MAX_LEN} (golden.softmax.SOFTMAX_MAX_LEN), got {max_row!r}")
        if in_width not in (8, 16, 32):
            raise ValueError(f"in_width must be 8, 16 or 32 (golden input_bits), got {in_width!r}")
        self.in_width = in_width
        self.out_width = 16
        self.steps_per_cycle = default_steps_per_cycle(steps_per_cycle, lanes=lanes)
        self.depth = -(-max_row // lanes)
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = (tuple(s.renamed("sum_" + s.name) for s in EXP_MULTIPLIERS)
                            + tuple(s.renamed("out_" + s.name) for s in SoftmaxNormalise.MULTIPLIERS))
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
            **multiplier_members(self),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes, depth, b = self.lanes, self.depth, self.in_width
        addr_bits = max(1, (depth - 1).bit_length())

        def buffer_addr(bank, beat):
            # Half `bank` of the row buffer starts at word bank * depth (depth need not be a power of 2).
            return Mux(bank, beat[:addr_bits] + depth, beat[:addr_bits])

        # ---------------------------------------------------------------- input engine: store the row
        # The read ports' registers are written out below (read_word) and Yosys folds them into the block RAM; the
        # engines never use a word read on the edge it is written (a half is written only while it is free, and a
        # read of a free half is a beat no engine marks valid), so ``no_rw_check`` lets that collision be undefined:
        # without it Yosys keeps the read-old-data behaviour with a bypass register and a LUT multiplexer behind
        # each DP16KD output, and the exp's E0 register could not take the RAM's output directly (issue #16).
        m.submodules.row_mem = row_mem = Memory(shape=unsigned(lanes * b), depth=2 * depth, init=[],
                                                attrs={"no_rw_check": 1})
        row_wp = row_mem.write_port()
        sum_rp = row_mem.read_port(domain="comb")
        out_rp = row_mem.read_port(domain="comb")

        def read_word(port, en, name):
            # A synchronous read (the word one enabled cycle after its address), register outside the port.
            word = Signal(port.data.shape(), name=name, reset_less=True)
            with m.If(en):
                m.d.sync += word.eq(port.data)
            return word

        shift_bad = Signal()
        # An exp shift outside t in [1, 62], or a padding mask that leaves no column.
        m.d.comb += shift_bad.eq((self.exp_shift < EXP_SHIFT_MIN) | (self.exp_shift > EXP_SHIFT_MAX)
                                 | (self.pad & (self.valid_len == 0)))
        # The accepted beat reaches the block RAMs one cycle later, through a register (issue #16): the input
        # handshake (the unit's steering, the row tracker's framing checks) and the wide spread to every DP16KD's
        # write enable and address were the vector unit's critical path once the reads were registered. Nothing
        # reads a word within two cycles of its write (the sum engine starts two cycles after the row's record).
        row_wr = SimpleNamespace(addr=Signal.like(row_wp.addr, name="row_wr_addr"),
                                 data=Signal.like(row_wp.data, name="row_wr_data"),
                                 en=Signal.like(row_wp.en, name="row_wr_en"))
        m.d.sync += [row_wp.addr.eq(row_wr.addr), row_wp.data.eq(row_wr.data), row_wp.en.eq(row_wr.en)]
        rows = store_rows(m, self, write_port=row_wr, buffer_addr=buffer_addr, param_bad=shift_bad)
        tracker, fire, bank_full = rows.tracker, rows.fire, rows.bank_full

        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            *row_errors(fire, tracker),
            (fire & shift_bad, ErrorCode.BAD_PARAM),
        ])

        m.submodules.row_max = row_max = SoftmaxRowMax(lanes=lanes, max_row=self.max_row, in_width=b)
        m.d.comb += [
            row_max.beat.eq(self.i.payload.data), row_max.base.eq(tracker.base),
            row_max.lane_valid.eq(tracker.lane_valid), row_max.keep.eq(rows.keep), row_max.push.eq(rows.push),
            row_max.restart.eq(rows.row_end & ~rows.push),
            row_max.params.len.eq(self.row_len), row_max.params.mult.eq(self.exp_multiplier),
            row_max.params.shift.eq(self.exp_shift), row_max.params.causal.eq(self.causal),
            row_max.params.qpos.eq(self.query_pos), row_max.params.pad.eq(self.pad),
            row_max.params.valid_len.eq(self.valid_len), row_max.params.q15.eq(self.q15),
            row_max.params.bank.eq(rows.wr_bank),
        ]
        with m.If(row_max.row_done):
            m.d.sync += bank_full.bit_select(row_max.row_done_bank, 1).eq(1)

        # ---------------------------------------------------------------- sum engine: S, then Rcp
        m.submodules.row_sum = row_sum = SoftmaxRowSum(lanes=lanes, max_row=self.max_row, in_width=b,
                                                       steps_per_cycle=self.steps_per_cycle,
                                                       shared_multipliers=self.shared_multipliers)
        forward_multipliers(m, self, row_sum, prefix="sum_")
        wiring.connect(m, row_max.o, row_sum.i)
        m.d.comb += [
            sum_rp.addr.eq(buffer_addr(row_sum.read_bank, row_sum.read_beat)),
            row_sum.read_data.eq(read_word(sum_rp, 1, "sum_read_data")),
        ]

        # ---------------------------------------------------------------- output engine: normalise
        m.submodules.normalise = norm = SoftmaxNormalise(lanes=lanes, max_row=self.max_row, in_width=b,
                                                         shared_multipliers=self.shared_multipliers)
        forward_multipliers(m, self, norm, prefix="out_")
        wiring.connect(m, row_sum.o, norm.i)
        wiring.connect(m, norm.o, wiring.flipped(self.o))
        m.d.comb += [
            out_rp.addr.eq(buffer_addr(norm.read_bank, norm.read_beat)),
            norm.read_data.eq(read_word(out_rp, norm.read_en, "out_read_data")),
        ]
        with m.If(norm.release):
            m.d.sync += bank_full.bit_select(norm.release_bank, 1).eq(0)

        m.d.comb += self.busy.eq(~tracker.first | row_max.busy | row_sum.busy | norm.busy)
        return m
