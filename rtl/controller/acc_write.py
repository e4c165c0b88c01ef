"""The MATMUL unit's accumulator read-modify-write: a held result row segment added into (or written over) the
accumulator, one access per bank, read this cycle and written the next (:class:`AccumulatorWriter`)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AccumulatorWriter", "acc_port_members", "ACC_PORT_NAMES", "EXT_PORT_NAMES"]

#: The banked accumulator port's member names (driver view; ``acc_rd_data`` is the one input).
ACC_PORT_NAMES = ("acc_rd_addr", "acc_rd_en", "acc_rd_data", "acc_wr_addr", "acc_wr_data", "acc_wr_en")


def acc_port_members(*, row_width: int, word_bytes: int, banks: int, prefix: str = "acc") -> dict:
    """Signature members of the accumulator's banked port (driver view): per bank a ``row_width``-bit word address,
    read data a cycle after ``acc_rd_en`` (one enable for all banks), write data and byte enables. ``prefix="ext"``:
    the same port of the accumulator extension (``word_bytes`` = half the accumulator word: 16 bits per element)."""
    return {
        f"{prefix}_rd_addr": Out(data.ArrayLayout(row_width, banks)),
        f"{prefix}_rd_en": Out(1),
        f"{prefix}_rd_data": In(data.ArrayLayout(8 * word_bytes, banks)),
        f"{prefix}_wr_addr": Out(data.ArrayLayout(row_width, banks)),
        f"{prefix}_wr_data": Out(data.ArrayLayout(8 * word_bytes, banks)),
        f"{prefix}_wr_en": Out(data.ArrayLayout(word_bytes, banks)),
    }


#: The accumulator extension's port member names (block-scaled MATMULs, spec.block_scale).
EXT_PORT_NAMES = tuple(n.replace("acc_", "ext_", 1) for n in ACC_PORT_NAMES)


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
    blocks : bool
        Build the block stage (``spec.block_scale``): with ``scale`` set, row 0's elements are block partial sums
        P and the written value is the 48-bit ``(overwrite ? 0 : old) + D * P + O * S`` (low 32 bits to the
        accumulator, high 16 to the extension port ``ext_*``), wrapped to 48 bits.

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
    scale : In(1), d, o : In(ArrayLayout(signed(16), NE)), s : In(signed(S_BITS))
        Only with ``blocks``: this row is block-scaled with per-slot block multipliers D, O and the row's
        activation sum S.
    """

    S_BITS = 22     #: activation sum of a k-fold: rows <= 32 int16 values

    def __init__(self, *, word_bytes: int, acc_aw: int, banks: int, rows: int, blocks: bool = False):
        self.B, self.acc_aw, self.banks, self.rows, self.blocks = word_bytes, acc_aw, banks, rows, blocks
        self.acc_lb = (banks - 1).bit_length()
        self.acc_row_width = max(1, acc_aw - self.acc_lb)
        NE = banks * (word_bytes // 4)
        block_members = {}
        if blocks:
            block_members = {
                "scale": In(1), "d": In(data.ArrayLayout(signed(16), NE)), "o": In(data.ArrayLayout(signed(16), NE)),
                "s": In(signed(self.S_BITS)),
                **acc_port_members(row_width=self.acc_row_width, word_bytes=word_bytes // 2, banks=banks,
                                   prefix="ext"),
            }
        super().__init__({
            "valid": In(1), "row": In(1),
            "elems": In(data.ArrayLayout(data.ArrayLayout(signed(32), NE), rows)),
            "mask": In(NE), "w0": In(acc_aw + 2), "words": In(range(banks + 1)), "acc_stride": In(14),
            "overwrite": In(1), "final": In(1),
            **acc_port_members(row_width=self.acc_row_width, word_bytes=word_bytes, banks=banks),
            "written": Out(1), "written_final": Out(1),
            **block_members,
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
        p_scale = Signal()
        if self.blocks:
            m.d.comb += self.ext_rd_en.eq(h_valid & self.scale)
            with m.If(h_valid):
                m.d.sync += p_scale.eq(self.scale)
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
            # block stage: D * P + O * S of each slot, registered with the row (48 bits, wraps like the adder)
            p_wide = [Signal(signed(48), name=f"p_wide{b}_{e}") for e in range(E)] if self.blocks else []
            with m.If(h_valid):
                m.d.sync += p_addr.eq(addr >> LNB)
                with m.Switch(t):
                    for tt in range(NB):
                        with m.Case(tt):
                            m.d.sync += p_mask.eq(Mux(in_seg, h_mask[tt * E:(tt + 1) * E], 0))
                            m.d.sync += [p_elems[e].eq(elems[tt * E + e]) for e in range(E)]
                            if self.blocks:
                                m.d.sync += [p_wide[e].eq((self.d[tt * E + e] * self.elems[0][tt * E + e]
                                                           + self.o[tt * E + e] * self.s)[:48])
                                             for e in range(E)]
            old = self.acc_rd_data[b]
            new = [Mux(p_overwrite, p_elems[e], old[32 * e:32 * e + 32].as_signed() + p_elems[e])[:32]
                   for e in range(E)]
            en = Mux(p_valid, Cat(*[p_mask[e].replicate(4) for e in range(E)]), 0)
            if self.blocks:
                old_hi = self.ext_rd_data[b]
                wide = [(Mux(p_overwrite, 0, Cat(old[32 * e:32 * e + 32], old_hi[16 * e:16 * e + 16]).as_signed())
                         + p_wide[e])[:48] for e in range(E)]
                new = [Mux(p_scale, wide[e][:32], new[e]) for e in range(E)]
                m.d.comb += [
                    self.ext_rd_addr[b].eq(self.acc_rd_addr[b]),
                    self.ext_wr_addr[b].eq(p_addr),
                    self.ext_wr_data[b].eq(Cat(*[wide[e][32:48] for e in range(E)])),
                    self.ext_wr_en[b].eq(Mux(p_valid & p_scale, Cat(*[p_mask[e].replicate(2) for e in range(E)]), 0)),
                ]
            m.d.comb += [
                self.acc_wr_addr[b].eq(p_addr),
                self.acc_wr_data[b].eq(Cat(*new)),
                self.acc_wr_en[b].eq(en),
            ]
        return m
