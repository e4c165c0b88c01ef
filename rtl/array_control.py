"""The PE array's control components (:class:`~npuforge.rtl.array.PEArray`): the weight-stationary double-buffered
weight banks, the weight-stationary two-entry output queue with the copies of the enable that it allows, and the
output-stationary drain control.

Each is independent of the PE grid's size in columns; the array wires them to its PEs and streams.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.dsp import replica_flop

__all__ = ["WeightBanks", "OutputQueue", "OsDrainControl", "EnableCopies"]


class WeightBanks(wiring.Component):
    """Weight-stationary double buffer: which of two banks takes the next weight row, which one computes.

    A bank fills with ``rows`` weight rows (``load`` pulses, row 0 first), is then ``ready`` and computes until the
    tile's last activation is accepted (``retire``); from the next cycle on it takes the next tile's weights.

    Row pairs (``pairs``, built with ``pair_hold`` set): each ``load`` writes rows ``load_row`` and ``load_row + 1``
    (a beat of two K rows), so a tile is ``rows / 2`` loads. Those writes outrun the retired tile's last activation,
    which moves down one row per enabled cycle, so a retired bank takes pairs only ``pair_hold`` enabled cycles
    (``en``) after its retire (:class:`~npuforge.rtl.array.PEArray` derives the count); each bank has its own count.

    Members
    -------
    load : In(1)
        A weight row is written this cycle (into ``load_bank``, row ``load_row``).
    retire : In(1)
        The computing bank's tile takes its last activation this cycle.
    load_bank, load_row : Out(1), Out(range(rows))
        Where the next weight row goes.
    load_free : Out(1)
        ``load_bank`` may take weights (it is not holding a finished tile).
    compute_bank : Out(1)
        The bank the next activation beat uses.
    compute_ready : Out(1)
        ``compute_bank`` holds a complete tile.
    pairs, en : In(1)
        Only with ``pair_hold`` set: loads are row pairs; ``en`` counts the hold's enabled cycles.
    """

    def __init__(self, *, rows: int, pair_hold: int | None = None):
        if pair_hold is not None and (rows % 2 or pair_hold < 0):
            raise ValueError(f"row pairs need an even rows and pair_hold >= 0, got rows {rows}, pair_hold {pair_hold}")
        self.rows, self.pair_hold = rows, pair_hold
        super().__init__({
            "load": In(1), "retire": In(1),
            "load_bank": Out(1), "load_row": Out(range(rows)), "load_free": Out(1),
            "compute_bank": Out(1), "compute_ready": Out(1),
            **({"pairs": In(1), "en": In(1)} if pair_hold is not None else {}),
        })

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        bank_ready = Signal(2)
        held = Const(0, 1)
        last_row = self.load_row == rows - 1
        step = 1
        if self.pair_hold is not None:
            last_row = Mux(self.pairs, self.load_row == rows - 2, last_row)
            step = Mux(self.pairs, 2, 1)
            if self.pair_hold:
                hold = [Signal(range(self.pair_hold + 1), name=f"hold{b}") for b in range(2)]
                for b in range(2):
                    with m.If(self.retire & (self.compute_bank == b) & self.pairs):
                        m.d.sync += hold[b].eq(self.pair_hold)
                    with m.Elif(self.en & (hold[b] != 0)):
                        m.d.sync += hold[b].eq(hold[b] - 1)
                held = Mux(self.load_bank, hold[1] != 0, hold[0] != 0)
        with m.If(self.load):
            m.d.sync += self.load_row.eq(Mux(last_row, 0, self.load_row + step))
            with m.If(last_row):
                m.d.sync += [bank_ready.bit_select(self.load_bank, 1).eq(1), self.load_bank.eq(~self.load_bank)]
        with m.If(self.retire):
            m.d.sync += [self.compute_bank.eq(~self.compute_bank), bank_ready.bit_select(self.compute_bank, 1).eq(0)]
        m.d.comb += [self.compute_ready.eq(bank_ready.bit_select(self.compute_bank, 1)),
                     self.load_free.eq(~bank_ready.bit_select(self.load_bank, 1) & ~held)]
        return m


class OutputQueue(wiring.Component):
    """Two-entry result queue in front of a stream: two fixed entries, a write and a read pointer.

    ``push`` is not back-pressured: the producer stops by itself when ``has_room`` was low on the previous edge,
    so a beat made while ``o`` stalls always has an entry.

    A beat stays in the entry it was written to until it is read: the consumer's ``o.ready`` only moves the read
    pointer and the count, never the payload registers (a head/skid queue would load its head register from
    ``o.ready``: one net from the consumer to the enable of every payload bit). The payload is split into
    ``groups`` slices (the array's words: one per column and lane), each with its own copy of both pointers, so no
    pointer or write enable drives more than one slice.

    Parameters
    ----------
    shape : ShapeLike
        Payload data.
    groups : int
        Slices of the payload with their own pointer copies (must divide its width).
    group_strobes : bool
        Each slice moves its pointers with its own copy of ``push`` and of the pop (``push_groups``,
        ``pop_groups``), which the caller computes from its own copies of the enable and the occupancy: then no
        one net drives every slice's pointer and write enables.

    Members
    -------
    push : In(1)
        A beat (``data``, ``last``) enters this cycle.
    data, last : In(shape), In(1)
    o : Out(stream.Signature(StructLayout({"data": shape, "last": 1})))
        The oldest beat; ``o.valid`` is a register, the payload a two-way multiplexer of registers (stable while
        ``o.valid`` waits for ``o.ready``).
    has_room : Out(1)
        After this edge at most one beat is queued (combinational; the array registers it as its enable).
    push_groups, pop_groups : In(groups)
        Only with ``group_strobes``: slice ``g``'s copies of ``push`` and of the pop (``o.valid & o.ready``); each
        must equal the original in every cycle.
    """

    def __init__(self, *, shape, groups: int = 1, group_strobes: bool = False):
        super().__init__({
            "push": In(1), "data": In(shape), "last": In(1),
            "o": Out(stream.Signature(data.StructLayout({"data": shape, "last": 1}))),
            "has_room": Out(1),
            **({"push_groups": In(groups), "pop_groups": In(groups)} if group_strobes else {}),
        })
        self.group_strobes = bool(group_strobes)
        width = len(Value.cast(self.data))
        if not isinstance(groups, int) or groups < 1 or width % groups:
            raise ValueError(f"groups must be a positive integer dividing the payload width {width}, got {groups!r}")
        self.groups = groups

    def elaborate(self, platform):
        m = Module()
        data_in, data_out = Value.cast(self.data), Value.cast(self.o.payload.data)
        width = len(data_in)
        entries = [Signal(width, name=f"entry{i}") for i in range(2)]
        entry_last = [Signal(name=f"entry{i}_last") for i in range(2)]
        count = Signal(range(3))
        count_next = Signal(range(4))
        pop = Signal()
        m.d.comb += [pop.eq(self.o.valid & self.o.ready), count_next.eq(count + self.push - pop)]
        m.d.sync += [count.eq(count_next), self.o.valid.eq(count_next != 0)]
        m.d.comb += self.has_room.eq(count_next <= 1)
        wr_next, rd_next = Signal(), Signal()
        wr, rd = Signal(), Signal()
        m.d.comb += [wr_next.eq(wr ^ self.push), rd_next.eq(rd ^ pop)]
        m.d.sync += [wr.eq(wr_next), rd.eq(rd_next)]
        for i in range(2):
            with m.If(self.push & (wr == i)):
                m.d.sync += entry_last[i].eq(self.last)
        m.d.comb += self.o.payload.last.eq(Mux(rd, entry_last[1], entry_last[0]))
        step = width // self.groups
        for g in range(self.groups):
            lo, hi = g * step, (g + 1) * step
            if self.group_strobes:
                # The slice's own pointers, toggled by its own strobe copies (same values as wr / rd every cycle).
                push_g = self.push_groups[g]
                wr_g_next, rd_g_next = Signal(name=f"wr_next{g}"), Signal(name=f"rd_next{g}")
                wr_g = replica_flop(m, wr_g_next, init=0, name=f"wr_ptr{g}", platform=platform)
                rd_g = replica_flop(m, rd_g_next, init=0, name=f"rd_ptr{g}", platform=platform)
                m.d.comb += [wr_g_next.eq(wr_g ^ push_g), rd_g_next.eq(rd_g ^ self.pop_groups[g])]
            else:
                push_g = self.push
                wr_g = replica_flop(m, wr_next, init=0, name=f"wr_ptr{g}", platform=platform)
                rd_g = replica_flop(m, rd_next, init=0, name=f"rd_ptr{g}", platform=platform)
            for i in range(2):
                with m.If(push_g & (wr_g == i)):
                    m.d.sync += entries[i][lo:hi].eq(data_in[lo:hi])
            m.d.comb += data_out[lo:hi].eq(Mux(rd_g, entries[1][lo:hi], entries[0][lo:hi]))
        return m


class OsDrainControl(wiring.Component):
    """Output-stationary tile ends: at most one unfinished tile end in flight, then a ``rows``-beat shadow drain.

    Members
    -------
    tile_end : In(1)
        A tile's last operand pair is accepted this cycle.
    capture : In(1)
        The finished tile enters the shadow registers (the corner PE's capture).
    ready : In(1)
        The consumer takes a drained row this cycle if there is one.
    end_pending : Out(1)
        A tile end is in flight or its drain has not finished: the next tile end must wait.
    shadow_full : Out(1)
        The shadow registers hold a tile being drained (the output stream's ``valid``).
    drain, drain_row : Out(1), Out(range(rows))
        A row leaves this cycle; which one (``last`` of the tile when ``rows - 1``).
    """

    def __init__(self, *, rows: int):
        self.rows = rows
        super().__init__({
            "tile_end": In(1), "capture": In(1), "ready": In(1),
            "end_pending": Out(1), "shadow_full": Out(1), "drain": Out(1), "drain_row": Out(range(rows)),
        })

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        last_in_flight = Signal()
        with m.If(self.tile_end):
            m.d.sync += last_in_flight.eq(1)
        with m.If(self.capture):
            m.d.sync += [last_in_flight.eq(0), self.shadow_full.eq(1)]
        m.d.comb += self.drain.eq(self.shadow_full & self.ready)
        with m.If(self.drain):
            m.d.sync += self.drain_row.eq(Mux(self.drain_row == rows - 1, 0, self.drain_row + 1))
            with m.If(self.drain_row == rows - 1):
                m.d.sync += self.shadow_full.eq(0)
        m.d.comb += self.end_pending.eq(last_in_flight | self.shadow_full)
        return m


class EnableCopies:
    """Copies of the weight-stationary array enable ``en``, each a flip-flop, computed in independent groups.

    ``en`` of the next cycle is "the output queue holds at most one beat after this edge" (:class:`OutputQueue`'s
    ``has_room``), so a beat made while the consumer stalls always has an entry. Instead of one ``has_room`` net
    that drives every copy across the array, every group (a PE row, a column's edge registers) keeps its own copy
    of the queue's occupancy counter (two flip-flops) and computes ``has_room`` from it beside its copies: only the
    counter's inputs (``push_req``, ``ready``) cross the array, to one small LUT per group. All groups start equal
    and see the same inputs, so every copy equals the single-counter enable in every cycle.

    A helper that adds logic to the caller's module (like :func:`rtl.dsp.replica_flop`): copies are made on demand.

    Parameters
    ----------
    m : Module
        Where the logic goes.
    push_req : Value
        A beat reaches the queue this cycle if the array is enabled (the queue's ``push`` is ``en & push_req``).
    ready : Value
        The queue's consumer takes a beat this cycle if one is there (``o.ready``).
    platform
        Elaboration platform (``ecp5`` instantiates the flip-flops so synthesis keeps the copies apart).
    """

    def __init__(self, m: Module, *, push_req, ready, platform):
        self._m, self._push_req, self._ready, self._platform = m, push_req, ready, platform
        self._groups: dict[str, Signal] = {}
        self._counts: dict[str, Signal] = {}

    def _group(self, group: str) -> Signal:
        """``has_room`` of ``group``, made with its counter and the group's own enable flop on first use."""
        if group not in self._groups:
            m, platform = self._m, self._platform
            has_room = Signal(name=f"has_room_{group}")
            en = replica_flop(m, has_room, init=1, name=f"en_{group}_room", platform=platform)
            count_next = Signal(range(4), name=f"count_next_{group}")
            count = Signal(2, name=f"count_{group}")
            for bit in range(2):
                m.d.comb += count[bit].eq(replica_flop(m, count_next[bit], init=0, name=f"count_{group}_{bit}",
                                                       platform=platform))
            push, pop = en & self._push_req, (count != 0) & self._ready
            m.d.comb += [count_next.eq(count + push - pop), has_room.eq(count_next <= 1)]
            self._groups[group] = has_room
            self._counts[group] = count
        return self._groups[group]

    def occupied(self, group: str) -> Value:
        """``group``'s copy of "the queue holds a beat" (the queue's ``o.valid``): its counter is not zero."""
        self._group(group)
        return self._counts[group] != 0

    def copy(self, name: str, group: str) -> Signal:
        """A new enable flip-flop ``en_NAME`` fed by ``group``'s ``has_room``."""
        return replica_flop(self._m, self._group(group), init=1, name=f"en_{name}", platform=self._platform)
