"""The VEC_REQUANT engine's row streamer and result packer on the Amaranth simulator: every accumulator word of every
row read once, in order, with ``last`` on each row's final word, under consumer stalls; results packed into
scratchpad words exactly as the int8/int16/int32 row layout of the scratchpad (little-endian, row strides rounded up
to whole words, tails zero), under DMA write blocking. The whole engine runs in tests/rtl/npu (VEC_REQUANT)."""

from __future__ import annotations

import random

import pytest

from npuforge.rtl.controller.requant import AccRowReader, ResultPacker
from tests.conftest import simulate


@pytest.mark.parametrize("word_bytes,n,rows", [(4, 3, 2), (8, 5, 3), (16, 4, 1), (16, 9, 2)])
def test_reader_streams_every_row_word_once(word_bytes, n, rows):
    dut = AccRowReader(word_bytes=word_bytes, acc_aw=8)
    src = 5
    acc = {a: random.Random(a).getrandbits(8 * word_bytes) for a in range(256)}
    rng = random.Random(n)
    got = []

    async def bench(ctx):
        ctx.set(dut.src, src)
        ctx.set(dut.rows, rows)
        ctx.set(dut.n, n)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        ctx.set(dut.go, 1)
        await ctx.tick()
        ctx.set(dut.go, 0)
        read = None
        for _ in range(200):
            ctx.set(dut.acc_rd.data, acc[read] if read is not None else 0)   # synchronous memory: data a cycle late
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.last)))
            read = ctx.get(dut.acc_rd.addr) if ctx.get(dut.acc_rd.en) else None
            await ctx.tick()

    simulate(dut, bench)
    words = -(-4 * n // word_bytes)
    want = [(acc[src + r * words + j], int(j == words - 1)) for r in range(rows) for j in range(words)]
    assert got == want


@pytest.mark.parametrize("word_bytes,n,rows,out_bytes", [(4, 3, 2, 1), (8, 5, 2, 2), (8, 2, 3, 4), (16, 9, 2, 1),
                                                          (16, 6, 2, 2)])
def test_packer_writes_the_scratchpad_row_layout(word_bytes, n, rows, out_bytes):
    lanes = word_bytes // 4
    dut = ResultPacker(word_bytes=word_bytes, spad_aw=8)
    rng = random.Random(word_bytes * 10 + n)
    lim = 1 << (8 * out_bytes - 1)
    results = [[rng.randint(-lim, lim - 1) for _ in range(n)] for _ in range(rows)]
    dst = 7
    spad = {}
    finished = []

    async def bench(ctx):
        ctx.set(dut.dst, dst)
        ctx.set(dut.rows, rows)
        ctx.set(dut.n, n)
        ctx.set(dut.out16, out_bytes == 2)
        ctx.set(dut.out32, out_bytes == 4)
        ctx.set(dut.init, 1)
        await ctx.tick()
        ctx.set(dut.init, 0)
        beats = [(row[j:j + lanes], j + lanes >= n) for row in results for j in range(0, n, lanes)]
        sent = 0
        for _ in range(200):
            ctx.set(dut.wr_block, rng.random() < 0.3)
            ctx.set(dut.i.valid, sent < len(beats))
            if sent < len(beats):
                vals, last = beats[sent]
                ctx.set(dut.i.payload.data, vals + [0] * (lanes - len(vals)))   # tail lanes are 0
                ctx.set(dut.i.payload.last, last)
            if ctx.get(dut.spad_wr.en):
                assert ctx.get(dut.spad_wr.en) == (1 << word_bytes) - 1
                spad[ctx.get(dut.spad_wr.addr)] = ctx.get(dut.spad_wr.data)
            if ctx.get(dut.finished):
                finished.append(sent)
            took = sent < len(beats) and ctx.get(dut.i.ready)
            await ctx.tick()
            sent += took
        assert finished == [len(beats) - 1]

    simulate(dut, bench)
    # The scratchpad layout: row r at word dst + r * ceil(n * out_bytes / word_bytes), little-endian, tail zero.
    row_words = -(-n * out_bytes // word_bytes)
    want = {}
    for r, row in enumerate(results):
        raw = b"".join(v.to_bytes(out_bytes, "little", signed=True) for v in row)
        raw += bytes(row_words * word_bytes - len(raw))
        for j in range(row_words):
            want[dst + r * row_words + j] = int.from_bytes(raw[j * word_bytes:(j + 1) * word_bytes], "little")
    assert spad == want
