"""GELU / SiLU (and any int8 -> int8 function) through 256-entry tables written at run time; the 16-bit GELU / SiLU
through interpolated 1025-entry int16 tables (:class:`InterpTable`).

Exactly ``golden.activations.lookup(x, table)``: ``y = table[x + 128]`` for int8 ``x``. The tables
themselves (``gelu_table``, ``silu_table``) are computed on the host from the input and output scales
and written through ``param_we`` / ``param_addr`` / ``param_data``.

Pipeline: table read (1) -> output register (2); one beat (``lanes`` elements) per cycle. Every lane
has its own read port of one shared memory (Yosys duplicates the block RAM per read port).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from npuforge.rtl.vector.common import ErrorCode, VecBeat, accept_rows, check_lanes, check_max_row, \
    row_len_shape, saturate, row_errors, sticky_error, with_control

__all__ = ["ActivationTable", "InterpTable", "TABLE_ENTRIES"]

#: Entries of one table: every int8 input, address ``x + 128`` (shared with golden.activations); the 16-bit tables'
#: segment bits (golden.models.intops.INTERP_SHIFT).
from npuforge.spec.vector_ops import INTERP_SHIFT, TABLE_ENTRIES


def _table_front_end(m, op, entries: int, entry_shape):
    """What both table operators share: row bookkeeping, the table-select and write-address checks, the errors and
    the table memory of ``op.tables`` x ``entries`` entries, written through ``param_*``. Returns (advance, fire,
    bad_select, tracker, memory)."""
    advance, bad_select, addr_bad = Signal(), Signal(), Signal()
    m.d.comb += advance.eq(~op.o.valid | op.o.ready)
    tracker, fire = accept_rows(m, op, ready=advance)
    m.d.comb += [
        bad_select.eq(op.table_select >= op.tables),
        addr_bad.eq(op.param_addr >= entries * op.tables),
    ]
    sticky_error(m, error=op.error, error_code=op.error_code, clear=op.clear, events=[
        *row_errors(fire, tracker),
        (fire & bad_select, ErrorCode.BAD_PARAM),
        (op.param_we & addr_bad, ErrorCode.PARAM_ADDR),
    ])
    mem = Memory(shape=entry_shape, depth=entries * op.tables, init=[])
    m.submodules.table = mem
    wp = mem.write_port()
    m.d.comb += [wp.addr.eq(op.param_addr), wp.data.eq(op.param_data), wp.en.eq(op.param_we & ~addr_bad)]
    return advance, fire, bad_select, tracker, mem


class ActivationTable(wiring.Component):
    """int8 -> int8 table lookup, ``lanes`` elements per cycle, ``tables`` run-time loadable tables.

    Parameters
    ----------
    lanes, max_row : int
    tables : int
        Number of resident 256-entry tables (e.g. 2: GELU and SiLU), selected per row.

    Members
    -------
    i, o : In/Out(stream.Signature(VecBeat(8, lanes)))
    row_len : In(row_len_shape(max_row))
    table_select : In(range of 2**bits >= tables)
        Table used for the row; a value >= ``tables`` sets BAD_PARAM and drops the row.
    param_we, param_addr, param_data : In(1), In(unsigned(bit_length(256 * tables))), In(signed(8))
        Write entry ``param_addr % 256`` of table ``param_addr // 256``. An address
        >= 256 * tables sets PARAM_ADDR (write ignored).
    clear, error, error_code, busy : see :mod:`rtl.vector.common`.
    """

    LATENCY = 2

    def __init__(self, *, lanes: int, max_row: int = 4096, tables: int = 1):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if not isinstance(tables, int) or not 1 <= tables <= 16:
            raise ValueError(f"tables must be an integer in [1, 16], got {tables!r}")
        self.tables = tables
        super().__init__(with_control({
            "i": In(stream.Signature(VecBeat(8, lanes))),
            "o": Out(stream.Signature(VecBeat(8, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "table_select": In(unsigned(max(1, (tables - 1).bit_length()))),
            "param_we": In(1),
            "param_addr": In(unsigned((TABLE_ENTRIES * tables).bit_length())),
            "param_data": In(signed(8)),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        advance, fire, bad_select, tracker, mem = _table_front_end(m, self, TABLE_ENTRIES, signed(8))
        looked_up = []
        for k in range(lanes):
            rp = mem.read_port()
            x = self.i.payload.data[k]
            # x + 128 for int8 x is x with its sign bit flipped.
            index = x.as_unsigned() ^ 0x80
            if self.tables > 1:
                addr = (self.table_select << 8) | index
            else:
                addr = index
            m.d.comb += [rp.addr.eq(addr), rp.en.eq(advance)]
            looked_up.append(rp.data)

        # Stage 1: the read is in flight; the beat's bookkeeping rides alongside.
        v1, last1, keep1 = Signal(), Signal(), Signal(lanes)
        with m.If(advance):
            m.d.sync += [v1.eq(fire & ~tracker.drop & ~bad_select), last1.eq(self.i.payload.last),
                         keep1.eq(tracker.lane_valid)]
        m.d.comb += self.busy.eq(v1 | self.o.valid)
        # Stage 2: output register, tail lanes forced to 0.
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(v1), self.o.payload.last.eq(last1)]
            m.d.sync += [self.o.payload.data[k].eq(looked_up[k] & keep1[k].replicate(8)) for k in range(lanes)]
        return m


class InterpTable(wiring.Component):
    """int16 -> int16 activation by a table of ``2^(16 - shift) + 1`` int16 entries with linear interpolation,
    exactly ``golden.models.intops.interp_lookup`` (16-bit GELU / SiLU)::

        u = x + 2^15,  i = u >> shift,  f = u & (2^shift - 1)
        y = clamp(T[i] + (((T[i+1] - T[i]) * f + 2^(shift-1)) >> shift))       products 17 x shift bits

    Pipeline: two reads per lane (T[i], T[i+1]) -> read data registered -> difference -> product -> rounding add ->
    output register; one beat per cycle.

    Parameters
    ----------
    lanes, max_row : int
    tables : int
        Resident tables (2: GELU and SiLU), selected per row.
    shift : int
        Input bits per segment (golden ``INTERP_SHIFT`` = 6: 1024 segments, 1025 entries).

    Members
    -------
    i, o : In/Out(stream.Signature(VecBeat(16, lanes)))
    row_len : In(row_len_shape(max_row))
    table_select : In(...)   a value >= ``tables`` sets BAD_PARAM and drops the row.
    param_we, param_addr, param_data : entry ``param_addr % entries`` of table ``param_addr // entries`` (int16);
        an address past the last table sets PARAM_ADDR (write ignored).
    clear, error, error_code, busy : see :mod:`rtl.vector.common`.
    """

    LATENCY = 6

    def __init__(self, *, lanes: int, max_row: int = 4096, tables: int = 2, shift: int = INTERP_SHIFT):
        self.lanes = check_lanes(lanes)
        self.max_row = check_max_row(max_row, lanes=lanes)
        if not isinstance(tables, int) or not 1 <= tables <= 4:
            raise ValueError(f"tables must be an integer in [1, 4], got {tables!r}")
        if not isinstance(shift, int) or not 1 <= shift <= 15:
            raise ValueError(f"shift must be an integer in [1, 15], got {shift!r}")
        self.tables, self.shift = tables, shift
        self.entries = (1 << (16 - shift)) + 1
        super().__init__(with_control({
            "i": In(stream.Signature(VecBeat(16, lanes))),
            "o": Out(stream.Signature(VecBeat(16, lanes))),
            "row_len": In(row_len_shape(max_row)),
            "table_select": In(unsigned(max(1, (tables - 1).bit_length()))),
            "param_we": In(1),
            "param_addr": In(unsigned((self.entries * tables).bit_length())),
            "param_data": In(signed(16)),
        }))

    def elaborate(self, platform):
        m = Module()
        lanes, sh, entries = self.lanes, self.shift, self.entries
        advance, fire, bad_select, tracker, mem = _table_front_end(m, self, entries, signed(16))
        base = self.table_select * entries
        lo_rd, hi_rd, f1 = [], [], []
        for k in range(lanes):
            # u = x + 2^15 is x with its sign bit flipped; i = u >> shift (0 .. 2^(16-shift) - 1).
            u = self.i.payload.data[k].as_unsigned() ^ 0x8000
            seg = u >> sh
            for ports in (lo_rd, hi_rd):
                rp = mem.read_port()
                m.d.comb += [rp.addr.eq(base + seg + (1 if ports is hi_rd else 0)), rp.en.eq(advance)]
                ports.append(rp.data)
            f = Signal(sh, name=f"f1_{k}")
            with m.If(advance):
                m.d.sync += f.eq(u[:sh])
            f1.append(f)
        # Stage 1: the reads are in flight; the fraction and the beat's bookkeeping ride alongside.
        v1, last1, keep1 = Signal(), Signal(), Signal(lanes)
        with m.If(advance):
            m.d.sync += [v1.eq(fire & ~tracker.drop & ~bad_select), last1.eq(self.i.payload.last),
                         keep1.eq(tracker.lane_valid)]
        # Stage 1b: the read data registered (issue #16): the block RAM's clock-to-output, the multiplexer over the
        # blocks a 1025-entry table spans and the difference's carry chain behind it were the vector unit's critical
        # path (70.39 MHz, 14.2 ns on ECP5-85F).
        v1b, last1b, keep1b = Signal(), Signal(), Signal(lanes)
        lo1b = [Signal(signed(16), name=f"lo1b_{k}") for k in range(lanes)]
        hi1b = [Signal(signed(16), name=f"hi1b_{k}") for k in range(lanes)]
        f1b = [Signal(sh, name=f"f1b_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v1b.eq(v1), last1b.eq(last1), keep1b.eq(keep1)]
            for k in range(lanes):
                m.d.sync += [lo1b[k].eq(lo_rd[k]), hi1b[k].eq(hi_rd[k]), f1b[k].eq(f1[k])]
        # Stages 2-4 (split for fmax): the difference T[i+1] - T[i]; its product with f; y = T[i] + the product
        # rounded (half up) by 2^shift.
        v2, last2, keep2 = Signal(), Signal(), Signal(lanes)
        v3, last3, keep3 = Signal(), Signal(), Signal(lanes)
        v4, last4, keep4 = Signal(), Signal(), Signal(lanes)
        d2 = [Signal(signed(17), name=f"d2_{k}") for k in range(lanes)]
        lo2 = [Signal(signed(16), name=f"lo2_{k}") for k in range(lanes)]
        f2 = [Signal(sh, name=f"f2_{k}") for k in range(lanes)]
        p3 = [Signal(signed(17 + sh + 1), name=f"p3_{k}") for k in range(lanes)]
        lo3 = [Signal(signed(16), name=f"lo3_{k}") for k in range(lanes)]
        y4 = [Signal(signed(18), name=f"y4_{k}") for k in range(lanes)]
        with m.If(advance):
            m.d.sync += [v2.eq(v1b), last2.eq(last1b), keep2.eq(keep1b),
                         v3.eq(v2), last3.eq(last2), keep3.eq(keep2),
                         v4.eq(v3), last4.eq(last3), keep4.eq(keep3)]
            for k in range(lanes):
                m.d.sync += [d2[k].eq(hi1b[k] - lo1b[k]), lo2[k].eq(lo1b[k]), f2[k].eq(f1b[k]),
                             p3[k].eq(d2[k] * f2[k]), lo3[k].eq(lo2[k]),
                             y4[k].eq(lo3[k] + (((p3[k] >> (sh - 1)) + 1) >> 1))]
        m.d.comb += self.busy.eq(v1 | v1b | v2 | v3 | v4 | self.o.valid)
        # Stage 5: output register, saturated to int16, tail lanes forced to 0.
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(v4), self.o.payload.last.eq(last4)]
            m.d.sync += [self.o.payload.data[k].eq(saturate(y4[k], 16) & keep4[k].replicate(16)) for k in range(lanes)]
        return m
