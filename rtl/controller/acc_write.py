"""The MATMUL unit's accumulator read-modify-write: a held result row segment added into (or written over) the
accumulator, one access per bank, read this cycle and written the next (:class:`AccumulatorWriter`)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AccumulatorWriter", "acc_port_members", "ACC_PORT_NAMES"]

#: The banked accumulator port's member names (driver view; ``acc_rd_data`` is the one input).
ACC_PORT_NAMES = ("acc_rd_addr", "acc_rd_en", "acc_rd_data", "acc_wr_addr", "acc_wr_data", "acc_wr_en")


def acc_port_members(*, row_width: int, word_bytes: int, banks: int) -> dict:
    """Signature members of the accumulator's banked port (driver view): per bank a ``row_width``-bit word address,
    read data a cycle after ``acc_rd_en`` (one enable for all banks), write data and byte enables."""
    return {
        "acc_rd_addr": Out(data.ArrayLayout(row_width, banks)),
        "acc_rd_en": Out(1),
        "acc_rd_data": In(data.ArrayLayout(8 * word_bytes, banks)),
        "acc_wr_addr": Out(data.ArrayLayout(row_width, banks)),
        "acc_wr_data": Out(data.ArrayLayout(8 * word_bytes, banks)),
        "acc_wr_en": Out(data.ArrayLayout(word_bytes, banks)),
    }


class AccumulatorWriter(wiring.Component):
    """Adds (or, with ``overwrite``, writes) a segment of int32 results into an accumulator row that is
    word-interleaved over ``banks`` banks: every bank reads the segment word that falls in it on the cycle the row
    is offered and writes the sum the next cycle, so a row of up to ``banks`` words takes one cycle.

    Parameters
    ----------
    word_bytes, acc_aw : int
        Accumulator word bytes (``word_bytes / 4`` int32 per word) and word address width.
    banks : int
        Accumulator banks (a power of two).
    rows : int
        Result rows held per beat, 1 or 2 (the second written at ``w0 + acc_stride``).

    Members
    -------
    valid : In(1)
        A row is offered this cycle: held row ``row`` (0 or 1) of ``elems``.
    elems : In(ArrayLayout(ArrayLayout(signed(32), banks * word_bytes / 4), rows))
        The held beat's rows, element ``j`` of a row for segment slot ``j`` (word-aligned).
    mask : In(banks * word_bytes / 4)
        Slots to write (the others keep their value).
    w0 : In(acc_aw + 2), words : In(range(banks + 1))
        First accumulator word of row 0 and the segment's length in words.
    acc_stride : In(14)
        Words from row 0 to row 1.
    overwrite, final : In(1)
        Write over instead of adding; this row is the instruction's last.
    acc_rd_addr, acc_rd_en, acc_rd_data, acc_wr_addr, acc_wr_data, acc_wr_en
        The accumulator's banked port (:func:`acc_port_members`).
    written, written_final : Out(1)
        A write happens this cycle; it is the instruction's last.
    """

    def __init__(self, *, word_bytes: int, acc_aw: int, banks: int, rows: int):
        self.B, self.acc_aw, self.banks, self.rows = word_bytes, acc_aw, banks, rows
        self.acc_lb = (banks - 1).bit_length()
        self.acc_row_width = max(1, acc_aw - self.acc_lb)
        NE = banks * (word_bytes // 4)
        super().__init__({
            "valid": In(1), "row": In(1),
            "elems": In(data.ArrayLayout(data.ArrayLayout(signed(32), NE), rows)),
            "mask": In(NE), "w0": In(acc_aw + 2), "words": In(range(banks + 1)), "acc_stride": In(14),
            "overwrite": In(1), "final": In(1),
            **acc_port_members(row_width=self.acc_row_width, word_bytes=word_bytes, banks=banks),
            "written": Out(1), "written_final": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        E = self.B // 4
        NB, LNB = self.banks, self.acc_lb
        NE = NB * E
        h_valid, h_row, h_mask, h_words = self.valid, self.row, self.mask, self.words
        # Issue: every bank reads the segment word that falls in it.
        w0 = Signal(self.acc_aw + 2)
        m.d.comb += w0.eq(self.w0 + Mux(h_row, self.acc_stride, 0))
        elems = ([self.elems[0][j] for j in range(NE)] if self.rows == 1
                 else [Mux(h_row, self.elems[1][j], self.elems[0][j]) for j in range(NE)])
        p_valid, p_overwrite, p_final = self.written, Signal(), self.written_final
        m.d.sync += p_valid.eq(h_valid)
        with m.If(h_valid):
            m.d.sync += [p_overwrite.eq(self.overwrite), p_final.eq(self.final)]
        m.d.comb += self.acc_rd_en.eq(h_valid)
        for b in range(NB):
            t = Signal(range(NB), name=f"seg_word{b}")   # which word of the segment lives in bank b
            m.d.comb += t.eq((b - w0[:LNB]) if LNB else 0)
            addr = Signal(self.acc_aw + 2, name=f"bank_word{b}")
            m.d.comb += addr.eq(w0 + t)
            m.d.comb += self.acc_rd_addr[b].eq(addr >> LNB)
            in_seg = t < h_words
            p_addr = Signal(self.acc_row_width, name=f"p_addr{b}")
            p_mask = Signal(E, name=f"p_mask{b}")
            p_elems = [Signal(signed(32), name=f"p_elem{b}_{e}") for e in range(E)]
            with m.If(h_valid):
                m.d.sync += p_addr.eq(addr >> LNB)
                with m.Switch(t):
                    for tt in range(NB):
                        with m.Case(tt):
                            m.d.sync += p_mask.eq(Mux(in_seg, h_mask[tt * E:(tt + 1) * E], 0))
                            m.d.sync += [p_elems[e].eq(elems[tt * E + e]) for e in range(E)]
            old = self.acc_rd_data[b]
            new = [Mux(p_overwrite, p_elems[e], old[32 * e:32 * e + 32].as_signed() + p_elems[e])[:32]
                   for e in range(E)]
            m.d.comb += [
                self.acc_wr_addr[b].eq(p_addr),
                self.acc_wr_data[b].eq(Cat(*new)),
                self.acc_wr_en[b].eq(Mux(p_valid, Cat(*[p_mask[e].replicate(4) for e in range(E)]), 0)),
            ]
        return m
