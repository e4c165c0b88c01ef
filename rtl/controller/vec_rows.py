"""Phase 2 of a vector instruction: rows from the scratchpad through the vector unit and back."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import ROPE_POSITIONS, cdiv_shift, log2
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature

__all__ = ["RowStreamer"]


def _lane_bytes_log2(stream_signature) -> int:
    """log2 of the widest element (bytes) a VecBeat stream carries: its lane width / 8 (8 -> 0, 16 -> 1, 32 -> 2)."""
    layout = stream_signature.members["payload"].shape
    width = Shape.cast(layout["data"].shape.elem_shape).width
    return max(0, (max(8, width) // 8).bit_length() - 1)


class RowStreamer(wiring.Component):
    """``m`` rows of ``n`` elements (1, 2 or 4 bytes each, scratchpad-word stride) into the vector unit's streams,
    results back.

    Reader A (dedicated read port ``rd``) and reader B (``rd2``, shared with the DMA store path, which has
    priority) read one word per cycle into FIFOs. A splitter turns the words into beats of ``lanes`` elements of
    ``2^a_lb`` bytes (``b_lb`` for B), sign-extended to the unit's lanes: a beat of P = lanes << lb bytes is a slice
    of a word when P <= word_bytes (one beat per cycle), else gathered from P / word_bytes words (one word per
    cycle); a row's last beat ends at its last byte, counted, not read from the word. The results (``2^o_lb``
    bytes per element, the low bytes of each lane) are packed back into words and written to ``wr`` (shared with
    DMA loads, which have priority), a beat wider than a word in word-sized pieces; each row writes exactly its
    ``ceil(n * 2^o_lb / word_bytes)`` words, row tails 0. Steady state: ``lanes`` elements or ``word_bytes``
    bytes per cycle, whichever is fewer.

    Parameters
    ----------
    word_bytes, spad_aw, lanes : int
    i_signature, o_signature : the vector unit's ``i`` / ``o`` stream signatures; ``b_signature`` its ``b``
                               (None: a unit without two-operand operators, no reader B). Their lane widths
                               bound the element sizes (e.g. 32-bit lanes: up to 4-byte elements).
    query_pos : bool           drive ``query_pos`` (softmax); ``rope_slot`` : bool drive ``rope_slot`` (rope).
    token_k : bool             the token-scale-only rmsnorm's k_r bytes (``token``, ``k_word``, ``o_k``).

    Members
    -------
    setup : In(1)       pulse: rewind to ``src_word`` / ``src2_word`` / ``dst_word`` (readers stopped).
    start : In(1)       pulse: start reader A (and reader B when ``two``).
    two : In(1); m, n : In(12); src_word, src2_word, dst_word : In(spad_aw)   the instruction (held).
    a_lb, b_lb, o_lb : In(2)   log2 bytes per element of A, B and the results (held from ``setup``).
    a, b : Out(stream) the unit's ``i`` and ``b`` operands; o : In(stream) its results.
    rd, rd2 : Out(ReadPortSignature); rd2_block : In(1); wr : Out(WritePortSignature); wr_block : In(1)
    finished : Out(1)   the last row's last word is written this cycle.
    idle : Out(1)       no reader reads, waits for data or holds a word, and no result beat is held.
    row_offset : In(15), query_pos : Out(16)   softmax: the query position of the row now entering,
                                               ``row_offset + row``.
    heads_m1 : In(8), rope_slot : Out          rope: the resident table slot of the row now entering,
                                               ``row // (heads_m1 + 1)``.
    token : In(1), k_word : In(spad_aw), o_k : In(5)
        The token scale only (``vec.rmsnorm`` flags 7): after each row's last result word, the row's k_r (``o_k``,
        beside its result beats) is written alone into scratchpad byte ``k_word * word_bytes + r`` (a byte-enabled
        write, one cycle a row); ``finished`` comes with the last row's byte.
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, lanes: int, i_signature, o_signature, b_signature=None,
                 query_pos: bool = False, rope_slot: bool = False, token_k: bool = False):
        self.B, self.spad_aw, self.lanes = word_bytes, spad_aw, lanes
        #: the largest log2 element bytes of A, B and the results (the unit's lane widths)
        self.max_lb = {"a": _lane_bytes_log2(i_signature.flip()), "o": _lane_bytes_log2(o_signature),
                       "b": _lane_bytes_log2(b_signature.flip()) if b_signature is not None else 0}
        members = {
            "setup": In(1), "start": In(1), "two": In(1),
            "m": In(12), "n": In(12),
            "src_word": In(spad_aw), "src2_word": In(spad_aw), "dst_word": In(spad_aw),
            "a_lb": In(2), "b_lb": In(2), "o_lb": In(2),
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
        if token_k:
            members.update({"token": In(1), "k_word": In(spad_aw), "o_k": In(5)})
        super().__init__(members)

    def _geometry(self, m, name, lb, max_lb):
        """Per element size 2^e (e = 0 .. max_lb, run time ``lb``): the piece U = min(lanes << e, word_bytes)
        bytes moved per cycle, pieces per word and per beat; and the row's words and pieces (registered)."""
        L, LB = self.lanes, log2(self.B)
        sizes = []
        for e in range(max_lb + 1):
            lu = min(log2(L) + e, LB)
            sizes.append(dict(e=e, lu=lu, per_word=1 << (LB - lu), per_beat=1 << (log2(L) + e - lu)))
        words = Signal(15, name=f"{name}_row_words")
        pieces = Signal(15, name=f"{name}_row_pieces")
        w_expr, p_expr = Const(0, 15), Const(0, 15)
        for z in sizes:
            row_bytes = self.n << z["e"]
            w_expr = Mux(lb == z["e"], cdiv_shift(row_bytes, LB), w_expr)
            p_expr = Mux(lb == z["e"], cdiv_shift(row_bytes, z["lu"]), p_expr)
        m.d.sync += [words.eq(w_expr), pieces.eq(p_expr)]
        return sizes, words, pieces

    def elaborate(self, platform):
        m = Module()
        members = self.signature.members
        a_sizes, a_words, a_pieces = self._geometry(m, "a", self.a_lb, self.max_lb["a"])

        a_active, a_valid, a_last, a_fire, a_idle = self._reader(m, "a", self.rd, self.src_word, Const(0, 1),
                                                                 a_words, a_pieces, a_sizes, self.a_lb, self.a)
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
        readers_idle = a_idle
        start_rows = [a_active.eq(1)]
        if "b" in members:
            b_sizes, b_words, b_pieces = self._geometry(m, "b", self.b_lb, self.max_lb["b"])
            b_active, _, _, _, b_idle = self._reader(m, "b", self.rd2, self.src2_word, self.rd2_block, b_words,
                                                     b_pieces, b_sizes, self.b_lb, self.b)
            readers_idle = a_idle & b_idle
            start_rows.append(b_active.eq(self.two))
        idle_readers = Signal()
        m.d.comb += idle_readers.eq(readers_idle)
        with m.If(self.start):
            m.d.sync += start_rows
        o_sizes, o_words, o_pieces = self._geometry(m, "o", self.o_lb, self.max_lb["o"])
        holding = self._packer(m, o_words, o_pieces, o_sizes)
        m.d.comb += self.idle.eq(idle_readers & ~holding)
        return m

    def _reader(self, m, name, port, base, block, stride, pieces_row, sizes, lb, stream_port):
        """One word per cycle into a FIFO, split into pieces and gathered into beats that drive ``stream_port``;
        returns (active, valid, last, fire, idle)."""
        B, L = self.B, self.lanes
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

        # Splitter: piece j of the head word goes to slot g of the beat; the beat leaves with its last piece (slot
        # per_beat - 1, or the row's last piece, counted).
        max_per_word = max(z["per_word"] for z in sizes)
        max_per_beat = max(z["per_beat"] for z in sizes)
        beat_bits = L * 8 << max(z["e"] for z in sizes)
        j = Signal(range(max_per_word), name=f"{name}_piece")
        g = Signal(range(max_per_beat), name=f"{name}_slot")
        rp = Signal(15, name=f"{name}_row_piece")
        gathered = Signal(beat_bits, name=f"{name}_gathered")
        beat = Signal(beat_bits, name=f"{name}_beat")
        row_end, beat_end, word_end = Signal(name=f"{name}_row_end"), Signal(), Signal()
        m.d.comb += row_end.eq(rp == pieces_row - 1)
        beat_expr, be_expr, we_expr = Const(0, beat_bits), Const(0, 1), Const(0, 1)
        for z in sizes:
            ub = 8 << z["lu"]
            piece = q.r_data.word_select(j[:max(1, log2(z["per_word"]))], ub) if z["per_word"] > 1 \
                else q.r_data[:ub]
            if z["per_beat"] > 1:
                placed = gathered | (piece << (g[:log2(z["per_beat"])] * ub))
            else:
                placed = piece
            beat_expr = Mux(lb == z["e"], placed, beat_expr)
            be_expr = Mux(lb == z["e"], g == z["per_beat"] - 1, be_expr)
            we_expr = Mux(lb == z["e"], j == z["per_word"] - 1, we_expr)
        m.d.comb += [beat.eq(beat_expr), beat_end.eq(be_expr | row_end), word_end.eq(we_expr | row_end)]
        valid, last, fire, take = Signal(name=f"{name}_valid"), Signal(name=f"{name}_last"), \
            Signal(name=f"{name}_fire"), Signal(name=f"{name}_take")
        m.d.comb += [valid.eq(q.r_rdy & beat_end), last.eq(row_end),
                     fire.eq(valid & stream_port.ready),
                     take.eq(q.r_rdy & (~beat_end | stream_port.ready))]
        m.d.comb += [stream_port.valid.eq(valid), stream_port.payload.last.eq(last)]
        for k in range(L):
            lane = Const(0, 8)
            for z in sizes:
                w = 8 << z["e"]
                lane = Mux(lb == z["e"], beat[k * w:(k + 1) * w].as_signed(), lane)
            m.d.comb += stream_port.payload.data[k].eq(lane)
        with m.If(take):
            m.d.sync += [rp.eq(Mux(row_end, 0, rp + 1)), g.eq(Mux(beat_end, 0, g + 1)),
                         j.eq(Mux(word_end, 0, j + 1)), gathered.eq(Mux(beat_end, 0, beat))]
        m.d.comb += q.r_en.eq(take & word_end)
        with m.If(setup):
            m.d.sync += [rp.eq(0), g.eq(0), j.eq(0), gathered.eq(0)]
        idle = Signal(name=f"{name}_idle")
        m.d.comb += idle.eq(~active & ~got & ~q.r_rdy)
        return active, valid, last, fire, idle

    def _packer(self, m, stride, pieces_row, sizes):
        """Result beats -> scratchpad words (the DMA has priority on the write port); ``finished`` on the last.

        Piece g of the beat (the low ``2^o_lb`` bytes of each lane, U bytes a piece) goes to slot pj of the word
        being packed; the word is written when full or at the row's last piece.

        A beat of several pieces (results wider than a word's share, e.g. int32 results of 8 lanes on 8-byte
        words) is taken from ``o`` at once into a hold register and packed from there, so the unit's output
        register is free again after one cycle: its pipeline (stall-all in most operators) keeps taking input
        beats while the pieces are written, and the row streams at the slower of its input and output words per
        beat, not at their sum. A single-piece beat is packed straight from ``o`` as before (no added cycle)."""
        B, L = self.B, self.lanes
        lb = self.o_lb
        max_per_word = max(z["per_word"] for z in sizes)
        max_per_beat = max(z["per_beat"] for z in sizes)
        pk = Signal(8 * B)
        pj = Signal(range(max_per_word))
        g = Signal(range(max_per_beat))
        rp = Signal(15)
        out_row = Signal(12)
        out_word = Signal(self.spad_aw + 1)
        out_base = Signal(self.spad_aw + 1)
        row_end, beat_end, word_end = Signal(), Signal(), Signal()
        placed = Signal(8 * B)
        m.d.comb += row_end.eq(rp == pieces_row - 1)
        pl_expr, be_expr, we_expr = Const(0, 8 * B), Const(0, 1), Const(0, 1)
        # The hold register: the beat being packed when it has more pieces to go (see above).
        ow = 8 << self.max_lb["o"]
        hold = Signal(L * ow, name="o_hold")
        hold_valid = Signal(name="o_hold_valid")
        src = Signal(L * ow, name="o_src")
        src_valid = Signal(name="o_src_valid")
        o_beat = Cat(*[self.o.payload.data[k][:ow] for k in range(L)])
        m.d.comb += [src.eq(Mux(hold_valid, hold, o_beat)), src_valid.eq(hold_valid | self.o.valid)]
        for z in sizes:
            e, ub = z["e"], 8 << z["lu"]
            beat = Cat(*[src[k * ow:k * ow + (8 << e)] for k in range(L)])
            piece = beat.word_select(g[:log2(z["per_beat"])], ub) if z["per_beat"] > 1 else beat
            word = pk | (piece << (pj[:max(1, log2(z["per_word"]))] * ub)) if z["per_word"] > 1 else piece
            pl_expr = Mux(lb == e, word, pl_expr)
            be_expr = Mux(lb == e, g == z["per_beat"] - 1, be_expr)
            we_expr = Mux(lb == e, pj == z["per_word"] - 1, we_expr)
        m.d.comb += [placed.eq(pl_expr), beat_end.eq(be_expr | row_end), word_end.eq(we_expr | row_end)]
        take, done = Signal(), Signal()
        k_pend = self._token_k(m, hold_load=self.o.valid & self.o.ready, hold_valid=hold_valid,
                               row_done=take & row_end, last_row=out_row == self.m - 1)
        m.d.comb += [take.eq(src_valid & ~self.wr_block & ~k_pend), done.eq(take & beat_end),
                     # Taken into the hold register whenever it is empty or gives up its last piece now.
                     self.o.ready.eq(~hold_valid | done)]
        with m.If(self.o.valid & self.o.ready):
            # Kept unless packed whole this cycle (a single-piece beat straight from ``o``).
            m.d.sync += [hold.eq(o_beat), hold_valid.eq(hold_valid | ~done)]
        with m.Elif(done):
            m.d.sync += hold_valid.eq(0)
        with m.If(~k_pend):
            m.d.comb += [self.wr.addr.eq(out_word), self.wr.data.eq(placed),
                         self.wr.en.eq(Mux(take & word_end, (1 << B) - 1, 0))]
        with m.If(take):
            m.d.sync += [rp.eq(Mux(row_end, 0, rp + 1)), g.eq(Mux(beat_end, 0, g + 1)),
                         pj.eq(Mux(word_end, 0, pj + 1)), pk.eq(Mux(word_end, 0, placed))]
            with m.If(word_end):
                m.d.sync += out_word.eq(out_word + 1)
            with m.If(row_end):
                m.d.sync += [out_row.eq(out_row + 1), out_base.eq(out_base + stride),
                             out_word.eq(out_base + stride)]
                with m.If((out_row == self.m - 1) & ~self._token_on()):
                    m.d.comb += self.finished.eq(1)
        with m.If(self.setup):
            m.d.sync += [out_row.eq(0), out_word.eq(self.dst_word), out_base.eq(self.dst_word), rp.eq(0), g.eq(0),
                         pj.eq(0), pk.eq(0), hold_valid.eq(0)]
        return hold_valid | k_pend

    def _token_on(self):
        return self.token if "token" in self.signature.members else Const(0, 1)

    def _token_k(self, m, *, hold_load, hold_valid, row_done, last_row):
        """The token scale's k_r bytes: the k of the row being packed (held with a beat in the hold register), a
        pending byte after the row's last piece, its byte-enabled write when the DMA leaves the port free. Returns
        ``k_pend`` (the packer waits while it is high)."""
        if "token" not in self.signature.members:
            return Const(0, 1)
        B, LB = self.B, log2(self.B)
        hold_k, k_val = Signal(5), Signal(5)
        k_pend, k_last = Signal(), Signal()
        k_addr = Signal(self.spad_aw + LB + 1)
        with m.If(hold_load):
            m.d.sync += hold_k.eq(self.o_k)
        with m.If(row_done & self.token):
            m.d.sync += [k_pend.eq(1), k_last.eq(last_row), k_val.eq(Mux(hold_valid, hold_k, self.o_k))]
        with m.If(k_pend):
            # k_r in every byte lane; the byte enable picks the one of row r.
            m.d.comb += [self.wr.addr.eq(k_addr >> LB), self.wr.data.eq(Cat(k_val, Const(0, 3)).replicate(B)),
                         self.wr.en.eq(Mux(self.wr_block, 0, Const(1, B) << k_addr[:LB]))]
            with m.If(~self.wr_block):
                m.d.sync += [k_pend.eq(0), k_addr.eq(k_addr + 1)]
                m.d.comb += self.finished.eq(k_last)
        with m.If(self.setup):
            m.d.sync += [k_pend.eq(0), k_addr.eq(self.k_word << LB)]
        return k_pend
