"""GELU / SiLU (and any int8 -> int8 function) through 256-entry tables written at run time.

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

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat, check_lanes, check_max_row, \
    row_len_shape, sticky_error, with_control

__all__ = ["ActivationTable", "TABLE_ENTRIES"]

#: Entries of one table: every int8 input, address ``x + 128`` (shared with golden.activations).
from npuforge.spec.vector_ops import TABLE_ENTRIES


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
        m.submodules.tracker = tracker = RowTracker(lanes=lanes, max_row=self.max_row)
        advance, fire, bad_select, addr_bad = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            fire.eq(self.i.valid & self.i.ready),
            tracker.row_len.eq(self.row_len),
            tracker.fire.eq(fire),
            tracker.last.eq(self.i.payload.last),
            bad_select.eq(self.table_select >= self.tables),
            addr_bad.eq(self.param_addr >= TABLE_ENTRIES * self.tables),
        ]
        sticky_error(m, error=self.error, error_code=self.error_code, clear=self.clear, events=[
            (fire & tracker.bad_len, ErrorCode.ROW_LEN),
            (fire & tracker.framing, ErrorCode.ROW_FRAMING),
            (fire & bad_select, ErrorCode.BAD_PARAM),
            (self.param_we & addr_bad, ErrorCode.PARAM_ADDR),
        ])

        mem = Memory(shape=signed(8), depth=TABLE_ENTRIES * self.tables, init=[])
        m.submodules.table = mem
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(self.param_addr), wp.data.eq(self.param_data),
                     wp.en.eq(self.param_we & ~addr_bad)]
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
