"""Requantization int32 -> int8 / int16 with a per-channel Q31 multiplier and shift.

Exactly ``golden.requant.requantize`` for every element ``acc`` of channel ``c`` (its position in the
row, i.e. the last axis)::

    s   = 31 + shift[c]                     # 1 <= s <= 62, shift in [-30, 31]
    a   = acc + (bias[c] if bias_en else 0) # signed 33 bits: int32 + int32, no wrap (golden.requant_biased)
    p   = a * multiplier[c]                 # int33 x uint31 -> signed 64 bits
    r   = (p + 2**(s-1)) >> s               # one round-half-up step, arithmetic (floor) shift
    y   = clamp(r + zero_point, out range)  # int8 or int16 saturation

The hardware computes ``r`` as ``((p >> (s-1)) + 1) >> 1``, which equals the line above for all
integers (floor((floor(p / 2^(s-1)) + 1) / 2) == floor((p + 2^(s-1)) / 2^s)) and needs no
variable-position rounding constant.

Wide (``wide=True``, block-scaled NPUs, ``spec.block_scale``): with ``wide_en`` each lane's input is the 48-bit
``Cat(data, hi)`` (``hi`` the accumulator extension's 16 bits) instead of the sign-extended int32 ``data``; ``a`` is
then 49 bits and ``p`` one 49 x 31 product (80 bits), the same formula, so exactly
``gen.isa.isasim.requant_wide_exact`` (whose split ``hi * 2^24 + lo`` form equals this floor for every total shift).
With ``wide_en`` low the values, results and cycles are the int32 path's.

Per-row shift (``row_shift=True``, ``VEC_REQUANT.row_shift``, the per-token scale of the ``-pt`` schemes): with
``row_shift_en`` row r of the instruction uses ``s = 31 + shift[c] - k_r`` (``golden.models.intops.requant_wide(acc,
M, shift - k)``); the bytes k_r are written beforehand into the bias memory through the bias port (``bias_en`` is 0
then): the k bytes' word g as bias group g, so k_r lies in group r // (4 lanes), lane (r // 4) % lanes, byte r % 4.
The caller checks k_r <= 16 and s >= 1 for every channel before the rows (``rewind`` restarts the row count).

Pipeline: input beat + parameter memory read (1) -> bias add (2) -> multiply (3) -> round/shift (4) -> zero
point and saturation into the output register (5). The bias add has its own stage so the multiplier's input
stays a register (fmax). Full throughput: one beat (``lanes`` elements) per
cycle; ``o.ready`` low stalls every stage.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, VecBeat, accept_rows, check_lanes, check_max_row, \
    row_len_shape, saturate, row_errors, sticky_error, with_control

__all__ = ["Requant", "RequantParamWord", "SHIFT_MIN", "SHIFT_MAX", "MULTIPLIER_BITS"]

#: Allowed ``shift`` window (so that 1 <= 31 + shift <= 62); the Q31 multiplier is an unsigned 31-bit value (golden
#: range [2^30, 2^31-1]; any value works). Shared with golden.requant.
from npuforge.spec.vector_ops import MULTIPLIER_BITS, SHIFT_MAX, SHIFT_MIN

#: One per-channel parameter word: ``multiplier`` in bits [0, 31), ``shift`` (signed 7) in [31, 38).
RequantParamWord = data.StructLayout({"multiplier": unsigned(MULTIPLIER_BITS), "shift": signed(7)})


class Requant(wiring.Component):
    """Per-channel requantizer, ``lanes`` int32 accumulators in, ``lanes`` int8/int16 out per cycle.

    Parameters
    ----------
    lanes : int
        Elements per beat (power of two).
    max_row : int
        Channels (row length) the parameter memory holds; ``row_len`` may not exceed it.
    out_width : int
        Output lane width, 8, 16 or 32. With 16 (32), the run-time ``out_bits`` port selects int16 (16) or
        int8 (8) saturation (and int32, 32); narrower results are sign-extended into the lane.

    Members
    -------
    i : In(stream.Signature(VecBeat(32, lanes)))
        Accumulators, rows of ``row_len`` channels.
    o : Out(stream.Signature(VecBeat(out_width, lanes)))
    row_len : In(row_len_shape(max_row))
        Channels per row, 1 .. max_row.
    zero_point : In(signed(16))
        Output zero point, added after rounding and before saturation.
    out_bits : In(6)
        Saturation width, 8, 16 or 32 (at most ``out_width``); anything else sets BAD_PARAM and drops the
        row.
    param_we, param_addr, param_data : In(1), In(range(2**bit_length(max_row))), In(RequantParamWord)
        Write channel ``param_addr``'s multiplier and shift. An address >= max_row sets PARAM_ADDR, a
        shift outside [-30, 31] sets BAD_PARAM; either write is ignored.
    bias_we, bias_group, bias_data : In(1), In(range(max_row // lanes)), In(ArrayLayout(signed(32), lanes))
        Write the int32 biases of channels ``lanes * bias_group .. + lanes - 1`` (one per bank) in one cycle.
    bias_en : In(1)
        Add the stored biases to the accumulators (0: the plain requant).
    hi : In(ArrayLayout(signed(16), lanes)), wide_en : In(1)
        Only with ``wide``: each lane's high 16 bits (with the beat on ``i``), and use them (48-bit inputs).
    row_shift_en : In(1), rewind : In(1)
        Only with ``row_shift``: subtract the row's k_r (from the bias memory, see above) from every total shift;
        ``rewind`` (a pulse while idle) makes the next row row 0.
    error, error_code : Out(1), Out(4)
        Sticky (see :class:`~rtl.vector.common.ErrorCode`); ``clear`` resets them.
    busy : Out(1)
        An accepted beat is still in the pipeline (not yet delivered on ``o``).
    """

    LATENCY = 5  # cycles from an accepted input beat to its output beat (no stalls)

    def __init__(self, *, lanes: int, max_row: int = 4096, out_width: int = 8, wide: bool = False,
                 row_shift: bool = False):
        self.wide, self.row_shift = wide, row_shift
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if out_width not in (8, 16, 32):
            raise ValueError(f"out_width must be 8, 16 or 32, got {out_width!r}")
        self.out_width = out_width
        super().__init__(with_control({
            "i": In(stream.Signature(VecBeat(32, lanes))),
            "o": Out(stream.Signature(VecBeat(out_width, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "zero_point": In(signed(16)),
            "out_bits": In(6),
            "param_we": In(1),
            "param_addr": In(unsigned(max_row.bit_length())),
            "param_data": In(RequantParamWord),
            "bias_we": In(1),
            "bias_group": In(range(max(2, -(-max_row // lanes)))),
            "bias_data": In(data.ArrayLayout(signed(32), lanes)),
            "bias_en": In(1),
            **({"hi": In(data.ArrayLayout(signed(16), lanes)), "wide_en": In(1)} if wide else {}),
            **({"row_shift_en": In(1), "rewind": In(1)} if row_shift else {}),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        depth = -(-self.max_row // lanes)
        bank_bits = (lanes - 1).bit_length()

        advance = Signal()  # every pipeline stage moves one step
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        tracker, fire = accept_rows(m, self, ready=advance)
        bad_mode = Signal()
        widths = [w for w in (8, 16, 32) if w <= self.out_width]
        m.d.comb += bad_mode.eq(Cat(*[self.out_bits != w for w in widths]).all())

        # Parameter memory: channel c lives in bank c % lanes, word c // lanes, so one beat reads
        # the parameters of its `lanes` channels in parallel.
        we_ok = Signal()
        addr_bad = Signal()
        shift_bad = Signal()
        shift_w = self.param_data.shift
        m.d.comb += [
            addr_bad.eq(self.param_addr >= self.max_row),
            shift_bad.eq((shift_w < SHIFT_MIN) | (shift_w > SHIFT_MAX)),
            we_ok.eq(self.param_we & ~addr_bad & ~shift_bad),
        ]
        word_params = []
        word_bias = []
        bias_rd_addr = tracker.base >> bank_bits
        if self.row_shift:
            # The row being accepted, and where its k_r byte lies in the bias memory (see the module docstring).
            k_row = Signal(12)
            with m.If(fire & self.i.payload.last):
                m.d.sync += k_row.eq(k_row + 1)
            with m.If(self.rewind):
                m.d.sync += k_row.eq(0)
            bias_rd_addr = Mux(self.row_shift_en, k_row >> (bank_bits + 2), bias_rd_addr)
        for k in range(lanes):
            mem = Memory(shape=RequantParamWord, depth=depth, init=[])
            m.submodules[f"params{k}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [
                wp.addr.eq(self.param_addr >> bank_bits),
                wp.data.eq(self.param_data),
                wp.en.eq(we_ok & (self.param_addr[:bank_bits] == k) if bank_bits else we_ok),
                rp.addr.eq(tracker.base >> bank_bits),
                rp.en.eq(advance),
            ]
            word_params.append(rp.data)
            bmem = Memory(shape=signed(32), depth=depth, init=[])
            m.submodules[f"bias{k}"] = bmem
            bwp = bmem.write_port()
            brp = bmem.read_port()
            m.d.comb += [bwp.addr.eq(self.bias_group), bwp.data.eq(self.bias_data[k]), bwp.en.eq(self.bias_we),
                         brp.addr.eq(bias_rd_addr), brp.en.eq(advance)]
            word_bias.append(brp.data)

        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            *row_errors(fire, tracker),
            (fire & bad_mode, ErrorCode.BAD_PARAM),
            (self.param_we & addr_bad, ErrorCode.PARAM_ADDR),
            (self.param_we & shift_bad, ErrorCode.BAD_PARAM),
        ])

        # Stage 1: accepted beat (parameters arrive from the memories in this stage).
        v1, last1 = Signal(), Signal()
        AW = 48 if self.wide else 32      # input lane bits (wide: the int32 word and the extension's 16 bits)
        acc1 = [Signal(signed(AW), name=f"acc1_{k}") for k in range(lanes)]
        keep1 = Signal(lanes)
        with m.If(advance):
            m.d.sync += [v1.eq(fire & ~tracker.drop & ~bad_mode), last1.eq(self.i.payload.last),
                         keep1.eq(tracker.lane_valid)]
            if self.wide:
                m.d.sync += [acc1[k].eq(Mux(self.wide_en,
                                            Cat(self.i.payload.data[k], self.hi[k]).as_signed(),
                                            self.i.payload.data[k])) for k in range(lanes)]
            else:
                m.d.sync += [acc1[k].eq(self.i.payload.data[k]) for k in range(lanes)]
        row_k = Const(0, 5)
        if self.row_shift:
            # Stage 1: the byte (lane, byte of the lane) of the bias memory word that holds the row's k_r.
            k_sel1 = Signal(bank_bits + 2)
            with m.If(advance):
                m.d.sync += k_sel1.eq(k_row[:bank_bits + 2])
            k_bytes = Cat(*word_bias)
            row_k = Mux(self.row_shift_en, k_bytes.word_select(k_sel1, 8)[:5], 0)   # k_r <= 16 (checked)

        # Stage 2: bias add (signed 33 bits), the channel's multiplier and shift registered beside it.
        v2b, last2b, keep2b = Signal(), Signal(), Signal(lanes)
        sum2 = [Signal(signed(AW + 1), name=f"sum2_{k}") for k in range(lanes)]
        mult2 = [Signal(MULTIPLIER_BITS, name=f"mult2_{k}") for k in range(lanes)]
        shp2 = [Signal(range(0, 62), name=f"shp2_{k}") for k in range(lanes)]  # s - 1 = 30 + shift
        with m.If(advance):
            m.d.sync += [v2b.eq(v1), last2b.eq(last1), keep2b.eq(keep1)]
            for k in range(lanes):
                m.d.sync += [sum2[k].eq(acc1[k] + Mux(self.bias_en, word_bias[k], 0)),
                             mult2[k].eq(word_params[k].multiplier), shp2[k].eq(word_params[k].shift + 30 - row_k)]

        # Stage 3: product sum * multiplier (signed 33 x unsigned 31 -> signed 64; wide: 49 x 31 -> 80).
        PW = 80 if self.wide else 64
        v2, last2, keep2 = Signal(), Signal(), Signal(lanes)
        prod2 = [Signal(signed(PW), name=f"prod2_{k}") for k in range(lanes)]
        sh2 = [Signal(range(0, 62), name=f"sh2_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v2.eq(v2b), last2.eq(last2b), keep2.eq(keep2b)]
            for k in range(lanes):
                m.d.sync += [prod2[k].eq(sum2[k] * mult2[k]), sh2[k].eq(shp2[k])]

        # Stage 4: single round-half-up, r = ((p >> (s-1)) + 1) >> 1.
        v3, last3, keep3 = Signal(), Signal(), Signal(lanes)
        rnd3 = [Signal(signed(PW), name=f"rnd3_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v3.eq(v2), last3.eq(last2), keep3.eq(keep2)]
            for k in range(lanes):
                m.d.sync += rnd3[k].eq(((prod2[k] >> sh2[k]) + 1) >> 1)

        m.d.comb += self.busy.eq(v1 | v2b | v2 | v3 | self.o.valid)

        # Stage 5 (output register): zero point, saturation, zero the lanes past the row end.
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(v3), self.o.payload.last.eq(last3)]
            for k in range(lanes):
                biased = rnd3[k] + self.zero_point
                y8 = saturate(biased, 8)
                if self.out_width > 8:
                    y = Signal(signed(self.out_width), name=f"y_{k}")
                    m.d.comb += y.eq(y8)
                    with m.If(self.out_bits == 16):
                        m.d.comb += y.eq(saturate(biased, 16))
                    if self.out_width == 32:
                        with m.If(self.out_bits == 32):
                            m.d.comb += y.eq(saturate(biased, 32))
                else:
                    y = y8
                m.d.sync += self.o.payload.data[k].eq(y & keep3[k].replicate(self.out_width))
        return m
