"""VEC_REQUANT: accumulator rows -> per-channel requantized int8/int16/int32 scratchpad rows.

Three components: :class:`AccRowReader` streams the accumulator rows, :class:`ResultPacker` packs the requantized
results into scratchpad words, and :class:`RequantEngine` loads the per-channel records and the bias vector into the
:class:`~npuforge.rtl.vector.requant.Requant` unit between them and sequences the instruction.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import cdiv_shift, log2
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature
from npuforge.rtl.vector.common import VecBeat
from npuforge.rtl.vector.requant import Requant
from npuforge.spec.vector_ops import ROW_SHIFT_MAX, SHIFT_MAX, SHIFT_MIN

__all__ = ["RequantEngine", "AccRowReader", "ResultPacker"]


class AccRowReader(wiring.Component):
    """Streams ``rows`` accumulator rows of ``n`` int32 channels, one word (``word_bytes / 4`` channels) per beat.

    Row r starts at word ``src + r * ceil(4 n / word_bytes)``. Reads issue while the 4-entry input FIFO has room,
    so the stream stalls without losing a word.

    Members
    -------
    init : In(1)
        Forget the previous instruction: restart at row 0, word ``src``.
    go : In(1)
        Start reading (after ``init``, with ``src``, ``rows``, ``n`` stable until the last read).
    src : In(acc_aw), rows : In(12), n : In(12)
    acc_rd : Out(ReadPortSignature(acc_aw, word_bytes))
    o : Out(stream.Signature(StructLayout({"data": 8 * word_bytes, "last": 1})))
        One accumulator word; ``last`` on a row's final word.
    ext_rd : Out(ReadPortSignature(acc_aw, word_bytes / 2))
        Only with ``wide``: the accumulator extension, read at the same word address in the same cycle; its word
        comes out as ``o.payload.hi`` (16 bits per int32 element).
    """

    def __init__(self, *, word_bytes: int, acc_aw: int, wide: bool = False):
        self.B, self.acc_aw, self.wide = word_bytes, acc_aw, wide
        layout = {"data": 8 * word_bytes, "last": 1, **({"hi": 4 * word_bytes} if wide else {})}
        super().__init__({
            "init": In(1), "go": In(1),
            "src": In(acc_aw), "rows": In(12), "n": In(12),
            "acc_rd": Out(ReadPortSignature(acc_aw, word_bytes)),
            **({"ext_rd": Out(ReadPortSignature(acc_aw, word_bytes // 2))} if wide else {}),
            "o": Out(stream.Signature(data.StructLayout(layout))),
        })

    def elaborate(self, platform):
        m = Module()
        LB = log2(self.B)
        acc_stride = Signal(14)
        m.d.sync += acc_stride.eq(cdiv_shift(self.n << 2, LB))
        in_row = Signal(12)
        in_word = Signal(12)
        in_addr = Signal(self.acc_aw + 2)
        in_active = Signal()
        beats_row = Signal(12)
        m.d.comb += beats_row.eq(cdiv_shift(self.n << 2, LB))
        HW = 4 * self.B if self.wide else 0
        m.submodules.infifo = infifo = fifo.SyncFIFO(width=8 * self.B + 1 + HW, depth=4)
        rd_issue = Signal()
        rd_valid, rd_last = Signal(), Signal()
        m.d.comb += rd_issue.eq(in_active & (infifo.level < infifo.depth - 1))
        m.d.comb += [self.acc_rd.addr.eq(in_addr + in_word), self.acc_rd.en.eq(rd_issue)]
        if self.wide:
            m.d.comb += [self.ext_rd.addr.eq(in_addr + in_word), self.ext_rd.en.eq(rd_issue)]
        m.d.sync += rd_valid.eq(rd_issue)
        with m.If(rd_issue):
            m.d.sync += rd_last.eq(in_word == beats_row - 1)
            m.d.sync += in_word.eq(in_word + 1)
            with m.If(in_word == beats_row - 1):
                m.d.sync += [in_word.eq(0), in_row.eq(in_row + 1), in_addr.eq(in_addr + acc_stride)]
                with m.If(in_row == self.rows - 1):
                    m.d.sync += in_active.eq(0)
        m.d.comb += [infifo.w_en.eq(rd_valid),
                     infifo.w_data.eq(Cat(self.acc_rd.data, rd_last, *([self.ext_rd.data] if self.wide else []))),
                     self.o.valid.eq(infifo.r_rdy), infifo.r_en.eq(self.o.ready),
                     self.o.payload.eq(infifo.r_data)]
        # Last, so that a new instruction wins over a stale read of the previous one.
        with m.If(self.init):
            m.d.sync += [in_row.eq(0), in_word.eq(0), in_addr.eq(self.src)]
        with m.If(self.go):
            m.d.sync += in_active.eq(1)
        return m


class ResultPacker(wiring.Component):
    """Packs requantized rows into scratchpad words: 4 int8 beats, 2 int16 beats or 1 int32 beat per word; a row's
    end flushes a partial word (tail bytes zero). Row r starts at word ``dst + r * ceil(n * bytes / word_bytes)``.

    Members
    -------
    init : In(1)
        Restart at row 0, word ``dst``.
    dst : In(spad_aw), rows : In(12), n : In(12), out16 : In(1), out32 : In(1)
        Stable from ``init`` to ``finished``.
    wr_block : In(1)
        The DMA writes the scratchpad this cycle (it has priority): the beat waits.
    i : In(stream.Signature(VecBeat(32, word_bytes / 4)))
        Results of the requant unit (each lane's low 8 / 16 / 32 bits are stored; lanes past the row end 0, as every
        vector operator sends them).
    spad_wr : Out(WritePortSignature(spad_aw, word_bytes))
    finished : Out(1)
        The last row's last beat is taken on this edge.
    """

    def __init__(self, *, word_bytes: int, spad_aw: int):
        self.B, self.spad_aw = word_bytes, spad_aw
        super().__init__({
            "init": In(1),
            "dst": In(spad_aw), "rows": In(12), "n": In(12), "out16": In(1), "out32": In(1),
            "wr_block": In(1),
            "i": In(stream.Signature(VecBeat(32, word_bytes // 4))),
            "spad_wr": Out(WritePortSignature(spad_aw, word_bytes)),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB, E = self.B, log2(self.B), self.B // 4
        out16, out32, nn = self.out16, self.out32, self.n
        dst_stride = Signal(14)
        m.d.sync += dst_stride.eq(cdiv_shift(Mux(out32, nn << 2, Mux(out16, nn << 1, nn)), LB))
        pk = Signal(8 * B)
        pk_idx = Signal(3)
        out_row = Signal(12)
        out_word = Signal(self.spad_aw + 2)
        out_row_base = Signal(self.spad_aw + 2)
        beat = self.i.payload
        beat8 = Cat(*[beat.data[j][:8] for j in range(E)])      # E bytes
        beat16 = Cat(*[beat.data[j][:16] for j in range(E)])    # 2E bytes
        beat32 = Cat(*[beat.data[j] for j in range(E)])         # 4E = B bytes: one word per beat
        # The DMA has priority on the scratchpad write port: results wait in the requant pipeline.
        m.d.comb += self.i.ready.eq(~self.wr_block)
        o_fire = self.i.valid & ~self.wr_block
        per_word = Mux(out32, 1, Mux(out16, 2, 4))
        merged = Signal(8 * B)
        m.d.comb += merged.eq(Mux(out32, beat32, Mux(out16, pk | (beat16 << (pk_idx * 16 * E)),
                                                     pk | (beat8 << (pk_idx * 8 * E)))))
        word_full = (pk_idx == per_word - 1) | beat.last
        wr_en = Signal()
        m.d.comb += wr_en.eq(o_fire & word_full)
        m.d.comb += [self.spad_wr.addr.eq(out_word), self.spad_wr.data.eq(merged),
                     self.spad_wr.en.eq(Mux(wr_en, (1 << B) - 1, 0))]
        with m.If(o_fire):
            m.d.sync += [pk.eq(merged), pk_idx.eq(pk_idx + 1)]
            with m.If(word_full):
                m.d.sync += [pk.eq(0), pk_idx.eq(0), out_word.eq(out_word + 1)]
            with m.If(beat.last):
                m.d.sync += [out_row.eq(out_row + 1), out_row_base.eq(out_row_base + dst_stride),
                             out_word.eq(out_row_base + dst_stride)]
                with m.If(out_row == self.rows - 1):
                    m.d.comb += self.finished.eq(1)
        # Last, so that a new instruction wins over a stale beat of the previous one.
        with m.If(self.init):
            m.d.sync += [out_row.eq(0), out_word.eq(self.dst), out_row_base.eq(self.dst), pk.eq(0), pk_idx.eq(0)]
        return m


class RequantEngine(wiring.Component):
    """``spad[dst: m x n] = requantize(acc[src: m x n], records at param_word)`` via :class:`Requant`.

    Phase 1 reads the ``n`` 8-byte records (one per channel) from the scratchpad, checks them (multiplier bit 30
    set, shift in [-30, 31], else ``BAD_PARAM`` with the record's byte address) and writes them into the requant
    unit's parameter memory; with ``bias`` it then reads the ``ceil(4 n / word_bytes)`` words of the int32 bias
    vector at ``bias_word`` and writes each word's ``word_bytes / 4`` biases into the unit in one cycle (one bias
    per bank: channel c sits in lane c mod lanes, so a word-aligned vector word is one bias group); then the zero
    point is checked (``BAD_PARAM``, address 0). With ``row_shift`` (no bias) the ``ceil(m / word_bytes)`` words of
    the k_r bytes at ``bias_word`` follow: each word's valid bytes are checked (k_r <= 16 and 31 + shift[c] - k_r >= 1
    for every channel, i.e. k_r <= min(16, 30 + min shift); else ``BAD_PARAM`` at the first bad row's byte address,
    nothing written) and the word goes into the unit's bias memory as one bias group (the unit's per-row shift).
    Each parameter word takes three cycles: the read, the word registered (the checks and the parameter writes start
    from a flip-flop, not from the scratchpad's block RAMs), the check and write.
    Phase 2 streams each accumulator row (:class:`AccRowReader`, one
    word = ``word_bytes / 4`` lanes per beat) through the unit and packs the int8/int16/int32 results into
    scratchpad words (:class:`ResultPacker`, tails zero).

    Members
    -------
    start : In(1), busy/done : Out(1), error : Out(1), fault_addr : Out(32)
    rd_block, wr_block : In(1)   the DMA uses the shared scratchpad read / write port this cycle
    acc_rd, spad_rd : Out(ReadPortSignature); spad_wr : Out(WritePortSignature)
    row_shift : In(1)
        ``VEC_REQUANT.row_shift``: ``bias_word`` holds the rows' k_r bytes (``bias`` is 0).
    wide : In(1), ext_rd : Out(ReadPortSignature(acc_aw, word_bytes / 2))
        Only when built ``wide`` (block-scaled NPUs): ``VEC_REQUANT.wide``, whose 48-bit inputs are the accumulator
        word and the extension word (``ext_rd``, same address, same cycle).
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, acc_aw: int, wide: bool = False):
        self.B, self.has_wide = word_bytes, wide
        self.spad_aw, self.acc_aw = spad_aw, acc_aw
        self.requant = Requant(lanes=word_bytes // 4, max_row=4096, out_width=32, wide=wide, row_shift=True)
        super().__init__({
            **({"wide": In(1), "ext_rd": Out(ReadPortSignature(acc_aw, word_bytes // 2))} if wide else {}),
            "start": In(1),
            "out16": In(1), "out32": In(1), "zero_point": In(signed(16)), "bias": In(1), "bias_word": In(spad_aw),
            "row_shift": In(1),
            "m": In(12), "n": In(12),
            "src_word": In(acc_aw), "dst_word": In(spad_aw), "param_byte": In(20),
            "busy": Out(1), "done": Out(1), "error": Out(1), "fault_addr": Out(32),
            "rd_block": In(1), "wr_block": In(1),
            "acc_rd": Out(ReadPortSignature(acc_aw, word_bytes)),
            "spad_rd": Out(ReadPortSignature(spad_aw, word_bytes)),
            "spad_wr": Out(WritePortSignature(spad_aw, word_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB = self.B, log2(self.B)
        E = B // 4
        m.submodules.requant = rq = self.requant
        m.submodules.reader = reader = AccRowReader(word_bytes=B, acc_aw=self.acc_aw, wide=self.has_wide)
        m.submodules.packer = packer = ResultPacker(word_bytes=B, spad_aw=self.spad_aw)

        out16, out32, zp = Signal(), Signal(), Signal(signed(16))
        bias_on, bias_w, row_on = Signal(), Signal(self.spad_aw), Signal()
        mm, nn = Signal(12), Signal(12)
        src, dst = Signal(self.acc_aw), Signal(self.spad_aw)
        pbyte = Signal(20)
        with m.If(self.start):
            m.d.sync += [out16.eq(self.out16), out32.eq(self.out32), zp.eq(self.zero_point), mm.eq(self.m), nn.eq(self.n),
                         src.eq(self.src_word), dst.eq(self.dst_word), pbyte.eq(self.param_byte),
                         bias_on.eq(self.bias), bias_w.eq(self.bias_word), row_on.eq(self.row_shift)]
        m.d.comb += [rq.row_len.eq(nn), rq.zero_point.eq(zp), rq.out_bits.eq(Mux(out32, 32, Mux(out16, 16, 8))), rq.clear.eq(0),
                     rq.bias_en.eq(bias_on)]
        bgroup = Signal(12)               # bias vector word being read (= the unit's bias group)
        bias_words = Signal(12)
        m.d.sync += bias_words.eq(Mux(row_on, cdiv_shift(mm, LB), cdiv_shift(nn << 2, LB)))
        m.d.comb += [rq.row_shift_en.eq(row_on), rq.rewind.eq(0)]
        # The scratchpad word read, registered (``rd_q``, the cycle after the read port's data): the checks and the
        # parameter writes below start from flip-flops, not from the scratchpad's block RAMs and read mux.
        rd_q = Signal(8 * B)
        m.d.sync += rd_q.eq(self.spad_rd.data)
        min_shift, k_limit, k_bad_at = self._row_shift_check(m, word=bgroup, rows=mm, data=rd_q)
        m.d.comb += [rq.bias_group.eq(bgroup), rq.bias_we.eq(0)]
        for j in range(E):
            m.d.comb += rq.bias_data[j].eq(rd_q[32 * j:32 * j + 32])

        # ---- phase 1: records ----
        rec = Signal(12)
        rec_addr = Signal(21)
        rec_lo = Signal(32)
        half = Signal()                   # B == 4: second word of the record
        rec_word = Signal(64)
        error = Signal()
        fault = Signal(32)
        m.d.comb += [self.error.eq(error), self.fault_addr.eq(fault)]
        m.d.comb += rec_word.eq(
            Cat(rec_lo, rd_q) if B == 4 else rd_q.word_select(rec_addr[3:LB], 64) if B > 8 else rd_q)
        multiplier = rec_word[:31]
        shift = rec_word[31:38].as_signed()
        m.d.comb += [rq.param_we.eq(0), rq.param_addr.eq(rec), rq.param_data.multiplier.eq(multiplier),
                     rq.param_data.shift.eq(shift)]

        # ---- phase 2: rows in, results out ----
        m.d.comb += [
            reader.src.eq(src), reader.rows.eq(mm), reader.n.eq(nn),
            rq.i.valid.eq(reader.o.valid), reader.o.ready.eq(rq.i.ready), rq.i.payload.last.eq(reader.o.payload.last),
            packer.dst.eq(dst), packer.rows.eq(mm), packer.n.eq(nn), packer.out16.eq(out16), packer.out32.eq(out32),
            packer.wr_block.eq(self.wr_block),
        ]
        for j in range(E):
            m.d.comb += rq.i.payload.data[j].eq(reader.o.payload.data[32 * j:32 * j + 32])
        if self.has_wide:
            wide_on = Signal()
            with m.If(self.start):
                m.d.sync += wide_on.eq(self.wide)
            m.d.comb += rq.wide_en.eq(wide_on)
            m.d.comb += [rq.hi[j].eq(reader.o.payload.hi[16 * j:16 * j + 16]) for j in range(E)]
            wiring.connect(m, reader.ext_rd, wiring.flipped(self.ext_rd))
        wiring.connect(m, rq.o, packer.i)
        wiring.connect(m, reader.acc_rd, wiring.flipped(self.acc_rd))
        wiring.connect(m, packer.spad_wr, wiring.flipped(self.spad_wr))

        m.d.comb += self.spad_rd.en.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.busy.eq(1), reader.init.eq(1), packer.init.eq(1), rq.rewind.eq(1)]
                m.d.sync += [rec.eq(0), rec_addr.eq(pbyte), half.eq(0), error.eq(0), fault.eq(0), bgroup.eq(0),
                             min_shift.eq(SHIFT_MAX)]
                m.next = "REC_READ"
            with m.State("REC_READ"):
                # The read port is shared with the DMA's store path, which has priority.
                m.d.comb += [self.busy.eq(1), self.spad_rd.en.eq(~self.rd_block),
                             self.spad_rd.addr.eq((rec_addr >> LB) + half)]
                with m.If(~self.rd_block):
                    m.next = "REC_WAIT"
            with m.State("REC_WAIT"):       # the word on the read port, registered into rd_q
                m.d.comb += self.busy.eq(1)
                m.next = "REC_DATA"
            with m.State("REC_DATA"):
                m.d.comb += self.busy.eq(1)
                if B == 4:
                    with m.If(~half):
                        m.d.sync += [rec_lo.eq(rd_q), half.eq(1)]
                        m.next = "REC_READ"
                with m.If(Const(B != 4) | half):
                    with m.If(~multiplier[30] | (shift < SHIFT_MIN) | (shift > SHIFT_MAX)):
                        m.d.sync += [error.eq(1), fault.eq(rec_addr)]
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += rq.param_we.eq(1)
                        m.d.sync += [rec.eq(rec + 1), rec_addr.eq(rec_addr + 8), half.eq(0),
                                     min_shift.eq(Mux(shift < min_shift, shift, min_shift))]
                        with m.If((rec == nn - 1) & bias_on):
                            m.next = "BIAS_READ"
                        with m.Elif(rec == nn - 1):
                            m.next = "ZP"
                        with m.Else():
                            m.next = "REC_READ"
            with m.State("BIAS_READ"):
                m.d.comb += [self.busy.eq(1), self.spad_rd.en.eq(~self.rd_block),
                             self.spad_rd.addr.eq(bias_w + bgroup)]
                with m.If(~self.rd_block):
                    m.next = "BIAS_WAIT"
            with m.State("BIAS_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.next = "BIAS_DATA"
            with m.State("BIAS_DATA"):
                # The bias vector (before ZP), or the k_r bytes (after ZP), one word a bias group.
                m.d.comb += self.busy.eq(1)
                with m.If(row_on & (k_bad_at != B)):
                    m.d.sync += [error.eq(1), fault.eq(Cat(k_bad_at[:LB], bias_w + bgroup))]
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += rq.bias_we.eq(1)
                    m.d.sync += bgroup.eq(bgroup + 1)
                    with m.If(bgroup != bias_words - 1):
                        m.next = "BIAS_READ"
                    with m.Elif(row_on):
                        m.d.comb += reader.go.eq(1)
                        m.next = "ROWS"
                    with m.Else():
                        m.next = "ZP"
            with m.State("ZP"):
                m.d.comb += self.busy.eq(1)
                # k_r <= 16 and 31 + shift[c] - k_r >= 1 for every channel (min shift >= -30: the limit is >= 0).
                m.d.sync += k_limit.eq(Mux(min_shift + 30 < ROW_SHIFT_MAX, min_shift + 30, ROW_SHIFT_MAX))
                with m.If(~out16 & ~out32 & ((zp < -128) | (zp > 127))):
                    m.d.sync += [error.eq(1), fault.eq(0)]
                    m.next = "DONE"
                with m.Elif(row_on):
                    m.next = "BIAS_READ"
                with m.Else():
                    m.d.comb += reader.go.eq(1)
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.busy.eq(1)
                with m.If(packer.finished):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m

    def _row_shift_check(self, m, *, word, rows, data):
        """The k_r bytes' checks: the smallest record shift (the FSM updates it), the largest k_r it allows
        (min(16, 30 + min shift), set in ZP) and the first byte of the k word ``word`` (read into ``data``) that
        exceeds it (``word_bytes``: none; bytes past row ``rows`` - 1 are not checked)."""
        B, LB = self.B, log2(self.B)
        min_shift, k_limit = Signal(signed(7)), Signal(5)
        k_bad_at = Signal(range(B + 1))
        bad_at = Const(B, range(B + 1))
        for j in reversed(range(B)):
            row = Cat(Const(j, LB), word)                      # row of byte j: word * B + j
            bad_at = Mux((row < rows) & (data.word_select(j, 8) > k_limit), j, bad_at)
        m.d.comb += k_bad_at.eq(bad_at)
        return min_shift, k_limit, k_bad_at
