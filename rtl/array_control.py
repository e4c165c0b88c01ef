"""The PE array's control components (:class:`~npuforge.rtl.array.PEArray`): the weight-stationary double-buffered
weight banks, the weight-stationary two-entry output queue, and the output-stationary drain control.

Each is independent of the PE grid's size in columns; the array wires them to its PEs and streams.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WeightBanks", "OutputQueue", "OsDrainControl"]


class WeightBanks(wiring.Component):
    """Weight-stationary double buffer: which of two banks takes the next weight row, which one computes.

    A bank fills with ``rows`` weight rows (``load`` pulses, row 0 first), is then ``ready`` and computes until the
    tile's last activation is accepted (``retire``); from the next cycle on it takes the next tile's weights.

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
    """

    def __init__(self, *, rows: int):
        self.rows = rows
        super().__init__({
            "load": In(1), "retire": In(1),
            "load_bank": Out(1), "load_row": Out(range(rows)), "load_free": Out(1),
            "compute_bank": Out(1), "compute_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rows = self.rows
        bank_ready = Signal(2)
        with m.If(self.load):
            m.d.sync += self.load_row.eq(Mux(self.load_row == rows - 1, 0, self.load_row + 1))
            with m.If(self.load_row == rows - 1):
                m.d.sync += [bank_ready.bit_select(self.load_bank, 1).eq(1), self.load_bank.eq(~self.load_bank)]
        with m.If(self.retire):
            m.d.sync += [self.compute_bank.eq(~self.compute_bank), bank_ready.bit_select(self.compute_bank, 1).eq(0)]
        m.d.comb += [self.compute_ready.eq(bank_ready.bit_select(self.compute_bank, 1)),
                     self.load_free.eq(~bank_ready.bit_select(self.load_bank, 1))]
        return m


class OutputQueue(wiring.Component):
    """Two-entry result queue (head register + skid register) in front of a stream.

    ``push`` is not back-pressured: the producer stops by itself when ``has_room`` was low on the previous edge,
    so a beat made while ``o`` stalls always has an entry.

    Parameters
    ----------
    shape : ShapeLike
        Payload data.

    Members
    -------
    push : In(1)
        A beat (``data``, ``last``) enters this cycle.
    data, last : In(shape), In(1)
    o : Out(stream.Signature(StructLayout({"data": shape, "last": 1})))
        The head; ``o.valid`` and the payload are registers.
    has_room : Out(1)
        After this edge at most one beat is queued (combinational; the array registers it as its enable).
    """

    def __init__(self, *, shape):
        super().__init__({
            "push": In(1), "data": In(shape), "last": In(1),
            "o": Out(stream.Signature(data.StructLayout({"data": shape, "last": 1}))),
            "has_room": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        head = self.o
        pop = Signal()
        skid_valid, skid_last = Signal(), Signal()
        skid_data = Signal.like(self.o.payload.data)
        m.d.comb += pop.eq(head.valid & head.ready)
        with m.If(pop | ~head.valid):
            # The head moves on: the skid beat, else the new beat, else nothing.
            with m.If(skid_valid):
                m.d.sync += [head.valid.eq(1), head.payload.last.eq(skid_last), head.payload.data.eq(skid_data)]
                m.d.sync += [skid_valid.eq(self.push), skid_last.eq(self.last), skid_data.eq(self.data)]
            with m.Else():
                m.d.sync += [head.valid.eq(self.push), head.payload.last.eq(self.last),
                             head.payload.data.eq(self.data)]
        with m.Elif(self.push):
            m.d.sync += [skid_valid.eq(1), skid_last.eq(self.last), skid_data.eq(self.data)]
        count_next = head.valid + skid_valid + self.push - pop
        m.d.comb += self.has_room.eq(count_next <= 1)
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
