"""NPU controller: fetches 128-bit commands from a ring buffer, decodes them and runs them on the units.

Execution model (docs/isa.md). Instructions are decoded and issued in program order, one in flight per unit
(DMA, MATMUL, VECTOR): an instruction waits at issue until its unit is free, a FENCE until the units it names have
drained, and the controller keeps fetching and issuing while the units run, so DMA, the array and the vector unit
overlap (the compiler's double-buffered tiles rely on it). The ports the units share are interlocked here: an
accumulator DMA starts only with no MATMUL or VECTOR instruction in flight, and no MATMUL or VEC_REQUANT starts
while it runs. Ordering of
scratchpad data between units is the program's job (FENCE), as in the ISA simulator.

Command fetch
    ``start`` (pulse) resets the ring consumer offset ``ring_tail`` to 0 and starts fetching at
    ``ring_base + ring_tail`` (16-byte aligned) through the ``fetch`` port (AXI4 AR/R, one burst of 16 bytes),
    advancing by 16 modulo ``ring_size``. Reaching ``ring_head`` without a HALT is ``PROGRAM_OVERRUN``. When the
    run ends, ``ring_tail`` is ``16 * pc``: the byte offset of the HALT or of the faulting instruction.

Decode
    An opcode not in ``used_masks`` (0x00, undefined, a vector operator this NPU was not built with), a set bit
    outside the opcode's fields, a 0 in a 1..N field (rows, row_bytes, m, k, n), MATMUL mode 3 or a mode/dataflow
    this NPU was not generated with is ``ILLEGAL_INSTRUCTION``. On an NPU generated with both dataflows a MATMUL
    runs on the schedule its dataflow field names (``ws`` weight-stationary, ``os`` output-stationary; same
    result, different timing, see :class:`MatmulEngine`).

Units
    DMA_LOAD/STORE: local range check (aligned, inside the selected memory), then the descriptor goes to the
    DMA engine (which checks the windows and maps errors: WINDOW -> DMA_WINDOW, AXI_* -> BUS_ERROR).
    MATMUL: :class:`MatmulEngine` (PE array + accumulator read-modify-write). VEC_REQUANT:
    :class:`RequantEngine` (records -> :class:`rtl.vector.requant.Requant` -> scratchpad). The other vector operators
    (those of ``vector_ops`` among softmax, layernorm, rmsnorm, act, residual, gate, rope): operator-specific
    reserved flags/imm and row shapes (ILLEGAL), operand and parameter-block ranges (LOCAL_RANGE), the residual
    shift (BAD_PARAM) are checked at decode, records and headers (BAD_PARAM) when loaded, then
    :class:`VecEngine` (parameter block -> :class:`rtl.vector.unit.VectorUnit` param memory / ports, rows streamed
    from the scratchpad through the unit and back). Requant and VecEngine are the one VECTOR unit: in order, one
    instruction at a time, overlapping DMA and MATMUL like the other units.

Errors stop the run: ``done`` pulses with ``error`` (the ISA's 4-bit ErrorCode) and ``fault_addr``.
"""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.array import PEArray
from npuforge.rtl.dma import DMA_DESCRIPTOR, Direction, DmaError
from npuforge.rtl.mac import lanes_for
from npuforge.spec.dataflow import DATAFLOW_CODES
from npuforge.spec.precision import MODE_CODES
from npuforge.rtl.memories import ReadPortSignature, WritePortSignature, read_words_for
from npuforge.rtl.vector.norm import GAMMA_SHIFT_MAX, GAMMA_SHIFT_MIN, VAR_FRAC_BITS_MAX
from npuforge.rtl.vector.requant import Requant
from npuforge.rtl.vector.rope import FRAC_BITS_MAX as ROPE_FRAC_BITS_MAX

__all__ = ["ErrorCode", "OPCODES", "VEC_OPCODES", "FetchSignature", "MatmulEngine", "RequantEngine", "VecEngine",
           "Controller"]


class ErrorCode:
    """The ISA's status codes (``spec.isa.ErrorCode``; rtl/ may not import gen/, tests check they agree)."""
    NONE = 0
    ILLEGAL_INSTRUCTION = 1
    DMA_WINDOW = 2
    LOCAL_RANGE = 3
    BUS_ERROR = 4
    BAD_PARAM = 5
    PROGRAM_OVERRUN = 6


#: Opcodes this controller executes.
OPCODES = {"NOP": 0x01, "HALT": 0x02, "FENCE": 0x03, "DMA_LOAD": 0x10, "DMA_STORE": 0x11, "MATMUL": 0x20,
           "VEC_REQUANT": 0x30}


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _cdiv_shift(value, shift):
    """ceil(value / 2**shift) for an unsigned Amaranth value."""
    return (value + ((1 << shift) - 1)) >> shift if shift else value


