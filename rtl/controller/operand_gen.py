"""The MATMUL unit's operand generators: A rows or B rows of a MATMUL as a stream of array beats, one wide scratchpad
read per cycle (:class:`OperandGenerator`), and the instruction parameters they walk (:func:`OperandParams`)."""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import log2
from npuforge.rtl.memories import ReadPortSignature

__all__ = ["OperandGenerator", "OperandParams"]


def OperandParams(spad_aw: int, kv16: bool = False) -> data.StructLayout:
    """A MATMUL's operand geometry, latched or derived by the engine: ``kk`` (K), ``a_rows`` (A rows, row pairs in
    int4), ``a_word`` / ``b_word`` (first scratchpad words), ``a_stride`` / ``b_stride`` (words per row),
    ``b_row_bytes``, ``b_fold_step`` (``rows * b_stride``), the mode flags ``is_wide`` (16-bit activations) and
    ``is_w4a16``, ``is_os`` (output-stationary), ``b_trans`` (B stored transposed) and ``kpack`` (w4a16 codes
    packed along K, a block-scaled MATMUL: a stored row holds K rows ``2p`` and ``2p + 1``, one byte per column).
    ``kv16``: also ``b16`` (MATMUL.b16: int16 B rows, ``2 cols`` bytes per n-fold) and a 13-bit ``b_row_bytes``."""
    return data.StructLayout({
        "kk": 12, "a_rows": 12, "a_word": spad_aw, "b_word": spad_aw, "a_stride": 13, "b_stride": 13,
        "b_row_bytes": 13 if kv16 else 12, "b_fold_step": spad_aw + 1, "is_wide": 1, "is_w4a16": 1, "is_os": 1,
        "b_trans": 1, "kpack": 1, **({"b16": 1} if kv16 else {}),
    })


