"""RoPE rotation (Hugging Face Llama rotate-half) with a cos/sin table written at run time.

Exactly ``golden.elementwise.rope`` for one head vector x of ``head_dim = row_len`` elements at
table row ``position``, with h = head_dim / 2, c = cos[position, i], s = sin[position, i] (int16,
Q1.frac_bits)::

    out[i]     = clamp((x[i] * c - x[i+h] * s + 2^(F-1)) >> F)       i < h
    out[i + h] = clamp((x[i+h] * c + x[i] * s + 2^(F-1)) >> F)

products in_width x 16 -> signed in_width + 16 bits, sums one bit wider, one round-half-up step
(``((v >> (F-1)) + 1) >> 1``), saturation to int8 / int16 (``out_bits``).

Dataflow: the first half of a row is written into a buffer (no output). Each beat of the second half
reads its partner beat and the cos/sin entries, and yields one beat of ``out[:h]`` (sent at once) and
one of ``out[h:]`` (queued in a FIFO, sent after the first half). The next row's first half is
buffered while that FIFO drains, so rows stream at close to ``lanes`` elements per cycle.
``row_len`` must be a multiple of ``2 * lanes`` (each half a whole number of beats), else ROW_LEN.

Structure: this module holds the input handshake, the checks, the first-half buffer, the table and stage 1;
:class:`~npuforge.rtl.vector.rope_datapath.RopeRotator` rotates each beat pair (stages 2, 3) and
:class:`~npuforge.rtl.vector.rope_datapath.RopeReorder` puts the two output halves in order (stage 4).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat, check_lanes, check_max_row, \
    row_len_shape, sticky_error, with_control
from npuforge.rtl.vector.mulpool import forward_multipliers, multiplier_members
from npuforge.rtl.vector.rope_datapath import RopeReorder, RopeRotator, rotator_multipliers

__all__ = ["Rope", "RopeTableWord", "FRAC_BITS_MAX"]

#: Largest ``frac_bits`` (shared with golden.elementwise); 0 is refused too.
from npuforge.spec.vector_ops import ROPE_FRAC_BITS_MAX as FRAC_BITS_MAX

#: One table entry: ``cos`` in bits [0, 16), ``sin`` in bits [16, 32), both signed Q1.frac_bits.
RopeTableWord = data.StructLayout({"cos": signed(16), "sin": signed(16)})


class Rope(wiring.Component):
    """Rotary position embedding of int8/int16 head vectors, ``lanes`` elements per beat.

    Parameters
    ----------
    lanes : int
    max_row : int
        Largest head_dim; a multiple of ``2 * lanes``.
    max_positions : int
        Table rows resident at once (positions 0 .. max_positions - 1 of the table written).
    in_width, out_width : int
        8 or 16.

    Members
    -------
    i, o : In/Out(stream.Signature(VecBeat(in_width / out_width, lanes)))
        One row = one head vector.
    row_len : In(row_len_shape(max_row))
        head_dim, a multiple of ``2 * lanes`` in [2 * lanes, max_row]; else ROW_LEN.
    position : In(unsigned)
        Table row of this head vector; >= max_positions sets BAD_PARAM.
    frac_bits : In(4)
        F, 1..14; else BAD_PARAM.
    out_bits : In(5)
        8 or 16 (16 needs ``out_width == 16``).
    param_we, param_addr, param_data : In(1), In(unsigned), In(RopeTableWord)
        Entry (p, i) at ``param_addr = p * (max_row // 2) + i``; an address past the table sets PARAM_ADDR.
    clear, error, error_code, busy : see :mod:`rtl.vector.common`; ``busy`` also covers a
        half-received row.
    mul : with ``shared_multipliers``, the rotation's four products (:func:`rotator_multipliers`) come from the
        vector unit's shared multipliers (:mod:`rtl.vector.mulpool`).
    """

    def __init__(self, *, lanes: int, max_row: int = 256, max_positions: int = 1, in_width: int = 8,
                 out_width: int = 8, shared_multipliers: bool = False):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if max_row % (2 * lanes):
            raise ValueError(f"max_row must be a multiple of 2 * lanes = {2 * lanes} for RoPE, got {max_row}")
        if not isinstance(max_positions, int) or not 1 <= max_positions <= 1 << 16:
            raise ValueError(f"max_positions must be an integer in [1, 65536], got {max_positions!r}")
        for name, w in (("in_width", in_width), ("out_width", out_width)):
            if w not in (8, 16):
                raise ValueError(f"{name} must be 8 or 16, got {w!r}")
        self.max_positions = max_positions
        self.max_half = max_row // 2
        self.in_width, self.out_width = in_width, out_width
        self.table_entries = max_positions * self.max_half
        self.shared_multipliers = bool(shared_multipliers)
        self.multipliers = rotator_multipliers(in_width)
        super().__init__(with_control({
            "i": In(stream.Signature(VecBeat(in_width, lanes))),
            "o": Out(stream.Signature(VecBeat(out_width, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "position": In(unsigned(max(1, max_positions.bit_length()))),
            "frac_bits": In(4),
            "out_bits": In(5),
            "param_we": In(1),
            "param_addr": In(unsigned(self.table_entries.bit_length())),
            "param_data": In(RopeTableWord),
            **multiplier_members(self),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        lane_bits = (lanes - 1).bit_length()
        half_depth = self.max_half // lanes           # beats in the largest half row
        words_per_position = self.max_half // lanes   # table words per position and bank

        m.submodules.tracker = tracker = RowTracker(lanes=lanes, max_row=self.max_row)
        m.submodules.rotator = rotator = RopeRotator(lanes=lanes, in_width=self.in_width,
                                                     shared_multipliers=self.shared_multipliers)
        forward_multipliers(m, self, rotator)
        m.submodules.reorder = reorder = RopeReorder(lanes=lanes, in_width=self.in_width, out_width=self.out_width,
                                                     max_half_beats=half_depth)
        # Stage 1 advances when the rotator takes its item or it holds none: stages 1-3 keep filling while the
        # output waits for the queued second half to drain, so the next row starts without a pipeline bubble.
        v1 = Signal()
        advance = Signal()
        m.d.comb += advance.eq(rotator.accept | ~v1)

        # Row geometry and parameter checks (parameters are stable while a row is in flight).
        half_beats = Signal(range(half_depth + 1))
        beat = Signal(range(2 * half_depth + 2))
        misaligned, bad_param, rotate = Signal(), Signal(), Signal()
        m.d.comb += [
            half_beats.eq(self.row_len >> (lane_bits + 1)),
            beat.eq(tracker.base >> lane_bits),
            misaligned.eq(self.row_len[:lane_bits + 1] != 0),
            bad_param.eq((self.frac_bits == 0) | (self.frac_bits > FRAC_BITS_MAX) | (self.position >= self.max_positions)
                         | ((self.out_bits != 8) & ((self.out_bits != 16) | (self.out_width == 8)))),
            rotate.eq(beat >= half_beats),
        ]
        drop = Signal()
        m.d.comb += drop.eq(tracker.drop | misaligned | bad_param)

        rotate_started = Signal()  # a second-half beat of this row entered the pipeline
        fire, keep_rotate, abort = Signal(), Signal(), Signal()
        with m.If((~rotate & ~drop) | (drop & ~rotate_started)):
            m.d.comb += self.i.ready.eq(1)      # first half (buffer write) or a dropped beat
        with m.Else():
            m.d.comb += self.i.ready.eq(advance)
        m.d.comb += [
            fire.eq(self.i.valid & self.i.ready),
            tracker.row_len.eq(self.row_len),
            tracker.fire.eq(fire),
            tracker.last.eq(self.i.payload.last),
            keep_rotate.eq(fire & rotate & ~drop),
            # A row that breaks after its rotation started: an end token without data closes the output.
            abort.eq(fire & drop & rotate_started),
        ]
        with m.If(fire):
            with m.If(self.i.payload.last | abort):
                m.d.sync += rotate_started.eq(0)
            with m.Elif(keep_rotate):
                m.d.sync += rotate_started.eq(1)

        addr_bad = Signal()
        m.d.comb += addr_bad.eq(self.param_addr >= self.table_entries)
        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            (fire & (tracker.bad_len | misaligned), ErrorCode.ROW_LEN),
            (fire & tracker.framing, ErrorCode.ROW_FRAMING),
            (fire & bad_param, ErrorCode.BAD_PARAM),
            (self.param_we & addr_bad, ErrorCode.PARAM_ADDR),
        ])

        # First-half buffer: beat j of x[:h] at word j.
        first_half = Memory(shape=data.ArrayLayout(signed(self.in_width), lanes), depth=half_depth, init=[])
        m.submodules.first_half = first_half
        fw = first_half.write_port()
        fr = first_half.read_port()
        partner = Signal.like(beat)
        m.d.comb += [
            partner.eq(beat - half_beats),
            fw.addr.eq(beat), fw.data.eq(self.i.payload.data), fw.en.eq(fire & ~rotate & ~drop),
            fr.addr.eq(partner), fr.en.eq(advance),
        ]

        # cos/sin table: entry (p, i) in bank i % lanes at word p * (max_half / lanes) + i // lanes.
        for k in range(lanes):
            mem = Memory(shape=RopeTableWord, depth=self.table_entries // lanes, init=[])
            m.submodules[f"table{k}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [
                wp.addr.eq(self.param_addr >> lane_bits),
                wp.data.eq(self.param_data),
                wp.en.eq(self.param_we & ~addr_bad & ((self.param_addr[:lane_bits] == k) if lane_bits else 1)),
                rp.addr.eq(self.position * words_per_position + partner),
                rp.en.eq(advance),
                rotator.cos[k].eq(rp.data.cos),
                rotator.sin[k].eq(rp.data.sin),
            ]

        # Stage 1: second-half beat; its partner beat and table entries arrive from the memories.
        out1, end1 = Signal(), Signal()
        x2_1 = Signal.like(self.i.payload.data)
        with m.If(advance):
            m.d.sync += [v1.eq(keep_rotate | abort), out1.eq(keep_rotate),
                         end1.eq(abort | (keep_rotate & self.i.payload.last)), x2_1.eq(self.i.payload.data)]
        # Stages 2-3 rotate, stage 4 sends out[:h] at once and out[h:] after it.
        m.d.comb += [
            rotator.valid_in.eq(v1), rotator.out_in.eq(out1), rotator.end_in.eq(end1),
            rotator.x1.eq(fr.data), rotator.x2.eq(x2_1), rotator.frac_bits.eq(self.frac_bits),
            rotator.ready.eq(reorder.ready),
            reorder.valid_in.eq(rotator.valid), reorder.out_in.eq(rotator.out), reorder.end_in.eq(rotator.end),
            reorder.lo.eq(rotator.lo), reorder.hi.eq(rotator.hi), reorder.out_bits.eq(self.out_bits),
        ]
        wiring.connect(m, reorder.o, wiring.flipped(self.o))

        m.d.comb += self.busy.eq(v1 | rotator.busy | reorder.busy | ~tracker.first)
        return m