class FetchSignature(wiring.Signature):
    """The read half of an AXI4 manager (driver view), used by the command fetcher."""

    def __init__(self, data_width: int):
        super().__init__({
            "arvalid": Out(1), "arready": In(1), "araddr": Out(32), "arlen": Out(8), "arsize": Out(3),
            "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        })


# ---------------------------------------------------------------------------------------------------------------
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

    Operand gathering: a beat is ``rows`` (A) or ``cols`` (B) bytes at a multiple of its size from a word-aligned
    scratchpad row start, read ``read_words`` consecutive words per cycle (the scratchpad's word-interleaved wide
    ports; ``read_words = rtl.memories.read_words_for(word_bytes, (rows, cols))`` makes that one read per beat)
    and realigned; bytes past the operand's row are zeroed. So the array takes one beat per cycle per operand.

    OS schedule (``dataflow`` = 1, latched at ``start`` like ``mode``): for each n-tile (``cols`` B bytes) and
    each m-tile (``rows`` A rows, row pairs in int4) the array takes K operand pairs, ``a`` = column
    ``A[m0:m0+rows, k]`` and ``w`` = ``B[k, n0:n0+cols]`` (``last`` on k = K-1), then drains ``rows`` result beats
    (while the next tile accumulates) that the collector writes over (``accumulate`` = 0) or adds into the
    accumulator rows in one pass; beats of rows past the A tile are drained and dropped. The A columns come from
    a transposer (:meth:`_os_transposer`): ``rows`` wide reads of ``word_bytes * read_words`` k values each into
    one of two buffer banks, emitted column by column while the other bank fills, so one pair per cycle when
    ``rows <= word_bytes * read_words``. The weight generator gives B rows 0..K-1 per m-tile. ``macs`` counts
    a tile's useful MACs per pair taken (WS: per result beat). A ws-only engine has none of this logic.

    Members
    -------
    start : In(1)        pulse; the ``mode .. acc_word`` (and ``dataflow``) inputs are sampled then.
    dataflow : In(1)     only with ``dataflows=("ws", "os")``: 0 ws, 1 os.
    busy, done : Out(1)  ``done`` pulses when the last accumulator write happens.
    a_rd, w_rd : Out(ReadPortSignature(spad_aw, read_words * word_bytes)) wide scratchpad ports (``data``: words
                         ``addr .. addr + read_words - 1``); ``acc_*``: the accumulator's wide port.
    macs : Out(16)       useful MACs of the result beat taken this cycle (for the performance counter).
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, acc_aw: int, rows: int, cols: int,
                 precisions=("int8", "w4a8", "int4"), dataflows=("ws",), pipeline: int = 2):
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
        self.read_words = read_words_for(word_bytes, (rows, cols))
        self.narrow = self.precisions != ("int8",)
        self.spad_aw, self.acc_aw = spad_aw, acc_aw
        E = word_bytes // 4
        ncol = 2 * cols if self.narrow else cols
        seg_max = -(-(ncol + E - 1) // E) if ncol % E else ncol // E
        self.acc_banks = 1 << (seg_max - 1).bit_length()
        self.acc_lb = (self.acc_banks - 1).bit_length()
        self.acc_row_width = max(1, acc_aw - self.acc_lb)
        W = 8 * word_bytes
        NB = self.acc_banks
        super().__init__({
            **({"dataflow": In(1)} if self.has_os else {}),
            "start": In(1),
            "mode": In(2),
            "accumulate": In(1),
            "m": In(12), "k": In(12), "n": In(12),
            "a_word": In(spad_aw), "b_word": In(spad_aw), "acc_word": In(acc_aw),
            "busy": Out(1), "done": Out(1),
            "a_rd": Out(ReadPortSignature(spad_aw, word_bytes * self.read_words)),
            "w_rd": Out(ReadPortSignature(spad_aw, word_bytes * self.read_words)),
            "acc_rd_addr": Out(data.ArrayLayout(self.acc_row_width, NB)),
            "acc_rd_en": Out(1),
            "acc_rd_data": In(data.ArrayLayout(W, NB)),
            "acc_wr_addr": Out(data.ArrayLayout(self.acc_row_width, NB)),
            "acc_wr_data": Out(data.ArrayLayout(W, NB)),
            "acc_wr_en": Out(data.ArrayLayout(word_bytes, NB)),
            "macs": Out(16),
        })

    def _os_transposer(self, m, *, a_word, a_stride, a_tile_step, a_rows, mm, kk, nn, ncols, is_int4, is_os, go):
        """OS activation columns ``A[m0:m0+R, k]`` from the row-major A tile, one per cycle.

        Fill: ``R`` wide reads (one per cycle), A rows ``m0 .. m0+R-1`` x ``KB = word_bytes * read_words``
        consecutive k values (word-aligned chunk ``kc .. kc+KB-1``), into one of two buffer banks. Emit: the full
        bank gives ``min(KB, K - kc)`` columns (byte ``j`` of every row; rows past the A tile are 0), ``last`` on
        ``k = K - 1``, while the filler loads the next chunk into the other bank, so the columns flow at one per
        cycle whenever ``R <= KB``. Order: n-tile, m-tile, k-chunk (the weight generator and the collector use
        the same n-outer, m-inner order). Returns the port drive, the ``a`` beat and the useful MACs per pair.
        """
        B, LB = self.B, _log2(self.B)
        R, NI, LI = self.rows, self.read_words, _log2(self.read_words)
        KB = B * NI
        C = self.cols
        # -- filler --
        f_active = Signal(name="t_f_active")
        f_n0 = Signal(12, name="t_f_n0")          # first result column of the n-tile
        f_m0 = Signal(12, name="t_f_m0")          # first A row (pair) of the m-tile
        f_kc = Signal(13, name="t_f_kc")          # first k of the chunk
        f_tile = Signal(self.spad_aw + 1, name="t_f_tile")   # scratchpad word of A row f_m0
        f_addr = Signal(self.spad_aw + 1, name="t_f_addr")   # word of the row being read
        f_r = Signal(range(R), name="t_f_r")
        f_bank = Signal(name="t_f_bank")
        full = [Signal(name=f"t_full{b}") for b in range(2)]
        buf = [[Signal(8 * KB, name=f"t_buf{b}_{r}") for r in range(R)] for b in range(2)]
        meta_cnt = [Signal(range(KB + 1), name=f"t_cnt{b}") for b in range(2)]     # columns in the chunk
        meta_lastk = [Signal(name=f"t_lastk{b}") for b in range(2)]                 # chunk holds k = K-1
        meta_rows = [Signal(range(R + 1), name=f"t_rows{b}") for b in range(2)]     # A rows in the m-tile
        meta_macs = [Signal(16, name=f"t_macs{b}") for b in range(2)]               # useful MACs per pair
        issue = Signal(name="t_issue")
        e_bank = Signal(name="t_e_bank")
        e_j = Signal(range(KB), name="t_e_j")
        take = Signal(name="t_take")
        cnt = Mux(e_bank, meta_cnt[1], meta_cnt[0])
        end_chunk = e_j == cnt - 1
        # A bank may refill from the cycle its last column is taken: a read issued then writes its row at the
        # end of the next cycle, after the column was used (so rows == KB still gives one pair per cycle).
        freed = take & end_chunk & (e_bank == f_bank)
        m.d.comb += issue.eq(f_active & (~Mux(f_bank, full[1], full[0]) | freed))
        last_row = f_r == R - 1
        k_rem = Signal(signed(14), name="t_k_rem")
        m_rem = Signal(signed(14), name="t_m_rem")
        r_rem = Signal(signed(14), name="t_r_rem")    # result rows left from the m-tile on
        n_rem = Signal(signed(14), name="t_n_rem")
        m.d.comb += [k_rem.eq(kk - f_kc), m_rem.eq(a_rows - f_m0),
                     r_rem.eq(mm - Mux(is_int4, f_m0 << 1, f_m0)), n_rem.eq(nn - f_n0)]
        v_rows = Mux(m_rem >= R, R, m_rem)
        v_res = Mux(is_int4, Mux(r_rem >= 2 * R, 2 * R, r_rem), Mux(r_rem >= R, R, r_rem))
        v_cols = Mux(n_rem >= ncols, ncols, n_rem)
        with m.If(issue):
            m.d.sync += [f_r.eq(f_r + 1), f_addr.eq(f_addr + a_stride)]
            with m.If(last_row):
                m.d.sync += f_r.eq(0)
                for b in range(2):
                    with m.If(f_bank == b):
                        m.d.sync += [meta_cnt[b].eq(Mux(k_rem >= KB, KB, k_rem)), meta_lastk[b].eq(k_rem <= KB),
                                     meta_rows[b].eq(v_rows), meta_macs[b].eq(v_res * v_cols)]
                m.d.sync += f_bank.eq(~f_bank)
                with m.If(k_rem > KB):
                    m.d.sync += [f_kc.eq(f_kc + KB), f_addr.eq(f_tile + ((f_kc + KB) >> LB))]
                with m.Elif(m_rem > R):
                    m.d.sync += [f_kc.eq(0), f_m0.eq(f_m0 + R), f_tile.eq(f_tile + a_tile_step),
                                 f_addr.eq(f_tile + a_tile_step)]
                with m.Elif(n_rem > ncols):
                    m.d.sync += [f_kc.eq(0), f_m0.eq(0), f_n0.eq(f_n0 + ncols), f_tile.eq(a_word),
                                 f_addr.eq(a_word)]
                with m.Else():
                    m.d.sync += f_active.eq(0)
        # Read data arrives the cycle after the issue.
        s_valid, s_bank, s_last = Signal(name="t_s_valid"), Signal(name="t_s_bank"), Signal(name="t_s_last")
        s_row = Signal(range(R), name="t_s_row")
        m.d.sync += [s_valid.eq(issue), s_bank.eq(f_bank), s_last.eq(last_row), s_row.eq(f_r)]
        for b in range(2):
            for r in range(R):
                with m.If(s_valid & (s_bank == b) & (s_row == r)):
                    m.d.sync += buf[b][r].eq(self.a_rd.data)
        # -- emitter --
        rows_ok = Mux(e_bank, meta_rows[1], meta_rows[0])
        col = []
        for r in range(R):
            byte = Mux(e_bank, buf[1][r], buf[0][r]).word_select(e_j, 8)
            col.append(Mux(r < rows_ok, byte, 0))
        with m.If(take):
            m.d.sync += e_j.eq(e_j + 1)
            with m.If(end_chunk):
                m.d.sync += [e_j.eq(0), e_bank.eq(~e_bank)]
        for b in range(2):
            with m.If(s_valid & s_last & (s_bank == b)):
                m.d.sync += full[b].eq(1)
            with m.Elif(take & end_chunk & (e_bank == b)):
                m.d.sync += full[b].eq(0)
        with m.If(go):
            m.d.sync += [f_active.eq(is_os), f_n0.eq(0), f_m0.eq(0), f_kc.eq(0), f_tile.eq(a_word),
                         f_addr.eq(a_word), f_r.eq(0), f_bank.eq(0), e_bank.eq(0), e_j.eq(0),
                         full[0].eq(0), full[1].eq(0)]
        return {"addr": f_addr, "en": issue, "valid": Mux(e_bank, full[1], full[0]), "data": Cat(*col),
                "last": Mux(e_bank, meta_lastk[1], meta_lastk[0]) & end_chunk, "take": take,
                "macs": Mux(e_bank, meta_macs[1], meta_macs[0])}

    def elaborate(self, platform):
        m = Module()
        B, LB = self.B, _log2(self.B)
        E, LE = self.B // 4, _log2(self.B // 4)          # int32 elements per accumulator word
        R, C, L = self.rows, self.cols, self.lanes
        NCOL = 2 * C if self.narrow else C                # result columns per n-fold (widest mode)
        NB, LNB = self.acc_banks, self.acc_lb
        m.submodules.array = arr = self.array

        # ---- parameters latched at start ----
        mode = Signal(2)
        accumulate = Signal()
        mm, kk, nn = Signal(12), Signal(12), Signal(12)
        a_word, b_word = Signal(self.spad_aw), Signal(self.spad_aw)
        acc_word = Signal(self.acc_aw)
        with m.If(self.start):
            m.d.sync += [mode.eq(self.mode), accumulate.eq(self.accumulate), mm.eq(self.m), kk.eq(self.k),
                         nn.eq(self.n), a_word.eq(self.a_word), b_word.eq(self.b_word), acc_word.eq(self.acc_word)]
        is_int8 = mode == MODE_CODES["int8"]
        is_int4 = mode == MODE_CODES["int4"]
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
        b_row_bytes = Signal(12)
        b_stride = Signal(13)             # words per B row
        b_fold_step = Signal(self.spad_aw + 1)  # R * b_stride
        acc_stride = Signal(14)           # words per accumulator row
        ncols = Signal(range(NCOL + 1))   # result columns per n-fold in this mode
        m.d.sync += [
            a_rows.eq(Mux(is_int4, (mm + 1) >> 1, mm)),
            a_stride.eq(_cdiv_shift(kk, LB)),
            b_row_bytes.eq(Mux(is_int8, nn, (nn + 1) >> 1)),
            b_stride.eq(_cdiv_shift(b_row_bytes, LB)),
            b_fold_step.eq(b_stride * R),
            acc_stride.eq(_cdiv_shift(nn << 2, LB)),
            ncols.eq(Mux(is_int8, C, 2 * C) if self.narrow else C),
        ]
        if has_os:
            a_tile_step = Signal(self.spad_aw + 1)   # R * a_stride: words from one OS m-tile to the next
            m.d.sync += a_tile_step.eq(a_stride * R)
        start_d = Signal(2)
        m.d.sync += start_d.eq(Cat(self.start, start_d[0]))
        go = start_d[1]                   # derived sizes valid from here

        # ---- operand generators: one wide scratchpad read (NI words) per cycle each ----
        NI, LI = self.read_words, _log2(self.read_words)

        def generator(kind):
            is_a = kind == "a"
            port = self.a_rd if is_a else self.w_rd
            LEN = R if is_a else C
            # Reads per beat at most: the beat starts at a multiple of gcd(LEN, B) within its first word.
            NSLOT = -(-(B - gcd(LEN, B) + LEN) // (NI * B))
            active = Signal(name=f"{kind}_active")
            beat = Signal(12, name=f"{kind}_beat")
            word = Signal(range(NSLOT + 1), name=f"{kind}_word")
            noff = Signal(12, name=f"{kind}_noff")       # byte offset of the n-fold in a B row
            k0 = Signal(12, name=f"{kind}_k0")
            row = Signal(self.spad_aw + 1, name=f"{kind}_row")
            bfold = Signal(self.spad_aw + 1, name=f"{kind}_bfold")
            off = k0 if is_a else noff
            nwords = Signal(range(NSLOT + 1), name=f"{kind}_nwords")
            m.d.comb += nwords.eq(((off[:LB] + LEN - 1) >> (LB + LI)) + 1)
            valid_bytes = Signal(range(LEN + 1), name=f"{kind}_valid_bytes")
            rem = Signal(signed(14), name=f"{kind}_rem")
            if is_a:
                m.d.comb += [rem.eq(kk - k0), valid_bytes.eq(Mux(rem >= LEN, LEN, rem))]
            else:
                m.d.comb += rem.eq(b_row_bytes - noff)
                m.d.comb += valid_bytes.eq(Mux((k0 + beat) >= kk, 0, Mux(rem >= LEN, LEN, rem)))
            q = fifo.SyncFIFO(width=8 * LEN + 1, depth=4)
            m.submodules[f"{kind}_queue"] = q
            issue = Signal(name=f"{kind}_issue")
            m.d.comb += issue.eq(active & (q.level < q.depth - 1))
            last_word = word == nwords - 1
            if has_os and is_a:           # the OS transposer shares this port (muxed below)
                gen_port = (row + (off >> LB) + (word << LI), issue)
            else:
                m.d.comb += [port.addr.eq(row + (off >> LB) + (word << LI)), port.en.eq(issue)]
            os_w = has_os and not is_a    # OS: K beats (B rows 0..K-1) per (n-tile, m-tile)
            n_beats = a_rows if is_a else (Mux(is_os, kk, R) if os_w else R)
            last_beat = beat == n_beats - 1
            last_k = (k0 + R) >= kk
            last_n = (noff + C) >= b_row_bytes
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
                                m.d.sync += [k0.eq(0), noff.eq(noff + C), row.eq(a_word if is_a else b_word),
                                             bfold.eq(b_word)]
                            with m.Else():
                                m.d.sync += active.eq(0)

                        if os_w:
                            with m.If(is_os):     # n-tile outer, m-tile inner; B rows 0..K-1 again per m-tile
                                with m.If(~last_m):
                                    m.d.sync += [w_m0.eq(w_m0 + R), row.eq(b_word)]
                                with m.Elif(~last_n):
                                    m.d.sync += [w_m0.eq(0), noff.eq(noff + C), row.eq(b_word)]
                                with m.Else():
                                    m.d.sync += active.eq(0)
                            with m.Else():
                                ws_fold_end()
                        else:
                            ws_fold_end()
            with m.If(go & ~is_os if (has_os and is_a) else go):   # OS: the transposer reads A instead
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
            m.d.comb += [q.w_en.eq(s_valid & s_last_word), q.w_data.eq(Cat(beat_data, s_last_beat))]
            if has_os and is_a:
                return q, gen_port
            return q

        wq = generator("w")
        if not has_os:
            aq = generator("a")
            m.d.comb += [
                arr.w.valid.eq(wq.r_rdy), arr.w.payload.eq(wq.r_data[:8 * C]), wq.r_en.eq(arr.w.ready),
                arr.a.valid.eq(aq.r_rdy), arr.a.payload.data.eq(aq.r_data[:8 * R]),
                arr.a.payload.last.eq(aq.r_data[8 * R]), aq.r_en.eq(arr.a.ready),
            ]
        else:
            aq, (g_addr, g_en) = generator("a")
            t = self._os_transposer(m, a_word=a_word, a_stride=a_stride, a_tile_step=a_tile_step, a_rows=a_rows,
                                    mm=mm, kk=kk, nn=nn, ncols=ncols, is_int4=is_int4, is_os=is_os, go=go)
            m.d.comb += [
                arr.w.valid.eq(wq.r_rdy), arr.w.payload.eq(wq.r_data[:8 * C]), wq.r_en.eq(arr.w.ready),
                self.a_rd.addr.eq(Mux(is_os, t["addr"], g_addr)), self.a_rd.en.eq(Mux(is_os, t["en"], g_en)),
                arr.a.valid.eq(Mux(is_os, t["valid"], aq.r_rdy)),
                arr.a.payload.data.eq(Mux(is_os, t["data"], aq.r_data[:8 * R])),
                arr.a.payload.last.eq(Mux(is_os, t["last"], aq.r_data[8 * R])),
                aq.r_en.eq(arr.a.ready & ~is_os), t["take"].eq(arr.a.ready & is_os),
            ]

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
                    vec.append(Mux(is_int8, e8, Mux(is_int4, e_4, e_w)))
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
        m.d.comb += [arr.c.ready.eq(c_active & (~h_valid | final_row)), take.eq(arr.c.valid & arr.c.ready)]
        macs = Signal(16)
        m.d.comb += macs.eq(vk * vn * Mux(second_row, 2, 1))
        if has_os:   # OS counts per operand pair taken (a tile's MACs per k), WS per result beat
            m.d.comb += self.macs.eq(Mux(is_os, Mux(arr.a.valid & arr.a.ready, t["macs"], 0),
                                         Mux(take, macs, 0)))
        else:
            m.d.comb += self.macs.eq(Mux(take, macs, 0))
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

        # Issue: every bank reads the segment word that falls in it.
        w0 = Signal(self.acc_aw + 2)
        m.d.comb += w0.eq(h_w0 + Mux(h_row, acc_stride, 0))
        elems = h_elems[0] if not self.narrow else [Mux(h_row, h_elems[1][j], h_elems[0][j]) for j in range(NE)]
        p_valid, p_overwrite, p_final = Signal(), Signal(), Signal()
        m.d.sync += p_valid.eq(h_valid)
        with m.If(h_valid):
            m.d.sync += [p_overwrite.eq(h_overwrite), p_final.eq(final_row & h_last_beat)]
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

        # ---- completion ----
        running = Signal()
        with m.If(self.start):
            m.d.sync += running.eq(1)
        m.d.comb += self.done.eq(running & p_valid & p_final)
        with m.If(self.done):
            m.d.sync += running.eq(0)
        m.d.comb += self.busy.eq(running)
        return m


# ---------------------------------------------------------------------------------------------------------------
class RequantEngine(wiring.Component):
    """``spad[dst: m x n] = requantize(acc[src: m x n], records at param_word)`` via :class:`Requant`.

    Phase 1 reads the ``n`` 8-byte records (one per channel) from the scratchpad, checks them (multiplier bit 30
    set, shift in [-30, 31], else ``BAD_PARAM`` with the record's byte address) and writes them into the requant
    unit's parameter memory; then the zero point is checked (``BAD_PARAM``, address 0). Phase 2 streams each
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
        self.requant = Requant(lanes=word_bytes // 4, max_row=4096, out_width=16)
        super().__init__({
            "start": In(1),
            "out16": In(1), "zero_point": In(signed(16)),
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
        B, LB = self.B, _log2(self.B)
        E = B // 4
        m.submodules.requant = rq = self.requant

        out16, zp = Signal(), Signal(signed(16))
        mm, nn = Signal(12), Signal(12)
        src, dst = Signal(self.acc_aw), Signal(self.spad_aw)
        pbyte = Signal(20)
        with m.If(self.start):
            m.d.sync += [out16.eq(self.out16), zp.eq(self.zero_point), mm.eq(self.m), nn.eq(self.n),
                         src.eq(self.src_word), dst.eq(self.dst_word), pbyte.eq(self.param_byte)]
        m.d.comb += [rq.row_len.eq(nn), rq.zero_point.eq(zp), rq.out_bits.eq(Mux(out16, 16, 8)), rq.clear.eq(0)]
        acc_stride = Signal(14)
        dst_stride = Signal(14)
        m.d.sync += [acc_stride.eq(_cdiv_shift(nn << 2, LB)),
                     dst_stride.eq(_cdiv_shift(Mux(out16, nn << 1, nn), LB))]

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
        m.d.comb += beats_row.eq(_cdiv_shift(nn << 2, LB))
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
        beat16 = Cat(*[rq.o.payload.data[j] for j in range(E)])         # 2E bytes
        # The DMA has priority on the scratchpad write port: results wait in the requant pipeline.
        m.d.comb += rq.o.ready.eq(~self.wr_block)
        o_fire = rq.o.valid & ~self.wr_block
        per_word = Mux(out16, 2, 4)
        merged = Signal(8 * B)
        m.d.comb += merged.eq(Mux(out16, pk | (beat16 << (pk_idx * 16 * E)), pk | (beat8 << (pk_idx * 8 * E))))
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
                             out_row_base.eq(dst), pk.eq(0), pk_idx.eq(0)]
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
                    with m.If(~multiplier[30] | (shift < -30) | (shift > 31)):
                        m.d.sync += [error.eq(1), fault.eq(rec_addr)]
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += rq.param_we.eq(1)
                        m.d.sync += [rec.eq(rec + 1), rec_addr.eq(rec_addr + 8), half.eq(0)]
                        with m.If(rec == nn - 1):
                            m.next = "ZP"
                        with m.Else():
                            m.next = "REC_READ"
            with m.State("ZP"):
                m.d.comb += self.busy.eq(1)
                with m.If(~out16 & ((zp < -128) | (zp > 127))):
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

# ---------------------------------------------------------------------------------------------------------------
#: ISA vector operators the controller can sequence -> their opcode (spec.isa.Opcode) and VectorUnit operator.
VEC_OPCODES = {"softmax": 0x31, "layernorm": 0x32, "rmsnorm": 0x33, "act": 0x34, "residual": 0x35, "gate": 0x36,
               "rope": 0x37}
_VEC_UNIT_OPERATOR = {"softmax": "softmax", "layernorm": "layernorm", "rmsnorm": "rmsnorm", "act": "table",
                      "residual": "residual", "gate": "gate", "rope": "rope"}
#: rtl.vector.unit.OPCODES values the sequencer drives (GELU/SiLU are the two resident table slots).
_UNIT_OPCODE = {"gelu": 1, "silu": 2, "residual": 3, "gate": 4, "rope": 5, "softmax": 6, "layernorm": 7,
                "rmsnorm": 8}
#: The parameter block of layernorm / rmsnorm / rope starts with a 16-byte header (spec.isa.VEC_HEADER_BYTES).
_HEADER_BYTES = 16
#: Bytes per parameter item after the header: a LayerNorm channel (G int16, B int48), an RMSNorm G (int16), a
#: RoPE table entry (cos int16, sin int16) -- spec.isa.NORM_CHANNEL_BYTES / ROPE_ENTRY_BYTES.
_ITEM_BYTES = {"layernorm": 8, "rmsnorm": 2, "rope": 4}
#: The RoPE operator: head_dim up to 256, 8 resident table positions (spec.isa.ROPE_MAX_HEAD_DIM / ROPE_POSITIONS).
ROPE_MAX_HEAD_DIM, ROPE_POSITIONS = 256, 8
_TABLE_ENTRIES = 256
#: rtl.vector.common.ErrorCode values (a unit error cannot follow the controller's checks; mapped defensively).
_UNIT_BAD_PARAM, _UNIT_PARAM_ADDR = 2, 3


class VecEngine(wiring.Component):
    """Vector sequencer: ``spad[dst: m x n] = op(spad[src: m x n] (, spad[src2: m x n]))`` through a
    :class:`rtl.vector.unit.VectorUnit` holding the operators of ``ops`` (ISA names: softmax, layernorm, rmsnorm,
    act, residual, gate, rope; softmax built for int8 scores, its uint8 probabilities stored as bytes).

    Phase 1 loads the parameters from scratchpad byte ``param_word * word_bytes``: for ``act`` the 256-byte table
    into table slot ``table`` (one entry per cycle), for softmax/residual/gate the 64-bit record (softmax, gate:
    multiplier bit 30 and shift in [-30, 31] checked, else BAD_PARAM with the record address); for layernorm,
    rmsnorm and rope the 16-byte header (one read per word), checked (norms: var_frac_bits even and <= 28,
    gamma_shift in [-15, 16]; rope: frac_bits in [1, 14], positions ``row_offset .. row_offset + P - 1`` inside the
    table, P = ceil(m / heads) counted by repeated addition; else BAD_PARAM with the block address; rope: the table
    rows read inside the scratchpad, else LOCAL_RANGE with the block address), then the items after it into the
    operator's parameter memory, one item per cycle plus one read cycle per word (norms: channel c = item c;
    rope: the P table rows of the instruction's positions, row r into resident slot r; a LayerNorm item on a
    4-byte word takes two reads). Phase 2 streams the rows: reader A
    (dedicated read port ``rd``) and reader B (``rd2``, shared with the DMA store path, which has priority) read one
    word per cycle into FIFOs; each word is split into ``word_bytes / lanes`` beats of ``lanes`` int8 elements, and
    the results are packed back into words and written to ``wr`` (shared with DMA loads, which have priority); row
    tails are written 0. Steady state: ``lanes`` elements per cycle.

    An operator error (not reachable after the controller's checks) drops rows without output; the engine still
    reads every row, waits for the unit to drain and then reports it (``error``, ``code``), never hanging.

    Members
    -------
    start : In(1)  pulse; ``unit_op .. shift`` are sampled then.
    unit_op : In(4) VectorUnit opcode; two : In(1) second operand; is_act : In(1); table : In(1) act table slot
    m, n : In(12); src_word, src2_word, dst_word, param_word : In(spad_aw); shift : In(6) residual total shift
    causal : In(1), row_offset : In(15)   softmax: row i of the instruction has query position row_offset + i;
                                          rope: the first table position
    heads_m1 : In(8)   rope: row i uses position row_offset + i // (heads_m1 + 1)
    busy, done, error : Out(1); code : Out(4) ISA error code; fault_addr : Out(32)
    rd, rd2 : Out(ReadPortSignature); rd2_block : In(1); wr : Out(WritePortSignature); wr_block : In(1)
    """

    def __init__(self, *, word_bytes: int, spad_aw: int, lanes: int, ops, spad_words: int | None = None):
        from npuforge.rtl.vector.unit import VectorUnit

        self.B = word_bytes
        if lanes < 1 or lanes > word_bytes or lanes & (lanes - 1):
            raise ValueError(f"vector lanes must be a power of two in [1, word_bytes={word_bytes}], got {lanes!r}")
        self.lanes = lanes
        self.ops = tuple(ops)
        for op in self.ops:
            if op not in VEC_OPCODES:
                raise ValueError(f"vector op must be one of {', '.join(VEC_OPCODES)}, got {op!r}")
        self.spad_aw = spad_aw
        self.spad_words = (1 << spad_aw) if spad_words is None else spad_words
        options = {}
        if "softmax" in self.ops:
            options["softmax"] = {"in_width": 8}
        if "rope" in self.ops:
            options["rope"] = {"max_row": ROPE_MAX_HEAD_DIM, "max_positions": ROPE_POSITIONS}
        self.unit = VectorUnit(lanes=lanes, max_row=4096, ops=[_VEC_UNIT_OPERATOR[o] for o in self.ops],
                               options=options or None)
        super().__init__({
            "start": In(1),
            "unit_op": In(4), "two": In(1), "is_act": In(1), "table": In(1),
            "m": In(12), "n": In(12),
            "src_word": In(spad_aw), "src2_word": In(spad_aw), "dst_word": In(spad_aw), "param_word": In(spad_aw),
            "shift": In(6), "causal": In(1), "row_offset": In(15), "heads_m1": In(8),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(4), "fault_addr": Out(32),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes)),
            "rd2": Out(ReadPortSignature(spad_aw, word_bytes)), "rd2_block": In(1),
            "wr": Out(WritePortSignature(spad_aw, word_bytes)), "wr_block": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB, L = self.B, _log2(self.B), self.lanes
        R = B // L                                   # beats per scratchpad word
        m.submodules.unit = unit = self.unit
        has_b = "b" in unit.signature.members

        uop, two, is_act, table = Signal(4), Signal(), Signal(), Signal()
        mm, nn = Signal(12), Signal(12)
        src, src2, dst, pword = (Signal(self.spad_aw, name=n) for n in ("v_src", "v_src2", "v_dst", "v_pword"))
        shift = Signal(6)
        causal, row_offset, heads_m1 = Signal(), Signal(15), Signal(8)
        with m.If(self.start):
            m.d.sync += [causal.eq(self.causal), row_offset.eq(self.row_offset), heads_m1.eq(self.heads_m1)]
            m.d.sync += [uop.eq(self.unit_op), two.eq(self.two), is_act.eq(self.is_act), table.eq(self.table),
                         mm.eq(self.m), nn.eq(self.n), src.eq(self.src_word), src2.eq(self.src2_word),
                         dst.eq(self.dst_word), pword.eq(self.param_word), shift.eq(self.shift)]
        stride = Signal(13)                          # words per row (int8 elements)
        beats_row = Signal(13)
        m.d.sync += [stride.eq(_cdiv_shift(nn, LB)), beats_row.eq(_cdiv_shift(nn, _log2(L)))]

        rec = Signal(64)
        rec_lo = Signal(32)
        error, code, fault = Signal(), Signal(4), Signal(32)
        m.d.comb += [self.error.eq(error), self.code.eq(code), self.fault_addr.eq(fault)]
        m.d.comb += [unit.opcode.eq(uop), unit.row_len.eq(nn), unit.param_sel.eq(uop)]
        if "residual" in self.ops:
            m.d.comb += [unit.residual_a_multiplier.eq(rec[:31]), unit.residual_b_multiplier.eq(rec[31:62]),
                         unit.residual_shift.eq(shift), unit.residual_out_bits.eq(8)]
        if "gate" in self.ops:
            m.d.comb += [unit.gate_multiplier.eq(rec[:31]), unit.gate_shift.eq(rec[31:38].as_signed()),
                         unit.gate_out_bits.eq(8)]
        if "softmax" in self.ops:
            m.d.comb += [unit.softmax_exp_multiplier.eq(rec[:31]), unit.softmax_exp_shift.eq(rec[31:38].as_signed()),
                         unit.softmax_causal.eq(causal)]
        # layernorm / rmsnorm / rope: the 16-byte header (norms: eps_term [0, 61), var_frac_bits byte 8,
        # gamma_shift byte 9; rope: table positions bytes [0, 4), frac_bits byte 4).
        hdr = Signal(8 * _HEADER_BYTES)
        for norm in ("layernorm", "rmsnorm"):
            if norm in self.ops:
                m.d.comb += [getattr(unit, f"{norm}_eps_term").eq(hdr[:61]),
                             getattr(unit, f"{norm}_var_frac_bits").eq(hdr[64:69]),
                             getattr(unit, f"{norm}_gamma_shift").eq(hdr[72:78].as_signed())]
        if "rope" in self.ops:
            m.d.comb += [unit.rope_frac_bits.eq(hdr[32:36]), unit.rope_out_bits.eq(8)]

        # ---- row readers: one word per cycle into a FIFO, split into beats ----
        setup = Signal()
        go_rows = Signal()

        def reader(name, port, base, block):
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
                    with m.If(row == mm - 1):
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

        a_active, a_valid, a_data, a_last, a_fire, a_idle = reader("a", self.rd, src, Const(0, 1))
        if "softmax" in self.ops:
            # Scalar ports travel with the row's beats: the query position of the row now entering.
            in_row = Signal(12)
            with m.If(a_fire & a_last):
                m.d.sync += in_row.eq(in_row + 1)
            with m.If(setup):
                m.d.sync += in_row.eq(0)
            m.d.comb += unit.softmax_query_pos.eq(row_offset + in_row)
        if "rope" in self.ops:
            # The resident table slot of the row now entering: row i uses slot i // heads (a head counter, no
            # division); slot r holds position row_offset + r.
            in_head = Signal(8)
            in_slot = Signal(range(ROPE_POSITIONS + 1))
            with m.If(a_fire & a_last):
                m.d.sync += in_head.eq(in_head + 1)
                with m.If(in_head == heads_m1):
                    m.d.sync += [in_head.eq(0), in_slot.eq(in_slot + 1)]
            with m.If(setup):
                m.d.sync += [in_head.eq(0), in_slot.eq(0)]
            m.d.comb += unit.rope_position.eq(in_slot)
        m.d.comb += [unit.i.valid.eq(a_valid), unit.i.payload.last.eq(a_last), a_fire.eq(a_valid & unit.i.ready)]
        m.d.comb += [unit.i.payload.data[k].eq(a_data[8 * k:8 * k + 8].as_signed()) for k in range(L)]
        readers_idle = a_idle
        start_rows = [a_active.eq(1)]
        if has_b:
            b_active, b_valid, b_data, b_last, b_fire, b_idle = reader("b", self.rd2, src2, self.rd2_block)
            m.d.comb += [unit.b.valid.eq(b_valid), unit.b.payload.last.eq(b_last),
                         b_fire.eq(b_valid & unit.b.ready)]
            m.d.comb += [unit.b.payload.data[k].eq(b_data[8 * k:8 * k + 8].as_signed()) for k in range(L)]
            readers_idle = a_idle & b_idle
            start_rows.append(b_active.eq(two))

        # ---- packer: beats -> scratchpad words (the DMA has priority on the write port) ----
        pk = Signal(8 * B)
        pj = Signal(range(R)) if R > 1 else Const(0, 1)
        out_row = Signal(12)
        out_word = Signal(self.spad_aw + 1)
        out_base = Signal(self.spad_aw + 1)
        beat = Cat(*[unit.o.payload.data[k][:8] for k in range(L)])
        m.d.comb += unit.o.ready.eq(~self.wr_block)
        o_fire = unit.o.valid & ~self.wr_block
        merged = Signal(8 * B)
        m.d.comb += merged.eq(pk | (beat << (pj * 8 * L)) if R > 1 else beat)
        word_full = (pj == R - 1) | unit.o.payload.last
        m.d.comb += [self.wr.addr.eq(out_word), self.wr.data.eq(merged),
                     self.wr.en.eq(Mux(o_fire & word_full, (1 << B) - 1, 0))]
        finished = Signal()
        with m.If(o_fire):
            if R > 1:
                m.d.sync += [pk.eq(merged), pj.eq(pj + 1)]
            with m.If(word_full):
                m.d.sync += out_word.eq(out_word + 1)
                if R > 1:
                    m.d.sync += [pk.eq(0), pj.eq(0)]
            with m.If(unit.o.payload.last):
                m.d.sync += [out_row.eq(out_row + 1), out_base.eq(out_base + stride),
                             out_word.eq(out_base + stride)]
                with m.If(out_row == mm - 1):
                    m.d.comb += finished.eq(1)
        with m.If(setup):
            m.d.sync += [out_row.eq(0), out_word.eq(dst), out_base.eq(dst)]
            if R > 1:
                m.d.sync += [pk.eq(0), pj.eq(0)]

        # ---- control ----
        tw = Signal(range(_TABLE_ENTRIES // B + 1))   # table word
        tb = Signal(range(B))                          # byte of the table word
        half = Signal()
        is_ln = (uop == _UNIT_OPCODE["layernorm"]) if "layernorm" in self.ops else Const(0, 1)
        is_rms = (uop == _UNIT_OPCODE["rmsnorm"]) if "rmsnorm" in self.ops else Const(0, 1)
        is_rope = (uop == _UNIT_OPCODE["rope"]) if "rope" in self.ops else Const(0, 1)
        has_hdr = Signal()
        m.d.comb += has_hdr.eq(is_ln | is_rms | is_rope)
        # Header and item streaming state.
        HW = max(1, _HEADER_BYTES // B)                # header words
        hw = Signal(range(HW + 1))
        ptr = Signal(self.spad_aw + LB + 12)           # byte address of the next item (may run past: checked)
        item_n = Signal(12)                            # norm: channel; rope: entry i of the table row
        item_r = Signal(range(ROPE_POSITIONS + 1))     # rope: resident slot being loaded
        npos = Signal(range(ROPE_POSITIONS + 2))       # rope: P = ceil(m / heads)
        prow = Signal(13)                              # rope: npos * heads
        part = Signal()                                # LayerNorm on 4-byte words: low half read
        lo32 = Signal(32)
        item_bytes = Mux(is_ln, 8, Mux(is_rms, 2, 4))
        shifted = Signal(8 * B)
        m.d.comb += shifted.eq(self.rd.data >> Cat(Const(0, 3), ptr[:LB]))
        item_data = Signal(64)
        m.d.comb += item_data.eq(Mux(is_ln, Cat(lo32, self.rd.data), shifted[:64]) if B == 4 else shifted[:64])
        half_n = nn >> 1
        rope_shift = (ROPE_MAX_HEAD_DIM // 2 - 1).bit_length()
        tbl_addr = Mux(is_rope, Cat(item_n[:rope_shift], item_r), item_n)
        item_last = Mux(is_rope, (item_n == half_n - 1) & (item_r == npos - 1), item_n == nn - 1)
        m.d.comb += [unit.param_we.eq(0),
                     unit.param_addr.eq(Mux(has_hdr, tbl_addr, (table << 8) | (tw << LB) | tb)),
                     unit.param_data.eq(Mux(has_hdr, item_data, self.rd.data.word_select(tb, 8))),
                     unit.clear.eq(0)]
        pbyte = Signal(self.spad_aw + LB)
        m.d.comb += pbyte.eq(pword << LB)
        spad_bytes = self.spad_words * B
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.busy.eq(1), setup.eq(1), unit.clear.eq(1)]
                m.d.sync += [error.eq(0), code.eq(0), fault.eq(0), tw.eq(0), tb.eq(0), half.eq(0),
                             hw.eq(0), hdr.eq(0), item_n.eq(0), item_r.eq(0), npos.eq(0), prow.eq(0),
                             part.eq(0)]
                with m.If(has_hdr):
                    m.next = "HDR_READ"
                with m.Else():
                    m.next = "PARAM_READ"
            with m.State("HDR_READ"):
                m.d.comb += [self.busy.eq(1), self.rd.en.eq(1), self.rd.addr.eq(pword + hw)]
                m.next = "HDR_DATA"
            with m.State("HDR_DATA"):
                m.d.comb += self.busy.eq(1)
                if B >= _HEADER_BYTES:
                    m.d.sync += hdr.eq(self.rd.data[:8 * _HEADER_BYTES])
                    m.next = "RPOS"
                else:
                    m.d.sync += [hdr.word_select(hw, 8 * B).eq(self.rd.data), hw.eq(hw + 1)]
                    with m.If(hw == HW - 1):
                        m.next = "RPOS"
                    with m.Else():
                        m.next = "HDR_READ"
            with m.State("RPOS"):
                # rope: P = ceil(m / heads) by repeated addition (the decoder bounds it by ROPE_POSITIONS).
                m.d.comb += self.busy.eq(1)
                with m.If(~is_rope):
                    m.next = "HDR_CHECK"
                with m.Else():
                    m.d.sync += [npos.eq(npos + 1), prow.eq(prow + heads_m1 + 1)]
                    with m.If((prow + heads_m1 + 1 >= mm) | (npos == ROPE_POSITIONS)):
                        m.next = "HDR_CHECK"
            with m.State("HDR_CHECK"):
                m.d.comb += self.busy.eq(1)
                frac, gshift = hdr[64:72], hdr[72:80].as_signed()
                norm_bad = (frac[0] | (frac > VAR_FRAC_BITS_MAX) | (gshift < GAMMA_SHIFT_MIN)
                            | (gshift > GAMMA_SHIFT_MAX))
                rope_bad = (hdr[32:40] == 0) | (hdr[32:40] > ROPE_FRAC_BITS_MAX) | (row_offset + npos > hdr[:32])
                row_bytes = Signal(14)
                m.d.comb += row_bytes.eq(nn << 1)            # one table row: n / 2 entries of 4 bytes
                tbl_start = Signal(self.spad_aw + LB + 30)
                tbl_end = Signal(self.spad_aw + LB + 30)
                m.d.comb += [tbl_start.eq(pbyte + _HEADER_BYTES + row_bytes * row_offset),
                             tbl_end.eq(tbl_start + row_bytes * npos)]
                with m.If(Mux(is_rope, rope_bad, norm_bad)):
                    m.d.sync += [error.eq(1), code.eq(ErrorCode.BAD_PARAM), fault.eq(pbyte)]
                    m.next = "DONE"
                with m.Elif(is_rope & (tbl_end > spad_bytes)):
                    m.d.sync += [error.eq(1), code.eq(ErrorCode.LOCAL_RANGE), fault.eq(pbyte)]
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += ptr.eq(Mux(is_rope, tbl_start, pbyte + _HEADER_BYTES))
                    m.next = "TBL_READ"
            with m.State("TBL_READ"):
                m.d.comb += [self.busy.eq(1), self.rd.en.eq(1), self.rd.addr.eq(ptr >> LB)]
                m.next = "TBL_DATA"
            with m.State("TBL_DATA"):
                m.d.comb += self.busy.eq(1)
                step = Signal(4)
                if B == 4:
                    # A LayerNorm item spans two 4-byte words: keep the low one, read the high one.
                    m.d.comb += step.eq(Mux(is_ln, 4, item_bytes))
                    with m.If(is_ln & ~part):
                        m.d.sync += [lo32.eq(self.rd.data), part.eq(1), ptr.eq(ptr + 4)]
                        m.next = "TBL_READ"
                else:
                    m.d.comb += step.eq(item_bytes)
                with m.If(~Const(B == 4) | ~is_ln | part):
                    m.d.comb += unit.param_we.eq(1)
                    m.d.sync += [part.eq(0), ptr.eq(ptr + step), item_n.eq(item_n + 1)]
                    with m.If(is_rope & (item_n == half_n - 1)):
                        m.d.sync += [item_n.eq(0), item_r.eq(item_r + 1)]
                    with m.If(item_last):
                        m.next = "ROWS_START"
                    with m.Elif((ptr + step)[:LB] == 0):
                        m.next = "TBL_READ"
            with m.State("PARAM_READ"):
                # Parameters share the dedicated read port with reader A (not active yet).
                m.d.comb += [self.busy.eq(1), self.rd.en.eq(1), self.rd.addr.eq(pword + Mux(is_act, tw, half))]
                m.next = "PARAM_DATA"
            with m.State("PARAM_DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(is_act):
                    m.d.comb += unit.param_we.eq(1)
                    m.d.sync += tb.eq(tb + 1)
                    with m.If(tb == B - 1):
                        m.d.sync += [tb.eq(0), tw.eq(tw + 1)]
                        with m.If(tw == _TABLE_ENTRIES // B - 1):
                            m.next = "ROWS_START"
                        with m.Else():
                            m.next = "PARAM_READ"
                with m.Elif(Const(B == 4) & ~half):
                    m.d.sync += [rec_lo.eq(self.rd.data), half.eq(1)]
                    m.next = "PARAM_READ"
                with m.Else():
                    m.d.sync += rec.eq(Cat(rec_lo, self.rd.data) if B == 4 else self.rd.data[:64])
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                rec_shift = rec[31:38].as_signed()
                checked = (uop == _UNIT_OPCODE["gate"]) | (uop == _UNIT_OPCODE["softmax"])
                with m.If(checked & (~rec[30] | (rec_shift < -30) | (rec_shift > 31))):
                    m.d.sync += [error.eq(1), code.eq(ErrorCode.BAD_PARAM), fault.eq(pword << LB)]
                    m.next = "DONE"
                with m.Else():
                    m.next = "ROWS_START"
            with m.State("ROWS_START"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += start_rows
                m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.busy.eq(1)
                with m.If(finished):
                    m.next = "DONE"
                with m.Elif(unit.error & readers_idle & ~unit.busy & ~unit.o.valid):
                    m.d.sync += [error.eq(1), fault.eq(0),
                                 code.eq(Mux(unit.error_code == _UNIT_BAD_PARAM, ErrorCode.BAD_PARAM,
                                             Mux(unit.error_code == _UNIT_PARAM_ADDR, ErrorCode.LOCAL_RANGE,
                                                 ErrorCode.ILLEGAL_INSTRUCTION)))]
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m


# ---------------------------------------------------------------------------------------------------------------
class Controller(wiring.Component):
    """Fetch / decode / issue (see the module docstring).

    Parameters
    ----------
    word_bytes : int             AXI data bytes = local word.
    spad_words, acc_words : int  memory depths in words.
    rows, cols, precisions, dataflows, pipeline : the PE array.
    used_masks : dict[int, int]  opcode -> 128-bit mask of the bits its fields (and the opcode) occupy
                                 (from ``spec.isa.FORMATS``); every other bit is reserved.
    vector_ops : tuple of "softmax", "layernorm", "rmsnorm", "act", "residual", "gate", "rope"
                                 vector operators to build (() : no vector unit).
    vector_lanes : int           elements per cycle of the vector unit, capped at ``word_bytes``.

    Members
    -------
    start : In(1); busy, done : Out(1); error : Out(4); fault_addr : Out(32)
    ring_base, ring_size, ring_head : In(32); ring_tail : Out(32)
    fetch : Out(FetchSignature)
    dma_desc : Out(stream DMA_DESCRIPTOR); dma_mem : Out(1) (memory of the running DMA command: 0 spad, 1 acc)
    dma_done : In(1); dma_error : In(DmaError); dma_fault : In(32)
    a_rd, w_rd : Out(ReadPortSignature(spad_aw, read_words * word_bytes))   matmul operand ports (the
                 scratchpad's wide read ports 0, 1); ``read_words`` = ``self.read_words`` (the matmul engine's)
    spad_rd, spad_wr : requant records / results and the vector sequencer's second operand / results (scratchpad
                       narrow read port 0, shared with the DMA; write port);
    vec_rd : Out(ReadPortSignature)   only with ``vector_ops``: the sequencer's first operand and parameters
                                      (scratchpad narrow read port 1)
    rd_block, wr_block : In(1)  the DMA uses that read / write port this cycle (it has priority)
    acc_rd : Out(ReadPortSignature)   requant input (accumulator narrow port)
    acc_wide_* : the matmul engine's accumulator wide port
    macs : Out(16)
    """

    def __init__(self, *, word_bytes: int, spad_words: int, acc_words: int, rows: int, cols: int,
                 precisions=("int8", "w4a8", "int4"), dataflows=("ws",), pipeline: int = 2, used_masks: dict,
                 vector_ops=(), vector_lanes: int = 8):
        if "ws" not in dataflows:
            raise ValueError(f"the controller needs a weight-stationary array (ws, optionally os): dataflows must "
                             f"include 'ws', got {dataflows!r}")
        self.B = word_bytes
        self.spad_words, self.acc_words = spad_words, acc_words
        self.spad_aw = (spad_words - 1).bit_length()
        self.acc_aw = (acc_words - 1).bit_length()
        self.precisions = tuple(precisions)
        self.dataflows = tuple(dataflows)
        self.used_masks = dict(used_masks)
        self.vector_ops = tuple(vector_ops)
        for name, op in list(OPCODES.items()) + [(f"VEC_{o.upper()}", VEC_OPCODES.get(o)) for o in self.vector_ops]:
            if op not in self.used_masks:
                raise ValueError(f"used_masks has no entry for {name} (opcode {op!r})")
        self.matmul = MatmulEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, acc_aw=self.acc_aw, rows=rows,
                                   cols=cols, precisions=precisions, pipeline=pipeline,
                                   dataflows=("ws", "os") if "os" in self.dataflows else ("ws",))
        self.requant = RequantEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, acc_aw=self.acc_aw)
        self.acc_banks = self.matmul.acc_banks
        self.read_words = self.matmul.read_words
        NB, W, RW = self.acc_banks, 8 * word_bytes, self.matmul.acc_row_width
        self.vec = None
        extra = {}
        if self.vector_ops:
            self.vector_lanes = min(vector_lanes, word_bytes)
            self.vec = VecEngine(word_bytes=word_bytes, spad_aw=self.spad_aw, lanes=self.vector_lanes,
                                 ops=self.vector_ops)
            extra["vec_rd"] = Out(ReadPortSignature(self.spad_aw, word_bytes))
        super().__init__({
            **extra,
            "start": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(4), "fault_addr": Out(32),
            "ring_base": In(32), "ring_size": In(32), "ring_head": In(32), "ring_tail": Out(32),
            "fetch": Out(FetchSignature(8 * word_bytes)),
            "dma_desc": Out(stream.Signature(DMA_DESCRIPTOR)),
            "dma_mem": Out(1),
            "dma_done": In(1), "dma_error": In(DmaError), "dma_fault": In(32),
            "a_rd": Out(ReadPortSignature(self.spad_aw, word_bytes * self.read_words)),
            "w_rd": Out(ReadPortSignature(self.spad_aw, word_bytes * self.read_words)),
            "spad_rd": Out(ReadPortSignature(self.spad_aw, word_bytes)),
            "spad_wr": Out(WritePortSignature(self.spad_aw, word_bytes)),
            "rd_block": In(1), "wr_block": In(1),
            "acc_rd": Out(ReadPortSignature(self.acc_aw, word_bytes)),
            "acc_wide_rd_addr": Out(data.ArrayLayout(RW, NB)),
            "acc_wide_rd_en": Out(1),
            "acc_wide_rd_data": In(data.ArrayLayout(W, NB)),
            "acc_wide_wr_addr": Out(data.ArrayLayout(RW, NB)),
            "acc_wide_wr_data": Out(data.ArrayLayout(W, NB)),
            "acc_wide_wr_en": Out(data.ArrayLayout(word_bytes, NB)),
            "macs": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        B, LB = self.B, _log2(self.B)
        m.submodules.matmul = mme = self.matmul
        m.submodules.requant = rqe = self.requant

        ir = Signal(128)
        tail = Signal(32)
        error = Signal(4)
        fault = Signal(32)
        m.d.comb += [self.error.eq(error), self.fault_addr.eq(fault), self.ring_tail.eq(tail),
                     self.macs.eq(mme.macs)]

        # ---- engine ports ----
        wiring.connect(m, mme.a_rd, wiring.flipped(self.a_rd))
        wiring.connect(m, mme.w_rd, wiring.flipped(self.w_rd))
        vec = self.vec
        if vec is None:
            wiring.connect(m, rqe.spad_rd, wiring.flipped(self.spad_rd))
            wiring.connect(m, rqe.spad_wr, wiring.flipped(self.spad_wr))
        else:
            # Requant and the vector sequencer are both the VECTOR unit (one instruction at a time): they share
            # scratchpad narrow read port 0 and the write port; the sequencer also has narrow read port 1
            # (``vec_rd``) alone.
            m.submodules.vec = vec
            wiring.connect(m, vec.rd, wiring.flipped(self.vec_rd))
            m.d.comb += [
                self.spad_rd.addr.eq(Mux(vec.rd2.en, vec.rd2.addr, rqe.spad_rd.addr)),
                self.spad_rd.en.eq(vec.rd2.en | rqe.spad_rd.en),
                rqe.spad_rd.data.eq(self.spad_rd.data), vec.rd2.data.eq(self.spad_rd.data),
                self.spad_wr.addr.eq(Mux(vec.wr.en != 0, vec.wr.addr, rqe.spad_wr.addr)),
                self.spad_wr.data.eq(Mux(vec.wr.en != 0, vec.wr.data, rqe.spad_wr.data)),
                self.spad_wr.en.eq(vec.wr.en | rqe.spad_wr.en),
                vec.rd2_block.eq(self.rd_block), vec.wr_block.eq(self.wr_block),
            ]
        wiring.connect(m, rqe.acc_rd, wiring.flipped(self.acc_rd))
        m.d.comb += [
            rqe.rd_block.eq(self.rd_block), rqe.wr_block.eq(self.wr_block),
            self.acc_wide_rd_addr.eq(mme.acc_rd_addr), self.acc_wide_rd_en.eq(mme.acc_rd_en),
            mme.acc_rd_data.eq(self.acc_wide_rd_data),
            self.acc_wide_wr_addr.eq(mme.acc_wr_addr), self.acc_wide_wr_data.eq(mme.acc_wr_data),
            self.acc_wide_wr_en.eq(mme.acc_wr_en),
        ]

        # ---- field decode ----
        opcode = ir[:8]
        f_mem = ir[8]
        f_local = ir[12:32]
        f_ext, f_stride = ir[32:64], ir[64:96]
        f_rows, f_row_bytes = ir[96:112], ir[112:128]
        f_mode, f_dataflow, f_accumulate = ir[8:10], ir[10], ir[11]
        f_m, f_a, f_k = ir[20:32], ir[32:52], ir[52:64]
        f_b, f_n, f_acc = ir[64:84], ir[84:96], ir[96:116]
        r_out16, r_zp = ir[8], ir[16:32].as_signed()
        r_src, r_m, r_dst, r_n, r_page = ir[32:52], ir[52:64], ir[64:84], ir[84:96], ir[116:128]

        legal = Signal()
        executed = dict(OPCODES)
        executed.update({f"VEC_{o.upper()}": VEC_OPCODES[o] for o in self.vector_ops})
        with m.Switch(opcode):
            for name, op in executed.items():
                with m.Case(op):
                    m.d.comb += legal.eq((ir & ~Const(self.used_masks[op], 128)) == 0)
        mode_ok = Cat(*[f_mode == MODE_CODES[p] for p in self.precisions]).any()
        df_ok = Cat(*[f_dataflow == DATAFLOW_CODES[d] for d in self.dataflows]).any()

        def in_mem(byte_addr, rows, row_words, depth):
            """Aligned to the word and inside the memory (word units)."""
            return (byte_addr[:LB] == 0) & (((byte_addr >> LB) + rows * row_words) <= depth)

        dma_words = _cdiv_shift(f_row_bytes, LB)
        dma_local_ok = Mux(f_mem, in_mem(f_local, f_rows, dma_words, self.acc_words),
                           in_mem(f_local, f_rows, dma_words, self.spad_words))
        is_int4 = f_mode == MODE_CODES["int4"]
        a_ok = in_mem(f_a, Mux(is_int4, (f_m + 1) >> 1, f_m), _cdiv_shift(f_k, LB), self.spad_words)
        b_ok = in_mem(f_b, f_k, _cdiv_shift(Mux(f_mode == MODE_CODES["int8"], f_n, (f_n + 1) >> 1), LB),
                      self.spad_words)
        c_ok = in_mem(f_acc, f_m, _cdiv_shift(f_n << 2, LB), self.acc_words)
        src_ok = in_mem(r_src, r_m, _cdiv_shift(r_n << 2, LB), self.acc_words)
        dst_ok = in_mem(r_dst, r_m, _cdiv_shift(Mux(r_out16, r_n << 1, r_n), LB), self.spad_words)
        p_byte = r_page << 8
        par_ok = (p_byte + (r_n << 3)) <= self.spad_words * B

        # Vector operators (shared vector format): int8 rows of n bytes at the scratchpad-word stride.
        v_flags, v_imm = ir[8:16], ir[16:32].as_signed()
        v_src, v_m, v_dst, v_n, v_src2, v_page = ir[32:52], ir[52:64], ir[64:84], ir[84:96], ir[96:116], ir[116:128]
        v_words = _cdiv_shift(v_n, LB)
        v_src_ok = in_mem(v_src, v_m, v_words, self.spad_words)
        v_src2_ok = in_mem(v_src2, v_m, v_words, self.spad_words)
        v_dst_ok = in_mem(v_dst, v_m, v_words, self.spad_words)
        v_pbyte = v_page << 8
        if vec is not None:
            m.d.comb += [
                vec.m.eq(v_m), vec.n.eq(v_n), vec.src_word.eq(v_src >> LB), vec.src2_word.eq(v_src2 >> LB),
                vec.dst_word.eq(v_dst >> LB), vec.param_word.eq(v_pbyte >> LB), vec.shift.eq(v_imm[:6]),
                vec.table.eq(v_flags[0]), vec.is_act.eq(opcode == VEC_OPCODES["act"]),
                vec.two.eq((opcode == VEC_OPCODES["residual"]) | (opcode == VEC_OPCODES["gate"])),
                vec.causal.eq(v_flags[0]), vec.row_offset.eq(v_imm[:15]), vec.heads_m1.eq(v_flags),
            ]
            unit_op = Const(_UNIT_OPCODE["softmax"], 4)
            for vop in self.vector_ops:
                if vop == "act":
                    code = Mux(v_flags[0], _UNIT_OPCODE["silu"], _UNIT_OPCODE["gelu"])
                else:
                    code = _UNIT_OPCODE[vop]
                unit_op = Mux(opcode == VEC_OPCODES[vop], code, unit_op)
            m.d.comb += vec.unit_op.eq(unit_op)

        m.d.comb += [
            *([mme.dataflow.eq(f_dataflow)] if mme.has_os else []),
            mme.mode.eq(f_mode), mme.accumulate.eq(f_accumulate), mme.m.eq(f_m), mme.k.eq(f_k), mme.n.eq(f_n),
            mme.a_word.eq(f_a >> LB), mme.b_word.eq(f_b >> LB), mme.acc_word.eq(f_acc >> LB),
            rqe.out16.eq(r_out16), rqe.zero_point.eq(r_zp), rqe.m.eq(r_m), rqe.n.eq(r_n),
            rqe.src_word.eq(r_src >> LB), rqe.dst_word.eq(r_dst >> LB), rqe.param_byte.eq(p_byte),
            self.dma_desc.payload.ext_addr.eq(f_ext), self.dma_desc.payload.ext_stride.eq(f_stride),
            self.dma_desc.payload.local_addr.eq(f_local), self.dma_desc.payload.rows.eq(f_rows),
            self.dma_desc.payload.row_bytes.eq(f_row_bytes),
            self.dma_desc.payload.direction.eq(Mux(opcode == OPCODES["DMA_STORE"], Direction.STORE,
                                                   Direction.LOAD)),
        ]

        # ---- units: one running instruction each (DMA: loads and stores in program order) ----
        dma_run, dma_store, dma_acc = Signal(), Signal(), Signal()
        mat_run, vec_run = Signal(), Signal()
        dma_pc, vec_pc = Signal(32), Signal(32)
        m.d.comb += self.dma_mem.eq(dma_acc)
        # The first failing unit instruction in program order (smallest pc) is reported after the drain.
        u_err, u_code, u_fault, u_pc = Signal(), Signal(4), Signal(32), Signal(32)
        dma_code = Signal(4)
        with m.Switch(self.dma_error):
            with m.Case(DmaError.WINDOW):
                m.d.comb += dma_code.eq(ErrorCode.DMA_WINDOW)
            with m.Case(DmaError.BAD_DESC, DmaError.LOCAL_RANGE):
                m.d.comb += dma_code.eq(ErrorCode.LOCAL_RANGE)
            with m.Case(DmaError.NONE):
                m.d.comb += dma_code.eq(ErrorCode.NONE)
            with m.Default():
                m.d.comb += dma_code.eq(ErrorCode.BUS_ERROR)
        with m.If(self.dma_done):
            m.d.sync += dma_run.eq(0)
        with m.If(mme.done):
            m.d.sync += mat_run.eq(0)
        with m.If(rqe.done):
            m.d.sync += vec_run.eq(0)
        # Only a command of this run counts (after a soft reset the DMA may still finish an aborted one).
        dma_fail = self.dma_done & dma_run & (dma_code != ErrorCode.NONE)
        vec_fail = rqe.done & rqe.error
        vec_code, vec_fault = ErrorCode.BAD_PARAM, rqe.fault_addr
        if vec is not None:
            with m.If(vec.done):
                m.d.sync += vec_run.eq(0)
            seq_fail = vec.done & vec.error
            vec_fail = vec_fail | seq_fail
            vec_code = Mux(seq_fail, vec.code, ErrorCode.BAD_PARAM)
            vec_fault = Mux(seq_fail, vec.fault_addr, rqe.fault_addr)
        with m.If(vec_fail & (~u_err | (vec_pc < u_pc))):
            m.d.sync += [u_err.eq(1), u_code.eq(vec_code), u_fault.eq(vec_fault), u_pc.eq(vec_pc)]
        with m.If(dma_fail & (~u_err | (dma_pc < u_pc)) & ~(vec_fail & (vec_pc < dma_pc))):
            m.d.sync += [u_err.eq(1), u_code.eq(dma_code), u_fault.eq(self.dma_fault), u_pc.eq(dma_pc)]
        any_err = u_err | dma_fail | vec_fail
        idle = ~dma_run & ~mat_run & ~vec_run

        # ---- fetch ----
        fetch_addr = Signal(32)
        m.d.comb += fetch_addr.eq((self.ring_base & ~0xF) + tail)
        beats = max(1, 16 // B)
        beat = Signal(range(beats + 1))
        fa = self.fetch
        m.d.comb += [fa.araddr.eq(fetch_addr if B <= 16 else fetch_addr & ~(B - 1)), fa.arlen.eq(beats - 1),
                     fa.arsize.eq(LB)]
        bus_err = Signal()
        next_tail = Signal(32)
        m.d.comb += next_tail.eq(Mux(tail + 16 >= self.ring_size, 0, tail + 16))
        d_code, d_fault = Signal(4), Signal(32)   # the decode-time outcome (error, or NONE for HALT)

        def stop(code, addr=0):
            """End of issue: drain the units, then report (an earlier unit error wins)."""
            return [d_code.eq(code), d_fault.eq(addr)]

        # FENCE: a unit has at most one outstanding instruction, so "<= count" fails only for count 0.
        fence_ok = Signal()
        outstanding = [dma_run & ~dma_store, dma_run & dma_store, mat_run, vec_run]
        m.d.comb += fence_ok.eq(Cat(*[~ir[8 + u] | ~outstanding[u] | (ir[32 + 8 * u:40 + 8 * u] != 0)
                                      for u in range(4)]).all())

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tail.eq(0), error.eq(0), fault.eq(0), u_err.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(tail == self.ring_head):
                    m.d.sync += stop(ErrorCode.PROGRAM_OVERRUN)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += fa.arvalid.eq(1)
                    with m.If(fa.arready):
                        m.d.sync += [beat.eq(0), bus_err.eq(0)]
                        m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.comb += [self.busy.eq(1), fa.rready.eq(1)]
                with m.If(fa.rvalid):
                    if B <= 16:
                        m.d.sync += ir.word_select(beat, 8 * B).eq(fa.rdata)
                    else:
                        m.d.sync += ir.eq(fa.rdata.word_select(fetch_addr[4:LB], 128))
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(fa.rresp != 0):
                        m.d.sync += bus_err.eq(1)
                    with m.If(fa.rlast):
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                advance = [tail.eq(next_tail)]
                with m.If(any_err):
                    m.d.sync += stop(ErrorCode.NONE)   # the unit error is reported after the drain
                    m.next = "DRAIN"
                with m.Elif(bus_err):
                    m.d.sync += stop(ErrorCode.BUS_ERROR, fetch_addr)
                    m.next = "DRAIN"
                with m.Elif(~legal):
                    m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                    m.next = "DRAIN"
                with m.Else():
                    with m.Switch(opcode):
                        with m.Case(OPCODES["NOP"]):
                            m.d.sync += advance
                            m.next = "FETCH"
                        with m.Case(OPCODES["FENCE"]):
                            with m.If(fence_ok):
                                m.d.sync += advance
                                m.next = "FETCH"
                        with m.Case(OPCODES["HALT"]):
                            m.d.sync += stop(ErrorCode.NONE)
                            m.next = "DRAIN"
                        with m.Case(OPCODES["DMA_LOAD"], OPCODES["DMA_STORE"]):
                            with m.If((f_rows == 0) | (f_row_bytes == 0)):
                                m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                                m.next = "DRAIN"
                            with m.Elif(~dma_local_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, f_local)
                                m.next = "DRAIN"
                            # The accumulator's narrow ports are shared: an acc transfer runs alone.
                            with m.Elif(~dma_run & (~f_mem | (~mat_run & ~vec_run))):
                                m.d.comb += self.dma_desc.valid.eq(1)
                                with m.If(self.dma_desc.ready):
                                    m.d.sync += [dma_run.eq(1), dma_store.eq(opcode == OPCODES["DMA_STORE"]),
                                                 dma_acc.eq(f_mem), dma_pc.eq(tail)] + advance
                                    m.next = "FETCH"
                        with m.Case(OPCODES["MATMUL"]):
                            with m.If((f_m == 0) | (f_k == 0) | (f_n == 0) | ~mode_ok | ~df_ok):
                                m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                                m.next = "DRAIN"
                            with m.Elif(~a_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, f_a)
                                m.next = "DRAIN"
                            with m.Elif(~b_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, f_b)
                                m.next = "DRAIN"
                            with m.Elif(~c_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, f_acc)
                                m.next = "DRAIN"
                            with m.Elif(~mat_run & ~(dma_run & dma_acc)):
                                m.d.comb += mme.start.eq(1)
                                m.d.sync += [mat_run.eq(1)] + advance
                                m.next = "FETCH"
                        with m.Case(OPCODES["VEC_REQUANT"]):
                            with m.If((r_m == 0) | (r_n == 0)):
                                m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                                m.next = "DRAIN"
                            with m.Elif(~src_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, r_src)
                                m.next = "DRAIN"
                            with m.Elif(~dst_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, r_dst)
                                m.next = "DRAIN"
                            with m.Elif(~par_ok):
                                m.d.sync += stop(ErrorCode.LOCAL_RANGE, p_byte)
                                m.next = "DRAIN"
                            with m.Elif(~vec_run & ~(dma_run & dma_acc)):
                                m.d.comb += rqe.start.eq(1)
                                m.d.sync += [vec_run.eq(1), vec_pc.eq(tail)] + advance
                                m.next = "FETCH"
                        for vop in self.vector_ops:
                            with m.Case(VEC_OPCODES[vop]):
                                two = vop in ("residual", "gate")
                                if vop == "act":
                                    static_ok = (v_flags[1:] == 0) & (v_imm == 0) & (v_src2 == 0)
                                elif vop == "softmax":
                                    static_ok = ((v_flags[1:] == 0) & (v_imm >= 0) & (v_flags[0] | (v_imm == 0))
                                                 & (v_src2 == 0))
                                elif vop == "residual":
                                    static_ok = v_flags == 0
                                elif vop in ("layernorm", "rmsnorm"):
                                    static_ok = (v_flags == 0) & (v_imm == 0) & (v_src2 == 0)
                                elif vop == "rope":
                                    # head_dim: whole beats per half row, at most the operator's row; at most
                                    # ROPE_POSITIONS table positions (m <= 8 * heads).
                                    lane_bits = _log2(vec.lanes) + 1
                                    static_ok = ((v_imm >= 0) & (v_src2 == 0) & (v_n <= ROPE_MAX_HEAD_DIM)
                                                 & (v_n[:lane_bits] == 0)
                                                 & (v_m <= ((v_flags + 1) << _log2(ROPE_POSITIONS))))
                                else:
                                    static_ok = (v_flags == 0) & (v_imm == 0)
                                if vop == "act":
                                    p_size = _TABLE_ENTRIES
                                elif vop in ("layernorm", "rmsnorm"):
                                    p_size = _HEADER_BYTES + v_n * _ITEM_BYTES[vop]
                                elif vop == "rope":
                                    p_size = _HEADER_BYTES
                                else:
                                    p_size = 8
                                with m.If((v_m == 0) | (v_n == 0) | ~static_ok):
                                    m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                                    m.next = "DRAIN"
                                with m.Elif(~v_src_ok):
                                    m.d.sync += stop(ErrorCode.LOCAL_RANGE, v_src)
                                    m.next = "DRAIN"
                                with m.Elif(Const(two) & ~v_src2_ok):
                                    m.d.sync += stop(ErrorCode.LOCAL_RANGE, v_src2)
                                    m.next = "DRAIN"
                                with m.Elif(~v_dst_ok):
                                    m.d.sync += stop(ErrorCode.LOCAL_RANGE, v_dst)
                                    m.next = "DRAIN"
                                with m.Elif(v_pbyte + p_size > self.spad_words * B):
                                    m.d.sync += stop(ErrorCode.LOCAL_RANGE, v_pbyte)
                                    m.next = "DRAIN"
                                with m.Elif(Const(vop == "residual") & ((v_imm < 1) | (v_imm > 62))):
                                    m.d.sync += stop(ErrorCode.BAD_PARAM)
                                    m.next = "DRAIN"
                                with m.Elif(~vec_run):
                                    m.d.comb += vec.start.eq(1)
                                    m.d.sync += [vec_run.eq(1), vec_pc.eq(tail)] + advance
                                    m.next = "FETCH"
                        with m.Default():
                            m.d.sync += stop(ErrorCode.ILLEGAL_INSTRUCTION)
                            m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                with m.If(idle):
                    with m.If(u_err):
                        m.d.sync += [error.eq(u_code), fault.eq(u_fault), tail.eq(u_pc)]
                    with m.Else():
                        m.d.sync += [error.eq(d_code), fault.eq(d_fault)]
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.next = "IDLE"
        return m
