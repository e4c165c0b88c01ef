"""Phase 2 of a vector instruction: rows from the scratchpad through the vector unit and back."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import ROPE_POSITIONS, cdiv_shift, log2
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature

__all__ = ["RowStreamer"]


class RowStreamer(wiring.Component):
    """``m`` rows of ``n`` int8 elements (scratchpad-word stride) into the vector unit's streams, results back.

    Reader A (dedicated read port ``rd``) and reader B (``rd2``, shared with the DMA store path, which has
    priority) read one word per cycle into FIFOs; each word is split into ``word_bytes / lanes`` beats of ``lanes``
    int8 elements (a row's last beat is counted, not read from the word). The results are packed back into words
    and written to ``wr`` (shared with DMA loads, which have priority); row tails are written 0. Steady state:
    ``lanes`` elements per cycle.

    Parameters
    ----------
    word_bytes, spad_aw, lanes : int
    i_signature, o_signature : the vector unit's ``i`` / ``o`` stream signatures; ``b_signature`` its ``b``
                               (None: a unit without two-operand operators, no reader B).
    query_pos : bool           drive ``query_pos`` (softmax); ``rope_slot`` : bool drive ``rope_slot`` (rope).

    Members
    -------
    setup : In(1)       pulse: rewind to ``src_word`` / ``src2_word`` / ``dst_word`` (readers stopped).
    start : In(1)       pulse: start reader A (and reader B when ``two``).
    two : In(1); m, n : In(12); src_word, src2_word, dst_word : In(spad_aw)   the instruction (held).
    a, b : Out(stream) the unit's ``i`` and ``b`` operands; o : In(stream) its results.
    rd, rd2 : Out(ReadPortSignature); rd2_block : In(1); wr : Out(WritePortSignature); wr_block : In(1)
    finished : Out(1)   the last row's last word is written this cycle.
    idle : Out(1)       no reader reads, waits for data or holds a word.
    row_offset : In(15), query_pos : Out(16)   softmax: the query position of the row now entering,
                                               ``row_offset + row``.
    heads_m1 : In(8), rope_slot : Out          rope: the resident table slot of the row now entering,
                                               ``row // (heads_m1 + 1)``.
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, lanes: int, i_signature, o_signature, b_signature=None,
                 query_pos: bool = False, rope_slot: bool = False):
        self.B, self.spad_aw, self.lanes = word_bytes, spad_aw, lanes
        members = {
            "setup": In(1), "start": In(1), "two": In(1),
            "m": In(12), "n": In(12),
            "src_word": In(spad_aw), "src2_word": In(spad_aw), "dst_word": In(spad_aw),
            "a": Out(i_signature),
            "o": In(o_signature),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes)),
            "rd2": Out(ReadPortSignature(spad_aw, word_bytes)), "rd2_block": In(1),
            "wr": Out(WritePortSignature(spad_aw, word_bytes)), "wr_block": In(1),
            "finished": Out(1), "idle": Out(1),
        }
        if b_signature is not None:
            members["b"] = Out(b_signature)
        if query_pos:
            members.update({"row_offset": In(15), "query_pos": Out(16)})
        if rope_slot:
            members.update({"heads_m1": In(8), "rope_slot": Out(range(ROPE_POSITIONS + 1))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        LB, L = log2(self.B), self.lanes
        members = self.signature.members
        stride = Signal(13)                          # words per row (int8 elements)
        beats_row = Signal(13)
        m.d.sync += [stride.eq(cdiv_shift(self.n, LB)), beats_row.eq(cdiv_shift(self.n, log2(L)))]

        a_active, a_valid, a_data, a_last, a_fire, a_idle = self._reader(m, "a", self.rd, self.src_word,
                                                                         Const(0, 1), stride, beats_row)
        if "query_pos" in members:
            # Scalar ports travel with the row's beats: the query position of the row now entering.
            in_row = Signal(12)
            with m.If(a_fire & a_last):
                m.d.sync += in_row.eq(in_row + 1)
            with m.If(self.setup):
                m.d.sync += in_row.eq(0)
            m.d.comb += self.query_pos.eq(self.row_offset + in_row)
        if "rope_slot" in members:
            # The resident table slot of the row now entering: row i uses slot i // heads (a head counter, no
            # division); slot r holds position row_offset + r.
            in_head = Signal(8)
            in_slot = Signal(range(ROPE_POSITIONS + 1))
            with m.If(a_fire & a_last):
                m.d.sync += in_head.eq(in_head + 1)
                with m.If(in_head == self.heads_m1):
                    m.d.sync += [in_head.eq(0), in_slot.eq(in_slot + 1)]
            with m.If(self.setup):
                m.d.sync += [in_head.eq(0), in_slot.eq(0)]
            m.d.comb += self.rope_slot.eq(in_slot)
        self._operand(m, self.a, a_valid, a_data, a_last, a_fire)
        readers_idle = a_idle
        start_rows = [a_active.eq(1)]
        if "b" in members:
            b_active, b_valid, b_data, b_last, b_fire, b_idle = self._reader(m, "b", self.rd2, self.src2_word,
                                                                             self.rd2_block, stride, beats_row)
            self._operand(m, self.b, b_valid, b_data, b_last, b_fire)
            readers_idle = a_idle & b_idle
            start_rows.append(b_active.eq(self.two))
        m.d.comb += self.idle.eq(readers_idle)
        with m.If(self.start):
            m.d.sync += start_rows
        self._packer(m, stride)
        return m

    def _operand(self, m, port, valid, data, last, fire):
        """Drive a unit operand stream from a reader's beat (int8 lanes, sign-extended)."""
        L = self.lanes
        m.d.comb += [port.valid.eq(valid), port.payload.last.eq(last), fire.eq(valid & port.ready)]
        m.d.comb += [port.payload.data[k].eq(data[8 * k:8 * k + 8].as_signed()) for k in range(L)]

    def _reader(self, m, name, port, base, block, stride, beats_row):
        """One word per cycle into a FIFO, split into beats; returns (active, valid, beat data, last, fire, idle)
        (the caller drives ``fire`` with the handshake)."""
        B, L = self.B, self.lanes
        R = B // L                                   # beats per scratchpad word
        setup = self.setup
        active = Signal(name=f"{name}_active")
        row = Signal(12, name=f"{name}_row")
        word = Signal(13, name=f"{name}_word")
        row_addr = Signal(self.spad_aw + 1, name=f"{name}_row_addr")
        q = fifo.SyncFIFO(width=8 * B, depth=4)
        m.submodules[f"{name}_queue"] = q
        issue = Signal(name=f"{name}_issue")
        m.d.comb += issue.eq(active & (q.level < q.depth - 1) & ~block)
        m.d.comb += [port.addr.eq(row_addr + word), port.en.eq(issue)]
        got = Signal(name=f"{name}_got")
        m.d.sync += got.eq(issue)
        m.d.comb += [q.w_en.eq(got), q.w_data.eq(port.data)]
        with m.If(issue):
            m.d.sync += word.eq(word + 1)
            with m.If(word == stride - 1):
                m.d.sync += [word.eq(0), row.eq(row + 1), row_addr.eq(row_addr + stride)]
                with m.If(row == self.m - 1):
                    m.d.sync += active.eq(0)
        with m.If(setup):
            m.d.sync += [row.eq(0), word.eq(0), row_addr.eq(base), active.eq(0)]
        # Splitter: beat j of the head word; the row's last beat is counted, not read from the word.
        j = Signal(range(R), name=f"{name}_beat") if R > 1 else Const(0, 1)
        rb = Signal(13, name=f"{name}_row_beat")
        last = Signal(name=f"{name}_last")
        fire = Signal(name=f"{name}_fire")
        m.d.comb += last.eq(rb == beats_row - 1)
        data = q.r_data.word_select(j, 8 * L) if R > 1 else q.r_data
        with m.If(fire):
            m.d.sync += rb.eq(Mux(last, 0, rb + 1))
            if R > 1:
                m.d.sync += j.eq(Mux(last | (j == R - 1), 0, j + 1))
        m.d.comb += q.r_en.eq(fire & (last | (j == R - 1)))
        with m.If(setup):
            m.d.sync += rb.eq(0)
            if R > 1:
                m.d.sync += j.eq(0)
        idle = Signal(name=f"{name}_idle")
        m.d.comb += idle.eq(~active & ~got & ~q.r_rdy)
        return active, q.r_rdy, data, last, fire, idle

    def _packer(self, m, stride):
        """Result beats -> scratchpad words (the DMA has priority on the write port); ``finished`` on the last."""
        B, L = self.B, self.lanes
        R = B // L
        pk = Signal(8 * B)
        pj = Signal(range(R)) if R > 1 else Const(0, 1)
        out_row = Signal(12)
        out_word = Signal(self.spad_aw + 1)
        out_base = Signal(self.spad_aw + 1)
        beat = Cat(*[self.o.payload.data[k][:8] for k in range(L)])
        m.d.comb += self.o.ready.eq(~self.wr_block)
        o_fire = self.o.valid & ~self.wr_block
        merged = Signal(8 * B)
        m.d.comb += merged.eq(pk | (beat << (pj * 8 * L)) if R > 1 else beat)
        word_full = (pj == R - 1) | self.o.payload.last
        m.d.comb += [self.wr.addr.eq(out_word), self.wr.data.eq(merged),
                     self.wr.en.eq(Mux(o_fire & word_full, (1 << B) - 1, 0))]
        with m.If(o_fire):
            if R > 1:
                m.d.sync += [pk.eq(merged), pj.eq(pj + 1)]
            with m.If(word_full):
                m.d.sync += out_word.eq(out_word + 1)
                if R > 1:
                    m.d.sync += [pk.eq(0), pj.eq(0)]
            with m.If(self.o.payload.last):
                m.d.sync += [out_row.eq(out_row + 1), out_base.eq(out_base + stride),
                             out_word.eq(out_base + stride)]
                with m.If(out_row == self.m - 1):
                    m.d.comb += self.finished.eq(1)
        with m.If(self.setup):
            m.d.sync += [out_row.eq(0), out_word.eq(self.dst_word), out_base.eq(self.dst_word)]
            if R > 1:
                m.d.sync += [pk.eq(0), pj.eq(0)]
