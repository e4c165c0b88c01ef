"""The output-stationary transposer of the MATMUL unit: A columns from the row-major A tile, one per cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from npuforge.rtl.controller.common import log2
from npuforge.rtl.memories import ReadPortSignature

__all__ = ["OsTransposer"]


class OsTransposer(wiring.Component):
    """OS activation columns ``A[m0:m0+R, k]`` (``R = rows``) from the row-major A tile, one per cycle.

    Fill: ``R`` wide reads (one per cycle), A rows ``m0 .. m0+R-1`` x ``KB = word_bytes * read_words``
    consecutive k values (word-aligned chunk ``kc .. kc+KB-1``), into one of two buffer banks. Emit: the full bank
    gives ``min(KB, K - kc)`` columns (byte ``j`` of every row; rows past the A tile are 0), ``last`` on ``k = K - 1``,
    while the filler loads the next chunk into the other bank, so the columns flow at one per cycle whenever
    ``R <= KB``. With ``wide`` (a 16-bit-activation mode) a chunk is ``KB / 2`` int16 k values and a column is
    ``R`` int16 words (one per cycle whenever ``R <= KB / 2``); an engine built with such modes emits 16-bit words
    in every mode (8-bit values in bits 7..0). Order: n-tile, m-tile, k-chunk (the MATMUL unit's weight generator and collector use the same
    n-outer, m-inner order).

    Parameters
    ----------
    word_bytes, read_words : int  scratchpad word bytes; words per wide read.
    spad_aw : int                 scratchpad word-address bits.
    rows : int                    PE array rows (``R``: A rows, or row pairs in int4, per m-tile).
    ncols_max : int               largest result columns per n-tile (``ncols``).
    wide : bool                   build the 16-bit-activation path (``wide`` port, 16-bit ``a`` words).

    Members
    -------
    start : In(1)          pulse: restart at the A tile; the filler runs only when ``os`` is 1.
    os : In(1)             this MATMUL runs output-stationary.
    a_word : In(spad_aw)   scratchpad word of A row 0; ``a_stride`` : In(13) words per A row;
                           ``a_tile_step`` : In(spad_aw + 1) words from one m-tile to the next (``R * a_stride``);
                           ``a_rows`` : In(12) A rows (row pairs in int4).
    wide : In(1)           only when built ``wide``: this MATMUL's A is int16 (rows of 2 k bytes).
    m, k, n : In(12)       the MATMUL's sizes; ``ncols`` : result columns per n-tile; ``int4`` : In(1) int4 mode.
    rd : Out(ReadPortSignature(spad_aw, word_bytes * read_words))   the wide A read port (``addr`` one bit wider
                           than the port may wrap, as the engine's other address generators).
    a : Out(stream.Signature({data: ArrayLayout(8 or 16, rows), last}))   the array's ``a`` operand; a column is taken
                           on ``ready`` (the array's OS ``ready`` already includes ``valid``).
    macs : Out(16)         useful MACs per operand pair of the column offered now.
    """

    def __init__(self, *, word_bytes: int, read_words: int, spad_aw: int, rows: int, ncols_max: int,
                 wide: bool = False):
        self.B, self.read_words, self.spad_aw, self.rows = word_bytes, read_words, spad_aw, rows
        self.has_wide = wide
        act = 16 if wide else 8
        super().__init__({
            **({"wide": In(1)} if wide else {}),
            "start": In(1), "os": In(1),
            "a_word": In(spad_aw), "a_stride": In(13), "a_tile_step": In(spad_aw + 1), "a_rows": In(12),
            "m": In(12), "k": In(12), "n": In(12), "ncols": In(range(ncols_max + 1)), "int4": In(1),
            "rd": Out(ReadPortSignature(spad_aw, word_bytes * read_words)),
            "a": Out(stream.Signature(data.StructLayout({"data": data.ArrayLayout(act, rows), "last": 1}))),
            "macs": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        LB = log2(self.B)
        R = self.rows
        KB = self.B * self.read_words
        # k values per chunk: KB bytes, or KB / 2 int16 in the 16-bit-activation modes.
        KE = Signal(range(KB + 1), name="t_ke")
        m.d.comb += KE.eq(Mux(self.wide, KB // 2, KB) if self.has_wide else KB)
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
        m.d.comb += take.eq(self.a.ready)
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
        m.d.comb += [k_rem.eq(self.k - f_kc), m_rem.eq(self.a_rows - f_m0),
                     r_rem.eq(self.m - Mux(self.int4, f_m0 << 1, f_m0)), n_rem.eq(self.n - f_n0)]
        v_rows = Mux(m_rem >= R, R, m_rem)
        v_res = Mux(self.int4, Mux(r_rem >= 2 * R, 2 * R, r_rem), Mux(r_rem >= R, R, r_rem))
        v_cols = Mux(n_rem >= self.ncols, self.ncols, n_rem)
        with m.If(issue):
            m.d.sync += [f_r.eq(f_r + 1), f_addr.eq(f_addr + self.a_stride)]
            with m.If(last_row):
                m.d.sync += f_r.eq(0)
                for b in range(2):
                    with m.If(f_bank == b):
                        m.d.sync += [meta_cnt[b].eq(Mux(k_rem >= KE, KE, k_rem)), meta_lastk[b].eq(k_rem <= KE),
                                     meta_rows[b].eq(v_rows), meta_macs[b].eq(v_res * v_cols)]
                m.d.sync += f_bank.eq(~f_bank)
                with m.If(k_rem > KE):
                    next_kc = f_kc + KE
                    next_byte = Mux(self.wide, next_kc << 1, next_kc) if self.has_wide else next_kc
                    m.d.sync += [f_kc.eq(next_kc), f_addr.eq(f_tile + (next_byte >> LB))]
                with m.Elif(m_rem > R):
                    m.d.sync += [f_kc.eq(0), f_m0.eq(f_m0 + R), f_tile.eq(f_tile + self.a_tile_step),
                                 f_addr.eq(f_tile + self.a_tile_step)]
                with m.Elif(n_rem > self.ncols):
                    m.d.sync += [f_kc.eq(0), f_m0.eq(0), f_n0.eq(f_n0 + self.ncols), f_tile.eq(self.a_word),
                                 f_addr.eq(self.a_word)]
                with m.Else():
                    m.d.sync += f_active.eq(0)
        # Read data arrives the cycle after the issue.
        s_valid, s_bank, s_last = Signal(name="t_s_valid"), Signal(name="t_s_bank"), Signal(name="t_s_last")
        s_row = Signal(range(R), name="t_s_row")
        m.d.sync += [s_valid.eq(issue), s_bank.eq(f_bank), s_last.eq(last_row), s_row.eq(f_r)]
        for b in range(2):
            for r in range(R):
                with m.If(s_valid & (s_bank == b) & (s_row == r)):
                    m.d.sync += buf[b][r].eq(self.rd.data)
        # -- emitter --
        rows_ok = Mux(e_bank, meta_rows[1], meta_rows[0])
        col = []
        for r in range(R):
            row_buf = Mux(e_bank, buf[1][r], buf[0][r])
            byte = row_buf.word_select(e_j, 8)
            if self.has_wide:   # 16-bit words: int16 element e_j, or the byte in bits 7..0 (8-bit modes)
                word = Mux(self.wide, row_buf.word_select(e_j[:max(1, (KB // 2 - 1).bit_length())], 16),
                           Cat(byte, Const(0, 8)))
                col.append(Mux(r < rows_ok, word, 0))
            else:
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
        with m.If(self.start):
            m.d.sync += [f_active.eq(self.os), f_n0.eq(0), f_m0.eq(0), f_kc.eq(0), f_tile.eq(self.a_word),
                         f_addr.eq(self.a_word), f_r.eq(0), f_bank.eq(0), e_bank.eq(0), e_j.eq(0),
                         full[0].eq(0), full[1].eq(0)]
        m.d.comb += [
            self.rd.addr.eq(f_addr), self.rd.en.eq(issue),
            self.a.valid.eq(Mux(e_bank, full[1], full[0])), self.a.payload.data.eq(Cat(*col)),
            self.a.payload.last.eq(Mux(e_bank, meta_lastk[1], meta_lastk[0]) & end_chunk),
            self.macs.eq(Mux(e_bank, meta_macs[1], meta_macs[0])),
        ]
        return m