class OperandGenerator(wiring.Component):
    """The ``a`` (A rows) or ``w`` (B rows) beats of a MATMUL: one wide scratchpad read (``read_words`` words) per
    cycle, realigned into beats (bytes past the operand's row zeroed) in a 4-entry queue.

    Walk (weight-stationary): per n-fold and k-fold, ``a``: one beat of ``rows`` K values (int16 words in the
    16-bit-activation modes) per A row; ``w``: ``rows`` B rows of the n-fold's bytes (zero past k), or with ``kpack``
    ``rows / 2`` stored rows of ``cols`` bytes (two K rows each, zero past k). Output-stationary
    (``w`` of an engine with both dataflows): B rows 0..K-1 of the n-tile again for each m-tile; ``a`` is then idle
    (the engine's transposer reads A). With ``b_trans`` the ``w`` generator is idle (the B^T transposer reads B).

    Parameters
    ----------
    kind : str
        ``"a"`` or ``"w"``.
    word_bytes, read_words, spad_aw, rows, cols : int
    beat_bytes : int
        Bytes of the widest beat (``a``: ``rows`` or ``2 * rows``; ``w``: ``cols``).
    precisions : tuple of str
    wide : bool
        16-bit-activation modes are built (an ``a`` beat of an ``is_wide`` MATMUL is ``rows`` int16).
    has_os, has_bt : bool
        The engine runs output-stationary MATMULs / has the B^T transposer.

    Members
    -------
    go : In(1)
        Start the instruction's beats; ``params`` are stable from here until the last beat.
    hold : In(1)
        Issue no read this cycle (another reader owns the port: a block-scaled MATMUL's record reads).
    params : In(OperandParams(spad_aw))
    rd : Out(ReadPortSignature(spad_aw, word_bytes * read_words))
    o : Out(stream.Signature(unsigned(8 * beat_bytes + 1)))
        A beat: the data in the low ``8 * beat_bytes`` bits, then the ``last``-of-fold bit.
    """

    def __init__(self, *, kind: str, word_bytes: int, read_words: int, spad_aw: int, rows: int, cols: int,
                 beat_bytes: int, precisions, wide: bool, has_os: bool, has_bt: bool, kv16: bool = False):
        if kind not in ("a", "w"):
            raise ValueError(f"kind must be 'a' or 'w', got {kind!r}")
        self.kind, self.B, self.read_words, self.spad_aw = kind, word_bytes, read_words, spad_aw
        self.rows, self.cols, self.beat_bytes = rows, cols, beat_bytes
        self.precisions, self.has_os, self.has_bt = tuple(precisions), has_os, has_bt
        self.wide, self.kv16 = wide, kv16
        super().__init__({
            "go": In(1), "hold": In(1),
            "params": In(OperandParams(spad_aw, kv16)),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes * read_words)),
            "o": Out(stream.Signature(unsigned(8 * beat_bytes + 1))),
        })

    def elaborate(self, platform):
        m = Module()
        kind = self.kind
        B, LB, R, C = self.B, log2(self.B), self.rows, self.cols
        NI, LI = self.read_words, log2(self.read_words)
        p = self.params
        has_os, is_os, go = self.has_os, p.is_os, self.go
        kk, a_rows, a_word, b_word = p.kk, p.a_rows, p.a_word, p.b_word
        a_stride, b_stride, b_row_bytes, b_fold_step = p.a_stride, p.b_stride, p.b_row_bytes, p.b_fold_step
        is_a = kind == "a"
        port = self.rd
        LEN = self.beat_bytes                    # bytes of the widest beat
        # n_step: B row bytes per n-fold (both generators walk the n-folds; w4a16: C packed nibbles, C / 2 bytes).
        n_step = Signal(range((2 if self.kv16 else 1) * C + 1), name=f"{kind}_n_step")
        m.d.comb += n_step.eq(Mux(p.is_w4a16 & ~p.kpack, C // 2, C) if "w4a16" in self.precisions else C)
        if self.kv16:           # MATMUL.b16: int16 B, 2 C bytes per n-fold
            with m.If(p.b16):
                m.d.comb += n_step.eq(2 * C)
        # step: bytes of this mode's beat (A: R bytes, or R int16 words = 2 R bytes; B: n_step).
        step = Signal(range(LEN + 1), name=f"{kind}_step")
        if is_a:
            m.d.comb += step.eq(Mux(p.is_wide, 2 * R, R) if self.wide else R)
        else:
            m.d.comb += step.eq(n_step)
        # Reads per beat at most: the beat starts at a multiple of gcd(LEN, B) within its first word.
        NSLOT = -(-(B - gcd(LEN, B) + LEN) // (NI * B))
        active = Signal(name=f"{kind}_active")
        beat = Signal(12, name=f"{kind}_beat")
        word = Signal(range(NSLOT + 1), name=f"{kind}_word")
        noff = Signal(13 if self.kv16 else 12, name=f"{kind}_noff")   # byte offset of the n-fold in a B row
        k0 = Signal(12, name=f"{kind}_k0")
        row = Signal(self.spad_aw + 1, name=f"{kind}_row")
        bfold = Signal(self.spad_aw + 1, name=f"{kind}_bfold")
        off = Signal(13, name=f"{kind}_off")         # byte offset of the beat in its scratchpad row
        m.d.comb += off.eq(Mux(p.is_wide, k0 << 1, k0) if (is_a and self.wide) else (k0 if is_a else noff))
        nwords = Signal(range(NSLOT + 1), name=f"{kind}_nwords")
        m.d.comb += nwords.eq(((off[:LB] + step - 1) >> (LB + LI)) + 1)
        valid_bytes = Signal(range(LEN + 1), name=f"{kind}_valid_bytes")
        rem = Signal(signed(14), name=f"{kind}_rem")
        if is_a:
            m.d.comb += rem.eq(kk - k0)
            valid_elems = Mux(rem >= R, R, rem)
            m.d.comb += valid_bytes.eq(Mux(p.is_wide, valid_elems << 1, valid_elems) if self.wide else valid_elems)
        else:
            m.d.comb += rem.eq(b_row_bytes - noff)
            # The beat's first K row: k0 + beat, or k0 + 2 beat with K-packed rows (two K rows a stored row).
            k_row = Mux(p.kpack, k0 + (beat << 1), k0 + beat) if "w4a16" in self.precisions else k0 + beat
            m.d.comb += valid_bytes.eq(Mux(k_row >= kk, 0, Mux(rem >= step, step, rem)))
        q = fifo.SyncFIFO(width=8 * LEN + 1, depth=4)
        m.submodules.queue = q
        issue = Signal(name=f"{kind}_issue")
        m.d.comb += issue.eq(active & (q.level < q.depth - 1) & ~self.hold)
        last_word = word == nwords - 1
        m.d.comb += [port.addr.eq(row + (off >> LB) + (word << LI)), port.en.eq(issue)]
        os_w = has_os and not is_a    # OS: K beats (B rows 0..K-1) per (n-tile, m-tile)
        w_beats = Mux(p.kpack, R // 2, R) if ("w4a16" in self.precisions and R % 2 == 0) else R
        n_beats = a_rows if is_a else (Mux(is_os, kk, w_beats) if os_w else w_beats)
        last_beat = beat == n_beats - 1
        last_k = (k0 + R) >= kk
        last_n = (noff + n_step) >= b_row_bytes
        if os_w:
            w_m0 = Signal(12, name="w_m0")    # A row (pair) base of the OS m-tile
            last_m = (w_m0 + R) >= a_rows
        with m.If(issue):
            m.d.sync += word.eq(word + 1)
            with m.If(last_word):
                m.d.sync += [word.eq(0), beat.eq(beat + 1), row.eq(row + (a_stride if is_a else b_stride))]
                with m.If(last_beat):
                    m.d.sync += beat.eq(0)
                    def ws_fold_end():
                        with m.If(~last_k):
                            m.d.sync += k0.eq(k0 + R)
                            if is_a:
                                m.d.sync += row.eq(a_word)
                            else:
                                m.d.sync += [bfold.eq(bfold + b_fold_step), row.eq(bfold + b_fold_step)]
                        with m.Elif(~last_n):
                            m.d.sync += [k0.eq(0), noff.eq(noff + n_step), row.eq(a_word if is_a else b_word),
                                         bfold.eq(b_word)]
                        with m.Else():
                            m.d.sync += active.eq(0)

                    if os_w:
                        with m.If(is_os):     # n-tile outer, m-tile inner; B rows 0..K-1 again per m-tile
                            with m.If(~last_m):
                                m.d.sync += [w_m0.eq(w_m0 + R), row.eq(b_word)]
                            with m.Elif(~last_n):
                                m.d.sync += [w_m0.eq(0), noff.eq(noff + n_step), row.eq(b_word)]
                            with m.Else():
                                m.d.sync += active.eq(0)
                        with m.Else():
                            ws_fold_end()
                    else:
                        ws_fold_end()
        if has_os and is_a:           # OS: the transposer reads A instead
            gen_go = go & ~is_os
        elif self.has_bt and not is_a:  # B^T: the B transposer reads B instead
            gen_go = go & ~p.b_trans
        else:
            gen_go = go
        with m.If(gen_go):
            m.d.sync += [active.eq(1), beat.eq(0), word.eq(0), noff.eq(0), k0.eq(0), bfold.eq(b_word),
                         row.eq(a_word if is_a else b_word)]
            if os_w:
                m.d.sync += w_m0.eq(0)

        # Assembler: words -> beats, one cycle after the read.
        s_valid, s_last_word, s_last_beat = Signal(), Signal(), Signal()
        s_slot = Signal(range(NSLOT + 1))
        s_off = Signal(LB)
        s_valid_bytes = Signal(range(LEN + 1))
        m.d.sync += s_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [s_last_word.eq(last_word), s_last_beat.eq(last_beat), s_slot.eq(word),
                         s_off.eq(off[:LB]), s_valid_bytes.eq(valid_bytes)]
        cur = []
        for i in range(NSLOT):
            slot = Signal(8 * B * NI, name=f"{kind}_gather{i}")
            c = Signal(8 * B * NI, name=f"{kind}_gather_cur{i}")
            hit = s_valid & (s_slot == i)
            m.d.comb += c.eq(Mux(hit, port.data, slot))
            with m.If(hit):
                m.d.sync += slot.eq(port.data)
            cur.append(c)
        aligned = Signal(8 * LEN, name=f"{kind}_aligned")
        m.d.comb += aligned.eq(Cat(*cur).bit_select(s_off * 8, 8 * LEN))
        beat_data = Cat(*[Mux(j < s_valid_bytes, aligned[8 * j:8 * j + 8], 0) for j in range(LEN)])
        m.d.comb += [q.w_en.eq(s_valid & s_last_word), q.w_data.eq(Cat(beat_data, s_last_beat)),
                     self.o.valid.eq(q.r_rdy), self.o.payload.eq(q.r_data), q.r_en.eq(self.o.ready)]
        return m

