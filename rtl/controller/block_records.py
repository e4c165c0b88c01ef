"""A block-scaled MATMUL's block-record reader (``MATMUL.blocks``, spec.block_scale): the records of each
(n-fold, block) from the scratchpad's weight port into a FIFO the accumulator writer's block stage pops."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import fifo

__all__ = ["record_reader"]


def record_reader(m, p, *, word_bytes: int, read_words: int, cols: int, spad_aw: int, w_data):
    """A block-scaled MATMUL's block records, in the collector's order (n-fold outer, block inner): one FIFO
    entry per (n-fold, block) holding the n-fold's ``cols`` records (D int16, O int16 each), read from the
    record row ``rec_base + block * rec_stride`` at word ``n-fold * 4 cols / word_bytes`` in wide reads that
    take the weight port ahead of the weight generator. Starts a few cycles after ``go`` (the record address
    is a registered product)."""
    B, NI, C = word_bytes, read_words, cols
    WPF = 4 * C // B                          # words per fetch
    NR = -(-WPF // NI)                        # wide reads per fetch
    q = fifo.SyncFIFO(width=32 * C, depth=3)
    m.submodules.block_records = q
    go_d = Signal(3)
    m.d.sync += go_d.eq(Cat(p.go & p.blocks, go_d[:2]))
    active, busy = Signal(name="rr_active"), Signal(name="rr_busy")
    nf_word = Signal(spad_aw + 1, name="rr_nf_word")       # n-fold's word offset in a record row
    n0 = Signal(13, name="rr_n0")
    blk = Signal(8, name="rr_blk")
    row = Signal(spad_aw + 1, name="rr_row")               # this block's record row
    rd = Signal(range(NR + 1), name="rr_read")
    issue = Signal(name="rr_issue")
    start_fetch = active & ~busy & (q.level < q.depth - 1)
    m.d.comb += issue.eq(busy)
    with m.If(start_fetch):
        m.d.sync += [busy.eq(1), rd.eq(0)]
    with m.If(issue):
        m.d.sync += rd.eq(rd + 1)
        with m.If(rd == NR - 1):
            m.d.sync += busy.eq(0)
            # next (n-fold, block): blocks inner
            with m.If(((blk + 1) << 5) < p.kk):
                m.d.sync += [blk.eq(blk + 1), row.eq(row + p.rec_stride)]
            with m.Else():
                m.d.sync += [blk.eq(0), row.eq(p.rec_base), n0.eq(n0 + C), nf_word.eq(nf_word + WPF)]
                with m.If((n0 + C) >= p.nn):
                    m.d.sync += active.eq(0)
    with m.If(go_d[2]):
        m.d.sync += [active.eq(1), busy.eq(0), n0.eq(0), blk.eq(0), nf_word.eq(0), row.eq(p.rec_base)]
    addr = Signal(spad_aw, name="rr_addr")
    m.d.comb += addr.eq(row + nf_word + rd * NI)
    # The data of a read arrives the next cycle; the fetch's words gather into one entry.
    s_valid, s_rd = Signal(name="rr_s_valid"), Signal(range(NR + 1), name="rr_s_read")
    m.d.sync += s_valid.eq(issue)
    with m.If(issue):
        m.d.sync += s_rd.eq(rd)
    slots = []
    for i in range(NR):
        held = Signal(8 * B * NI, name=f"rr_slot{i}")
        cur = Signal(8 * B * NI, name=f"rr_cur{i}")
        hit = s_valid & (s_rd == i)
        m.d.comb += cur.eq(Mux(hit, w_data, held))
        with m.If(hit):
            m.d.sync += held.eq(w_data)
        slots.append(cur)
    m.d.comb += [q.w_en.eq(s_valid & (s_rd == NR - 1)), q.w_data.eq(Cat(*slots)[:32 * C])]
    return SimpleNamespace(issue=issue, addr=addr, fifo=q)
