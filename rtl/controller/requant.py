"""VEC_REQUANT: accumulator rows -> per-channel requantized int8/int16 scratchpad rows."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import cdiv_shift, log2
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature
from npuforge.rtl.vector.requant import Requant
from npuforge.spec.vector_ops import SHIFT_MAX, SHIFT_MIN

__all__ = ["RequantEngine"]


class RequantEngine(wiring.Component):
    """``spad[dst: m x n] = requantize(acc[src: m x n], records at param_word)`` via :class:`Requant`.

    Phase 1 reads the ``n`` 8-byte records (one per channel) from the scratchpad, checks them (multiplier bit 30
    set, shift in [-30, 31], else ``BAD_PARAM`` with the record's byte address) and writes them into the requant
    unit's parameter memory; with ``bias`` it then reads the ``ceil(4 n / word_bytes)`` words of the int32 bias
    vector at ``bias_word`` and writes each word's ``word_bytes / 4`` biases into the unit in one cycle (one bias
    per bank: channel c sits in lane c mod lanes, so a word-aligned vector word is one bias group); then the zero
    point is checked (``BAD_PARAM``, address 0). Phase 2 streams each
    accumulator row (one word = ``word_bytes / 4`` lanes per beat) through the unit and packs the int8/int16
    results into scratchpad words (tails zero).

    Members
    -------
    start : In(1), busy/done : Out(1), error : Out(1), fault_addr : Out(32)
    rd_block, wr_block : In(1)   the DMA uses the shared scratchpad read / write port this cycle
    acc_rd, spad_rd : Out(ReadPortSignature); spad_wr : Out(WritePortSignature)
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, acc_aw: int):
        self.B = word_bytes
        self.spad_aw, self.acc_aw = spad_aw, acc_aw
        self.requant = Requant(lanes=word_bytes // 4, max_row=4096, out_width=32)
        super().__init__({
            "start": In(1),
            "out16": In(1), "out32": In(1), "zero_point": In(signed(16)), "bias": In(1), "bias_word": In(spad_aw),
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

        out16, out32, zp = Signal(), Signal(), Signal(signed(16))
        bias_on, bias_w = Signal(), Signal(self.spad_aw)
        mm, nn = Signal(12), Signal(12)
        src, dst = Signal(self.acc_aw), Signal(self.spad_aw)
        pbyte = Signal(20)
        with m.If(self.start):
            m.d.sync += [out16.eq(self.out16), out32.eq(self.out32), zp.eq(self.zero_point), mm.eq(self.m), nn.eq(self.n),
                         src.eq(self.src_word), dst.eq(self.dst_word), pbyte.eq(self.param_byte),
                         bias_on.eq(self.bias), bias_w.eq(self.bias_word)]
        m.d.comb += [rq.row_len.eq(nn), rq.zero_point.eq(zp), rq.out_bits.eq(Mux(out32, 32, Mux(out16, 16, 8))), rq.clear.eq(0),
                     rq.bias_en.eq(bias_on)]
        bgroup = Signal(12)               # bias vector word being read (= the unit's bias group)
        bias_words = Signal(12)
        m.d.sync += bias_words.eq(cdiv_shift(nn << 2, LB))
        m.d.comb += [rq.bias_group.eq(bgroup), rq.bias_we.eq(0)]
        for j in range(E):
            m.d.comb += rq.bias_data[j].eq(self.spad_rd.data[32 * j:32 * j + 32])
        acc_stride = Signal(14)
        dst_stride = Signal(14)
        m.d.sync += [acc_stride.eq(cdiv_shift(nn << 2, LB)),
                     dst_stride.eq(cdiv_shift(Mux(out32, nn << 2, Mux(out16, nn << 1, nn)), LB))]

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
            Cat(rec_lo, self.spad_rd.data) if B == 4 else self.spad_rd.data.word_select(rec_addr[3:LB], 64)
            if B > 8 else self.spad_rd.data)
        multiplier = rec_word[:31]
        shift = rec_word[31:38].as_signed()

        # ---- phase 2: rows in, results out ----
        in_row = Signal(12)
        in_word = Signal(12)
        in_addr = Signal(self.acc_aw + 2)
        in_active = Signal()
        beats_row = Signal(12)
        m.d.comb += beats_row.eq(cdiv_shift(nn << 2, LB))
        infifo = fifo.SyncFIFO(width=8 * B + 1, depth=4)
        m.submodules.infifo = infifo
        rd_issue = Signal()
        rd_valid, rd_last = Signal(), Signal()
        m.d.comb += rd_issue.eq(in_active & (infifo.level < infifo.depth - 1))
        m.d.comb += [self.acc_rd.addr.eq(in_addr + in_word), self.acc_rd.en.eq(rd_issue)]
        m.d.sync += rd_valid.eq(rd_issue)
        with m.If(rd_issue):
            m.d.sync += rd_last.eq(in_word == beats_row - 1)
            m.d.sync += in_word.eq(in_word + 1)
            with m.If(in_word == beats_row - 1):
                m.d.sync += [in_word.eq(0), in_row.eq(in_row + 1), in_addr.eq(in_addr + acc_stride)]
                with m.If(in_row == mm - 1):
                    m.d.sync += in_active.eq(0)
        m.d.comb += [infifo.w_en.eq(rd_valid), infifo.w_data.eq(Cat(self.acc_rd.data, rd_last))]
        m.d.comb += [rq.i.valid.eq(infifo.r_rdy), infifo.r_en.eq(rq.i.ready)]
        for j in range(E):
            m.d.comb += rq.i.payload.data[j].eq(infifo.r_data[32 * j:32 * j + 32])
        m.d.comb += rq.i.payload.last.eq(infifo.r_data[8 * B])

        # Packer: int8 -> 4 beats per word, int16 -> 2 beats per word; row ends flush a partial word.
        pk = Signal(8 * B)
        pk_idx = Signal(3)
        out_row = Signal(12)
        out_word = Signal(self.spad_aw + 2)
        out_row_base = Signal(self.spad_aw + 2)
        beat8 = Cat(*[rq.o.payload.data[j][:8] for j in range(E)])      # E bytes
        beat16 = Cat(*[rq.o.payload.data[j][:16] for j in range(E)])   # 2E bytes
        beat32 = Cat(*[rq.o.payload.data[j] for j in range(E)])         # 4E = B bytes: one word per beat
        # The DMA has priority on the scratchpad write port: results wait in the requant pipeline.
        m.d.comb += rq.o.ready.eq(~self.wr_block)
        o_fire = rq.o.valid & ~self.wr_block
        per_word = Mux(out32, 1, Mux(out16, 2, 4))
        merged = Signal(8 * B)
        m.d.comb += merged.eq(Mux(out32, beat32, Mux(out16, pk | (beat16 << (pk_idx * 16 * E)),
                                                     pk | (beat8 << (pk_idx * 8 * E)))))
        word_full = (pk_idx == per_word - 1) | rq.o.payload.last
        wr_en = Signal()
        m.d.comb += wr_en.eq(o_fire & word_full)
        m.d.comb += [self.spad_wr.addr.eq(out_word), self.spad_wr.data.eq(merged),
                     self.spad_wr.en.eq(Mux(wr_en, (1 << B) - 1, 0))]
        finished = Signal()
        with m.If(o_fire):
            m.d.sync += [pk.eq(merged), pk_idx.eq(pk_idx + 1)]
            with m.If(word_full):
                m.d.sync += [pk.eq(0), pk_idx.eq(0), out_word.eq(out_word + 1)]
            with m.If(rq.o.payload.last):
                m.d.sync += [out_row.eq(out_row + 1), out_row_base.eq(out_row_base + dst_stride),
                             out_word.eq(out_row_base + dst_stride)]
                with m.If(out_row == mm - 1):
                    m.d.comb += finished.eq(1)

        m.d.comb += [rq.param_we.eq(0), rq.param_addr.eq(rec), rq.param_data.multiplier.eq(multiplier),
                     rq.param_data.shift.eq(shift)]
        m.d.comb += self.spad_rd.en.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [rec.eq(0), rec_addr.eq(pbyte), half.eq(0), error.eq(0), fault.eq(0),
                             in_row.eq(0), in_word.eq(0), in_addr.eq(src), out_row.eq(0), out_word.eq(dst),
                             out_row_base.eq(dst), pk.eq(0), pk_idx.eq(0), bgroup.eq(0)]
                m.next = "REC_READ"
            with m.State("REC_READ"):
                # The read port is shared with the DMA's store path, which has priority.
                m.d.comb += [self.busy.eq(1), self.spad_rd.en.eq(~self.rd_block),
                             self.spad_rd.addr.eq((rec_addr >> LB) + half)]
                with m.If(~self.rd_block):
                    m.next = "REC_DATA"
            with m.State("REC_DATA"):
                m.d.comb += self.busy.eq(1)
                if B == 4:
                    with m.If(~half):
                        m.d.sync += [rec_lo.eq(self.spad_rd.data), half.eq(1)]
                        m.next = "REC_READ"
                with m.If(Const(B != 4) | half):
                    with m.If(~multiplier[30] | (shift < SHIFT_MIN) | (shift > SHIFT_MAX)):
                        m.d.sync += [error.eq(1), fault.eq(rec_addr)]
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += rq.param_we.eq(1)
                        m.d.sync += [rec.eq(rec + 1), rec_addr.eq(rec_addr + 8), half.eq(0)]
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
                    m.next = "BIAS_DATA"
            with m.State("BIAS_DATA"):
                m.d.comb += [self.busy.eq(1), rq.bias_we.eq(1)]
                m.d.sync += bgroup.eq(bgroup + 1)
                with m.If(bgroup == bias_words - 1):
                    m.next = "ZP"
                with m.Else():
                    m.next = "BIAS_READ"
            with m.State("ZP"):
                m.d.comb += self.busy.eq(1)
                with m.If(~out16 & ~out32 & ((zp < -128) | (zp > 127))):
                    m.d.sync += [error.eq(1), fault.eq(0)]
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += in_active.eq(1)
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.busy.eq(1)
                with m.If(finished):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
