"""RoPE's datapath components on the Amaranth simulator: the rotator against ``golden.elementwise.rope`` (with
tables and inputs that never saturate, so its unsaturated sums are golden's outputs) and the re-order stage
(a row leaves as its lo beats then its hi beats, saturated; an aborted row's queued hi beats are thrown away)
under random stalls. The whole operator is tested in test_elementwise_cocotb.py."""

from __future__ import annotations

import random

import numpy as np
import pytest

from npuforge.golden.elementwise import rope, rope_table
from npuforge.rtl.vector.rope_datapath import RopeReorder, RopeRotator
from tests.conftest import simulate


def _rotate(dut, items, frac_bits):
    """Feed (x1, x2, cos, sin) beat pairs through the rotator under random output stalls; its (lo, hi) beats."""
    got = []
    r = random.Random(frac_bits)

    async def bench(ctx):
        ctx.set(dut.frac_bits, frac_bits)
        sent = 0
        while len(got) < len(items):
            ready = r.random() < 0.6
            ctx.set(dut.ready, ready)
            ctx.set(dut.valid_in, sent < len(items))
            if sent < len(items):
                x1, x2, c, s = (list(int(v) for v in a) for a in items[sent])
                ctx.set(dut.out_in, 1)
                ctx.set(dut.x1, x1)
                ctx.set(dut.x2, x2)
                ctx.set(dut.cos, c)
                ctx.set(dut.sin, s)
            if ready and ctx.get(dut.valid):
                got.append((list(ctx.get(dut.lo)), list(ctx.get(dut.hi))))
            took = sent < len(items) and ctx.get(dut.accept)
            await ctx.tick()
            sent += took

    simulate(dut, bench)
    return got


@pytest.mark.parametrize("frac_bits", [1, 6, 14])
def test_rotator_like_golden(frac_bits):
    lanes, half = 2, 8
    dut = RopeRotator(lanes=lanes, in_width=8)
    rng = np.random.default_rng(frac_bits)
    cos, sin = rope_table(2 * half, 5, frac_bits=frac_bits)
    rows = [(rng.integers(-128, 128, 2 * half), int(p)) for p in rng.integers(0, 5, 6)]
    rows.append((np.array([-128] * half + [127] * half), 4))
    items = []
    for x, p in rows:
        for j in range(0, half, lanes):
            items.append((x[j:j + lanes], x[half + j:half + j + lanes], cos[p, j:j + lanes], sin[p, j:j + lanes]))
    got = _rotate(dut, items, frac_bits)
    lo = [v for g, _ in got for v in g]
    hi = [v for _, g in got for v in g]
    want = np.concatenate([rope(x[None, :], p, cos, sin, frac_bits=frac_bits, out_bits=16)[0] for x, p in rows])
    want = want.reshape(len(rows), 2, half)
    assert lo == [int(v) for v in want[:, 0].ravel()]
    assert hi == [int(v) for v in want[:, 1].ravel()]


@pytest.mark.parametrize("out_width,out_bits", [(8, 8), (16, 16), (16, 8)])
def test_reorder_sends_lo_then_hi_saturated(out_width, out_bits):
    lanes, half_beats = 2, 3
    dut = RopeReorder(lanes=lanes, in_width=8, out_width=out_width, max_half_beats=half_beats)
    r = random.Random(out_width + out_bits)
    lim = 1 << 24
    # rows of (lo beats, hi beats); the third is aborted after two beat pairs (end token without data).
    rows = [[([r.randint(-lim, lim) for _ in range(lanes)], [r.randint(-300, 300) for _ in range(lanes)])
             for _ in range(n)] for n in (3, 1, 2, 2)]
    aborted = 2
    items = []
    for i, row in enumerate(rows):
        for j, (lo, hi) in enumerate(row):
            items.append((1, int(j == len(row) - 1 and i != aborted), lo, hi))
        if i == aborted:
            items.append((0, 1, [0] * lanes, [0] * lanes))
    got = []

    async def bench(ctx):
        ctx.set(dut.out_bits, out_bits)
        sent = 0
        for _ in range(300):
            ready = r.random() < 0.6
            ctx.set(dut.o.ready, ready)
            ctx.set(dut.valid_in, sent < len(items))
            if sent < len(items):
                out, end, lo, hi = items[sent]
                ctx.set(dut.out_in, out)
                ctx.set(dut.end_in, end)
                ctx.set(dut.lo, lo)
                ctx.set(dut.hi, hi)
            if ready and ctx.get(dut.o.valid):
                got.append(list(ctx.get(dut.o.payload.data)))
            took = sent < len(items) and ctx.get(dut.ready)
            await ctx.tick()
            sent += took
        assert not ctx.get(dut.busy)

    simulate(dut, bench)
    lo_lim = 1 << (out_bits - 1)

    def clamp(beat):
        return [int(np.clip(v, -lo_lim, lo_lim - 1)) for v in beat]
    want = []
    for i, row in enumerate(rows):
        want += [clamp(lo) for lo, _ in row]
        if i != aborted:
            want += [clamp(hi) for _, hi in row]
    assert got == want


@pytest.mark.parametrize("frac_bits", [1, 14])
def test_rotator_int16_extremes_like_golden(frac_bits):
    """int16 head vectors (q of the w8a16 / w4a16 schemes): the int16 extremes against the largest table entries
    (cos / sin -32768 and 32767, outside any rope_table, so every product and sum reaches its width), random rows
    (frac_bits 1: every other sum a rounding tie); the rotator's sums saturated to int16 equal golden's int16
    output."""
    lanes, half = 2, 4
    dut = RopeRotator(lanes=lanes, in_width=16)
    rng = np.random.default_rng(100 + frac_bits)
    cos = rng.integers(-32768, 32768, (3, half)).astype(np.int16)
    sin = rng.integers(-32768, 32768, (3, half)).astype(np.int16)
    cos[0], sin[0] = [-32768, 32767, -32768, 32767], [-32768, -32768, 32767, 32767]
    table_cos, table_sin = rope_table(2 * half, 2, frac_bits=frac_bits)
    cos[1], sin[1] = table_cos[1], table_sin[1]
    rows = [(np.array([-32768, 32767, -32768, 32767, -32768, -32768, 32767, 32767]), 0),
            (np.array([32767, -32768, 1, -1, -32768, 32767, -1, 1]), 0),
            (np.array([-32768] * half + [32767] * half), 1)]
    rows += [(rng.integers(-32768, 32768, 2 * half), int(p)) for p in rng.integers(0, 3, 5)]
    items = []
    for x, p in rows:
        for j in range(0, half, lanes):
            items.append((x[j:j + lanes], x[half + j:half + j + lanes], cos[p, j:j + lanes], sin[p, j:j + lanes]))
    got = _rotate(dut, items, frac_bits)
    lo = np.clip([v for g, _ in got for v in g], -32768, 32767)
    hi = np.clip([v for _, g in got for v in g], -32768, 32767)
    want = np.concatenate([rope(x[None, :].astype(np.int16), p, cos, sin, frac_bits=frac_bits, out_bits=16)[0]
                           for x, p in rows]).reshape(len(rows), 2, half)
    assert lo.tolist() == want[:, 0].ravel().tolist()
    assert hi.tolist() == want[:, 1].ravel().tolist()
    assert (np.abs(lo) == 32768).any() or (np.abs(hi) >= 32767).any()     # the extremes saturate
