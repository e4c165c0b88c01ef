"""The MATMUL unit's accumulator read-modify-write on the Amaranth simulator, against a Python model of the banked,
word-interleaved accumulator: segments at every word offset and length, masks, adding (int32 wrap) and overwriting,
one- and two-row beats. The whole engine runs in tests/rtl/test_matmul_*_amaranth.py and tests/rtl/npu."""

from __future__ import annotations

import random

import pytest

from npuforge.rtl.controller.acc_write import AccumulatorWriter
from tests.conftest import simulate


def _wrap32(v):
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


@pytest.mark.parametrize("word_bytes,banks,rows", [(8, 2, 1), (16, 4, 2), (4, 1, 2)])
def test_rows_added_or_written_into_the_banked_accumulator(word_bytes, banks, rows):
    E = word_bytes // 4
    NE = banks * E
    dut = AccumulatorWriter(word_bytes=word_bytes, acc_aw=6, banks=banks, rows=rows)
    rng = random.Random(word_bytes + banks)
    acc = {w: [rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(E)] for w in range(64)}   # word -> int32s
    want = {w: list(v) for w, v in acc.items()}
    stride = 5
    beats = []
    for i in range(12):
        # Consecutive offers touch different words (the engine's rows do; the banks do not forward a write).
        w0 = (11 * i) % 40
        words = rng.randint(1, banks)
        elems = [[rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(NE)] for _ in range(rows)]
        mask = rng.getrandbits(NE) & ((1 << (words * E)) - 1)
        beats.append((w0, words, elems, mask, rng.random() < 0.3))
    for w0, words, elems, mask, overwrite in beats:
        for r in range(rows):
            for j in range(NE):
                if mask >> j & 1:
                    w, e = w0 + r * stride + j // E, j % E
                    want[w][e] = elems[r][j] if overwrite else _wrap32(want[w][e] + elems[r][j])

    def word_value(w):
        return sum((v & 0xFFFFFFFF) << (32 * e) for e, v in enumerate(acc[w]))

    def apply_writes(ctx):
        """The banks' writes of this cycle into the model (byte enables per int32)."""
        for b in range(banks):
            en = ctx.get(dut.acc_wr_en[b])
            if en:
                w = ctx.get(dut.acc_wr_addr[b]) * banks + b
                value = ctx.get(dut.acc_wr_data[b])
                for e in range(E):
                    if en >> (4 * e) & 1:
                        acc[w][e] = _wrap32(value >> (32 * e) & 0xFFFFFFFF)

    async def bench(ctx):
        ctx.set(dut.acc_stride, stride)
        pending = None      # the banks' reads of last cycle: (bank, word)
        for w0, words, elems, mask, overwrite in beats:
            for r in range(rows):
                ctx.set(dut.valid, 1)
                ctx.set(dut.row, r)
                ctx.set(dut.w0, w0)
                ctx.set(dut.words, words)
                ctx.set(dut.elems, elems)
                ctx.set(dut.mask, mask)
                ctx.set(dut.overwrite, overwrite)
                # Synchronous banks: data of last cycle's reads, then this cycle's writes.
                reads = [(b, ctx.get(dut.acc_rd_addr[b]) * banks + b) for b in range(banks)]
                if pending:
                    ctx.set(dut.acc_rd_data, [word_value(w) for _, w in pending])
                apply_writes(ctx)
                await ctx.tick()
                pending = reads
        ctx.set(dut.valid, 0)
        for _ in range(2):
            ctx.set(dut.acc_rd_data, [word_value(w) for _, w in pending])
            apply_writes(ctx)
            await ctx.tick()

    simulate(dut, bench)
    assert acc == want
