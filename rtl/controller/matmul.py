"""The MATMUL unit: operand generators, the PE array and the accumulator read-modify-write.

:class:`MatmulEngine` latches the instruction, wires the :class:`~npuforge.rtl.controller.operand_gen.OperandGenerator`
of A and B (and the transposers of output-stationary A columns and of B^T) to the :class:`~npuforge.rtl.array.PEArray`,
and collects its result beats into a hold stage that the
:class:`~npuforge.rtl.controller.acc_write.AccumulatorWriter` adds into the accumulator.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.array import PEArray, has_row_pairs
from npuforge.rtl.controller.block_records import record_reader
from npuforge.rtl.controller.acc_write import ACC_PORT_NAMES, EXT_PORT_NAMES, AccumulatorWriter, acc_port_members
from npuforge.rtl.controller.common import cdiv_shift, log2
from npuforge.rtl.controller.operand_gen import OperandGenerator
from npuforge.rtl.controller.transposer import OsTransposer
from npuforge.rtl.mac import act_width_for, lanes_for
from npuforge.rtl.memories import ReadPortSignature, read_words_for
from npuforge.spec.block_scale import B16_PLANES
from npuforge.spec.precision import MODE_BITS, MODE_CODES, PRECISION_MODES

__all__ = ["MatmulEngine"]


class MatmulEngine(wiring.Component):
    """``acc[m, n] (+)= A[m, k] @ B[k, n]`` on the PE array, weight-stationary (and, with ``dataflows=("ws",
    "os")``, output-stationary per MATMUL), any m, k, n.

    WS folding: for each n-fold (``cols`` bytes of a B row: ``cols`` columns in int8, ``2 * cols`` in w4a8/int4)
    and each k-fold (``rows`` K values): ``rows`` weight beats (B rows, zero past k) and one activation beat per A
    row (row pair in int4). Two operand generators with their own scratchpad read ports feed the array's ``w`` and
    ``a`` streams, so the weights of the next fold load into the array's second weight bank while the current
    fold's activations stream. Each result beat is added into (or, on the first k-fold without ``accumulate``,
    written over) its accumulator row segment in one cycle per result row: the accumulator is word-interleaved
    over ``acc_banks`` banks, enough for a whole segment.

    16-bit-activation modes (built when ``precisions`` has w8a16 / w4a16): a ws A
    beat is ``rows`` little-endian int16 (``2 * rows`` bytes at byte ``2 * k0`` of an A row of ``2 k`` bytes) and goes
    to the array's 16-bit ``a`` words as is; 8-bit A beats go as bits 7..0 of each word. One weight column per PE
    column, as int8: w8a16 B rows are int8, w4a16 B rows packed int4 (an n-fold is ``cols / 2`` bytes) whose
    nibble ``c`` goes, sign-extended, to the weight byte of PE column ``c``. ``read_words`` covers the ``2 * rows``
    byte beat, so these modes stream one activation beat per cycle like int8. A block-scaled w4a16 MATMUL's codes are
    packed along K (``kpack``): an n-fold segment of a stored row is ``cols`` bytes holding K rows 2p and 2p + 1, which
    the array writes as a row pair (``PEArray.w_pairs``), so a k-fold's weights are ``rows / 2`` beats. OS: the
    transposer's chunks hold
    ``word_bytes * read_words / 2`` int16 k values and its columns are int16 words.

    Operand gathering: a beat is ``rows`` (A) or ``cols`` (B) bytes at a multiple of its size from a word-aligned
    scratchpad row start, read ``read_words`` consecutive words per cycle (the scratchpad's word-interleaved wide
    ports; ``read_words = rtl.memories.read_words_for(word_bytes, (rows, cols))`` makes that one read per beat)
    and realigned; bytes past the operand's row are zeroed. So the array takes one beat per cycle per operand.

    OS schedule (``dataflow`` = 1, latched at ``start`` like ``mode``): for each n-tile (``cols`` B bytes) and
    each m-tile (``rows`` A rows, row pairs in int4) the array takes K operand pairs, ``a`` = column
    ``A[m0:m0+rows, k]`` and ``w`` = ``B[k, n0:n0+cols]`` (``last`` on k = K-1), then drains ``rows`` result beats
    (while the next tile accumulates) that the collector writes over (``accumulate`` = 0) or adds into the
    accumulator rows in one pass; beats of rows past the A tile are drained and dropped. The A columns come from
    a transposer (:class:`OsTransposer`): ``rows`` wide reads of ``word_bytes * read_words`` k values each into
    one of two buffer banks, emitted column by column while the other bank fills, so one pair per cycle when
    ``rows <= word_bytes * read_words``. The weight generator gives B rows 0..K-1 per m-tile. ``macs`` counts
    a tile's useful MACs per pair taken (WS: per result beat). A ws-only engine has none of this logic.

    Members
    -------
    start : In(1)        pulse; the ``mode .. acc_word`` (and ``dataflow``) inputs are sampled then.
    mode : In(3)         ``spec.precision`` code (only the NPU's built modes reach it: the decoder refuses others).
    dataflow : In(1)     only with ``dataflows=("ws", "os")``: 0 ws, 1 os.
    busy, done : Out(1)  ``done`` pulses when the last accumulator write happens.
    a_rd, w_rd : Out(ReadPortSignature(spad_aw, read_words * word_bytes)) wide scratchpad ports (``data``: words
                         ``addr .. addr + read_words - 1``); ``acc_*``: the accumulator's wide port.
    macs : Out(16)       useful MACs of the result beat (OS: the pair) taken the cycle before, registered (for the
                         performance counter; the last beat's count arrives before ``done``).
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, acc_aw: int, rows: int, cols: int,
                 precisions=("int8", "w4a8", "int4"), dataflows=("ws",), pipeline: int = 2, blocks: bool = False,
                 kv16: bool = False):
        dataflows = tuple(dataflows)
        if dataflows not in (("ws",), ("ws", "os")):
            raise ValueError(f"dataflows must be ('ws',) or ('ws', 'os'), got {dataflows!r}")
        self.B = word_bytes
        self.rows, self.cols = rows, cols
        self.precisions = tuple(precisions)
        self.dataflows = dataflows
        self.has_os = "os" in dataflows
        self.array = PEArray(rows=rows, cols=cols, dataflows=dataflows, precisions=self.precisions,
                             pipeline=pipeline, acc_width=32)
        self.lanes = lanes_for(self.precisions)
        # 16-bit-activation modes built: an activation beat is one int16 per PE row (2 * rows scratchpad bytes).
        self.wide = act_width_for(self.precisions) == 16
        self.a_beat_bytes = rows * (2 if self.wide else 1)
        # MATMUL.b16 (the int16 KV cache): int16 B rows (a weight beat of 2 cols bytes, one byte plane used), the B^T
        # transposer in its 16-bit mode, and the block stage with constant D / O (spec.block_scale.B16_PLANES).
        self.kv16 = kv16
        if kv16 and not (blocks and "w8a16" in self.precisions):
            raise ValueError("kv16 (MATMUL.b16) needs blocks (the 48-bit accumulator) and the w8a16 mode")
        self.w_beat_bytes = 2 * cols if kv16 else cols
        self.read_words = read_words_for(word_bytes, (self.a_beat_bytes, self.w_beat_bytes))
        self.narrow = self.lanes > 1      # a mode with two weight columns per PE (w4a8, int4) is built
        self.spad_aw, self.acc_aw = spad_aw, acc_aw
        E = word_bytes // 4
        ncol = 2 * cols if self.narrow else cols
        seg_max = -(-(ncol + E - 1) // E) if ncol % E else ncol // E
        self.acc_banks = 1 << (seg_max - 1).bit_length()
        self.acc_lb = (self.acc_banks - 1).bit_length()
        self.acc_row_width = max(1, acc_aw - self.acc_lb)
        NB = self.acc_banks
        # MATMUL.b_trans (B^T [n, k] in the scratchpad, Q.K^T): the B rows of a k-fold come from a transposer of
        # the stored rows, as the OS activation columns do (see _b_transposed). Built with an int8-B mode.
        self.has_bt = any(PRECISION_MODES[p].weight_bits == 8 for p in self.precisions)
        self.b_transposer = None
        if self.has_bt:
            self.b_transposer = OsTransposer(word_bytes=word_bytes, read_words=self.read_words, spad_aw=spad_aw,
                                             rows=cols, ncols_max=1, wide=kv16)
        self.transposer = None
        if self.has_os:
            self.transposer = OsTransposer(word_bytes=word_bytes, read_words=self.read_words, spad_aw=spad_aw,
                                           rows=rows, ncols_max=ncol, wide=self.wide)
        # Block-scaled MATMULs (spec.block_scale): the record reader, the activation sums and the writer's block
        # stage with the accumulator extension port ``ext_*`` (16 bits per element).
        self.has_blocks = blocks
        # Block-scaled w4a16: K-packed codes, two K rows per weight beat (PEArray row pairs, rows >= 4 even).
        self.pairs = blocks and "w4a16" in self.precisions
        if self.pairs and not has_row_pairs(rows, self.precisions):
            raise ValueError(f"blocks with w4a16 needs an even rows >= 4 (two K rows per weight beat), got {rows}")
        if blocks:
            if not self.wide:
                raise ValueError(f"blocks needs w8a16 or w4a16 in precisions, got {self.precisions}")
            if 32 % rows or (4 * cols) % word_bytes:
                raise ValueError(f"blocks needs rows dividing 32 and 4 * cols a multiple of word_bytes, got rows "
                                 f"{rows}, cols {cols}, word_bytes {word_bytes}")
        block_members = {}
        if blocks:
            block_members = {"blocks": In(1),
                             **acc_port_members(row_width=self.acc_row_width, word_bytes=word_bytes // 2, banks=NB,
                                                prefix="ext")}
        super().__init__({
            **block_members,
            **({"dataflow": In(1)} if self.has_os else {}),
            **({"b_trans": In(1)} if self.has_bt else {}),
            **({"b16": In(2)} if kv16 else {}),
            "start": In(1),
            "mode": In(MODE_BITS),
            "accumulate": In(1),
            "m": In(12), "k": In(12), "n": In(12),
            "a_word": In(spad_aw), "b_word": In(spad_aw), "acc_word": In(acc_aw),
            "busy": Out(1), "done": Out(1),
            "a_rd": Out(ReadPortSignature(spad_aw, word_bytes * self.read_words)),
            "w_rd": Out(ReadPortSignature(spad_aw, word_bytes * self.read_words)),
            **acc_port_members(row_width=self.acc_row_width, word_bytes=word_bytes, banks=NB),
            "macs": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        m.submodules.array = arr = self.array
        p = self._parameters(m, arr)
        m.d.comb += arr.w_pairs.eq(p.kpack)
        has_os, is_os = self.has_os, p.is_os
        t = None
        # The weight port's requesters (generator or B^T transposer) drive w_port; a block-scaled MATMUL's record
        # reader takes the port first (the generator holds that cycle).
        self._w_port = SimpleNamespace(addr=Signal(self.spad_aw, name="w_port_addr"), en=Signal(name="w_port_en"),
                                       data=self.w_rd.data)
        rr = record_reader(m, p, word_bytes=self.B, read_words=self.read_words, cols=self.cols,
                           spad_aw=self.spad_aw, w_data=self.w_rd.data) if self.has_blocks else None
        wq = self._operand_generator(m, "w", p)
        if rr is not None:
            m.d.comb += wq.hold.eq(rr.issue)
            m.d.comb += [self.w_rd.addr.eq(Mux(rr.issue, rr.addr, self._w_port.addr)),
                         self.w_rd.en.eq(rr.issue | self._w_port.en)]
        else:
            m.d.comb += [self.w_rd.addr.eq(self._w_port.addr), self.w_rd.en.eq(self._w_port.en)]
        self._rr = rr
        if self.has_bt:
            w_valid, w_data, w_ready = self._b_transposed(m, p, wq)
        else:
            w_valid, w_data, w_ready = wq.o.valid, self._weights(wq.o.payload, p), wq.o.ready
        # Block-scaled: each activation beat's sum S goes into a FIFO the collector pops with the beat's result; a
        # beat waits while the FIFO is full, so any array latency is covered.
        a_room = Const(1, 1)
        self._sums = None
        if self.has_blocks:
            sums = fifo.SyncFIFO(width=AccumulatorWriter.S_BITS, depth=2 * (R + C) + 8)
            m.submodules.act_sums = sums
            a_room = ~p.scale | sums.w_rdy
            self._sums = sums
        if not has_os:
            aq = self._operand_generator(m, "a", p)
            m.d.comb += [
                arr.w.valid.eq(w_valid), arr.w.payload.eq(w_data), w_ready.eq(arr.w.ready),
                arr.a.valid.eq(aq.o.valid & a_room), arr.a.payload.data.eq(self._activations(aq.o.payload, p)),
                arr.a.payload.last.eq(aq.o.payload[8 * self.a_beat_bytes]), aq.o.ready.eq(arr.a.ready & a_room),
            ]
        else:
            aq = self._operand_generator(m, "a", p)
            m.submodules.transposer = t = self.transposer
            m.d.comb += [
                t.start.eq(p.go), t.os.eq(is_os), t.a_word.eq(p.a_word), t.a_stride.eq(p.a_stride),
                t.a_tile_step.eq(p.a_tile_step), t.a_rows.eq(p.a_rows), t.m.eq(p.mm), t.k.eq(p.kk), t.n.eq(p.nn),
                t.ncols.eq(p.ncols), t.int4.eq(p.is_int4),
            ]
            if self.wide:
                m.d.comb += t.wide.eq(p.is_wide)
            m.d.comb += [
                arr.w.valid.eq(w_valid), arr.w.payload.eq(w_data), w_ready.eq(arr.w.ready),
                self.a_rd.addr.eq(Mux(is_os, t.rd.addr, aq.rd.addr)), self.a_rd.en.eq(Mux(is_os, t.rd.en, aq.rd.en)),
                t.rd.data.eq(self.a_rd.data),
                arr.a.valid.eq(Mux(is_os, t.a.valid, aq.o.valid & a_room)),
                arr.a.payload.data.eq(Mux(is_os, t.a.payload.data.as_value(), self._activations(aq.o.payload, p))),
                arr.a.payload.last.eq(Mux(is_os, t.a.payload.last, aq.o.payload[8 * self.a_beat_bytes])),
                aq.o.ready.eq(arr.a.ready & ~is_os & a_room), t.a.ready.eq(arr.a.ready & is_os),
            ]
        if self.has_blocks:     # S of each ws activation beat: the sum of its rows int16 K values (zero past k)
            beat = arr.a.payload.data.as_value()
            total = sum(beat[16 * r:16 * r + 16].as_signed() for r in range(R))
            m.d.comb += [self._sums.w_en.eq(p.scale & ~is_os & arr.a.valid & arr.a.ready),
                         self._sums.w_data.eq(total)]
        p_valid, p_final = self._collector(m, arr, p, t)

        # ---- completion ----
        running = Signal()
        with m.If(self.start):
            m.d.sync += running.eq(1)
        m.d.comb += self.done.eq(running & p_valid & p_final)
        with m.If(self.done):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running)
        return m

    def _activations(self, beat, p):
        """An A beat from the generator's queue (``a_beat_bytes`` bytes) -> the array's ``a`` data: as is in the
        16-bit-activation modes (``rows`` little-endian int16), else byte ``r`` in bits 7..0 of word ``r``."""
        R = self.rows
        if not self.wide:
            return beat[:8 * R]
        bytes_ = Cat(*[Cat(beat[8 * r:8 * r + 8], Const(0, 8)) for r in range(R)])
        return Mux(p.is_wide, beat[:16 * R], bytes_)

    def _b16_plane(self, words, p):
        """MATMUL.b16: of ``cols`` int16 elements (16 bits each, little-endian), the plane's byte per column: the high
        byte (code 1), or the low byte with bit 7 flipped (code 2: lo - 128 as int8; spec.block_scale.B16_PLANES)."""
        return Cat(*[Mux(p.b16 == 1, words[16 * c + 8:16 * c + 16], words[16 * c:16 * c + 8] ^ 0x80)
                     for c in range(self.cols)])

    def _weights(self, beat, p):
        """A B beat from the weight generator's queue -> the array's ``w`` bytes. w4a16 packs two int4 weights
        per scratchpad byte but the array takes one weight per PE column (low nibble of its byte), so nibble
        ``c`` of the beat goes to column ``c``, sign-extended."""
        C = self.cols
        if self.kv16:
            beat = Mux(p.is_b16, self._b16_plane(beat, p), beat[:8 * C])
        if "w4a16" not in self.precisions:
            return beat[:8 * C]
        nibbles = Cat(*[Cat(beat[4 * c:4 * c + 4], beat[4 * c + 3].replicate(4)) for c in range(C)])
        # K-packed codes go as bytes: the array splits each into its two K rows (PEArray.w_pairs).
        return Mux(p.is_w4a16 & ~p.kpack, nibbles, beat[:8 * C])

    def _parameters(self, m, arr):
        """Latch the instruction at ``start`` and register the sizes derived from it; ``go`` (two cycles after
        ``start``) starts the generators and the collector."""
        LB, R, C = log2(self.B), self.rows, self.cols
        NCOL = 2 * C if self.narrow else C                # result columns per n-fold (widest mode)
        # ---- parameters latched at start ----
        mode = Signal(MODE_BITS)
        accumulate = Signal()
        mm, kk, nn = Signal(12), Signal(12), Signal(12)
        a_word, b_word = Signal(self.spad_aw), Signal(self.spad_aw)
        acc_word = Signal(self.acc_aw)
        with m.If(self.start):
            m.d.sync += [mode.eq(self.mode), accumulate.eq(self.accumulate), mm.eq(self.m), kk.eq(self.k),
                         nn.eq(self.n), a_word.eq(self.a_word), b_word.eq(self.b_word), acc_word.eq(self.acc_word)]
        b16 = Signal(2) if self.kv16 else Const(0, 2)     # MATMUL.b16 plane code (latched like ``mode``)
        is_b16 = Const(0, 1)
        if self.kv16:
            with m.If(self.start):
                m.d.sync += b16.eq(self.b16)
            is_b16 = b16 != 0
        is_int8 = mode == MODE_CODES["int8"]
        is_int4 = mode == MODE_CODES["int4"]
        # 16-bit-activation modes (decode admits them only when built): int16 A words, one weight column per PE.
        is_wide = Const(0, 1)
        for name in ("w8a16", "w4a16"):
            if name in self.precisions:
                is_wide = is_wide | (mode == MODE_CODES[name])
        is_w4a16 = (mode == MODE_CODES["w4a16"]) if "w4a16" in self.precisions else Const(0, 1)
        one_col = is_int8 | is_wide       # one weight (result column) per PE column
        # A block-scaled w4a16 MATMUL's codes are packed along K (gen.isa.layout.b_k_packed): a stored row holds K
        # rows 2p and 2p + 1 in the low / high nibble of each column's byte, one array beat of two K rows.
        kpack = Signal()
        b_bytes8 = Signal()               # one byte per stored B row and column (int8, w8a16, K-packed w4a16)
        m.d.comb += b_bytes8.eq(is_int8 | (is_wide & ~is_w4a16) | kpack)
        has_os = self.has_os
        if has_os:
            is_os = Signal()              # this MATMUL runs output-stationary (latched like ``mode``)
            with m.If(self.start):
                m.d.sync += is_os.eq(self.dataflow)
        else:
            is_os = Const(0, 1)
        m.d.comb += [arr.mode.eq(mode), arr.dataflow.eq(is_os)]

        # Derived sizes (registered; the generators start two cycles after start).
        a_rows = Signal(12)               # A tile rows in the scratchpad (row pairs in int4)
        a_stride = Signal(13)             # words per A row
        b_row_bytes = Signal(13 if self.kv16 else 12)
        b_stride = Signal(13)             # words per B row
        b_fold_step = Signal(self.spad_aw + 1)  # R * b_stride
        acc_stride = Signal(14)           # words per accumulator row
        ncols = Signal(range(NCOL + 1))   # result columns per n-fold in this mode
        m.d.sync += [
            a_rows.eq(Mux(is_int4, (mm + 1) >> 1, mm)),
            a_stride.eq(Mux(is_wide, cdiv_shift(kk << 1, LB), cdiv_shift(kk, LB))),
            b_row_bytes.eq(Mux(is_b16, nn << 1, Mux(b_bytes8, nn, (nn + 1) >> 1)) if self.kv16 else
                           Mux(b_bytes8, nn, (nn + 1) >> 1)),
            b_stride.eq(cdiv_shift(b_row_bytes, LB)),
            b_fold_step.eq(Mux(kpack, b_stride * (R // 2), b_stride * R)),
            acc_stride.eq(cdiv_shift(nn << 2, LB)),
            ncols.eq(Mux(one_col, C, 2 * C) if self.narrow else C),
        ]
        if has_os:
            a_tile_step = Signal(self.spad_aw + 1)   # R * a_stride: words from one OS m-tile to the next
            m.d.sync += a_tile_step.eq(a_stride * R)
        b_trans = Signal()                # B^T operand (latched like ``mode``)
        bt_stride = Signal(13)            # words per stored B^T row (k bytes)
        if self.has_bt:
            with m.If(self.start):
                m.d.sync += b_trans.eq(self.b_trans)
            m.d.sync += bt_stride.eq(cdiv_shift(Mux(is_b16, kk << 1, kk) if self.kv16 else kk, LB))
        blocks = Signal()                 # block-scaled MATMUL (latched like ``mode``)
        rec_base = Signal(self.spad_aw + 1)   # first record word: right after the k rows of codes
        rec_stride = Signal(13)           # words per record row (4 n bytes)
        if self.has_blocks:
            with m.If(self.start):
                m.d.sync += blocks.eq(self.blocks)
            if self.pairs:
                m.d.comb += kpack.eq(blocks & is_w4a16)
            # Codes: kk stored rows, or kk / 2 K-packed ones (kk is a multiple of 32 with blocks).
            m.d.sync += [rec_base.eq(b_word + Mux(kpack, kk >> 1, kk) * b_stride),
                         rec_stride.eq(cdiv_shift(nn << 2, LB))]
        start_d = Signal(2)
        m.d.sync += start_d.eq(Cat(self.start, start_d[0]))
        go = start_d[1]                   # derived sizes valid from here
        p = SimpleNamespace(mode=mode, accumulate=accumulate, mm=mm, kk=kk, nn=nn, a_word=a_word, b_word=b_word,
                            acc_word=acc_word, is_int8=is_int8, is_int4=is_int4, is_wide=is_wide,
                            is_w4a16=is_w4a16, kpack=kpack, one_col=one_col, is_os=is_os, a_rows=a_rows,
                            a_stride=a_stride, b_row_bytes=b_row_bytes, b_stride=b_stride, b_fold_step=b_fold_step,
                            acc_stride=acc_stride, ncols=ncols, go=go)
        p.a_tile_step = a_tile_step if has_os else None
        p.b_trans, p.bt_stride = b_trans, bt_stride
        p.blocks, p.rec_base, p.rec_stride = blocks, rec_base, rec_stride
        # the block stage runs for block records (blocks) and for the b16 planes' constant D / O
        p.b16, p.is_b16, p.scale = b16, is_b16, (blocks | is_b16) if self.kv16 else blocks
        return p

    def _b_transposed(self, m, p, wq):
        """The weight stream of a MATMUL, from B [k, n] (the operand generator ``wq``) or, with ``b_trans``, from
        B^T [n, k]: an :class:`OsTransposer` with ``cols`` rows reads ``cols`` stored rows (one n-fold) per chunk of
        ``word_bytes * read_words`` k values and gives B rows ``k = 0 .. K-1`` of the n-fold, one per cycle; after
        the n-fold's last row (``last``) zero rows pad the k-fold to ``rows`` beats, as the generator's rows past k.
        Returns ``(valid, data, ready)`` of the stream into the array's ``w``."""
        R, C = self.rows, self.cols
        m.submodules.b_transposer = bt = self.b_transposer
        b_trans = p.b_trans
        m.d.comb += [
            bt.start.eq(p.go), bt.os.eq(b_trans), bt.a_word.eq(p.b_word), bt.a_stride.eq(p.bt_stride),
            bt.a_tile_step.eq(p.bt_stride * C), bt.a_rows.eq(p.nn), bt.m.eq(p.nn), bt.k.eq(p.kk), bt.n.eq(1),
            bt.ncols.eq(1), bt.int4.eq(0), *([bt.wide.eq(p.is_b16)] if self.kv16 else []),
            self._w_port.addr.eq(Mux(b_trans, bt.rd.addr, wq.rd.addr)),
            self._w_port.en.eq(Mux(b_trans, bt.rd.en, wq.rd.en)),
            bt.rd.data.eq(self.w_rd.data),
        ]
        fold_beat = Signal(range(R), name="bt_fold_beat")   # beat within the k-fold (R per fold)
        padding = Signal(name="bt_padding")
        valid, ready = Signal(name="w_valid"), Signal(name="w_ready")
        data = Signal(8 * C, name="w_data")
        bt_data = bt.a.payload.data
        if self.kv16:   # 16-bit words: the int8 B in bits 7..0, or (b16) the plane of the int16 element
            bt_data = bt_data.as_value()
            bt_data = Mux(p.is_b16, self._b16_plane(bt_data, p), Cat(*[bt_data[16 * c:16 * c + 8] for c in range(C)]))
        m.d.comb += [
            valid.eq(Mux(b_trans, padding | bt.a.valid, wq.o.valid)),
            data.eq(Mux(b_trans, Mux(padding, 0, bt_data), self._weights(wq.o.payload, p))),
            wq.o.ready.eq(ready & ~b_trans),
            bt.a.ready.eq(ready & b_trans & ~padding & bt.a.valid),
        ]
        fire = valid & ready & b_trans
        with m.If(fire):
            m.d.sync += fold_beat.eq(Mux(fold_beat == R - 1, 0, fold_beat + 1))
            with m.If(~padding & bt.a.payload.last & (fold_beat != R - 1)):
                m.d.sync += padding.eq(1)
            with m.If(padding & (fold_beat == R - 1)):
                m.d.sync += padding.eq(0)
        with m.If(p.go):
            m.d.sync += [fold_beat.eq(0), padding.eq(0)]
        return valid, data, ready

    def _operand_generator(self, m, kind, p):
        """The :class:`OperandGenerator` of ``kind`` (``"a"`` or ``"w"``), started by ``p.go`` with the MATMUL's
        operand parameters."""
        gen = OperandGenerator(kind=kind, word_bytes=self.B, read_words=self.read_words, spad_aw=self.spad_aw,
                               rows=self.rows, cols=self.cols,
                               beat_bytes=self.a_beat_bytes if kind == "a" else self.w_beat_bytes,
                               precisions=self.precisions, wide=self.wide, has_os=self.has_os, has_bt=self.has_bt,
                               kv16=self.kv16)
        m.submodules[f"{kind}_gen"] = gen
        m.d.comb += [gen.go.eq(p.go)]
        m.d.comb += [getattr(gen.params, name).eq(getattr(p, name))
                     for name in ("kk", "a_rows", "a_word", "b_word", "a_stride", "b_stride", "b_row_bytes",
                                  "b_fold_step", "is_wide", "is_w4a16", "is_os", "b_trans", "kpack")]
        if self.kv16:
            m.d.comb += gen.params.b16.eq(p.is_b16)
        # The OS transposer shares the A port, the B^T transposer the B port (muxed by the caller).
        port = self.a_rd if kind == "a" else self._w_port
        if not ((self.has_os and kind == "a") or (self.has_bt and kind == "w")):
            m.d.comb += [port.addr.eq(gen.rd.addr), port.en.eq(gen.rd.en)]
        m.d.comb += gen.rd.data.eq(port.data)
        return gen

    def _collector(self, m, arr, p, t):
        """Result beats -> a hold stage of one beat (1 or 2 rows), issued one row per cycle to
        :meth:`_accumulator_write`; returns its ``(p_valid, p_final)``."""
        E, LE = self.B // 4, log2(self.B // 4)          # int32 elements per accumulator word
        R, C, L = self.rows, self.cols, self.lanes
        NCOL = 2 * C if self.narrow else C                # result columns per n-fold (widest mode)
        NB = self.acc_banks
        has_os, is_os, is_int4, go = self.has_os, p.is_os, p.is_int4, p.go
        mm, kk, nn, ncols, a_rows, accumulate = p.mm, p.kk, p.nn, p.ncols, p.a_rows, p.accumulate
        acc_word, acc_stride = p.acc_word, p.acc_stride
        # ---- collector: result beats -> accumulator read-modify-write ----
        c_active = Signal()
        c_beat = Signal(12)               # row (pair) p of the current fold
        c_k0 = Signal(12)
        c_n0 = Signal(12)                 # first result column of the n-fold
        c_row = Signal(self.acc_aw + 2)   # accumulator word of row p*pack_m, column 0
        with m.If(go):
            m.d.sync += [c_active.eq(1), c_beat.eq(0), c_k0.eq(0), c_n0.eq(0), c_row.eq(acc_word)]

        def row_vector(i):
            """Result row ``i`` of the array beat as NCOL int32 in column order (per mode)."""
            vec = []
            for j in range(NCOL):
                e8 = arr.c.payload.data[j * L] if j < C else Const(0, signed(32))
                if self.narrow:
                    e_w = arr.c.payload.data[(j // 2) * L + (j % 2)]
                    e_4 = arr.c.payload.data[(j // 2) * L + 2 * i + (j % 2)]
                    vec.append(Mux(p.one_col, e8, Mux(is_int4, e_4, e_w)))
                else:
                    vec.append(e8)
            return vec

        col_off = Signal(range(E)) if E > 1 else Const(0, 1)
        if E > 1:
            m.d.comb += col_off.eq(c_n0[:LE])
        vn = Signal(range(NCOL + 1))
        n_rem = Signal(signed(14))
        m.d.comb += [n_rem.eq(nn - c_n0), vn.eq(Mux(n_rem >= ncols, ncols, n_rem))]
        vk = Signal(range(R + 1))
        k_rem = Signal(signed(14))
        m.d.comb += [k_rem.eq(kk - c_k0), vk.eq(Mux(k_rem >= R, R, k_rem))]
        seg_words = Signal(range(NB + 1))
        m.d.comb += seg_words.eq(((col_off + vn - 1) >> LE) + 1)
        second_row = Signal()
        if has_os:
            # OS: beat c_beat of a tile is A row (pair) c_m0 + c_beat; beats past the A tile are drained and
            # dropped (empty write mask), so the tile's last beat still ends the instruction.
            c_m0 = Signal(12)
            c_pr = Signal(13)
            row_ok = Signal()
            m.d.comb += [c_pr.eq(Mux(is_os, c_m0 + c_beat, c_beat)), row_ok.eq(~is_os | (c_pr < a_rows))]
            m.d.comb += second_row.eq(is_int4 & ((c_pr << 1) + 1 < mm))
            last_m_tile = (c_m0 + R) >= a_rows
            c_last_beat = Mux(is_os, (c_beat == R - 1) & last_m_tile & ((c_n0 + ncols) >= nn),
                              (c_beat == a_rows - 1) & ((c_k0 + R) >= kk) & ((c_n0 + ncols) >= nn))
            with m.If(go):
                m.d.sync += c_m0.eq(0)
        else:
            m.d.comb += second_row.eq(is_int4 & ((c_beat << 1) + 1 < mm))
            c_last_beat = (c_beat == a_rows - 1) & ((c_k0 + R) >= kk) & ((c_n0 + ncols) >= nn)
        NE = NB * E                       # segment elements, word-aligned (slot col_off + j = column n0 + j)

        def placed(vec):
            out = []
            for j in range(NE):
                choices = [vec[j - o] if 0 <= j - o < NCOL else Const(0, signed(32)) for o in range(E)]
                v = choices[0]
                for o in range(1, E):
                    v = Mux(col_off == o, choices[o], v)
                out.append(v)
            return out

        # Hold stage: one result beat (1 or 2 rows), issued one row per cycle.
        h_valid, h_row, h_two = Signal(), Signal(), Signal()
        h_elems = [[Signal(signed(32), name=f"hold{r}_{j}") for j in range(NE)] for r in range(2 if self.narrow else 1)]
        h_mask = Signal(NE)
        h_w0 = Signal(self.acc_aw + 2)
        h_words = Signal(range(NB + 1))
        h_overwrite, h_last_beat = Signal(), Signal()
        final_row = h_valid & (~h_two | h_row)
        take = Signal()
        blk_ok = Const(1, 1)
        if self.has_blocks:     # a block-scaled result beat needs its activation sum and its block's records
            rec_ok = (p.is_b16 | self._rr.fifo.r_rdy) if self.kv16 else self._rr.fifo.r_rdy
            blk_ok = ~p.scale | (self._sums.r_rdy & rec_ok)
        m.d.comb += [arr.c.ready.eq(c_active & (~h_valid | final_row) & blk_ok), take.eq(arr.c.valid & arr.c.ready)]
        if self.has_blocks:
            h_scale = Signal()
            h_s = Signal(signed(AccumulatorWriter.S_BITS))
            h_d = [Signal(signed(16), name=f"hold_d{j}") for j in range(NE)]
            h_o = [Signal(signed(16), name=f"hold_o{j}") for j in range(NE)]
            rec = self._rr.fifo.r_data
            d_vec = [rec[32 * c:32 * c + 16].as_signed() if c < C else Const(0, signed(16)) for c in range(NCOL)]
            o_vec = [rec[32 * c + 16:32 * c + 32].as_signed() if c < C else Const(0, signed(16)) for c in range(NCOL)]
            if self.kv16:       # b16: the plane's constant record (spec.block_scale.B16_PLANES)
                (d_hi, o_hi), (d_lo, o_lo) = B16_PLANES[1], B16_PLANES[2]
                d_b16 = Mux(p.b16 == 1, Const(d_hi, signed(16)), Const(d_lo, signed(16)))
                o_b16 = Mux(p.b16 == 1, Const(o_hi, signed(16)), Const(o_lo, signed(16)))
                d_vec = [Mux(p.is_b16, d_b16, v) for v in d_vec]
                o_vec = [Mux(p.is_b16, o_b16, v) for v in o_vec]
            block_end = (c_beat == a_rows - 1) & ((c_k0 + R)[:5] == 0)
            m.d.comb += [self._sums.r_en.eq(take & p.scale), self._rr.fifo.r_en.eq(take & p.blocks & block_end)]
            with m.If(take):
                m.d.sync += [h_scale.eq(p.scale), h_s.eq(self._sums.r_data.as_signed())]
                m.d.sync += [h_d[j].eq(v) for j, v in enumerate(placed(d_vec))]
                m.d.sync += [h_o[j].eq(v) for j, v in enumerate(placed(o_vec))]
        macs = Signal(16)
        m.d.comb += macs.eq((vk * vn) << second_row)
        # Registered: the tile's remaining k and n, their product and the take no longer reach the performance
        # counters' increment register in one cycle (the count lands a cycle later; docs/registers.md).
        if has_os:   # OS counts per operand pair taken (a tile's MACs per k), WS per result beat
            m.d.sync += self.macs.eq(Mux(is_os, Mux(arr.a.valid & arr.a.ready, t.macs, 0),
                                         Mux(take, macs, 0)))
        else:
            m.d.sync += self.macs.eq(Mux(take, macs, 0))
        with m.If(h_valid):
            m.d.sync += h_row.eq(1)
            with m.If(final_row):
                m.d.sync += [h_valid.eq(0), h_row.eq(0)]
        with m.If(take):
            m.d.sync += [h_elems[0][j].eq(v) for j, v in enumerate(placed(row_vector(0)))]
            if self.narrow:
                m.d.sync += [h_elems[1][j].eq(v) for j, v in enumerate(placed(row_vector(1)))]
            m.d.sync += [
                h_valid.eq(1), h_row.eq(0), h_two.eq(second_row), h_w0.eq(c_row + (c_n0 >> LE)),
                h_words.eq(seg_words), h_overwrite.eq((c_k0 == 0) & ~accumulate), h_last_beat.eq(c_last_beat),
                h_mask.eq(Cat(*[(j >= col_off) & (j < col_off + vn) for j in range(NE)])),
            ]
            m.d.sync += [c_beat.eq(c_beat + 1), c_row.eq(c_row + Mux(is_int4, acc_stride << 1, acc_stride))]

            def ws_fold_end():
                with m.If(c_beat == a_rows - 1):
                    m.d.sync += [c_beat.eq(0), c_row.eq(acc_word)]
                    with m.If((c_k0 + R) < kk):
                        m.d.sync += c_k0.eq(c_k0 + R)
                    with m.Else():
                        m.d.sync += [c_k0.eq(0), c_n0.eq(c_n0 + ncols)]
                        with m.If((c_n0 + ncols) >= nn):
                            m.d.sync += c_active.eq(0)

            if has_os:
                with m.If(~row_ok):
                    m.d.sync += h_mask.eq(0)
                with m.If(is_os):
                    with m.If(c_beat == R - 1):   # one K pass: a tile's R drained rows, then the next tile
                        m.d.sync += c_beat.eq(0)
                        with m.If(~last_m_tile):
                            m.d.sync += c_m0.eq(c_m0 + R)
                        with m.Else():
                            m.d.sync += [c_m0.eq(0), c_row.eq(acc_word), c_n0.eq(c_n0 + ncols)]
                            with m.If((c_n0 + ncols) >= nn):
                                m.d.sync += c_active.eq(0)
                with m.Else():
                    ws_fold_end()
            else:
                ws_fold_end()

        # The held rows -> one read-modify-write per accumulator bank.
        m.submodules.acc_writer = wr = AccumulatorWriter(word_bytes=self.B, acc_aw=self.acc_aw, banks=NB,
                                                         rows=2 if self.narrow else 1, blocks=self.has_blocks)
        if self.has_blocks:
            m.d.comb += [wr.scale.eq(h_scale), wr.s.eq(h_s)]
            m.d.comb += [wr.d[j].eq(v) for j, v in enumerate(h_d)] + [wr.o[j].eq(v) for j, v in enumerate(h_o)]
            for name in EXT_PORT_NAMES:
                if name == "ext_rd_data":
                    m.d.comb += wr.ext_rd_data.eq(self.ext_rd_data)
                else:
                    m.d.comb += getattr(self, name).eq(getattr(wr, name))
        m.d.comb += [wr.valid.eq(h_valid), wr.row.eq(h_row), wr.mask.eq(h_mask), wr.w0.eq(h_w0),
                     wr.words.eq(h_words), wr.overwrite.eq(h_overwrite), wr.final.eq(final_row & h_last_beat),
                     wr.acc_stride.eq(acc_stride)]
        for r, elems in enumerate(h_elems):
            m.d.comb += [wr.elems[r][j].eq(v) for j, v in enumerate(elems)]
        for name in ACC_PORT_NAMES:
            if name == "acc_rd_data":
                m.d.comb += wr.acc_rd_data.eq(self.acc_rd_data)
            else:
                m.d.comb += getattr(self, name).eq(getattr(wr, name))
        return wr.written, wr.written_final
